"""The autoencoder family plugs into the workflow: its tiny study plans, a bad one fails early."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_autoencoders.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(SNAKEMAKE),
            "-s",
            str(ROOT / "Snakefile"),
            "--configfile",
            str(configfile),
            "--cores",
            "1",
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tiny_autoencoder_study_plans_one_pretext_job_per_run(tmp_path):
    result = run(tmp_path, TINY, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.MULTILINE))
    study = yaml.safe_load(TINY.read_text())
    assert int(counts["pretext"]) == len(study["pretext"]) * len(study["seeds"])
    assert int(counts["pretext_examples"]) == len(study["pretext"])
    assert "pseudo_labels" not in counts  # reconstruction methods need no labels of their own


def test_relu_output_fails_before_any_job_runs(tmp_path):
    study = yaml.safe_load(TINY.read_text())
    study["pretext"]["ae_conv"]["options"].update(output_activation="relu", loss="mse")
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(study))
    result = run(tmp_path, configfile)
    assert result.returncode != 0
    assert (
        "Invalid study file: pretext.ae_conv.options: output_activation 'relu' is not allowed"
        in result.stderr
    )
    assert not (tmp_path / "results").exists()
