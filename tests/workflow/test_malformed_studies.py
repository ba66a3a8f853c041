"""Malformed studies: every one must fail in the study check, before any job, in a few
lines, naming the key and what was given.

Each case changes one thing of tests/data/tiny_study.yaml (or a preset). Every case runs
through the study check in this process, as the workflow runs it (the file read by
`read_yaml` as the Snakefile reads it, then `selfsup.study.study_from_config`, the one
function rules/common.smk calls). One case of each way an error reaches the user also
runs as a real `snakemake -n`, which must print that very message and little else: the
check is one function whatever the case, so these few prove the wiring for all of them.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from smk import REPO, SNAKEMAKE, copy_workflow, job_counts, load_study, snakemake, write_study

from selfsup.config import StudyError, read_yaml
from selfsup.study import study_from_config

BASE = load_study("tiny_study.yaml")
# TensorFlow's native start-up lines, printed when a check imports it; not ours to shorten.
NATIVE_LOG = re.compile(r"^[IWE]\d{4} |^WARNING: All log messages before absl|^To enable the following")
MAX_LINES = 12  # of a dry-run's output, the native lines left out
MESSAGE_LINES = 3  # of the check's message


def edit(change):
    """A study: the tiny study changed in place by `change(study)`."""
    study = copy.deepcopy(BASE)
    change(study)
    return study


def put(path: str, value):
    """Set the dotted `path` (creating mappings on the way) to `value`."""

    def change(study):
        *parents, last = path.split(".")
        node = study
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def drop(path: str):
    def change(study):
        *parents, last = path.split(".")
        node = study
        for key in parents:
            node = node[key]
        del node[last]

    return change


def both(*changes):
    def change(study):
        for one in changes:
            one(study)

    return change


def synthetic(**options):
    return put("dataset.options", {**BASE["dataset"]["options"], **options})


def preset(name: str, change):
    study = yaml.safe_load((REPO / "studies" / name).read_text())
    change(study)
    return study


SGD = {"name": "sgd", "learning_rate": 0.1}
ADAM = {"name": "adam", "learning_rate": 0.003}

# (id, study or raw YAML text, pattern the error must contain: the key and the value given)
CASES = [
    # integers that are floats or booleans, in any key
    ("float_seed", edit(put("seeds", [1.0, 2])), r"seeds\[0\]: 1\.0 \(float\)"),
    ("bool_seed", edit(put("seeds", [True])), r"seeds\[0\]: True \(bool\)"),
    ("float_epochs", edit(put("downstream.epochs", 2.0)), r"downstream\.epochs: 2\.0 \(float\)"),
    ("float_batch_size", edit(put("pretext.rotation.batch_size", 16.0)), r"pretext\.rotation\.batch_size: 16\.0"),
    ("float_override_epochs", edit(put("downstream.overrides", {"frozen": {"epochs": 3.0}})), r"overrides\.frozen\.epochs: 3\.0"),
    ("float_budget", edit(put("budgets", [16.0, 64])), r"budgets\[0\]: 16\.0"),
    ("float_range", edit(put("split.labeled", [0, 128.0])), r"split\.labeled\[1\]: 128\.0"),
    ("float_monitor", edit(put("split.monitor", 4.0)), r"split\.monitor: 4\.0"),
    ("float_patience", edit(put("downstream.early_stopping", {"monitor": "loss", "patience": 2.0})), r"early_stopping\.patience: 2\.0"),
    ("float_boundary", edit(put("downstream.lr_schedule", {"name": "step", "boundaries": [1.0], "factors": [0.1]})), r"lr_schedule\.boundaries\[0\]: 1\.0"),
    ("float_synthetic_option", edit(synthetic(image_size=16.0)), r"dataset\.options\.image_size: expected int.*16\.0"),
    ("float_encoder_option", edit(put("encoder.options.filters", [4.0, 8])), r"encoder\.options\.filters: expected a list of integers like \[32, 64\], got \[4\.0, 8\]"),
    # seeds the generators do not take
    ("huge_seed", edit(put("seeds", [2**40])), r"seeds\[0\]: 1099511627776.*<= 4294967295"),
    ("seed_not_a_list", edit(put("seeds", 1)), r"seeds: 1 \(int\).*a list"),
    ("repeated_seed", edit(put("seeds", [1, 1])), r"seeds: \[1, 1\] lists a value twice"),
    # dataset options and sources
    ("string_synthetic_option", edit(synthetic(n_train="40")), r"dataset\.options\.n_train: expected int like 512, got '40'"),
    ("misspelled_synthetic_option", edit(synthetic(ntrain=40)), r"dataset\.options: unknown option\(s\) ntrain; allowed: image_size, n_test"),
    ("one_class", edit(synthetic(num_classes=1)), r"dataset: synthetic .* 1 class"),
    ("synthetic_too_small", edit(synthetic(image_size=4)), r"dataset\.options\.image_size: 4 is too small"),
    ("image_too_small_for_encoder", edit(both(synthetic(image_size=6), put("encoder", {"name": "rotnet_mnist"}))), r"encoder: rotnet_mnist cannot take synthetic images of 6x6x1: MaxPooling2D"),
    ("options_to_mnist", edit(put("dataset", {"name": "mnist", "options": {"label_mode": "fine"}})), r"dataset\.options: unknown option\(s\) label_mode; allowed: none"),
    ("data_dir_with_synthetic", edit(put("dataset.data_dir", "/data")), r"dataset\.data_dir: synthetic reads no files"),
    ("unknown_dataset", edit(put("dataset.name", "cifar")), r"dataset\.name: 'cifar' given; allowed: one of mnist"),
    ("dataset_key_misspelled", edit(put("dataset.nmae", "mnist")), r"dataset: unknown key\(s\) nmae; allowed: contamination, data_dir"),
    ("contamination_fraction", edit(put("dataset.contamination", {"source": "digits", "fraction": 1.5})), r"dataset\.contamination\.fraction: 1\.5"),
    # unknown keys list the allowed ones, not the schema
    ("unknown_top_level_key", edit(put("seed", 1)), r"the study: unknown key\(s\) seed; allowed: budgets, dataset"),
    ("unknown_downstream_key", edit(put("downstream.epoch", 2)), r"downstream: unknown key\(s\) epoch; allowed: .*epochs"),
    ("unknown_pretext_key", edit(put("pretext.rotation.epoch", 2)), r"pretext\.rotation: unknown key\(s\) epoch; allowed: .*knn_monitor"),
    ("unknown_optimizer_key", edit(put("downstream.optimizer", {"name": "adam", "lr": 0.1})), r"downstream\.optimizer: unknown key\(s\) lr; allowed: bias_lr_factor, clip_lr, fixed_lr_for, learning_rate"),
    ("unknown_split_key", edit(put("split.labelled", [0, 10])), r"split: unknown key\(s\) labelled; allowed: folds, labeled"),
    ("unknown_override_key", edit(put("downstream.overrides", {"frozen": {"epoch": 3}})), r"downstream\.overrides\.frozen: unknown key\(s\) epoch"),
    ("unknown_encoder_key", edit(put("encoder.option", {})), r"encoder: unknown key\(s\) option; allowed: name, options"),
    ("missing_encoder", edit(drop("encoder")), r"'encoder' is a required property"),
    # options that would be ignored, optimizers
    ("momentum_with_adam", edit(put("downstream.optimizer", {**ADAM, "momentum": 0.9})), r"downstream\.optimizer\.momentum: adam takes no momentum"),
    ("zero_momentum_with_adam", edit(put("pretext.rotation.optimizer", {**ADAM, "momentum": 0.0})), r"pretext\.rotation\.optimizer\.momentum: adam takes no momentum"),
    ("trust_with_sgd", edit(put("downstream.optimizer", {**SGD, "trust_coefficient": 0.01})), r"downstream\.optimizer\.trust_coefficient: only lars"),
    # monitors of a validation split that is not there
    ("downstream_val_monitor", edit(put("downstream.early_stopping", {"monitor": "val_loss", "patience": 2})), r"downstream\.early_stopping\.monitor.*'val_loss'"),
    ("plateau_default_monitor", edit(put("downstream.reduce_on_plateau", {"factor": 0.5})), r"downstream\.reduce_on_plateau\.monitor.*'val_loss'"),
    ("pretext_val_monitor", edit(put("pretext.rotation.early_stopping", {"monitor": "val_loss", "patience": 1})), r"pretext\.rotation\.early_stopping\.monitor.*'val_loss'"),
    ("override_val_monitor", edit(put("downstream.overrides", {"frozen": {"keep_best": {"monitor": "val_accuracy"}}})), r"downstream\.overrides\.frozen\.keep_best\.monitor.*'val_accuracy'"),
    ("outliers_val_monitor", edit(put("outliers.keep_best", {"monitor": "val_loss"})), r"outliers\.keep_best\.monitor.*'val_loss'"),
    # budgets and split
    ("budget_equal_to_all", edit(put("budgets", [16, 128, "all"])), r"budgets: 128 and 'all' are the same 128 labeled images"),
    ("budget_above_pool", edit(put("budgets", [200])), r"budgets: 200 labels exceed the labeled pool of 128"),
    ("budget_of_one", edit(put("budgets", [1, 16])), r"budgets: 1 label is one class"),
    ("labeled_pool_of_one", edit(both(put("split.labeled", [0, 1]), put("budgets", ["all"]))), r"split: a labeled pool of 1 image"),
    ("budget_word", edit(put("budgets", ["some"])), r"budgets\[0\]: 'some' given; allowed: an integer >= 1 or 'all'"),
    ("unlabeled_outside", edit(put("split.unlabeled", [128, 300])), r"split\.unlabeled: \[128, 300\) must lie within \[0, 256\)"),
    ("folds_without_folds", edit(put("split.folds", True)), r"split\.folds: this dataset has no predefined folds"),
    # encoder, methods, protocols
    ("unknown_encoder", edit(put("encoder.name", "vgg")), r"encoder\.name: unknown encoder 'vgg'"),
    ("unknown_encoder_option", edit(put("encoder.options.width", 3)), r"encoder\.options: unknown option\(s\) width; allowed: dense"),
    ("unknown_method", edit(put("pretext", {"jigsaw": BASE["pretext"]["rotation"]})), r"pretext\.jigsaw\.method: unknown pretext method 'jigsaw'"),
    ("bad_method_option", edit(put("pretext.rotation.options.rotations", "some")), r"pretext\.rotation\.options: rotations must be"),
    ("protocol_without_pretext", edit(put("pretext", {})), r"downstream\.protocols: .* need a pretext method"),
    ("unknown_protocol", edit(put("downstream.protocols", ["linearprobe"])), r"downstream\.protocols\[0\]: 'linearprobe' does not match"),
    ("knn_k_beyond_budget", edit(put("downstream.knn", {"k": 40})), r"downstream\.knn\.k: 40 neighbours, but the smallest budget has 16"),
    ("unknown_knn_option", edit(put("downstream.knn", {"neighbours": 5})), r"downstream\.knn: unknown key\(s\) neighbours; allowed: k, temperature"),
    ("override_of_a_probe", edit(put("downstream.overrides", {"linear": {"epochs": 3}})), r"downstream\.overrides\.linear: linear evaluates frozen features with no training"),
    ("freeze_too_deep", edit(put("downstream.protocols", ["freeze_9"])), r"freeze_9: the encoder has only 4 conv layers"),
    ("bad_feature_layer", edit(put("downstream.feature_layer", "conv9")), r"downstream: feature_layer 'conv9'"),
    ("unknown_pool", edit(put("pools", ["all", "typical"])), r"pools: no stage produces a pool named 'typical'"),
    ("draws_of_all", edit(both(put("draws", 2), put("budgets", [16, "all"]))), r"draws: 2 draws of budget all are the same labeled images each time; remove all from budgets or use draws: 1"),
    ("draws_zero", edit(put("draws", 0)), r"draws: 0 given; allowed: an integer >= 1"),
    ("fixmatch_flip_on_glyphs", edit(put("downstream.protocols", ["supervised", "fixmatch"])), r"fixmatch\.horizontal_flip: a mirrored image of this dataset can be another class; set horizontal_flip: false"),
    ("unknown_flexmatch_option", edit(both(put("flexmatch", {"mu": 7, "horizontal_flip": False}), put("downstream.protocols", ["flexmatch"]))), r"flexmatch\.unknown option\(s\) mu; allowed: steps, "),
    ("fixmatch_pool_too_small", edit(both(put("fixmatch", {"unlabeled_ratio": 20, "horizontal_flip": False}), put("downstream.protocols", ["fixmatch"]))), r"fixmatch\.unlabeled_ratio: 20 x batch_size 64 = 1280 unlabeled images a step, but the pool holds 128"),
    ("fixmatch_override", edit(both(put("fixmatch", {"horizontal_flip": False}), both(put("downstream.protocols", ["fixmatch"]), put("downstream.overrides", {"fixmatch": {"epochs": 3}})))), r"downstream\.overrides\.fixmatch: fixmatch trains as its reference does, with settings of its own; set them under fixmatch instead"),
    ("unknown_joint_option", edit(both(put("joint", {"lr": 1}), put("downstream.protocols", ["supervised", "joint"]))), r"joint: unknown option\(s\) lr"),
    ("shift_beyond_image", edit(put("downstream.augmentation", {"shift": 1.5})), r"downstream\.augmentation\.shift: 1\.5"),
    # presets with one mistake
    ("preset_float_epochs", preset("rotnet_mnist.yaml", put("downstream.epochs", 20.0)), r"downstream\.epochs: 20\.0"),
    ("preset_momentum_adam", preset("cifar10_rotation.yaml", put("downstream.optimizer", {**ADAM, "momentum": 0.9})), r"downstream\.optimizer\.momentum"),
    # files that are not a study
    ("yaml_syntax_error", "study: x\ndataset: {name: synthetic\nseeds: [1]\n", r"line 3, column 6: YAML syntax error: .*expected ',' or '}'"),
    ("not_a_mapping", "- study\n- x\n", r"a study is a mapping of keys \(study, dataset, \.\.\.\), got \['study', 'x'\]"),
    ("key_written_twice", yaml.safe_dump(BASE, sort_keys=False) + "seeds: [2]\n", r"line \d+, column 1: key 'seeds' is written twice in one mapping"),
    ("knn_monitor_without_images", edit(put("pretext.rotation.knn_monitor", {"k": 20})), r"pretext\.rotation\.knn_monitor: set, but split\.monitor is 0"),
    ("knn_monitor_k_beyond_held_out", edit(both(put("split.monitor", 8), put("pretext.rotation.knn_monitor", {"k": 8}))), r"pretext\.rotation\.knn_monitor\.k: 8 neighbours.*knn_monitor\.k <= 7"),
    ("validation_split_empties_a_budget", edit(put("downstream.validation_split", 0.02)), r"downstream\.validation_split: budget 16: .*holds out no validation example"),
]  # fmt: skip


# One case of each way an error reaches the user, run as a real `snakemake -n`: the pattern
# its output must match, or None for the message of the same case's check in this process.
DRY_RUNS = {
    # Snakemake reads a --configfile before the Snakefile does, with messages of its own.
    "yaml_syntax_error": r"not valid JSON or YAML",
    "not_a_mapping": r"keys at top level",
    "key_written_twice": None,  # the Snakefile's reader
    "float_seed": None,  # the schema
    "unknown_downstream_key": None,  # the schema's unknown keys
    "knn_monitor_without_images": None,  # the requests that defaults would hide
    "budget_above_pool": None,  # the cheap cross-key checks
    "image_too_small_for_encoder": None,  # the full check, which builds the encoder
    "preset_momentum_adam": None,  # a reference study
}
CASE = {case[0]: case for case in CASES}


def case_file(folder, case):
    name, study, _ = case
    path = folder / f"{name}.yaml"
    if isinstance(study, str):
        path.write_text(study)
    else:
        write_study(path, study)
    return path


def check_message(path) -> str:
    """The study check's error for the study file at `path`, as the workflow runs it."""
    with pytest.raises(StudyError) as caught:
        study_from_config(read_yaml(path))
    return str(caught.value)


