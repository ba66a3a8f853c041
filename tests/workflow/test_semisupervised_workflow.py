"""Study F's DAG end to end at tiny scale on CIFAR-100 files in their official binary
layout, contaminated with CIFAR-10 images: pools all and inliers side by side, the
outlier filter, self-training rounds, the joint model, and staleness by pool."""

from __future__ import annotations

import re
import time

import data_writers
import numpy as np
import pandas as pd
import pytest
import yaml
from smk import REPO, copy_workflow, job_counts, snakemake, write_study
from test_datasets_workflow import glyph_images

from selfsup import artifacts
from selfsup.data import formats, sources

pytestmark = pytest.mark.workflow

N_TRAIN, N_TEST = 300, 60


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    """A CIFAR-100 binary folder (5 of its classes in use) and a CIFAR-10 one to contaminate it with."""
    root = tmp_path_factory.mktemp("cifar")
    y_train, y_test = np.arange(N_TRAIN) % 5, np.arange(N_TEST) % 5
    data_writers.write_cifar100(
        root / "cifar100" / formats.CIFAR100["folder"],
        glyph_images(N_TRAIN, 32, y_train, 0),
        y_train * 20,  # fine labels 0, 20, ..., 80
        y_train,  # coarse labels
        glyph_images(N_TEST, 32, y_test, 1),
        y_test * 20,
        y_test,
        sources.CIFAR100_CLASSES["fine"],
        sources.CIFAR100_CLASSES["coarse"],
    )
    # Foreign images: uniform noise, nothing like the glyphs.
    rng = np.random.default_rng(2)
    foreign = rng.integers(0, 256, (200, 32, 32, 3)).astype(np.uint8)
    data_writers.write_cifar10(
        root / "cifar10" / formats.CIFAR10["folder"],
        foreign,
        np.arange(200) % 10,
        foreign[:20],
        np.arange(20) % 10,
        sources.CIFAR10_CLASSES,
    )
    return root / "cifar100", root / "cifar10"


def tiny_study_f(data_dirs) -> dict:
    """The study F preset with tiny numbers: same DAG, same kinds of settings."""
    study = yaml.safe_load((REPO / "studies" / "cifar100_semisupervised.yaml").read_text())
    study["study"] = "tiny_f"
    study["threads"] = 1  # two one-thread jobs at once under --cores 2: tiny jobs are mostly process start
    study["dataset"]["data_dir"] = str(data_dirs[0])
    study["dataset"]["contamination"] = {"source": "cifar10", "fraction": 0.2, "data_dir": str(data_dirs[1])}
    study["outliers"].update(epochs=3, batch_size=32)
    study["outliers"]["options"]["patience"] = 1
    for entry in study["pretext"].values():
        entry.update(epochs=1, batch_size=32)
    study["pretext"]["barlow_twins"]["options"]["projector"] = [32, 32]
    study["self_training"].update(rounds=2, threshold=0.05)
    study["downstream"].update(epochs=1, batch_size=32)
    return study


def run_outputs(dry_run: str) -> list[str]:
    return re.findall(r"^\s+output: (.+)$", dry_run, flags=re.MULTILINE)


