"""FixMatch and FlexMatch through Snakemake: from scratch and from a pretext encoder
(fixmatch.from_pretext), next to supervised training, in one table; their keys reach
their jobs. Their bad keys are cases of test_malformed_studies.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from smk import copy_workflow, load_study, snakemake, write_study

pytestmark = pytest.mark.workflow


def tiny_semisupervised_study() -> dict:
    study = load_study("tiny_study.yaml")
    study["study"] = "tiny_fixmatch"
    study["seeds"] = [1]
    study["budgets"] = [16]
    study["pretext"]["rotation"]["epochs"] = 1
    study["downstream"].update(protocols=["supervised", "fixmatch", "flexmatch"], epochs=1)
    # Glyphs: a mirrored one can be another class, so the weak view does not flip.
    small = {"steps": 8, "eval_every": 4, "median_of": 2, "batch_size": 8, "unlabeled_ratio": 2}
    study["fixmatch"] = {**small, "horizontal_flip": False, "from_pretext": True}
    study["flexmatch"] = {**small, "horizontal_flip": False}
    return study


def test_fixmatch_and_flexmatch_run_from_scratch_and_from_pretext(tmp_path):
    workdir = copy_workflow(tmp_path)
    configfile = write_study(workdir / "study.yaml", tiny_semisupervised_study())
    result = snakemake(workdir, configfile, "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = workdir / "results" / "tiny_fixmatch"
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    rows = set(zip(summary.pool, summary.method, summary.protocol, strict=True))
    assert rows == {
        ("none", "none", "supervised"),
        ("all", "none", "fixmatch"),
        ("all", "rotation", "fixmatch"),
        ("all", "none", "flexmatch"),
    }
    run = results / "runs" / "all" / "rotation" / "fixmatch" / "n16" / "seed1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["epochs_run"] == 2 and metrics["median_of"] == 2
    assert metrics["n_labels"] == 16 and metrics["n_extra"] == 128
    history = pd.read_csv(run / "history.csv")
    assert {"ema_test_accuracy", "mask_rate", "pseudo_label_accuracy", "unlabeled_loss"} <= set(history)
    log = (
        workdir / "logs" / "tiny_fixmatch" / "runs" / "all" / "rotation" / "fixmatch" / "n16" / "seed1.log"
    ).read_text()
    assert "from a pretext encoder" in log and "8 steps of 8 labeled and 16 unlabeled images" in log
