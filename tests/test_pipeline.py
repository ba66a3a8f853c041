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
    metrics, history, _ = pipeline.train_downstream(
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


def test_train_pretext_of_a_two_view_method_reports_knn_and_collapse_monitors(tmp_path):
    """SimCLR through the real job function: augmentation inside the model, the kNN
    monitor on the held-out slice, embedding_std per epoch, a readable encoder."""
    import numpy as np
    import pandas as pd

    data = make_synthetic(n_train=256, n_test=32, image_size=16, num_classes=4, seed=0)
    data_path = tmp_path / "data.h5"
    artifacts.write_dataset(data_path, data, {})
    split = make_split(data.y_train, len(data.y_test), [0, 128], [128, 256], None, seed=1, monitor=40)
    split_path = tmp_path / "split.h5"
    artifacts.write_split(split_path, split, {})
    settings = {
        "method": "simclr",
        "options": {"projector": [32, 16], "temperature": 0.2},
        "epochs": 3,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "augmentation": {"horizontal_flip": True, "shift": 0.1},
        "knn_monitor": {"every": 2, "k": 20, "temperature": 0.1},
    }
    pool_path = tmp_path / "pool.h5"
    artifacts.write_pool(pool_path, split.unlabeled, "train", {})
    history = pipeline.train_pretext(
        data_path=data_path,
        split_path=split_path,
        pool_path=pool_path,
        pseudo_path=None,
        settings=settings,
        encoder_spec=copy.deepcopy(TINY_ENCODER),
        seed=1,
        meta={},
        encoder_path=tmp_path / "encoder.h5",
        history_path=tmp_path / "history.csv",
        examples_path=tmp_path / "examples.h5",
    )
    saved = pd.read_csv(tmp_path / "history.csv")
    assert {"loss", "embedding_std", "knn_accuracy", "learning_rate"} <= set(saved.columns)
    assert list(np.isnan(saved.knn_accuracy)) == [True, False, False]  # epochs 2 and 3 (the last)
    # The last epoch's value is the kNN accuracy of the saved encoder on the held-out slice.
    from selfsup.monitor import encoder_features, knn_accuracy

    encoder, spec = artifacts.read_encoder(tmp_path / "encoder.h5")
    held_out = data.x_train[split.monitor].astype("float32") / 255
    expected = knn_accuracy(encoder_features(encoder, held_out), data.y_train[split.monitor], 20, 0.1)
    assert saved.knn_accuracy.iloc[-1] == expected
    assert (saved.embedding_std > 0).all()
    assert len(history) == 3
    assert spec["name"] == "small_cnn"
    assert list(artifacts.read_examples(tmp_path / "examples.h5")) == ["input", "view 1", "view 2"]
