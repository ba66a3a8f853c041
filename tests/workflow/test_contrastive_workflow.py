"""Study E's DAG end to end at tiny scale: the preset's six two-view methods, each with
its own optimizer (AdamW, SGD with decoupled decay, LARS) and the 96-pixel augmentation
recipe, on STL-10 files in the official binary layout, with the kNN monitor on."""

from __future__ import annotations

import data_writers
import numpy as np
import pandas as pd
import pytest
import yaml
from smk import REPO, copy_workflow, snakemake, write_study
from test_datasets_workflow import glyph_images

from selfsup import artifacts
from selfsup.data import formats, sources

pytestmark = pytest.mark.workflow
METHODS = ["simclr", "nnclr", "simsiam", "barlow_twins", "byol", "vicreg"]


def tiny_study_e(data_dir) -> dict:
    """studies/stl10_contrastive.yaml with its structure kept and its sizes shrunk."""
    study = yaml.safe_load((REPO / "studies" / "stl10_contrastive.yaml").read_text())
    assert sorted(study["pretext"]) == sorted(METHODS)
    study["study"] = "tiny_stl10_contrastive"
    study["dataset"]["data_dir"] = str(data_dir)
    study["split"]["monitor"] = 20  # from the 40 labeled images outside each fold
    study["seeds"] = [3]  # fold 3
    study["threads"] = 1  # two one-thread jobs at once under --cores 2: tiny jobs are mostly process start
    study["budgets"] = [10]  # the fold (two jobs per run would double the test's time)
    study["encoder"] = {"name": "small_cnn", "options": {"filters": [4], "dense": [8]}}
    for entry in study["pretext"].values():
        entry["epochs"] = 2
        entry["batch_size"] = 16
        entry["lr_schedule"]["warmup_epochs"] = min(entry["lr_schedule"]["warmup_epochs"], 1)
        options = entry["options"]
        options["projector"] = [16, 8] if "predictor" in options else [16, 16]
        if "predictor" in options:
            options["predictor"] = [16, 8]
        if "queue_size" in options:
            options["queue_size"] = 32
    study["downstream"].update(protocols=["supervised", "frozen"], epochs=1, batch_size=8)
    study["downstream"]["overrides"] = {"frozen": {"epochs": 1}}
    return study


def test_study_e_runs_end_to_end_on_official_stl10_files(tmp_path):
    rng = np.random.default_rng(5)
    y_train, y_test = np.arange(60) % 10, np.arange(20) % 10
    folds = [np.sort(rng.choice(60, 10, replace=False)) for _ in range(10)]
    folder = data_writers.write_stl10(
        tmp_path / "data" / formats.STL10["folder"],
        glyph_images(60, 96, y_train, 2),
        y_train,
        glyph_images(20, 96, y_test, 3),
        y_test,
        glyph_images(48, 96, np.zeros(48, int), 4),
        folds,
        sources.STL10_CLASSES,
    )
    workdir = copy_workflow(tmp_path / "work")
    config = write_study(workdir / "study_e.yaml", tiny_study_e(folder.parent))
    result = snakemake(workdir, config, "--cores", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    results = workdir / "results" / "tiny_stl10_contrastive"
    split = artifacts.read_split(results / "split" / "seed3.h5")
    np.testing.assert_array_equal(np.sort(split.budget(10)), folds[2])
    assert len(split.monitor) == 20 and not set(split.monitor) & set(split.budget("all"))
    for method in METHODS:
        history = pd.read_csv(results / "encoders" / "all" / method / "seed3" / "history.csv")
        assert {"loss", "embedding_std", "knn_accuracy"} <= set(history.columns), method
        assert np.isfinite(history.loss).all() and history.knn_accuracy.notna().all(), method
        assert (results / "figures" / f"pretext_examples_{method}.png").stat().st_size > 1000
    assert (results / "figures" / "knn_accuracy.png").stat().st_size > 1000
    table = pd.read_csv(results / "tables" / "runs.csv")
    assert len(table) == len(METHODS) + 1  # linear per method, and supervised
    assert set(table.n_labels) == {10}
    assert len(split.budget("all")) == 40  # 60 labeled images, 20 held out for the monitor
