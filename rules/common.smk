import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from selfsup import fingerprints, pretext, protocols
from selfsup.data import sources
from selfsup.data.splits import budget_name
from selfsup.jobs import digest
from selfsup.config import StudyError, load_schema
from selfsup.study import POOLS as POOL_MAKERS
from selfsup.study import study_from_config

# TensorFlow's C++ start-up messages, when a full check imports it, drown the error.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    # Strict and concise (integers are ints; an unknown key lists the allowed ones),
    # the defaults filled in as snakemake.utils.validate would (without its slow reload),
    # then the full check, cached by the study's and the library's hash: cluster jobs
    # and re-runs parse the workflow again without importing TensorFlow or building models.
    SCHEMA = load_schema(Path(workflow.basedir) / "schemas" / "study.schema.yaml")
    STUDY = study_from_config(config, SCHEMA, cache_dir=".snakemake/selfsup")
except StudyError as error:
    raise WorkflowError(f"Invalid study file: {error}") from None

RESULTS = f"results/{STUDY['study']}"
LOGS = f"logs/{STUDY['study']}"
BENCHMARKS = f"{RESULTS}/benchmarks"
# One classifier run (a protocol on a budget and seed), as a path with Snakemake's
# wildcards: its folder under RESULTS, its log under LOGS, its benchmark under BENCHMARKS.
RUN = "runs/{pool}/{pretext}/{protocol}/n{budget}/seed{seed}"
DATASET = STUDY["dataset"]["name"]
PRETEXT = STUDY["pretext"]
PROTOCOLS = STUDY["downstream"]["protocols"]
POOLS = STUDY["pools"]
# The pretext wildcard names a pretext run (a key of the study's pretext section), or
# this for runs that use no pretext encoder.
NO_PRETEXT = "none"
NO_POOL = "none"  # the pool name of runs that read no unlabeled images
SCRIPTS = Path(workflow.basedir) / "scripts"
# The budget wildcard's values: each budget once per draw of its labels (draw 1 keeps
# the budget's own name, so a study without draws has the paths it always had).
BUDGETS = [
    budget_name(budget, draw)
    for budget in STUDY["budgets"]
    for draw in range(1, STUDY["draws"] + 1)
]


wildcard_constraints:
    dataset=r"[a-z_]+",
    pretext="|".join([NO_PRETEXT, *PRETEXT]),
    pool="|".join([NO_POOL, *POOLS]),
    # The protocols that run under the downstream rule (self-training has rules of its own).
    protocol=protocols.pattern("downstream"),
    round=r"[1-9]\d*",
    budget=r"all|\d+(-draw[1-9]\d*)?",
    seed=r"\d+",


def run(**fixed):
    """RUN with the wildcards named in `fixed` set (the others stay wildcards)."""
    wildcards = {
        key: f"{{{key}}}" for key in ("pool", "pretext", "protocol", "budget", "seed")
    }
    return RUN.format_map({**wildcards, **fixed})


# What every training job asks of the machine and passes its script besides its own
# settings. TensorFlow's thread count changes results bit for bit, so it is a param:
# editing it re-runs the job.
TRAINING_PARAMS = {
    "tf_threads": STUDY["threads"],
    "encoder": STUDY["encoder"],
    "study": STUDY["study"],
}


def training_resources(runtime, mem_mb):
    """A training job's resources: one GPU slot (selfsup.devices), minutes and memory."""
    return {"gpu": 1, "runtime": runtime, "mem_mb": mem_mb}


def fill(pattern, wildcards):
    """`pattern` (a rule's output) with the values of the job's `wildcards` it names."""
    return expand(pattern, **dict(wildcards.items()))[0]


def job_code(rule_name, registry_module=None):
    """A params function: the fingerprint of the library code that the rule's script
    imports (selfsup.fingerprints) and, where the job runs a registry entry the study
    chooses, `registry_module(wildcards)`: editing any of it re-runs the job."""

    def code(wildcards):
        script = SCRIPTS / Path(workflow.get_rule(rule_name).script).name
        extra = [registry_module(wildcards)] if registry_module else []
        return fingerprints.fingerprint(script, *extra)

    return code


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


# --- pretext ------------------------------------------------------------------


def pretext_settings(wildcards):
    return PRETEXT[wildcards.pretext]


def pseudo_label_settings(wildcards):
    """Only what pseudo-labels depend on, so that editing epochs or optimizer keeps them."""
    entry = PRETEXT[wildcards.pretext]
    return {"method": entry["method"], "options": entry["options"]}


