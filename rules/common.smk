import hashlib
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from selfsup import downstream as protocols
from selfsup.data import sources
from selfsup.jobs import digest
from selfsup.pretext import get_method, has_pseudo_labels
from selfsup.study import StudyError, check_study, downstream_settings

validate(config, "../schemas/study.schema.yaml")
try:
    STUDY = check_study(config)
except StudyError as error:
    raise WorkflowError(f"Invalid study file: {error}") from None

RESULTS = f"results/{STUDY['study']}"
DATASET = STUDY["dataset"]["name"]
PRETEXT = STUDY["pretext"]
PROTOCOLS = STUDY["downstream"]["protocols"]
BASELINE_METHOD = "none"  # the method name of runs that use no pretext encoder
LIBRARY = Path(workflow.basedir) / "selfsup"


wildcard_constraints:
    dataset=r"[a-z_]+",
    method="|".join([BASELINE_METHOD, *PRETEXT]),
    protocol=protocols.PROTOCOL_PATTERN.strip("^$"),
    budget=r"all|\d+",
    seed=r"\d+",


def code_fingerprint(*modules):
    """Hash of the library files a job runs, passed as a param so that editing them re-runs it."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update((LIBRARY / module).read_bytes())
    return digest.hexdigest()[:16]


# --- data ---------------------------------------------------------------------


SOURCE = sources.get_source(DATASET)
DATASET_OPTIONS = STUDY["dataset"]["options"]
# One prepared file per source and options: studies that share them share the file.
DATA_KEY = (
    DATASET
    if DATASET_OPTIONS == SOURCE.options
    else f"{DATASET}-{digest(DATASET_OPTIONS)[:8]}"
)
DOWNLOAD_DIR = f"resources/{DATASET}"


def download_needed():
    return SOURCE.needs_files and not STUDY["dataset"]["data_dir"]


def prepare_inputs(wildcards):
    return rules.download.output if download_needed() else []


def dataset_source(wildcards):
    folder = DOWNLOAD_DIR if download_needed() else STUDY["dataset"]["data_dir"]
    return {"name": DATASET, "folder": folder, "options": DATASET_OPTIONS}


def split_settings(wildcards):
    return {
        **STUDY["split"],
        "normalization": STUDY["dataset"]["normalization"],
    }


DATA_CODE = [
    "data/sources.py",
    "data/formats.py",
    "data/archives.py",
    "data/idx.py",
    "data/generated.py",
    "data/dataset.py",
    "artifacts.py",
]
# What every training job runs besides its method or protocol.
TRAINING_CODE = [
    "pipeline.py",
    "encoders.py",
    "training.py",
    "optimizers.py",
    "schedules.py",
    "augment.py",
    "monitor.py",
    "artifacts.py",
    "data/inputs.py",
    "data/normalization.py",
    "data/splits.py",
]


# --- pretext ------------------------------------------------------------------


def method_modules(name):
    """The method's own file and the shared library files it declares it runs."""
    return get_method(PRETEXT[name]["method"]).code_files()


def pretext_settings(wildcards):
    return PRETEXT[wildcards.method]


def pseudo_label_settings(wildcards):
    """Only what pseudo-labels depend on, so that editing epochs or optimizer keeps them."""
    entry = PRETEXT[wildcards.method]
    return {"method": entry["method"], "options": entry["options"]}


def pretext_inputs(wildcards):
    inputs = {
        "data": rules.prepare.output.data,
        "split": expand(rules.split.output.split, seed=wildcards.seed)[0],
    }
    if has_pseudo_labels(PRETEXT[wildcards.method]["method"]):
        inputs["pseudo"] = (
            f"{RESULTS}/pseudo/{wildcards.method}/seed{wildcards.seed}.h5"
        )
    return inputs


def pretext_code(wildcards):
    return code_fingerprint(*method_modules(wildcards.method), *TRAINING_CODE)


def pseudo_label_code(wildcards):
    return code_fingerprint(*method_modules(wildcards.method), "artifacts.py")


# --- downstream ---------------------------------------------------------------


def run_methods(protocol):
    """Pretext runs a protocol is applied to; baselines use no pretext encoder."""
    return list(PRETEXT) if protocols.uses_pretext(protocol) else [BASELINE_METHOD]


def run_dirs():
    return [
        f"{RESULTS}/runs/{method}/{protocol}/n{budget}/seed{seed}"
        for protocol in PROTOCOLS
        for method in run_methods(protocol)
        for budget in STUDY["budgets"]
        for seed in STUDY["seeds"]
    ]


def downstream_inputs(wildcards):
    inputs = {
        "data": rules.prepare.output.data,
        "split": expand(rules.split.output.split, seed=wildcards.seed)[0],
    }
    if wildcards.method != BASELINE_METHOD:
        inputs["encoder"] = (
            f"{RESULTS}/encoders/{wildcards.method}/seed{wildcards.seed}/encoder.h5"
        )
    return inputs


def classifier_settings(wildcards):
    if protocols.uses_pretext(wildcards.protocol) == (
        wildcards.method == BASELINE_METHOD
    ):
        raise WorkflowError(
            f"protocol {wildcards.protocol} does not go with method {wildcards.method}"
        )
    return {
        **downstream_settings(STUDY, wildcards.protocol),
        "protocol": wildcards.protocol,
    }


def downstream_code(wildcards):
    return code_fingerprint("downstream.py", *TRAINING_CODE)


# --- report -------------------------------------------------------------------


def report_code(wildcards):
    return code_fingerprint("report/tables.py", "report/figures.py")


def example_runs():
    """Runs whose predictions for one test image are plotted: first seed, largest budget."""
    budgets = STUDY["budgets"]
    largest = "all" if "all" in budgets else max(budgets)
    return [
        f"{RESULTS}/runs/{method}/{protocol}/n{largest}/seed{STUDY['seeds'][0]}/metrics.json"
        for protocol in PROTOCOLS
        for method in run_methods(protocol)
    ]


def pretext_examples_title(wildcards):
    method = PRETEXT[wildcards.method]["method"]
    return f"{wildcards.method} ({method}), seed {STUDY['seeds'][0]}"


def final_outputs():
    outputs = [
        f"{RESULTS}/tables/accuracy.csv",
        f"{RESULTS}/tables/accuracy.md",
        f"{RESULTS}/figures/accuracy_vs_labels.png",
        f"{RESULTS}/figures/accuracy_vs_labels.svg",
        f"{RESULTS}/figures/class_probabilities.png",
    ]
    for name in PRETEXT:
        outputs.append(f"{RESULTS}/figures/pretext_examples_{name}.png")
    if PRETEXT and STUDY["split"]["monitor"]:
        outputs.append(rules.knn_figure.output.png)
    return outputs
