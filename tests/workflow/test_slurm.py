"""The SLURM profile, for real: the tiny study's first seed on a single-node cluster started
by the test (one seed runs every rule; the second would only double the wait).

The cluster (slurm_cluster.py) needs root and Debian's slurm-wlm and munge packages;
.ci/run installs them, elsewhere the cluster test is skipped with the reason. Reading the
sbatch calls the plugin builds needs no cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_cluster import Cluster, unavailable_reason
from smk import REPO, SNAKEMAKE, copy_workflow, job_counts, load_study, write_study

pytestmark = pytest.mark.workflow

SBATCH_CALLS = Path(__file__).with_name("sbatch_calls.py")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.")


def gpu_rules() -> set[str]:
    """Rules whose resources request a GPU (the training rules), read from rules/*.smk."""
    rules = set()
    for path in (REPO / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.M):
            # One definition, rules/common.smk's training_resources, gives gpu=1.
            if re.search(r"^\s+\*\*training_resources\(", body, re.M):
                rules.add(name)
    return rules


def test_gpu_rules_are_the_training_rules():
    assert {
        "pretext",
        "downstream",
        "outliers",
        "self_training_round",
        "self_training",
    } <= gpu_rules()
    assert not gpu_rules() & {"prepare", "split", "pseudo_labels", "accuracy_table", "class_probabilities"}


def sbatch_calls(workdir: Path, *args: str) -> list[dict]:
    out = workdir / "sbatch_calls.json"
    result = subprocess.run(
        [sys.executable, str(SBATCH_CALLS), str(out), *args],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def test_sbatch_requests_a_gpu_for_training_rules_only(tmp_path):
    """The plugin's own sbatch calls for every job of the tiny study under the profile:
    `--gpus=1` on training jobs and on nothing else; none once gpu=0 is set for them."""
    workdir = copy_workflow(tmp_path / "workflow")
    configfile = write_study(workdir / "tiny.yaml", load_study("tiny_study.yaml"))
    calls = sbatch_calls(workdir, "--profile", "profiles/slurm", "--configfile", str(configfile))
    rules = {call["rule"] for call in calls}
    assert {"pretext", "downstream", "prepare", "split", "accuracy_table"} <= rules
    training = gpu_rules()
    for call in calls:
        requested = re.findall(r"--gpus=\S+|--gres=\S*gpu\S*", call["call"])
        if call["rule"] in training:
            assert requested == ["--gpus=1"], call
            assert "--ntasks=" not in call["call"], call
        else:
            assert requested == [], call
            assert "--ntasks=1" in call["call"], call
    # Every job carries its rule's runtime and memory.
    pretext = next(call["call"] for call in calls if call["rule"] == "pretext")
    assert " -t 240 " in pretext and " --mem 16000 " in pretext
    # What the cluster test's overlay does for a CPU-only node.
    cpu_only = sbatch_calls(
        workdir,
        "--profile",
        "profiles/slurm",
        "--configfile",
        str(configfile),
        "--set-resources",
        *(f"{rule}:gpu=0" for rule in sorted(training)),
    )
    assert not [call for call in cpu_only if "--gpus" in call["call"] or "--gres" in call["call"]]


# Checked at collection, so a machine without SLURM skips before the local run it compares to.
NO_CLUSTER = unavailable_reason()


@pytest.fixture(scope="module")
def slurm_cluster():
    cluster = Cluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def overlay_profile(folder: Path, cluster: Cluster) -> Path:
    """Settings of this test cluster on top of profiles/slurm (passed as the workflow
    profile, so top-level keys here replace the profile's)."""
    # Jobs must fit the node (EnforcePartLimits refuses larger ones), and ask no more than
    # the local run's --cores 2 gives them.
    threads = min(2, cluster.cpus)
    mem_mb = min(4000, cluster.memory_mb // (2 * cluster.cpus))  # two jobs per core fit
    folder.mkdir()
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {
                # No slurmdbd here: status from squeue (see profiles/slurm/config.yaml).
                "slurm-status-command": "squeue",
                "slurm-keep-successful-logs": True,
                # Jobs take seconds: look soon after submitting, not after the default 40 s.
                # The executor adds 10 s to its wait whenever a check finds no job finished,
                # so the first check comes when most tiny jobs (5-10 s) are done: 8 s took
                # the run 158 s, 11 s 170 s, 5 s 201 s (one run each, this test's study).
                "slurm-init-seconds-before-status-checks": 8,
                "seconds-between-status-checks": 5,
                "max-threads": threads,
                "default-resources": {"runtime": 30, "mem_mb": mem_mb},
                # The node has no GPU: a GPU request would be refused by sbatch.
                "set-resources": {rule: {"gpu": 0, "mem_mb": mem_mb} for rule in sorted(gpu_rules())},
            }
        )
    )
    return folder


def run_slurm(workdir: Path, configfile: Path, overlay: Path, cluster: Cluster, timeout: int = 900):
    command = [SNAKEMAKE, "--profile", "profiles/slurm", "--workflow-profile", str(overlay)]
    command += ["--configfile", str(configfile)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=workdir, env=cluster.env, timeout=timeout
    )


def submitted_jobs(log: str) -> dict[str, tuple[str, Path]]:
    """{snakemake jobid: (SLURM jobid, SLURM log file)} from a run's log."""
    return {job: (slurm_id, Path(path)) for job, slurm_id, path in SUBMITTED.findall(log)}


def job_rules(log: str) -> dict[str, str]:
    """{snakemake jobid: rule} from the job blocks of a run's log."""
    return {
        job: rule
        for rule, job in re.findall(r"^(?:local)?rule (\w+):\n(?:\s+.*\n)*?\s+jobid: (\d+)$", log, re.M)
    }


@pytest.mark.skipif(NO_CLUSTER is not None, reason=f"no SLURM cluster: {NO_CLUSTER}")
def test_tiny_study_runs_on_slurm(slurm_cluster, tiny_workflow, tmp_path):
    cluster = slurm_cluster
    workdir = copy_workflow(tmp_path / "workflow")
    # Each job costs a process start (TensorFlow's import is most of a tiny job) plus the
    # cluster's status polling: the first seed and the first budget alone run every rule
    # and every protocol, in a quarter of the jobs, compared run by run with the local run
    # of both seeds and both budgets.
    study = load_study("tiny_study.yaml")
    study["seeds"] = study["seeds"][:1]
    study["budgets"] = study["budgets"][:1]
    configfile = write_study(workdir / "tiny.yaml", study)
    overlay = overlay_profile(tmp_path / "overlay", cluster)
    started = time.monotonic()
    result = run_slurm(workdir, configfile, overlay, cluster)
    wall = time.monotonic() - started
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:] + "\n" + cluster.logs()
    print(f"tiny study, first seed, through SLURM: {wall:.0f} s")

    # Every job but the local `all` went to SLURM, once (no retry), and completed there.
    expected = job_counts(log)
    expected.pop("all")
    submitted = submitted_jobs(log)
    rules = job_rules(log)
    assert Counter(rules[job] for job in submitted) == expected
    assert {"pretext", "downstream"} <= set(expected)
    controller_log = (cluster.state / "slurmctld.log").read_text()
    for job, (slurm_id, slurm_log) in submitted.items():
        assert f"JobId={slurm_id} WEXITSTATUS 0" in controller_log, (rules[job], slurm_id)
        assert slurm_log.name == f"{slurm_id}.log" and slurm_log.exists(), slurm_log
        assert f"rule {rules[job]}:" in slurm_log.read_text(), slurm_log
    assert len({slurm_id for slurm_id, _ in submitted.values()}) == len(submitted)

    # The same numbers as the local run of the same study: every run's metrics and history
    # byte for byte, and the table of runs the local one's rows of this seed.
    local, _, _ = tiny_workflow
    ours = workdir / "results" / "tiny"
    theirs = local / "results" / "tiny"
    runs = sorted(path.relative_to(ours) for path in (ours / "runs").rglob("seed*/*.*"))
    assert len(runs) == 2 * expected["downstream"], runs  # metrics.json and history.csv
    for run in runs:
        assert (ours / run).read_bytes() == (theirs / run).read_bytes(), run
    local_runs = pd.read_csv(theirs / "tables" / "runs.csv", dtype=str)
    ours_in_local = (local_runs.seed == str(study["seeds"][0])) & (
        local_runs.budget == str(study["budgets"][0])
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(ours / "tables" / "runs.csv", dtype=str),
        local_runs[ours_in_local].reset_index(drop=True),
    )

    # A second run finds everything up to date and submits nothing.
    again = run_slurm(workdir, configfile, overlay, cluster, timeout=300)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert "Nothing to be done" in log
    assert not submitted_jobs(log)
