"""A first-in-first-out queue of L2-normalized vectors kept across training steps.

Shared by the methods that compare a batch with the embeddings of past batches: NNCLR's
support set (its nearest neighbours) and MoCo's negative keys. As in MoCo's code
(facebookresearch/moco moco/builder.py: `torch.randn(dim, K)` normalized, a pointer
`queue_ptr`, `_dequeue_and_enqueue`), NNCLR's and solo-learn's, it starts as random unit
vectors and each step overwrites the oldest rows with the batch's vectors. Unlike those,
which assert that the queue size is a multiple of the batch size, a batch that reaches
the end of the queue wraps around to its start.

A Keras layer that is never called: its two non-trainable variables (the vectors and the
position of the oldest row) are saved with the model's weights and stay out of the
optimizer.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class Queue(keras.layers.Layer):
    """`size` rows of `width`-dimensional unit vectors, oldest first from `position`."""

    def __init__(self, size: int, width: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        normal = keras.initializers.RandomNormal(seed=seed)

        def unit_normal(shape, dtype=None):
            return tf.math.l2_normalize(normal(shape, dtype=dtype), axis=1)

        self.vectors = self.add_weight(
            shape=(size, width), initializer=unit_normal, trainable=False, name="vectors"
        )
        self.position = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False, name="position"
        )
        self.built = True

    def enqueue(self, batch) -> None:
        """Overwrite the oldest rows with the L2-normalized rows of `batch` (no gradient).
        The batch must not be longer than the queue (the methods' `check` asks for that):
        rows written twice in one scatter would end in no defined order."""
        size = tf.shape(self.vectors, out_type=tf.int64)[0]
        count = tf.shape(batch, out_type=tf.int64)[0]
        rows = (self.position + tf.range(count)) % size
        entries = tf.stop_gradient(tf.math.l2_normalize(tf.cast(batch, self.vectors.dtype), axis=1))
        self.vectors.assign(tf.tensor_scatter_nd_update(self.vectors, rows[:, None], entries))
        self.position.assign((self.position + count) % size)
