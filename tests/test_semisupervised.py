"""The semi-supervised stages as job functions: pools, self-training rounds with
certainty weights, the joint model, and the outlier filter, on tiny synthetic data."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

from selfsup import artifacts
from selfsup.data.dataset import NO_LABEL
from selfsup.data.generated import make_synthetic
from selfsup.data.splits import make_split
from selfsup.protocols.base import Job
from selfsup.stages import downstream as downstream_stage
from selfsup.stages import outliers as outliers_stage
from selfsup.stages import self_training as self_training_stage

TINY_ENCODER = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16]}}
SETTINGS = {
    "protocol": "self_training",
    "epochs": 15,
    "batch_size": 32,
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "validation_split": 0.0,
    "early_stopping": None,
    "feature_layer": None,
    "head": {"hidden": [], "dropout": 0.0},
    "augmentation": {},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A synthetic dataset (4 classes of glyphs), a split with 48 labels, and its pool."""
    folder = tmp_path_factory.mktemp("semisupervised")
    data = make_synthetic(n_train=320, n_test=64, image_size=16, num_classes=4, seed=0)
    artifacts.write_dataset(folder / "data.h5", data, {})
    split = make_split(data.y_train, len(data.y_test), [0, 48], [48, 320], None, seed=1)
    artifacts.write_split(folder / "split.h5", split, {})
    artifacts.write_pool(folder / "pool.h5", split.unlabeled, "train", {"pool": "all"})
    return folder, data, split


def run_round(folder, earlier, threshold, settings=SETTINGS):
    return self_training_stage.self_training_round(
        Job(
            data_path=folder / "data.h5",
            split_path=folder / "split.h5",
            pool_path=folder / "pool.h5",
            encoder_path=None,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            settings=settings,
            budget="all",
            seed=1,
        ),
        earlier,
        threshold,
    )


def test_pool_artifact_round_trips(tmp_path):
    artifacts.write_pool(tmp_path / "pool.h5", np.array([5, 2, 9]), "unlabeled", {"pool": "inliers"})
    indices, part = artifacts.read_pool(tmp_path / "pool.h5")
    assert list(indices) == [5, 2, 9] and part == "unlabeled"
    assert artifacts.read_attrs(tmp_path / "pool.h5")["pool"] == "inliers"
    with pytest.raises(ValueError, match="pool part must be one of"):
        artifacts.write_pool(tmp_path / "bad.h5", np.array([1]), "validation", {})


def test_rounds_accept_confident_predictions_and_never_relabel(files):
    folder, data, split = files
    _, _, first = run_round(folder, [], threshold=0.6)
    assert first["accepted"] == len(first["indices"]) > 0
    assert (first["confidences"] >= 0.6).all()
    assert set(first["indices"]) <= set(split.unlabeled)
    # The diagnosis counts right pseudo-labels against the labels training never sees.
    assert first["correct"] == int(np.sum(first["labels"] == data.y_train[first["indices"]]))
    assert 0 <= first["teacher_test_accuracy"] <= 1 and 0 <= first["teacher_train_accuracy"] <= 1
    artifacts.write_teacher_labels(
        folder / "round1.h5",
        first["indices"],
        first["labels"],
        first["confidences"],
        1,
        {"accepted": first["accepted"]},
    )
    metrics, _, second = run_round(folder, [folder / "round1.h5"], threshold=0.6)
    assert metrics["n_extra"] == first["accepted"]
    assert metrics["rounds"][0]["accepted"] == first["accepted"]
    assert not set(second["indices"]) & set(first["indices"])
    assert second["remaining"] + second["accepted"] == len(split.unlabeled) - first["accepted"]


def test_pseudo_labels_weigh_their_certainty(files, tmp_path):
    """Wrong pseudo-labels of certainty ~0 must barely move the student; the same wrong
    labels at certainty 1 must pull it towards them."""
    folder, data, split = files
    wrong = (data.y_train[split.unlabeled] + 1) % 4

    def student(certainty):
        # Both students start from the same weights: the comparison is then the labels'
        # weights alone, not two draws of an initialization (jobs seed theirs the same way).
        keras.utils.set_random_seed(1)
        path = tmp_path / f"wrong{certainty}.h5"
        confidences = np.full(len(wrong), certainty, np.float32)
        teacher = {"teacher_test_accuracy": 0.25, "teacher_train_accuracy": 0.5}
        artifacts.write_teacher_labels(path, split.unlabeled, wrong, confidences, 1, teacher)
        metrics, _, _ = run_round(folder, [path], threshold=None)
        # The last round's teacher, the model the reference reports, rides along.
        assert metrics["last_teacher"] == {"test_accuracy": 0.25, "train_accuracy": 0.5}
        return metrics["test_accuracy"]

    ignored, trusted = student(1e-6), student(1.0)
    assert ignored > trusted + 0.3, (ignored, trusted)


