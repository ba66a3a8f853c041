"""The shared parts of the momentum and queue methods (BYOL, NNCLR, MoCo), on tiny models:
selfsup.pretext.momentum's EMA target and selfsup.pretext.queue's FIFO queue."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from selfsup.pretext.momentum import MomentumTargetMixin, target_momentum
from selfsup.pretext.queue import Queue


class _Online(keras.Model):
    def build(self, input_shape):
        self.projector(self.encoder(keras.ops.zeros((2, *input_shape[1:]))))
        self.built = True

    def call(self, x, training=False):
        return self.projector(self.encoder(x, training=training), training=training)


class Tiny(MomentumTargetMixin, _Online):
    """Encoder Dense-BatchNorm, projector Dense, and their momentum copies."""

    def __init__(self, base=0.9, final=1.0, total_steps=10):
        super().__init__()
        keras.utils.set_random_seed(0)
        self.encoder = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(6), keras.layers.BatchNormalization(momentum=0.5)]
        )
        self.projector = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        self.init_targets(base, total_steps, final)


def tiny(**kwargs):
    model = Tiny(**kwargs)
    model.build((None, 4))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def batch(n=8, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, (n, 4)), tf.float32)


def test_target_starts_as_a_copy_out_of_the_optimizer():
    model = tiny()
    for online, target in model.online_target_pairs():
        np.testing.assert_array_equal(online.numpy(), target.numpy())
    target_ids = {id(v) for v in model.target_weights()}
    assert len(target_ids) == len(model.encoder.weights) + len(model.projector.weights)
    assert not target_ids & {id(v) for v in model.trainable_weights}
    assert not target_ids & {id(v) for v in model.trainable_variables}
    assert target_ids <= {id(v) for v in model.non_trainable_weights}
    # The target layers stay trainable: Keras BatchNorm uses batch statistics only then.
    assert all(layer.trainable for layer in model.target_encoder.layers)


def test_ema_moves_parameters_by_the_formula_and_leaves_moving_statistics_alone():
    model = tiny(base=0.9)
    for weight in model.encoder.weights + model.projector.weights:
        weight.assign(weight + 1.0)  # online parameters and statistics move away
    bn = model.target_encoder.layers[-1]
    bn.moving_mean.assign(tf.fill(bn.moving_mean.shape, 5.0))
    before = {id(t): t.numpy().copy() for _, t in model.online_target_pairs()}
    model.update_targets()  # iterations 0: tau = base = 0.9
    for online, target in model.online_target_pairs():
        if online.trainable:
            np.testing.assert_allclose(
                target.numpy(), 0.9 * before[id(target)] + 0.1 * online.numpy(), atol=1e-6
            )
        else:  # moving statistics: the target's own
            np.testing.assert_array_equal(target.numpy(), before[id(target)])
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 5.0)
    pairs = model.online_target_pairs(parameters_only=True)
    assert pairs and not any("moving" in o.path for o, _ in pairs)


def test_target_batch_norm_runs_in_training_mode_with_batch_statistics():
    model = tiny()
    x = batch()
    np.testing.assert_allclose(
        model.target(x, training=True).numpy(), model(x, training=True).numpy(), atol=1e-5
    )
    # Inference mode would use the moving statistics (0 and 1 at the start): far from the
    # batch's mean 2 and std 3.
    assert (
        np.abs(model.target(x, training=False).numpy() - model.target(x, training=True).numpy()).max() > 0.1
    )
    # A training-mode pass updates the target's own moving statistics.
    bn = model.target_encoder.layers[-1]
    assert np.abs(bn.moving_mean.numpy()).max() > 0.1


def test_an_optimizer_step_leaves_the_target_alone():
    model = tiny()
    start = [t.numpy().copy() for t in model.target_weights()]
    x = batch()
    model.fit(x, tf.zeros((8, 3)), epochs=1, batch_size=8, verbose=0)
    moved = [
        not np.allclose(o.numpy(), t) for (o, _), t in zip(model.online_target_pairs(), start, strict=True)
    ]
    assert any(moved)
    for weight, value in zip(model.target_weights(), start, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_momentum_rises_by_a_cosine_from_base_to_final():
    assert float(target_momentum(0, 100, 0.99)) == pytest.approx(0.99)
    assert float(target_momentum(50, 100, 0.99)) == pytest.approx(0.995)
    assert float(target_momentum(100, 100, 0.99)) == pytest.approx(1.0)
    assert float(target_momentum(0, 100, 0.99, 0.999)) == pytest.approx(0.99)
    assert float(target_momentum(50, 100, 0.99, 0.999)) == pytest.approx(0.9945)
    assert float(target_momentum(250, 100, 0.99, 0.999)) == pytest.approx(0.999)


def test_queue_starts_as_random_unit_vectors_out_of_training():
    queue = Queue(6, 3, seed=0)
    np.testing.assert_allclose(np.linalg.norm(queue.vectors.numpy(), axis=1), 1.0, rtol=1e-6)
    assert int(queue.position.numpy()) == 0
    assert queue.trainable_weights == [] and len(queue.non_trainable_weights) == 2
    np.testing.assert_array_equal(Queue(6, 3, seed=0).vectors.numpy(), queue.vectors.numpy())
    assert not np.allclose(Queue(6, 3, seed=1).vectors.numpy(), queue.vectors.numpy())


def test_queue_is_first_in_first_out_and_wraps_around():
    queue = Queue(5, 2, seed=0)

    def rows(*angles):  # unit vectors at these angles (degrees)
        radians = np.deg2rad(angles)
        return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)

    queue.enqueue(3.0 * rows(0, 10, 20))  # normalized on the way in
    np.testing.assert_allclose(queue.vectors.numpy()[:3], rows(0, 10, 20), atol=1e-6)
    assert int(queue.position.numpy()) == 3
    queue.enqueue(rows(30, 40, 50))  # rows 3, 4, then 0: the oldest is overwritten
    np.testing.assert_allclose(queue.vectors.numpy(), rows(50, 10, 20, 30, 40), atol=1e-6)
    assert int(queue.position.numpy()) == 1
    queue.enqueue(rows(60, 70, 80, 90, 100))  # a whole queue's worth: all rows replaced
    np.testing.assert_allclose(queue.vectors.numpy(), rows(100, 60, 70, 80, 90), atol=1e-6)
    assert int(queue.position.numpy()) == 1
