"""selfsup.monitor: the weighted kNN accuracy that watches pretext training."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from selfsup.callbacks import KnnMonitor
from selfsup.monitor import knn_accuracy


def reference_knn(features, labels, k, temperature):
    """Leave-one-out weighted kNN written out one query at a time."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    right = 0
    for i in range(len(unit)):
        others = [j for j in range(len(unit)) if j != i]
        similarity = np.array([unit[i] @ unit[j] for j in others])
        nearest = np.argsort(-similarity)[:k]
        votes = {}
        for n in nearest:
            label = labels[others[n]]
            votes[label] = votes.get(label, 0.0) + math.exp(similarity[n] / temperature)
        right += max(votes, key=votes.get) == labels[i]
    return right / len(unit)


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (5, 0.07), (200, 0.1), (10, 1.0)])
def test_knn_accuracy_matches_a_written_out_reference(k, temperature):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 4, 60)
    features = rng.normal(size=(60, 8)) + 1.5 * np.eye(8)[labels]
    got = knn_accuracy(features, labels, k, temperature)
    assert got == pytest.approx(reference_knn(features, labels, k, temperature))
    assert 0.25 < got <= 1.0


def test_knn_accuracy_separates_clusters_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    clustered = np.eye(16)[labels] * 10 + rng.normal(size=(200, 16))
    assert knn_accuracy(clustered, labels, 200, 0.1) == 1.0
    # Features that say nothing of the class: chance level, about 1/5.
    assert knn_accuracy(rng.normal(size=(200, 16)), labels, 200, 0.1) < 0.35
    # A collapsed encoder (every feature equal) is no better than chance either.
    assert knn_accuracy(np.ones((200, 16)), labels, 20, 0.1) <= 0.3


def test_callback_logs_every_nth_and_the_last_epoch():
    rng = np.random.default_rng(0)
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model = keras.Sequential([encoder, keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    images, labels = rng.normal(size=(20, 4)).astype("float32"), rng.integers(0, 2, 20)
    callback = KnnMonitor(encoder, images, labels, every=2, k=5, temperature=0.1)
    history = model.fit(images, labels[:, None].astype("float32"), epochs=5, callbacks=[callback], verbose=0)
    logged = history.history["knn_accuracy"]
    assert [math.isnan(v) for v in logged] == [True, False, True, False, False]
    assert all(0 <= v <= 1 for v in logged if not math.isnan(v))
