"""selfsup.pipeline: a classifier trained through the real job function learns its labels.

Guards the bookkeeping between a budget's indices, the images gathered for them and their
labels: a misaligned pairing trains on noise and stays at chance, which tiny workflow
runs cannot tell from a short training.
"""

from __future__ import annotations

import copy

from selfsup import artifacts, pipeline
from selfsup.data.generated import make_synthetic
from selfsup.data.splits import make_split

SETTINGS = {
    "protocol": "supervised",
    "feature_layer": None,
    "head": {"hidden": [], "dropout": 0.0},
    "epochs": 25,
    "batch_size": 16,
    "optimizer": {"name": "adam", "learning_rate": 0.01, "momentum": 0.0},
    "validation_split": 0.25,
    "early_stopping": None,
}


TINY_ENCODER = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16]}}


def test_train_downstream_learns_a_learnable_task(tmp_path):
    data = make_synthetic(n_train=256, n_test=128, image_size=16, num_classes=4, seed=0)
    data_path = tmp_path / "data.h5"
    artifacts.write_dataset(data_path, data, {})
    # A labeled pool in the middle of the training images, in stratified (unsorted) order.
    split = make_split(data.y_train, len(data.y_test), [64, 256], [0, 64], None, seed=3)
    split_path = tmp_path / "split.h5"
    artifacts.write_split(split_path, split, {})
    metrics, history = pipeline.train_downstream(
        data_path=data_path,
        split_path=split_path,
        encoder_path=None,
        encoder_spec=copy.deepcopy(TINY_ENCODER),
        settings=SETTINGS,
        budget="all",
        seed=1,
    )
    # Chance is 0.25; glyphs are easy (nearest neighbours in pixels reach over 0.8).
    assert metrics["train_accuracy"] > 0.8, history
    assert metrics["test_accuracy"] > 0.6, history
    assert metrics["example"]["label"] == int(data.y_test[split.test[0]])