def short_error(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not NATIVE_LOG.match(line)]


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)
    assert set(DRY_RUNS) <= set(CASE)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_malformed_study_fails_the_check(tmp_path, case):
    message = check_message(case_file(tmp_path, case))
    assert re.search(case[2], message), message
    assert "Traceback" not in message and "Failed validating" not in message, message  # no schema dump
    assert len(message.splitlines()) <= MESSAGE_LINES, message


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("malformed"))


@pytest.fixture(scope="module")
def dry_runs(workdir):
    """The DRY_RUNS cases' `snakemake -n`, two at a time (the tests below only read them)."""

    def dry_run(name):
        return snakemake(workdir, case_file(workdir, CASE[name]), "-n", "--nolock", timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(DRY_RUNS, pool.map(dry_run, DRY_RUNS), strict=True))


@pytest.mark.parametrize("name", DRY_RUNS)
def test_malformed_study_fails_before_any_job(dry_runs, workdir, name):
    result = dry_runs[name]
    output = result.stdout + result.stderr  # Snakemake prints the error to either
    lines = short_error(output)
    shown = "\n".join(lines)
    assert result.returncode != 0, shown
    assert "Job stats" not in output  # no job was planned, let alone run
    pattern = DRY_RUNS[name]
    if pattern is None:
        assert check_message(workdir / f"{name}.yaml") in shown, shown  # the file Snakemake read
    else:
        assert re.search(pattern, shown), shown
    assert "Traceback" not in output, shown
    assert "Failed validating" not in output, shown  # no schema dump
    assert len(lines) < MAX_LINES, shown