def test_study_f_runs_end_to_end_and_filtering_edits_stale_only_the_inliers(tmp_path, data_dirs):
    workdir = copy_workflow(tmp_path)
    study = tiny_study_f(data_dirs)
    config = write_study(workdir / "study_f.yaml", study)
    start = time.perf_counter()
    result = snakemake(workdir, config, "--cores", "2")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"tiny study F: {seconds:.0f} s wall time")  # quoted in the issue note (pytest -s)
    results = workdir / "results" / "tiny_f"

    # Every model of study F in one table, each semi-supervised one on both pools.
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    rows = set(zip(summary.pool, summary.method, summary.protocol, strict=True))
    # The baselines on pixels, which read no pool.
    expected = {("none", "none", protocol) for protocol in ("supervised", "pixels_linear", "pixels_knn")} | {
        (pool, method, protocol)
        for pool in ("all", "inliers")
        for method, protocol in (
            ("none", "self_training"),
            ("none", "self_training_last_teacher"),  # the model the reference reports
            ("none", "joint"),
            ("autoencoder", "finetune"),
            ("barlow_twins", "finetune"),
        )
    }
    assert rows == expected
    assert summary.test_mean.between(0, 1).all() and summary.train_mean.between(0, 1).all()
    markdown = (results / "tables" / "accuracy.md").read_text()
    assert "Train accuracy (%)" in markdown and "self_training (inliers)" in markdown
    runs = pd.read_csv(results / "tables" / "runs.csv")
    # Encoder + classifier of every trained model is network 1: the same parameters everywhere.
    assert runs[~runs.protocol.str.startswith("pixels_")].params.nunique() == 1

    # The split's pool holds the foreign images at the asked share; the filter scored it.
    split = artifacts.read_split(results / "split" / "seed1.h5")
    pool_all, part = artifacts.read_pool(results / "pools" / "all" / "seed1.h5")
    assert part == "train" and set(split.foreign) <= set(pool_all)
    assert abs(len(split.foreign) / len(pool_all) - 0.2) < 0.01
    scores = artifacts.read_outliers(results / "outliers" / "seed1" / "scores.h5")
    np.testing.assert_array_equal(scores["indices"], pool_all)
    inliers, _ = artifacts.read_pool(results / "pools" / "inliers" / "seed1.h5")
    np.testing.assert_array_equal(inliers, scores["kept"])
    assert sorted([*scores["kept"], *scores["removed"]]) == sorted(pool_all)
    assert (scores["scores"][np.isin(pool_all, scores["removed"])] < scores["threshold"]).all()
    assert scores["foreign"].sum() == len(split.foreign) and 0 <= scores["auroc"] <= 1

    # Self-training rounds: each labels only images no earlier round took, from its pool.
    for pool, members in (("all", pool_all), ("inliers", inliers)):
        folder = results / "self_training" / pool / "none" / "nall" / "seed1"
        first, second = (artifacts.read_teacher_labels(folder / f"round{r}.h5") for r in (1, 2))
        assert (first["round"], second["round"]) == (1, 2)
        assert not set(first["indices"]) & set(second["indices"])
        assert set(first["indices"]) | set(second["indices"]) <= set(members)
        for accepted in (first, second):
            assert (accepted["confidences"] >= 0.05).all()
            assert 0 <= accepted.get("correct", 0) <= len(accepted["indices"])
        student = runs[(runs.pool == pool) & (runs.protocol == "self_training")].iloc[0]
        assert student.n_extra == len(first["indices"]) + len(second["indices"])
        teacher = runs[(runs.pool == pool) & (runs.protocol == "self_training_last_teacher")].iloc[0]
        assert teacher.test_accuracy == second["teacher_test_accuracy"]
    for figure in ("outliers.png", "self_training_rounds.png", "accuracy_vs_labels.png"):
        assert (results / "figures" / figure).stat().st_size > 1000, figure

    # Editing an outlier setting re-runs the filter and what reads inliers, never what reads all.
    study["outliers"]["options"]["nu"] = 0.8
    write_study(config, study)
    dry_run = snakemake(workdir, config, "--dry-run")
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    outputs = run_outputs(dry_run.stdout)
    assert any("outliers/seed1/scores.h5" in line for line in outputs)
    assert any("/inliers/" in line for line in outputs)
    assert not [line for line in outputs if "/all/" in line or "/none/none/" in line]


def test_self_training_from_pretext_encoders_adds_one_chain_per_encoder_and_pool(tmp_path, data_dirs):
    """With from_pretext, self-training also starts from every pretext encoder (of its
    own pool), next to from scratch: the table holds SSL + self-training beside each alone."""
    workdir = copy_workflow(tmp_path)
    study = tiny_study_f(data_dirs)
    study["self_training"]["from_pretext"] = True
    config = write_study(workdir / "study_f.yaml", study)
    dry_run = snakemake(workdir, config, "--dry-run")
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    counts = job_counts(dry_run.stdout)
    # (scratch, autoencoder, barlow_twins) x (all, inliers); two rounds each.
    assert counts["self_training"] == 6 and counts["self_training_round"] == 12
    outputs = run_outputs(dry_run.stdout)
    student = "runs/inliers/autoencoder/self_training/nall/seed1/metrics.json"
    assert any(student in line for line in outputs)
