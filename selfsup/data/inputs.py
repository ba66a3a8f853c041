"""Training and evaluation batches from uint8 images: the one input path of every job.

Images stay uint8 until a batch is formed. Each batch is gathered by index (from memory,
or from the HDF5 file for pools too large for it), then scaled to [0, 1], normalized,
augmented and transformed by the pretext method inside the tf.data pipeline, and
prefetched. Nothing ever holds a float copy of a whole pool, and only indices are
shuffled, so shuffling costs nothing however large the images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from selfsup.data.normalization import Normalization

# Pools above this many bytes of uint8 images are read per batch from the HDF5 file.
DEFAULT_MEMORY_LIMIT_MB = 2048


def load_pool(data_path, part: str, indices: np.ndarray, memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB):
    """(images, positions): the images of pool `indices` and where each index lies in them.

    In memory (only the pool's images) when they fit in `memory_limit_mb`; otherwise an
    `artifacts.ImageFile` that reads each batch from disk, with positions = indices.
    """
    from selfsup import artifacts

    indices = np.asarray(indices, np.int64)
    shape = artifacts.read_labels(data_path)["image_shape"]
    unique, positions = np.unique(indices, return_inverse=True)
    if len(unique) * int(np.prod(shape)) <= memory_limit_mb * 2**20:
        return artifacts.read_images(data_path, part, unique), positions.astype(np.int64)
    return artifacts.ImageFile(data_path, part), indices


def _gather(images, positions: np.ndarray) -> np.ndarray:
    """images[positions] for arrays and for files that want sorted, repeat-free indices."""
    if isinstance(images, np.ndarray):
        return images[positions]
    unique, inverse = np.unique(positions, return_inverse=True)
    return images[unique][inverse]


def batches(
    images,
    positions: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    batch_size: int,
    weights: np.ndarray | None = None,
    normalization: Normalization | None = None,
    shuffle_seed: int | None = None,
    augment: Callable | None = None,
    transform: Callable | None = None,
    transform_seed: int = 0,
):
    """A tf.data pipeline of float batches of `images[positions]` (with `labels`).

    Args:
        images: uint8 (N, H, W, C), an array or an `artifacts.ImageFile`.
        positions: which images, in order; one example per entry (repeats allowed).
        labels: one int label per position, or None for unlabeled batches.
        weights: one float per position, making batches (x, y, weight) for Keras'
            per-example loss weights (self-training weighs pseudo-labels by certainty).
        shuffle_seed: reshuffle every epoch, reproducibly from this seed; None keeps order.
        augment: a callable on float batches (Keras preprocessing layers), before `transform`.
        transform: `(x, y, seed) -> batch` of a pretext method (seed: a stateless [2] seed
            drawn per batch); without it, batches are `x` or `(x, y)`.
    """
    import tensorflow as tf

    positions = np.asarray(positions, np.int64)
    has_labels = labels is not None
    labels = np.asarray(labels if has_labels else np.zeros(len(positions)), np.int32)
    image_shape = tuple(images.shape[1:])
    normalization = normalization or Normalization()

    weighted = weights is not None
    weight_table = tf.constant(np.asarray(weights if weighted else [], np.float32))

    def load(order):
        return _gather(images, positions[order]), labels[order]

    def read(order):
        x, y = tf.numpy_function(load, [order], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((None, *image_shape))
        y.set_shape((None,))
        x = normalization.apply(tf.cast(x, tf.float32) / 255.0)
        if not weighted:
            return x, y
        # Weights are gathered by TensorFlow, not in the NumPy call: one array per call
        # out of numpy_function, as before weights existed.
        return x, y, tf.gather(weight_table, order)

    order = tf.data.Dataset.range(len(positions))
    if shuffle_seed is not None:
        order = order.shuffle(len(positions), seed=shuffle_seed, reshuffle_each_iteration=True)
    data = order.batch(batch_size).map(read)
    if augment is not None:
        data = data.map(lambda x, *rest: (augment(x, training=True), *rest))
    if transform is not None:
        if weighted:
            raise ValueError("pretext transforms take no example weights")
        seeds = tf.data.Dataset.random(seed=transform_seed, rerandomize_each_iteration=True)
        data = tf.data.Dataset.zip(data, seeds).map(
            lambda xy, s: transform(xy[0], xy[1], tf.stack([s, tf.constant(transform_seed, tf.int64)]))
        )
    elif not has_labels:
        data = data.map(lambda x, y: x)
    return data.prefetch(tf.data.AUTOTUNE)