def test_the_base_study_is_sound(workdir):
    """The cases fail because of their one change, not because the base study does."""
    result = snakemake(workdir, write_study(workdir / "base.yaml", BASE), "-n", "--nolock")
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout)["downstream"] > 0


def test_yaml_error_in_the_default_study_names_the_line(tmp_path):
    """config.yaml is read by the Snakefile first, so its syntax error has a line number.
    (A --configfile is read by Snakemake before the workflow: see the yaml_syntax_error case.)"""
    workdir = copy_workflow(tmp_path)
    (workdir / "config.yaml").write_text("study: x\ndataset: {name: synthetic\nseeds: [1]\n")
    result = snakemake(workdir, None, "-n", "--nolock")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(r"config\.yaml, line 3, column 6: YAML syntax error: .*expected ',' or '}'", output), (
        output
    )
    assert len(short_error(output)) < MAX_LINES


def test_command_line_overrides_of_lists(workdir):
    """`--config seeds=[3]` reaches the workflow as ['3']; it is read as the schema's integers."""
    configfile = write_study(workdir / "base.yaml", BASE)
    result = snakemake(workdir, configfile, "-n", "--nolock", "--config", "seeds=[3, 4]", "budgets=[8, all]")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "seed3.h5" in result.stdout and "seed4.h5" in result.stdout and "seed1.h5" not in result.stdout
    assert "/n8/" in result.stdout and "/nall/" in result.stdout and "/n16/" not in result.stdout
    result = snakemake(workdir, configfile, "-n", "--nolock", "--config", "seeds=[1.5]")
    assert "seeds[0]: 1.5 (float) given" in result.stdout + result.stderr


def imported_modules(stderr: str) -> set[str]:
    """Top-level packages in Python's -X importtime report."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_second_parse_reads_the_check_from_the_cache_without_tensorflow(workdir):
    """Cluster jobs and re-runs parse the workflow again; the study's full check (which
    builds Keras models) is cached by its content, so they never import TensorFlow."""
    study = write_study(workdir / "cache_probe.yaml", {**BASE, "study": "cache_probe"})
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    command = [SNAKEMAKE, "--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(study), "-n", "--nolock"]
    first, second = (
        subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=300)
        for _ in range(2)
    )
    assert first.returncode == 0 and second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert job_counts(first.stdout) == job_counts(second.stdout)
    assert "tensorflow" in imported_modules(first.stderr)  # the probe works
    assert not {"tensorflow", "keras"} & imported_modules(second.stderr)
    assert list((workdir / ".snakemake" / "selfsup").glob("study-*.json"))
