"""Workflow properties, each checked by running Snakemake for real on a tiny study."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from smk import (
    REPO,
    copy_workflow,
    job_counts,
    load_study,
    snakemake,
    stale_jobs,
    write_study,
)

from selfsup import artifacts

pytestmark = pytest.mark.workflow

STUDIES = sorted((REPO / "studies").glob("*.yaml")) + [REPO / "config.yaml"]
REPORT_RULES = {"accuracy_table", "accuracy_figure", "class_probabilities", "all"}


def test_lint_is_clean(tiny_workflow):
    workdir, configfile, _ = tiny_workflow
    result = snakemake(workdir, configfile, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.stem)
def test_every_study_dry_runs(tmp_path, study):
    result = snakemake(copy_workflow(tmp_path), study, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts["pretext"] >= 1 and counts["downstream"] >= 1 and counts["all"] == 1


def test_full_run_produces_tables_and_figures(tiny_workflow):
    workdir, _, _ = tiny_workflow
    results = workdir / "results" / "tiny"
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    # 7 protocols (5 with the one pretext method, the baselines without) x 2 budgets, 2 seeds each.
    assert len(summary) == 7 * 2
    assert set(summary.seeds) == {2}
    assert summary.test_mean.between(0, 1).all()
    markdown = (results / "tables" / "accuracy.md").read_text()
    assert "rotation + freeze_1" in markdown and "16 labels" in markdown and "±" in markdown
    # It opens with the answer per budget, from the comparisons paired by seed.
    assert markdown.startswith("With 16 labels, ") and "95% paired t interval" in markdown
    for figure in [
        "accuracy_vs_labels.png",
        "accuracy_vs_labels.svg",
        "class_probabilities.png",
        "pretext_examples_rotation.png",
    ]:
        assert (results / "figures" / figure).stat().st_size > 1000, figure


def test_compared_classifiers_have_equal_size(tiny_workflow):
    workdir, _, _ = tiny_workflow
    runs = pd.read_csv(workdir / "results" / "tiny" / "tables" / "runs.csv")
    trained = runs[~runs.protocol.isin(["linear", "pixels_knn"])]
    assert trained.params.nunique() == 1
    trainable = runs.groupby("protocol").trainable_params.first()
    assert trainable["random"] == trainable["frozen"] < trainable["freeze_1"] < trainable["finetune"]
    assert trainable["finetune"] == trainable["supervised"] == trained.params.iloc[0]
    # A linear probe on the encoder's 16 features: 4 classes x (16 weights + 1 bias).
    assert trainable["linear"] == trainable["frozen"] == 4 * 17 and trainable["pixels_knn"] == 0


def test_nothing_is_stale_after_a_run(tiny_workflow):
    workdir, configfile, _ = tiny_workflow
    assert stale_jobs(workdir, configfile) == {}


def test_training_jobs_declare_resources_and_tensorflow_follows_threads(tiny_workflow):
    workdir, _, _ = tiny_workflow
    # Snakemake prints a job's threads only above one: ask for 8, see them capped by --cores.
    configfile = edited(workdir, "eight_threads.yaml", lambda study: study.update(threads=8))
    result = snakemake(workdir, configfile, "--dry-run", "--forceall", "--cores", "2")
    text = result.stdout
    for rule in ("pretext", "downstream"):
        block = text.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
        assert "threads: 2" in block
        assert "gpu=1" in block and "runtime=" in block and "mem_mb=" in block
    metrics = json.loads(
        (workdir / "results/tiny/runs/all/rotation/linear/n16/seed1/metrics.json").read_text()
    )
    # TensorFlow's own default would be every core of the machine (at least 2 in CI).
    assert metrics["intra_op_threads"] == metrics["inter_op_threads"] == 1
    attrs = artifacts.read_attrs(workdir / "results/tiny/encoders/all/rotation/seed1/encoder.h5")
    assert attrs["intra_op_threads"] == 1


def test_each_training_job_claims_a_gpu_slot_and_sees_that_gpu_alone(tiny_workflow):
    # The fixture runs as on a machine with two GPUs, two jobs each (made-up names).
    workdir, _, _ = tiny_workflow
    training_logs = [
        *(workdir / "logs/tiny/pretext").rglob("*.log"),
        *(workdir / "logs/tiny/runs").rglob("*.log"),
    ]
    assert len(training_logs) >= 4
    claimed = set()
    for log in training_logs:
        match = re.search(r"GPU: slot (\d) of GPU (no-such-gpu-[01]) \(2 GPUs x 2 jobs each", log.read_text())
        assert match, f"{log} claims no GPU slot"
        claimed.add(match.groups())
    # With --cores 2 and 1 thread a job, two jobs run at a time: they take one GPU each
    # before a second slot of either, and a job's lock goes with it, so the second slots
    # are never needed.
    assert claimed == {("0", "no-such-gpu-0"), ("0", "no-such-gpu-1")}
    # Data and report jobs never claim one.
    for log in (workdir / "logs/tiny/split").rglob("*.log"):
        assert "GPU: slot" not in log.read_text()


def test_each_training_job_writes_tensorboard_scalars_next_to_its_log(tiny_workflow):
    workdir, _, _ = tiny_workflow
    log = workdir / "logs/tiny/pretext/all/rotation/seed1.log"
    (events,) = log.with_suffix(".tensorboard").glob("fit1/events.out.tfevents*")
    assert events.stat().st_size > 0
    for log in (workdir / "logs/tiny/runs").rglob("*.log"):
        protocol = log.relative_to(workdir / "logs/tiny/runs").parts[2]
        events = list(log.with_suffix(".tensorboard").glob("fit*/events.out.tfevents*"))
        # The feature protocols fit no Keras model, so they have no epochs to log.
        assert bool(events) == (protocol not in ("linear", "pixels_knn")), log


def edited(workdir: Path, name: str, change) -> Path:
    """The tiny study with `change` applied, written to `workdir`/`name`."""
    study = load_study("tiny_study.yaml")
    change(study)
    return write_study(workdir / name, study)


def test_downstream_edit_reruns_only_downstream_and_report(tiny_workflow):
    workdir, _, _ = tiny_workflow
    config = edited(workdir, "downstream_edit.yaml", lambda s: s["downstream"].update(epochs=3))
    counts = stale_jobs(workdir, config)
    # The 5 trained protocols x 2 budgets x 2 seeds; linear and pixels_knn train nothing,
    # so epochs are not among their settings and they stay.
    assert counts["downstream"] == 20
    assert set(counts) == {"downstream"} | REPORT_RULES  # the example plot too: its runs changed


def test_pretext_edit_reruns_pretext_and_what_follows_never_data(tiny_workflow):
    workdir, _, _ = tiny_workflow
    config = edited(workdir, "pretext_edit.yaml", lambda s: s["pretext"]["rotation"].update(epochs=3))
    counts = stale_jobs(workdir, config)
    assert counts["pretext"] == 2
    # The runs that use the rotation encoder: 4 protocols x 2 budgets x 2 seeds; baselines stay.
    assert counts["downstream"] == 16
    assert set(counts) == {"pretext", "downstream", "pretext_examples"} | REPORT_RULES


def test_adding_a_budget_adds_only_downstream_jobs(tiny_workflow):
    workdir, _, _ = tiny_workflow
    config = edited(workdir, "budget_edit.yaml", lambda s: s["budgets"].append(32))
    counts = stale_jobs(workdir, config)
    assert counts["downstream"] == 7 * 2  # every classifier, both seeds, the new budget only
    assert set(counts) - {"downstream"} <= REPORT_RULES


def test_a_second_draw_of_labels_adds_only_downstream_jobs_under_its_own_budgets(tiny_workflow):
    """draws: 2 keeps draw 1's paths (the finished runs stay) and adds each budget's
    second draw, on the seed's encoders: no data or pretext job."""
    workdir, _, _ = tiny_workflow
    config = edited(workdir, "draws_edit.yaml", lambda s: s.update(draws=2))
    result = snakemake(workdir, config, "-n", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["downstream"] == 7 * 2 * 2  # every classifier, both budgets, both seeds
    assert set(counts) - {"downstream"} <= REPORT_RULES
    outputs = re.findall(r"^\s+output: (.+)$", result.stdout, flags=re.MULTILINE)
    planned = [n for line in outputs for n in re.findall(r"runs/\S+/n([^/]+)/seed\d+/metrics\.json", line)]
    assert planned and set(planned) == {"16-draw2", "64-draw2"}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("downstream.py", {"downstream": 28}),
        ("probes.py", {"pretext": 2, "downstream": 28}),
        ("pretext/rotation.py", {"pseudo_labels": 2, "pretext": 2, "downstream": 16}),
        # Only the rules whose scripts draw figures: the table's script imports no figures.
        ("report/figures.py", {"accuracy_figure": 1, "class_probabilities": 1, "pretext_examples": 1}),
        ("data/splits.py", {"split": 2, "pretext": 2, "downstream": 28}),
        # Found from the pretext script's imports, listed nowhere: the downstream jobs
        # re-run only because their encoders do.
        ("stages/pretext.py", {"pretext": 2, "downstream": 16}),
    ],
)
def test_editing_library_code_makes_its_rules_stale(tmp_path, tiny_workflow, module, expected):
    source, configfile, _ = tiny_workflow
    workdir = tmp_path / "copy"
    # Copy the finished run, metadata included, so only the edit can make jobs stale.
    subprocess.run(["cp", "-a", str(source), str(workdir)], check=True)
    with open(workdir / "selfsup" / module, "a") as f:
        f.write("\n# an edit\n")
    counts = stale_jobs(workdir, workdir / configfile.name)
    for rule, count in expected.items():
        assert counts.get(rule) == count, (rule, counts)
    assert "prepare" not in counts
    if module.startswith("report/"):
        assert set(counts) - {"all"} == set(expected), counts  # no training job, no table


