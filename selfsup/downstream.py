"""Classifiers on an encoder, the freezing protocols that compare them, and evaluation.

Protocols that train a Keras classifier (what is trainable; the head always is):
- supervised: a freshly initialized encoder, all layers trainable (the baseline);
- random: a freshly initialized encoder, frozen, under a trained head;
- frozen: the pretrained encoder, frozen, under a trained head;
- finetune: the pretrained encoder, all layers trainable;
- freeze_k: the pretrained encoder with its first k conv layers frozen;
- partial_k: the pretrained encoder frozen except its last k weighted layers.
Protocols that evaluate frozen features (selfsup.probes; nothing is trained by gradient):
- linear, knn: the pretrained encoder's features, a cross-validated logistic regression
  or a weighted kNN classifier;
- random_linear, random_knn: the same on a freshly initialized encoder's features;
- pixels_linear, pixels_knn: the same on the (scaled, normalized) pixels: no encoder.
Protocols that also train on a pool of unlabeled images (selfsup.protocols lists every family):
- self_training: rounds of teacher pseudo-labels, weighted by their certainty, then a
  student on labels plus pseudo-labels (from scratch, or fine-tuning a pretext encoder);
- joint: one model with a class and a reconstruction output (selfsup.joint), the class
  loss masked out for unlabeled images.
Every protocol builds the same architecture, so compared classifiers have the same
number of parameters by construction.
"""

from __future__ import annotations

import keras
import numpy as np

from selfsup import encoders
from selfsup.encoders import conv_layers, weighted_layers
from selfsup.protocols import classifier_protocol, family_name, parse_protocol


def apply_protocol(encoder: keras.Model, protocol: str) -> None:
    """Set which encoder layers train under `protocol`."""
    kind, k = parse_protocol(protocol)
    if family_name(protocol) == "features":
        raise ValueError(f"{protocol} evaluates frozen features (selfsup.probes); it trains no classifier")
    if family_name(protocol) != "classifier":
        raise ValueError(
            f"{protocol} trains a classifier under {classifier_protocol(protocol, True)!r} or "
            f"{classifier_protocol(protocol, False)!r} (selfsup.protocols.classifier_protocol), not {protocol!r}"
        )
    if kind in ("supervised", "finetune"):
        frozen = []
    elif kind in ("random", "frozen"):
        frozen = encoder.layers
    elif kind == "freeze":
        convs = conv_layers(encoder)
        if k > len(convs):
            raise ValueError(f"{protocol}: the encoder has only {len(convs)} conv layers")
        frozen = encoder.layers[: encoder.layers.index(convs[k - 1]) + 1]
    else:  # partial
        weighted = weighted_layers(encoder)
        if k > len(weighted):
            raise ValueError(f"{protocol}: the encoder has only {len(weighted)} layers with weights")
        frozen = encoder.layers[: encoder.layers.index(weighted[-k])]
    for layer in encoder.layers:
        layer.trainable = layer not in frozen


def build_classifier(
    encoder: keras.Model,
    num_classes: int,
    protocol: str,
    feature_layer: str | None = None,
    hidden: list[int] = (),
    dropout: float = 0.0,
) -> keras.Model:
    """Encoder (cut at `feature_layer`, frozen per `protocol`) + dense head + softmax."""
    encoder = encoders.cut(encoder, feature_layer, "feature_layer")
    apply_protocol(encoder, protocol)
    inputs = keras.Input(encoder.input_shape[1:], name="image")
    x = encoder(inputs)
    if len(x.shape) > 2:
        x = keras.layers.Flatten(name="head_flatten")(x)
    for i, units in enumerate(hidden, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name=f"classifier_{protocol}")


def count_params(model: keras.Model) -> dict[str, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return {"params": total, "trainable_params": trainable}


def correct(model: keras.Model, data, y: np.ndarray) -> np.ndarray:
    """Which of `y` are predicted right from `data`: an array, or unshuffled batches of the same examples."""
    probabilities = model.predict(data, verbose=0)
    return np.argmax(probabilities, axis=1) == y


def accuracy(model: keras.Model, data, y: np.ndarray) -> float:
    """Share of `y` predicted right from `data` (see `correct`)."""
    return float(np.mean(correct(model, data, y)))