def test_the_joint_model_trains_on_labels_and_the_pool(files):
    folder, data, split = files
    settings = {
        **SETTINGS,
        "protocol": "joint",
        "joint": {
            "reconstruction_weight": 1.0,
            "code_layer": "pool2",
            "decoder": "mirror",
            "decoder_filters": [8],
            "decoder_units": [16],
            "output_activation": "sigmoid",
            "loss": "binary_crossentropy",
        },
    }
    metrics, history, model = downstream_stage.train_downstream(
        Job(
            data_path=folder / "data.h5",
            split_path=folder / "split.h5",
            encoder_path=None,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            settings=settings,
            budget="all",
            seed=1,
        ),
        downstream_stage.ExtraExamples("train", split.unlabeled, np.full(len(split.unlabeled), NO_LABEL)),
    )
    assert metrics["n_extra"] == len(split.unlabeled)
    assert {"class_loss", "reconstruction_loss"} <= set(history.columns)
    assert history.reconstruction_loss.iloc[-1] < history.reconstruction_loss.iloc[0]
    # Its classifier is the supervised network: same parameter count.
    supervised, _, _ = downstream_stage.train_downstream(
        Job(
            data_path=folder / "data.h5",
            split_path=folder / "split.h5",
            encoder_path=None,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            settings={**SETTINGS, "protocol": "supervised", "epochs": 1},
            budget="all",
            seed=1,
        ),
    )
    assert metrics["params"] == supervised["params"]


def test_filter_outliers_scores_the_pool_and_measures_foreign_images(tmp_path):
    """Glyph images with inverted ones mixed into the pool as known foreign images."""
    data = make_synthetic(n_train=320, n_test=16, image_size=16, num_classes=4, seed=0)
    data.x_train[240:] = 255 - data.x_train[240:]
    artifacts.write_dataset(tmp_path / "data.h5", data, {})
    split = make_split(data.y_train, len(data.y_test), [0, 160], [160, 320], None, seed=1)
    split.foreign = np.arange(240, 320)
    artifacts.write_split(tmp_path / "split.h5", split, {})
    artifacts.write_pool(tmp_path / "pool.h5", split.unlabeled, "train", {})
    settings = {
        "method": "one_class_network",
        "options": {"nu": 0.9, "tolerance": 0.025, "patience": 2, "l2": 0.01},
        "epochs": 8,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "augmentation": {},
    }
    summary = outliers_stage.filter_outliers(
        data_path=tmp_path / "data.h5",
        split_path=tmp_path / "split.h5",
        pool_path=tmp_path / "pool.h5",
        settings=settings,
        encoder_spec=copy.deepcopy(TINY_ENCODER),
        seed=1,
        meta={"study": "tiny"},
        outliers_path=tmp_path / "scores.h5",
        inliers_path=tmp_path / "inliers.h5",
        history_path=tmp_path / "history.csv",
    )
    result = artifacts.read_outliers(tmp_path / "scores.h5")
    inliers, part = artifacts.read_pool(tmp_path / "inliers.h5")
    assert part == "train" and list(inliers) == list(result["kept"])
    assert len(result["kept"]) + len(result["removed"]) == 160
    assert result["foreign"].sum() == 80 and summary["n_foreign"] == 80
    expected = outliers_stage.rank_auroc(result["scores"][:80], result["scores"][80:])
    assert summary["auroc"] == pytest.approx(expected) == pytest.approx(result["auroc"])
    # The shares are what the artifact's scores and threshold say (how well the filter
    # separates is measured by tests/test_outliers.py and benchmarks/semisupervised.py).
    removed = result["scores"] < result["threshold"]
    assert summary["foreign_removed_share"] == removed[80:].mean()
    assert summary["genuine_removed_share"] == removed[:80].mean()
    assert result["n_removed"] == removed.sum() == len(result["removed"])


def test_rank_auroc_against_pairs():
    rng = np.random.default_rng(0)
    positive, negative = rng.normal(1, 1, 40), rng.normal(0, 1, 30)
    positive[:5] = negative[:5]  # ties count half
    pairs = (positive[:, None] > negative[None, :]).mean() + 0.5 * (
        positive[:, None] == negative[None, :]
    ).mean()
    assert outliers_stage.rank_auroc(positive, negative) == pytest.approx(pairs)