def test_rerun_after_edit_keeps_the_study_threads(tmp_path, tiny_workflow):
    source, _, _ = tiny_workflow
    workdir = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(source), str(workdir)], check=True)

    def edit(study):
        study["downstream"].update(epochs=1)
        study["threads"] = 2

    config = edited(workdir, "downstream_edit.yaml", edit)
    target = "results/tiny/runs/none/none/supervised/n16/seed1/metrics.json"
    result = snakemake(workdir, config, "--cores", "1", target)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((workdir / target).read_text())
    assert metrics["epochs_run"] == 1
    # --cores 1 caps the job's cores, not TensorFlow's threads: those are the study's, so
    # results do not depend on --cores.
    assert metrics["intra_op_threads"] == 2


def test_nan_loss_fails_with_message_and_leaves_no_output(tmp_path):
    workdir = copy_workflow(tmp_path)

    def diverge(study):
        study["pretext"]["rotation"]["optimizer"] = {"name": "sgd", "learning_rate": 1.0e30}

    config = edited(workdir, "nan.yaml", diverge)
    encoder = workdir / "results/tiny/encoders/all/rotation/seed1/encoder.h5"
    result = snakemake(workdir, config, "--cores", "2", str(encoder.relative_to(workdir)))
    assert result.returncode != 0
    log = (workdir / "logs/tiny/pretext/all/rotation/seed1.log").read_text()
    assert "training diverged: loss became nan" in log
    assert not encoder.exists()
    assert not list(encoder.parent.glob("*.h5")) and not list(encoder.parent.glob("*.csv"))


