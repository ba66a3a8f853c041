import hashlib
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from selfsup.data import sources
from selfsup.jobs import digest
from selfsup.study import (
    StudyError,
    check_schema,
    checked_study,
    downstream_settings,
    fill_defaults,
    load_schema,
)

# TensorFlow's C++ start-up messages, when a full check imports it, drown the error.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    # Strict and concise (integers are ints; an unknown key lists the allowed ones),
    # then the defaults as snakemake.utils.validate fills them (without its slow reload).
    SCHEMA = load_schema(Path(workflow.basedir) / "schemas" / "study.schema.yaml")
    check_schema(config, SCHEMA)
    fill_defaults(config, SCHEMA)
    # Cached by the study's and the library's hash: cluster jobs and re-runs parse the
    # workflow again without importing TensorFlow or building models.
    STUDY, FACTS = checked_study(config, cache_dir=".snakemake/selfsup")
except StudyError as error:
    raise WorkflowError(f"Invalid study file: {error}") from None
# selfsup.downstream and selfsup.pretext import Keras; the rules below need only these
# facts of them, which come with the cached check.
protocols = FACTS  # CLASSIFIER_PATTERN, POOL_PROTOCOLS, uses_pretext()
get_method = FACTS.get_method  # .code_files()
has_pseudo_labels = FACTS.has_pseudo_labels

RESULTS = f"results/{STUDY['study']}"
DATASET = STUDY["dataset"]["name"]
PRETEXT = STUDY["pretext"]
PROTOCOLS = STUDY["downstream"]["protocols"]
POOLS = STUDY["pools"]
BASELINE_METHOD = "none"  # the method name of runs that use no pretext encoder
NO_POOL = "none"  # the pool name of runs that read no unlabeled images
LIBRARY = Path(workflow.basedir) / "selfsup"


wildcard_constraints:
    dataset=r"[a-z_]+",
    method="|".join([BASELINE_METHOD, *PRETEXT]),
    pool="|".join([NO_POOL, *POOLS]),
    # Classifier protocols only: self_training and joint runs have rules of their own.
    protocol=protocols.CLASSIFIER_PATTERN,
    round=r"[1-9]\d*",
    budget=r"all|\d+",
    seed=r"\d+",


def fill(pattern, wildcards):
    """`pattern` (a rule's output) with the values of the job's `wildcards` it names."""
    return expand(pattern, **dict(wildcards.items()))[0]


def code_fingerprint(*modules):
    """Hash of the library files a job runs, passed as a param so that editing them re-runs it."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update((LIBRARY / module).read_bytes())
    return digest.hexdigest()[:16]


# --- data ---------------------------------------------------------------------


SOURCE = sources.get_source(DATASET)
DATASET_OPTIONS = STUDY["dataset"]["options"]
# Foreign images mixed into the unlabeled pool (dataset.contamination), or None.
CONTAMINATION = STUDY["dataset"]["contamination"]
# What the foreign images are; where their files lie (data_dir) is not part of it.
FOREIGN_SETTINGS = (
    {key: CONTAMINATION[key] for key in ("source", "fraction", "seed")}
    if CONTAMINATION
    else None
)
# One prepared file per source, options and contamination: studies that share them
# share the file, and a contaminated file never stands in for a clean one.
if FOREIGN_SETTINGS:
    DATA_KEY = f"{DATASET}-{digest([DATASET_OPTIONS, FOREIGN_SETTINGS])[:8]}"
elif DATASET_OPTIONS != SOURCE.options:
    DATA_KEY = f"{DATASET}-{digest(DATASET_OPTIONS)[:8]}"
else:
    DATA_KEY = DATASET
DOWNLOAD_DIR = f"resources/{DATASET}"
FOREIGN = sources.get_source(CONTAMINATION["source"]) if CONTAMINATION else None
FOREIGN_DOWNLOAD_DIR = f"resources/{CONTAMINATION['source']}" if CONTAMINATION else None


def download_needed():
    return SOURCE.needs_files and not STUDY["dataset"]["data_dir"]


def foreign_download_needed():
    return bool(FOREIGN) and FOREIGN.needs_files and not CONTAMINATION["data_dir"]


def output_folder(wildcards, output):
    """The folder of a download rule's files, found from them (no path typed twice)."""
    return str(Path(output[0]).parent)


def prepare_inputs(wildcards):
    inputs = []
    if download_needed():
        inputs += rules.download.output
    if foreign_download_needed():
        inputs += rules.download_foreign.output
    return inputs


def dataset_source(wildcards):
    folder = (
        output_folder(wildcards, rules.download.output)
        if download_needed()
        else STUDY["dataset"]["data_dir"]
    )
    source = {"name": DATASET, "folder": folder, "options": DATASET_OPTIONS}
    if FOREIGN_SETTINGS:
        source["contamination"] = {
            **FOREIGN_SETTINGS,
            "folder": (
                output_folder(wildcards, rules.download_foreign.output)
                if foreign_download_needed()
                else CONTAMINATION["data_dir"]
            ),
        }
    return source


def split_settings(wildcards):
    return {
        **STUDY["split"],
        "normalization": STUDY["dataset"]["normalization"],
    }


