"""Watching pretext training: the weighted kNN accuracy of the encoder's features.

The kNN classifier of Wu et al. (2018), as solo-learn and lightly use it to monitor
self-supervised runs: cosine similarity between L2-normalized features, the k most
similar labeled images vote for their class with weight exp(similarity / temperature).
Here it runs leave-one-out on the study's held-out labeled slice (split.monitor), so
each image is classified by the others and the slice never meets a downstream budget.
"""

from __future__ import annotations

import numpy as np

from selfsup.probes import knn_votes, unit_rows

FEATURE_BATCH = 256  # images per encoder call when computing features


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int, temperature: float) -> float:
    """Leave-one-out weighted kNN accuracy of `features` (N, D) with integer `labels` (N,)."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels)
    if len(features) < 2:
        raise ValueError("the kNN monitor needs at least two labeled images")
    unit = unit_rows(features)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)  # an image never votes for itself
    votes = knn_votes(similarity, labels, min(k, len(features) - 1), temperature, int(labels.max()) + 1)
    return float(np.mean(votes.argmax(axis=1) == labels))


def encoder_features(encoder, images) -> np.ndarray:
    """The encoder's features of a float batch of images, flattened, in inference mode."""
    out = [
        np.asarray(encoder(images[start : start + FEATURE_BATCH], training=False))
        for start in range(0, len(images), FEATURE_BATCH)
    ]
    features = np.concatenate(out)
    return features.reshape(len(features), -1)
