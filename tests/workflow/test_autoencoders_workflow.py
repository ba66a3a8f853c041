"""The autoencoder family plugs into the workflow: a tiny study runs end to end, a bad one fails early."""

from __future__ import annotations

import pandas as pd
import pytest
from smk import copy_workflow, load_study, snakemake, write_study

pytestmark = pytest.mark.workflow


def test_tiny_autoencoder_study_runs_end_to_end(tmp_path):
    workdir = copy_workflow(tmp_path)
    study = load_study("tiny_autoencoders.yaml")
    config = write_study(workdir / "tiny_autoencoders.yaml", study)
    result = snakemake(workdir, config, "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pseudo_labels" not in result.stdout  # reconstruction methods need no labels of their own

    results = workdir / "results" / "tiny_autoencoders"
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    expected = {("none", "supervised")} | {
        (method, protocol) for method in study["pretext"] for protocol in ("frozen", "partial_2", "finetune")
    }
    assert set(zip(summary.method, summary.protocol, strict=True)) == expected
    runs = pd.read_csv(results / "tables" / "runs.csv")
    assert runs.params.nunique() == 1  # every compared classifier has the same size
    for method in study["pretext"]:
        assert (results / "figures" / f"pretext_examples_{method}.png").stat().st_size > 1000


def test_relu_output_fails_before_any_job_runs(tmp_path):
    workdir = copy_workflow(tmp_path)
    study = load_study("tiny_autoencoders.yaml")
    study["pretext"]["ae_conv"]["options"].update(output_activation="relu", loss="mse")
    config = write_study(workdir / "relu.yaml", study)
    result = snakemake(workdir, config, "--cores", "1")
    assert result.returncode != 0
    assert (
        "Invalid study file: pretext.ae_conv.options: output_activation 'relu' is not allowed"
        in result.stderr
    )
    assert not (workdir / "results").exists()