# The data layer, and each registered source's own module (a new dataset's one file).
DATA_CODE = [
    "data/formats.py",
    "data/archives.py",
    "data/idx.py",
    "data/generated.py",
    "data/dataset.py",
    "artifacts.py",
    *sources.code_files(),
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
    "probes.py",
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


def pool_file(pool, seed):
    """The one place that says which rule makes each pool."""
    made_by = {"all": "split", "inliers": "outliers"}[pool]
    return expand(getattr(rules, made_by).output.pool, seed=seed)[0]


def pool_input(wildcards):
    return pool_file(wildcards.pool, wildcards.seed)


def stage_inputs(wildcards):
    """What every training stage reads: the prepared data and the replicate's split."""
    return {
        "data": rules.prepare.output.data,
        "split": expand(rules.split.output.split, seed=wildcards.seed)[0],
    }


def pretext_inputs(wildcards):
    inputs = {**stage_inputs(wildcards), "pool": pool_input(wildcards)}
    if has_pseudo_labels(PRETEXT[wildcards.method]["method"]):
        inputs["pseudo"] = fill(rules.pseudo_labels.output[0], wildcards)
    return inputs


def encoder_file(wildcards):
    return fill(rules.pretext.output.encoder, wildcards)


def pretext_code(wildcards):
    return code_fingerprint(*method_modules(wildcards.method), *TRAINING_CODE)


def pseudo_label_code(wildcards):
    return code_fingerprint(*method_modules(wildcards.method), "artifacts.py")


# --- downstream ---------------------------------------------------------------


def run_methods(protocol):
    """Pretext runs a protocol is applied to; baselines use no pretext encoder."""
    if protocol == "self_training" and STUDY["self_training"]["from_pretext"]:
        return [BASELINE_METHOD, *PRETEXT]
    return list(PRETEXT) if protocols.uses_pretext(protocol) else [BASELINE_METHOD]


def run_pools(method, protocol):
    """Runs that read unlabeled images, directly or through their encoder, run once per pool."""
    reads_pool = method != BASELINE_METHOD or protocol in protocols.POOL_PROTOCOLS
    return POOLS if reads_pool else [NO_POOL]


def run_dirs(protocols_run=PROTOCOLS):
    return [
        f"{RESULTS}/runs/{pool}/{method}/{protocol}/n{budget}/seed{seed}"
        for protocol in protocols_run
        for method in run_methods(protocol)
        for pool in run_pools(method, protocol)
        for budget in STUDY["budgets"]
        for seed in STUDY["seeds"]
    ]


def downstream_inputs(wildcards):
    inputs = stage_inputs(wildcards)
    if wildcards.method != BASELINE_METHOD:
        inputs["encoder"] = encoder_file(wildcards)
    return inputs


def classifier_settings(wildcards, protocol=None):
    """Training settings of a run; `protocol` for the rules whose path fixes it."""
    protocol = protocol or wildcards.protocol
    method = wildcards.get("method", BASELINE_METHOD)  # the joint model's path fixes it
    if protocol not in protocols.POOL_PROTOCOLS and protocols.uses_pretext(
        protocol
    ) == (method == BASELINE_METHOD):
        raise WorkflowError(f"protocol {protocol} does not go with method {method}")
    if (wildcards.pool == NO_POOL) == (
        method != BASELINE_METHOD or protocol in protocols.POOL_PROTOCOLS
    ):
        raise WorkflowError(
            f"pool {wildcards.pool} does not go with {method} {protocol}"
        )
    settings = {**downstream_settings(STUDY, protocol), "protocol": protocol}
    if protocol == "joint":
        settings["joint"] = STUDY["joint"]
    return settings


def joint_settings(wildcards):
    return classifier_settings(wildcards, "joint")


def self_training_settings(wildcards):
    return classifier_settings(wildcards, "self_training")


# What each pool protocol runs besides the classifier code.
POOL_PROTOCOL_CODE = {
    "self_training": [],
    "joint": ["joint.py", "pretext/reconstruction.py"],
}


def downstream_code(wildcards, protocol=None):
    protocol = protocol or wildcards.protocol
    return code_fingerprint(
        "downstream.py", *POOL_PROTOCOL_CODE.get(protocol, []), *TRAINING_CODE
    )


def joint_code(wildcards):
    return downstream_code(wildcards, "joint")


def self_training_code(wildcards):
    return downstream_code(wildcards, "self_training")


# --- outliers and self-training ------------------------------------------------


def outlier_settings(wildcards):
    return STUDY["outliers"]


def outlier_code(wildcards):
    # A scorer lives in the module of its name (selfsup/outliers/<method>.py).
    method = STUDY["outliers"]["method"]
    return code_fingerprint("outliers/base.py", f"outliers/{method}.py", *TRAINING_CODE)


def earlier_rounds(wildcards):
    """Pseudo-labels of the rounds before this one (a student comes after every round)."""
    last = int(wildcards.get("round", STUDY["self_training"]["rounds"] + 1)) - 1
    return [
        fill(
            rules.self_training_round.output.labels,
            {**dict(wildcards.items()), "round": r},
        )
        for r in range(1, last + 1)
    ]


def self_training_inputs(wildcards):
    inputs = {**stage_inputs(wildcards), "pool": pool_input(wildcards)}
    inputs["rounds"] = earlier_rounds(wildcards)
    if wildcards.method != BASELINE_METHOD:
        inputs["encoder"] = encoder_file(wildcards)
    return inputs


# --- report -------------------------------------------------------------------


def report_code(wildcards):
    return code_fingerprint(
        "report/tables.py", "report/comparisons.py", "report/figures.py"
    )


def example_runs():
    """Runs whose predictions for one test image are plotted: first seed and pool, largest budget."""
    budgets = STUDY["budgets"]
    largest = "all" if "all" in budgets else max(budgets)
    return [
        f"{RESULTS}/runs/{run_pools(method, protocol)[0]}/{method}/{protocol}/n{largest}/seed{STUDY['seeds'][0]}/metrics.json"
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
    if "inliers" in POOLS:
        outputs.append(rules.outlier_figure.output.png)
    if "self_training" in PROTOCOLS:
        outputs.append(rules.self_training_figure.output.png)
    return outputs