def test_snakemake_report_holds_tables_and_figures(tiny_workflow, tmp_path):
    workdir, configfile, _ = tiny_workflow
    report = tmp_path / "report.html"
    result = snakemake(workdir, configfile, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(errors="replace")
    for name in ("accuracy.csv", "accuracy_vs_labels.png", "class_probabilities.png"):
        assert name in html


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(
    _chromium() is None, reason="no Chromium (Debian: apt-get install chromium; .ci/run installs it)"
)
def test_snakemake_report_renders_in_a_real_browser(tiny_workflow, tmp_path):
    # The report is a page that JavaScript builds; the file alone does not show whether a
    # browser can. Headless Chromium runs it and hands back the page it built.
    workdir, configfile, _ = tiny_workflow
    report = tmp_path / "report.html"
    assert snakemake(workdir, configfile, "--report", str(report)).returncode == 0
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    page = subprocess.run(
        [*command, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    raw = report.read_text(errors="replace")
    # The navigation the page builds: its sections and the result categories of the rules.
    for built in (">Workflow<", ">Statistics<", ">Accuracy<", ">Examples<"):
        assert built in page and built not in raw, built
    for name in ("accuracy.csv", "accuracy_vs_labels.png", "class_probabilities.png"):
        assert name in page
    # It opens with the study's answers, as the accuracy table does.
    answers = (workdir / "results/tiny/tables/accuracy.md").read_text().split("\n")[0].split(". ")[0]
    assert answers.startswith("With 16 labels, ") and answers in page
    assert ">Study tiny<" in page and ">Against supervised<" in page and ">Against pixels_linear<" not in page


def test_slurm_profile_plans_the_same_dag_with_gpu_requests(tiny_workflow):
    workdir, configfile, _ = tiny_workflow
    local = snakemake(workdir, configfile, "--dry-run", "--forceall")
    cluster = snakemake(workdir, configfile, "--profile", "profiles/slurm", "--dry-run", "--forceall")
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    assert job_counts(cluster.stdout) == job_counts(local.stdout)
    block = cluster.stdout.split("rule pretext:", 1)[1].split("\n\n", 1)[0]
    assert "gpu=1" in block and "runtime=240" in block and "mem_mb=16000" in block
