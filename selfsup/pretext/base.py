"""The pretext method contract: one class per method, registered in selfsup.pretext.METHODS.

A method is a `PretextMethod` subclass. The pipeline builds its Keras model around the
study's encoder, compiles it, feeds it batches made by selfsup.inputs through the
method's `transform`, and saves the encoder. The model may be a plain functional model
compiled with a loss (rotation, the autoencoders), or a keras.Model subclass that owns
`compile`, `train_step`, `test_step`, its metrics and its augmentation layers (the
two-view family, see selfsup.pretext.two_view).
"""

from __future__ import annotations

import numpy as np


class PretextMethod:
    """Subclass and set what differs; the defaults describe a method that needs nothing."""

    # Options with their defaults; the defaults' types are enforced by the study check.
    OPTIONS: dict = {}
    # True: the targets are the pixels in [0, 1], so inputs must not be normalized.
    PIXEL_TARGETS = False
    # True: the model applies the stage's `augmentation` itself (to make two views), so
    # the input pipeline must not augment the batch first.
    OWNS_AUGMENTATION = False
    # True: each epoch's last, partial batch is left out of training (the two-view methods,
    # whose losses and heads use the batch's statistics).
    FULL_BATCHES_ONLY = False

    def check(self, options: dict, settings: dict | None = None) -> None:
        """Cross-option rules (`settings`: the pretext run's training settings); raise
        ValueError with the reason. Study validation calls it before any job runs."""

    def has_pseudo_labels(self) -> bool:
        return type(self).pseudo_labels is not PretextMethod.pseudo_labels

    def pseudo_labels(self, num_images: int, options: dict, seed: int):
        """(positions into the unlabeled pool, labels) that the method's own workflow rule
        generates before training; methods without pseudo-labels leave this alone."""
        raise NotImplementedError

    def build(self, encoder, options: dict, augmentation=None, total_steps=None):
        """The pretext keras.Model around `encoder`. Study validation builds it once, so a
        ValueError here (options that do not fit the encoder) stops the study early.
        `augmentation` (a Keras layer or None) is passed when OWNS_AUGMENTATION, and with
        it `second_augmentation` (view 2's layers, selfsup.augment.build_views)."""
        raise NotImplementedError

    def compile_args(self, options: dict) -> dict:
        """Keyword arguments of `model.compile` besides the optimizer (loss, metrics)."""
        return {}

    def metric_names(self, options: dict) -> list[str]:
        """The training metrics the model reports in its history (without val_ prefixes)."""
        return ["loss"]

    def transform(self, images, labels, seed, options: dict):
        """The training batch made from a float batch of images (scaled, normalized and,
        unless OWNS_AUGMENTATION, augmented) with their pseudo-labels and a stateless
        per-batch `seed`, inside tf.data."""
        return images

    def precompute(self, images: np.ndarray, labels, options: dict):
        """The transform done once for the whole pool, or None where it cannot be.

        `images` are uint8 (N, H, W, C) in training order, one per pseudo-label. A method
        whose transform depends only on the image and its pseudo-label, and commutes with
        scaling and a per-channel normalization (a permutation of the pixels: a quarter
        turn), returns `(transformed uint8 images, labels)` and its batches need no
        per-batch work; the stage uses it only where the pool is in memory and nothing
        augments the batches first. None (the default): the transform runs per batch."""
        return None

    def examples(self, model, images: np.ndarray, options: dict, seed: int) -> dict:
        """What the trained model does to a few images: named image batches of equal
        length, drawn as rows of the study's pretext figure."""
        raise NotImplementedError
