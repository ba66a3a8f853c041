"""Fixtures of the workflow tests."""

from __future__ import annotations

import pytest
from smk import copy_workflow, load_study, snakemake, write_study


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory):
    """The tiny study run to completion once; tests only dry-run against it or copy it.

    Run as on a workstation with two GPUs shared by two jobs each (`--resources gpu=4`),
    made-up GPU names, so that the jobs claim GPU slots and yet see no GPU: what they
    compute must not change (the SLURM test compares its tables with this run's)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    configfile = write_study(workdir / "tiny.yaml", load_study("tiny_study.yaml"))
    gpus = {
        "SELFSUP_GPUS": "no-such-gpu-0,no-such-gpu-1",
        "SELFSUP_JOBS_PER_GPU": "2",
        "SELFSUP_GPU_LOCK_DIR": str(workdir / ".gpu-slots"),
    }
    result = snakemake(workdir, configfile, "--cores", "2", "--resources", "gpu=4", env=gpus)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, configfile, result
