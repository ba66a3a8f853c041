"""Fixtures of the workflow tests."""

from __future__ import annotations

import pytest
from smk import copy_workflow, load_study, snakemake, write_study


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory):
    """The tiny study run to completion once; tests only dry-run against it or copy it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    configfile = write_study(workdir / "tiny.yaml", load_study("tiny_study.yaml"))
    result = snakemake(workdir, configfile, "--cores", "2")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, configfile, result