def pool_file(pool, seed):
    """The pool file of the rule that makes it (selfsup.study.POOLS)."""
    return expand(getattr(rules, POOL_MAKERS[pool]).output.pool, seed=seed)[0]


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
    if pretext.has_pseudo_labels(PRETEXT[wildcards.pretext]["method"]):
        inputs["pseudo"] = fill(rules.pseudo_labels.output.labels, wildcards)
    return inputs


def encoder_file(wildcards):
    return fill(rules.pretext.output.encoder, wildcards)


def method_module(wildcards):
    """The module of the pretext run's method, which its jobs run."""
    return pretext.method_module(PRETEXT[wildcards.pretext]["method"])


# --- downstream ---------------------------------------------------------------


def run_methods(protocol):
    """Pretext runs a protocol starts from (selfsup.protocols.starts); NO_PRETEXT for
    its runs from a freshly initialized encoder or from no encoder."""
    return [
        method
        for pretrained in protocols.starts(protocol, STUDY)
        for method in (PRETEXT if pretrained else [NO_PRETEXT])
    ]


def reads_pool(method, protocol):
    """Whether a run reads unlabeled images, itself or through its pretext encoder."""
    return method != NO_PRETEXT or protocols.reads_pool(protocol)


def run_pools(method, protocol):
    """Runs that read unlabeled images run once per pool."""
    return POOLS if reads_pool(method, protocol) else [NO_POOL]


def run_dirs(protocols_run=PROTOCOLS):
    return [
        f"{RESULTS}/{run(pool=pool, pretext=method, protocol=protocol, budget=budget, seed=seed)}"
        for protocol in protocols_run
        for method in run_methods(protocol)
        for pool in run_pools(method, protocol)
        for budget in BUDGETS
        for seed in STUDY["seeds"]
    ]


def downstream_inputs(wildcards):
    inputs = stage_inputs(wildcards)
    if wildcards.pretext != NO_PRETEXT:
        inputs["encoder"] = encoder_file(wildcards)
    if protocols.reads_pool(wildcards.protocol):
        inputs["pool"] = pool_input(wildcards)
    return inputs


def run_settings(wildcards, protocol=None):
    """What a run reads (selfsup.protocols.settings); `protocol` for the rules whose
    path fixes it."""
    protocol = protocol or wildcards.protocol
    method = wildcards.pretext
    if (method != NO_PRETEXT) not in protocols.starts(protocol, STUDY):
        raise WorkflowError(f"protocol {protocol} does not go with method {method}")
    if (wildcards.pool == NO_POOL) == reads_pool(method, protocol):
        raise WorkflowError(
            f"pool {wildcards.pool} does not go with {method} {protocol}"
        )
    return protocols.settings(STUDY, protocol)


def self_training_settings(wildcards):
    return run_settings(wildcards, "self_training")


def family_module(wildcards):
    """The module of the run's protocol family, which its job runs."""
    return protocols.module_path(protocols.family_name(wildcards.protocol))


# --- outliers and self-training ------------------------------------------------


def outlier_settings(wildcards):
    return STUDY["outliers"]


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
    if wildcards.pretext != NO_PRETEXT:
        inputs["encoder"] = encoder_file(wildcards)
    return inputs


# --- report -------------------------------------------------------------------


def example_run(protocol, method, budget):
    return run(
        pool=run_pools(method, protocol)[0],
        pretext=method,
        protocol=protocol,
        budget=budget,
        seed=STUDY["seeds"][0],
    )


def example_runs():
    """Runs whose predictions for one test image are plotted: first seed and pool, largest budget."""
    budgets = STUDY["budgets"]
    largest = "all" if "all" in budgets else max(budgets)
    return [
        f"{RESULTS}/{example_run(protocol, method, largest)}/metrics.json"
        for protocol in PROTOCOLS
        for method in run_methods(protocol)
    ]


def pretext_examples_title(wildcards):
    method = PRETEXT[wildcards.pretext]["method"]
    return f"{wildcards.pretext} ({method}), seed {STUDY['seeds'][0]}"


def final_outputs():
    outputs = [
        rules.accuracy_table.output.csv,
        rules.accuracy_table.output.markdown,
        rules.accuracy_figure.output.png,
        rules.accuracy_figure.output.svg,
        *rules.class_probabilities.output,
        *expand(rules.pretext_examples.output, pretext=list(PRETEXT)),
    ]
    if PRETEXT and STUDY["split"]["monitor"]:
        outputs.append(rules.knn_figure.output.png)
    if "inliers" in POOLS:
        outputs.append(rules.outlier_figure.output.png)
    if "self_training" in PROTOCOLS:
        outputs.append(rules.self_training_figure.output.png)
    return outputs
