"""Rotation prediction: which of four quarter turns was applied to the image.

Gidaris et al., "Unsupervised Representation Learning by Predicting Image Rotations", ICLR 2018.
"""

from __future__ import annotations

import numpy as np

from selfsup.pretext.base import PretextMethod


def rotate(images: np.ndarray, quarter_turns: np.ndarray) -> np.ndarray:
    """Rotate each image of (N, H, W, C) by its own number of counter-clockwise quarter turns."""
    out = np.empty_like(images)
    for r in range(4):
        mask = quarter_turns == r
        out[mask] = np.rot90(images[mask], r, axes=(1, 2))
    return out


def rotate_batch(images, quarter_turns):
    """TensorFlow `rotate`: each image of a (N, H, H, C) batch by its own quarter turns."""
    import tensorflow as tf

    turned = tf.stack([tf.image.rot90(images, k) for k in range(4)])  # (4, N, H, W, C)
    picks = tf.stack([tf.cast(quarter_turns, tf.int32), tf.range(tf.shape(images)[0])], axis=1)
    return tf.gather_nd(turned, picks)


class Rotation(PretextMethod):
    OPTIONS = {
        # "all": every image in all four rotations; "random": one random rotation per image.
        "rotations": "random",
    }
    rotate = staticmethod(rotate)
    rotate_batch = staticmethod(rotate_batch)

    def check(self, options: dict, settings: dict | None = None) -> None:
        if options["rotations"] not in ("all", "random"):
            raise ValueError(f"rotations must be 'all' or 'random', got {options['rotations']!r}")

    def pseudo_labels(self, num_images: int, options: dict, seed: int):
        """Positions into the unlabeled pool and quarter turns r (counter-clockwise)."""
        if options["rotations"] == "all":
            positions = np.repeat(np.arange(num_images), 4)
            labels = np.tile(np.arange(4), num_images)
        else:
            positions = np.arange(num_images)
            labels = np.random.default_rng(seed).integers(0, 4, num_images)
        return positions, labels

    def build(self, encoder, options: dict, augmentation=None, total_steps=None):
        import keras  # here, not at the top: the pseudo-label job needs no Keras

        height, width = encoder.input_shape[1:3]
        if height != width:
            raise ValueError(
                f"rotation needs square images (a quarter turn must keep the shape), got {height}x{width}"
            )
        inputs = keras.Input(encoder.input_shape[1:], name="image")
        features = encoder(inputs)
        if len(features.shape) > 2:
            features = keras.layers.Flatten(name="features")(features)
        outputs = keras.layers.Dense(4, activation="softmax", name="rotation")(features)
        return keras.Model(inputs, outputs, name="rotation_pretext")

    def compile_args(self, options: dict) -> dict:
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}

    def metric_names(self, options: dict) -> list[str]:
        return ["loss", "accuracy"]

    def transform(self, images, labels, seed, options: dict):
        """A training batch: each (augmented) image turned by its pseudo-label."""
        return rotate_batch(images, labels), labels

    def precompute(self, images, labels, options: dict):
        """Every pseudo-labelled image turned once for the run: a quarter turn moves pixels
        and nothing else, so turning the uint8 images before scaling and normalizing gives
        the very batches `transform` gives after them, bit for bit."""
        return rotate(images, np.asarray(labels)), labels

    def examples(self, model, images: np.ndarray, options: dict, seed: int) -> dict:
        """Each image in its four rotations: the inputs of the four pretext classes."""
        return {f"r = {r} ({90 * r}°)": rotate(images, np.full(len(images), r)) for r in range(4)}
