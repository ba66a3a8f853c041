"""Rotation prediction: which of four quarter turns was applied to the image.

Gidaris et al., "Unsupervised Representation Learning by Predicting Image Rotations", ICLR 2018.
"""

from __future__ import annotations

import keras
import numpy as np

OPTIONS = {
    # "all": every image in all four rotations; "random": one random rotation per image.
    "rotations": "random",
}


def check(options):
    if options["rotations"] not in ("all", "random"):
        raise ValueError(f"rotations must be 'all' or 'random', got {options['rotations']!r}")


def pseudo_labels(num_images: int, options: dict, seed: int):
    """Positions into the unlabeled pool and quarter turns r (counter-clockwise)."""
    if options["rotations"] == "all":
        positions = np.repeat(np.arange(num_images), 4)
        labels = np.tile(np.arange(4), num_images)
    else:
        positions = np.arange(num_images)
        labels = np.random.default_rng(seed).integers(0, 4, num_images)
    return positions, labels


def rotate(images: np.ndarray, quarter_turns: np.ndarray) -> np.ndarray:
    """Rotate each image of (N, H, W, C) by its own number of counter-clockwise quarter turns."""
    out = np.empty_like(images)
    for r in range(4):
        mask = quarter_turns == r
        out[mask] = np.rot90(images[mask], r, axes=(1, 2))
    return out


def build(encoder: keras.Model, options: dict) -> keras.Model:
    inputs = keras.Input(encoder.input_shape[1:], name="image")
    features = encoder(inputs)
    if len(features.shape) > 2:
        features = keras.layers.Flatten(name="features")(features)
    outputs = keras.layers.Dense(4, activation="softmax", name="rotation")(features)
    return keras.Model(inputs, outputs, name="rotation_pretext")


def compile_args(options: dict) -> dict:
    return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}


def examples(model: keras.Model, images: np.ndarray, options: dict, seed: int) -> dict:
    """Each image in its four rotations: the inputs of the four pretext classes."""
    return {f"r = {r} ({90 * r}°)": rotate(images, np.full(len(images), r)) for r in range(4)}


def dataset(images: np.ndarray, pseudo, options: dict, batch_size: int, seed: int):
    import tensorflow as tf

    positions, labels = pseudo
    x = rotate(images[positions], labels)
    data = tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int32)))
    return data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size).prefetch(2)
