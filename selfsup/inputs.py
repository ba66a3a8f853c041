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
import tensorflow as tf

from selfsup import augment as augmentations
from selfsup.data.normalization import Normalization

# Pools above this many bytes of uint8 images are read per batch from the HDF5 file.
DEFAULT_MEMORY_LIMIT_MB = 2048


def _gather(images, positions: np.ndarray) -> np.ndarray:
    """images[positions] for arrays and for files that want sorted, repeat-free indices."""
    if isinstance(images, np.ndarray):
        return images[positions]
    unique, inverse = np.unique(positions, return_inverse=True)
    return images[unique][inverse]


# Independent random streams of one pipeline: a batch's key is a pure function of
# (seed, stream, epoch, batch), so a job resumed at epoch e sees the very batches an
# uninterrupted one does (tf.data's own reshuffle_each_iteration and Keras' stateful seed
# generators restart on resume, and their state cannot be saved with the model).
SHUFFLE, AUGMENT, TRANSFORM = 0, 1, 2


def batch_key(seed, stream: int, epoch, batch):
    """The stateless [2] int64 seed of `stream` for batch `batch` of epoch `epoch`."""
    fold_in = tf.random.experimental.stateless_fold_in
    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])
    return fold_in(fold_in(key, tf.cast(epoch, tf.int64)), tf.cast(batch, tf.int64))


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
    drop_remainder: bool = False,
):
    """A tf.data pipeline of float batches of `images[positions]` (with `labels`).

    Every random draw (order, augmentation, transform) is a pure function of the seeds,
    the epoch and the batch index. The epoch is the int64 tf.Variable `epoch_counter`,
    an attribute of the returned dataset, read when an iteration starts:
    `selfsup.training.fit` sets it at the beginning of every epoch; left alone it stays 0
    (validation and evaluation batches are then the same every time).

    Args:
        images: uint8 (N, H, W, C), an array or an `artifacts.ImageFile`.
        positions: which images, in order; one example per entry (repeats allowed).
        labels: one int label per position, or None for unlabeled batches.
        weights: one float per position, making batches (x, y, weight) for Keras'
            per-example loss weights (self-training weighs pseudo-labels by certainty).
        shuffle_seed: a new order every epoch, a function of this seed and the epoch;
            None keeps the order.
        augment: Keras preprocessing layers (`selfsup.augment.build`) applied to float
            batches before `transform`, their draws keyed per batch
            (`selfsup.augment.apply`); their seed is the one they were built with.
        transform: `(x, y, seed) -> batch` of a pretext method (seed: a stateless [2]
            int64 seed per batch, from `transform_seed`, the epoch and the batch);
            without it, batches are `x` or `(x, y)`.
        drop_remainder: leave out each epoch's last, partial batch (as the two-view
            methods' references do: a batch of a few images gives BatchNorm and batch
            statistics almost nothing to work with); the shuffled order changes each
            epoch, so every image is still seen.
    """

    positions = np.asarray(positions, np.int64)
    has_labels = labels is not None
    labels = np.asarray(labels if has_labels else np.zeros(len(positions)), np.int32)
    image_shape = tuple(images.shape[1:])
    normalization = normalization or Normalization()
    weighted = weights is not None
    if transform is not None and weighted:
        raise ValueError("pretext transforms take no example weights")
    weight_table = tf.constant(np.asarray(weights if weighted else [], np.float32))
    count = len(positions)
    # On the CPU, where tf.data runs, even on a GPU machine.
    with tf.device("/cpu:0"):
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")

    def load(order):
        return _gather(images, positions[order]), labels[order]

    def epoch_batches(epoch):
        order = tf.range(count, dtype=tf.int64)
        if shuffle_seed is not None:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=batch_key(shuffle_seed, SHUFFLE, epoch, 0)
            )
        indexed = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        indexed = indexed.enumerate()
        return indexed.map(lambda batch, order: ((epoch, batch), order))

    def read(key, order):
        x, y = tf.numpy_function(load, [order], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((None, *image_shape))
        y.set_shape((None,))
        x = normalization.apply(tf.cast(x, tf.float32) / 255.0)
        if not weighted:
            return key, x, y
        # Weights are gathered by TensorFlow, not in the NumPy call: one array per call
        # out of numpy_function, as before weights existed.
        return key, x, y, tf.gather(weight_table, order)

    # The epoch is read when an iteration begins, not when the pipeline is built.
    data = tf.data.Dataset.from_tensors(np.int64(0)).map(lambda _: epoch_counter.read_value())
    data = data.flat_map(epoch_batches).map(read)
    if augment is not None:
        seed = getattr(augment, "base_seed", 0)

        def augmented(key, x, *rest):
            return (key, augmentations.apply(augment, x, batch_key(seed, AUGMENT, *key)), *rest)

        data = data.map(augmented)
    if transform is not None:
        data = data.map(lambda key, x, y: transform(x, y, batch_key(transform_seed, TRANSFORM, *key)))
    elif has_labels:
        data = data.map(lambda key, *batch: tuple(batch))
    else:
        data = data.map(lambda key, x, y: x)
    # flat_map hides the number of batches, which Keras uses to end each epoch.
    steps = count // batch_size if drop_remainder else -(-count // batch_size)
    data = data.apply(tf.data.experimental.assert_cardinality(steps))
    data = data.prefetch(tf.data.AUTOTUNE)
    data.epoch_counter = epoch_counter
    return data
