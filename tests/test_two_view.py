"""The two-view methods: each trains (its loss falls on a tiny batch), reports its
collapse monitor, keeps its own state (BYOL's target, NNCLR's queue) and rejects bad options."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from selfsup.pretext import get_method
from selfsup.pretext.momentum import target_momentum
from selfsup.training import make_optimizer

TWO_VIEW = ["simclr", "nnclr", "simsiam", "barlow_twins", "byol", "vicreg", "mocov2plus"]
# Narrow heads keep each test at a few seconds on two cores.
SMALL_HEADS = {
    "simclr": {"projector": [32, 16]},
    "nnclr": {"projector": [32, 16], "predictor": [32, 16], "queue_size": 64},
    "simsiam": {"projector": [32, 32], "predictor": [8, 32]},
    "barlow_twins": {"projector": [32, 32]},
    "byol": {"projector": [32, 16], "predictor": [32, 16]},
    "vicreg": {"projector": [32, 32]},
    "mocov2plus": {"projector": [32, 16], "queue_size": 64},
}
SETTINGS = {"batch_size": 16, "augmentation": {"horizontal_flip": True, "shift": 0.1}}


def options_of(name, **changes):
    method = get_method(name)
    options = {**method.OPTIONS, **SMALL_HEADS[name], **changes}
    method.check(options, SETTINGS)
    return options


def augmentation(seed=0):
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.15, 0.15, fill_mode="nearest", seed=seed + 1),
        ]
    )


def images(n=16, size=16, seed=0):
    """Blobs at random places: views of one image share a blob the model can match."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        centre = rng.uniform(3, size - 3, 2)
        out[i, ..., 0] = np.exp(-((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2) / 6.0)
    return out


def trained(name, tiny_encoder, steps=40, **changes):
    method = get_method(name)
    model = method.build(
        tiny_encoder(), options_of(name, **changes), augmentation=augmentation(), total_steps=steps
    )
    model.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": 3e-3}))
    data = tf.data.Dataset.from_tensor_slices(images()).batch(16).repeat(steps)
    history = model.fit(data, epochs=1, verbose=0)
    return model, history


# MoCo's loss at the start is against a queue of random vectors, nearly orthogonal to
# every query, and so low; it is compared against real keys in its own test below.
@pytest.mark.parametrize("name", [name for name in TWO_VIEW if name != "mocov2plus"])
def test_loss_falls_and_metrics_are_reported(name, tiny_encoder):
    method = get_method(name)
    model = method.build(tiny_encoder(), options_of(name), augmentation=augmentation(), total_steps=40)
    model.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": 3e-3}))
    batch = tf.constant(images())
    first = model.test_step(batch)
    assert set(first) == set(method.metric_names({})) == {"loss", "embedding_std"}
    for metric in model.metrics:
        metric.reset_state()
    before = np.mean([float(model.test_step(batch)["loss"]) for _ in range(4)])
    model.fit(tf.data.Dataset.from_tensor_slices(images()).batch(16).repeat(40), epochs=1, verbose=0)
    for metric in model.metrics:
        metric.reset_state()
    after = np.mean([float(model.test_step(batch)["loss"]) for _ in range(4)])
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f}"
    assert float(model.test_step(batch)["embedding_std"]) > 0.01


def test_embedding_std_shows_a_collapsed_encoder(tiny_encoder):
    # An encoder that maps everything to one point: the monitor reads 0.
    encoder = tiny_encoder()
    for weight in encoder.weights:
        weight.assign(tf.zeros_like(weight))
    model = get_method("simclr").build(encoder, options_of("simclr"), augmentation=augmentation())
    model.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": 1e-3}))
    model.projector.layers[-1].bias.assign(tf.ones_like(model.projector.layers[-1].bias))
    assert float(model.test_step(tf.constant(images()))["embedding_std"]) < 1e-4


def test_byol_target_starts_as_the_online_network_and_follows_it_slowly(tiny_encoder):
    model = get_method("byol").build(
        tiny_encoder(), options_of("byol"), augmentation=augmentation(), total_steps=10
    )
    for online, target in model.online_target_pairs():
        np.testing.assert_array_equal(online.numpy(), target.numpy())
    # The optimizer never sees the target: it moves by EMA alone.
    target_ids = {id(v) for v in model.target_weights()}
    assert not target_ids & {id(v) for v in model.trainable_variables}
    online_start = model.encoder.weights[0].numpy().copy()
    model.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": 1e-2}))
    model.fit(tf.data.Dataset.from_tensor_slices(images()).batch(16).repeat(3), epochs=1, verbose=0)
    online_moved = np.abs(model.encoder.weights[0].numpy() - online_start).mean()
    target_moved = np.abs(model.target_encoder.weights[0].numpy() - online_start).mean()
    # tau is about 0.99: the target moved, by about a hundredth of the online network's move.
    assert 0 < target_moved < 0.1 * online_moved


def test_byol_target_normalises_with_the_batch_statistics(tiny_encoder):
    # BYOL's code runs the target in training mode: at the start, with equal weights, its
    # projection of a batch is the online network's, BatchNorm on the batch's statistics.
    # Frozen Keras BatchNorm (trainable = False) would use its moving statistics instead
    # and give a near-constant target.
    model = get_method("byol").build(
        tiny_encoder(), options_of("byol"), augmentation=augmentation(), total_steps=10
    )
    batch = tf.constant(images(n=32))
    online, _ = model.predict_projection(batch, training=True)
    target = model.target(batch, training=True)
    np.testing.assert_allclose(target.numpy(), online.numpy(), atol=1e-5)
    inference = model.target(batch, training=False)
    assert np.abs(inference.numpy() - target.numpy()).max() > 0.1


def test_byol_moves_target_parameters_by_ema_and_leaves_its_statistics_alone(tiny_encoder):
    model, _ = trained("byol", tiny_encoder, steps=3)
    bn = [v for v in model.target_projector.weights if "moving" in v.path]
    online_bn = [v for v in model.projector.weights if "moving" in v.path]
    assert bn and len(bn) == len(online_bn)
    # Moving statistics are updated by the target's own forward passes, not copied.
    assert any(not np.allclose(t.numpy(), o.numpy()) for t, o in zip(bn, online_bn, strict=True))
    pairs = model.online_target_pairs(parameters_only=True)
    assert pairs and all(o.trainable for o, _ in pairs)
    assert not any("moving" in o.path for o, _ in pairs)


def test_byol_momentum_rises_from_base_to_one():
    assert float(target_momentum(0, 100, 0.99)) == pytest.approx(0.99)
    assert float(target_momentum(50, 100, 0.99)) == pytest.approx(0.995)
    assert float(target_momentum(100, 100, 0.99)) == pytest.approx(1.0)


def test_nnclr_queue_holds_the_latest_projections(tiny_encoder):
    model, _ = trained("nnclr", tiny_encoder, steps=3, queue_size=40)
    # 3 steps of 16 into 40 rows: the pointer wrapped to 8; every row has unit norm.
    assert int(model.queue.position.numpy()) == (3 * 16) % 40
    np.testing.assert_allclose(np.linalg.norm(model.queue.vectors.numpy(), axis=1), 1.0, rtol=1e-5)


def test_mocov2plus_loss_falls_against_a_queue_of_real_keys(tiny_encoder):
    model = get_method("mocov2plus").build(
        tiny_encoder(), options_of("mocov2plus"), augmentation=augmentation(), total_steps=40
    )
    batch = tf.constant(images())
    data = tf.data.Dataset.from_tensor_slices(images()).batch(16)
    # Four steps at learning rate 0 fill the queues (64 rows each) with the untrained keys.
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(data.repeat(4), epochs=1, verbose=0)
    assert int(model.queue1.position.numpy()) == int(model.queue2.position.numpy()) == 0

    def loss():
        for metric in model.metrics:
            metric.reset_state()
        return np.mean([float(model.test_step(batch)["loss"]) for _ in range(4)])

    before = loss()
    model.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": 3e-3}))
    model.fit(data.repeat(40), epochs=1, verbose=0)
    after = loss()
    # Measured with seeds 0-2 of the augmentation: 4.11-4.14 -> 3.69-4.00.
    assert after < before - 0.05, f"mocov2plus: loss {before:.4f} -> {after:.4f}"
    assert float(model.test_step(batch)["embedding_std"]) > 0.01


def test_mocov2plus_queues_hold_each_views_latest_keys(tiny_encoder):
    model, _ = trained("mocov2plus", tiny_encoder, steps=1, queue_size=40)
    # One step of 16 into 40 rows: each queue's first 16 rows are its own view's keys.
    assert int(model.queue1.position.numpy()) == int(model.queue2.position.numpy()) == 16
    for queue in (model.queue1, model.queue2):
        np.testing.assert_allclose(np.linalg.norm(queue.vectors.numpy(), axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(model.queue1.vectors.numpy()[:16], model.queue2.vectors.numpy()[:16])
    target_ids = {id(v) for v in model.target_weights()}
    assert not target_ids & {id(v) for v in model.trainable_variables}
    queue_ids = {id(v) for q in (model.queue1, model.queue2) for v in (q.vectors, q.position)}
    assert not queue_ids & {id(v) for v in model.trainable_variables}


def test_pre_made_views_are_used_as_given(tiny_encoder):
    model = get_method("simclr").build(tiny_encoder(), options_of("simclr"), augmentation=augmentation())
    x = tf.constant(images())
    first, second = model.views((x, x[::-1]))
    np.testing.assert_array_equal(second.numpy(), x.numpy()[::-1])
    one, two = model.views(x)
    assert not np.allclose(one.numpy(), two.numpy())


@pytest.mark.parametrize(
    ("name", "changes", "settings", "message"),
    [
        ("simclr", {"temperature": 0.0}, SETTINGS, "temperature must be > 0"),
        ("nnclr", {"temperature": -1.0}, SETTINGS, "temperature must be > 0"),
        ("nnclr", {"queue_size": 8}, SETTINGS, r"queue_size \(8\) must be at least the batch size \(16\)"),
        ("simclr", {}, {"batch_size": 16, "augmentation": {}}, "augmentation: a two-view method needs"),
        ("byol", {"predictor": [32, 8]}, SETTINGS, "predictor must end in the projector's output width 16"),
        ("simclr", {"projector": []}, SETTINGS, "projector must be a non-empty list"),
        ("byol", {"momentum": 1.0}, SETTINGS, r"momentum must lie in \[0, 1\)"),
        ("barlow_twins", {"lambda_offdiag": 0.0}, SETTINGS, "lambda_offdiag must be > 0"),
        ("barlow_twins", {"scale_loss": 0.0}, SETTINGS, "scale_loss must be > 0"),
        ("vicreg", {"var_weight": -1.0}, SETTINGS, "var_weight must be >= 0"),
        ("mocov2plus", {"temperature": 0.0}, SETTINGS, "temperature must be > 0"),
        ("mocov2plus", {"momentum": 1.0}, SETTINGS, r"momentum must lie in \[0, 1\)"),
        ("mocov2plus", {"momentum": -0.1}, SETTINGS, r"momentum must lie in \[0, 1\)"),
        ("mocov2plus", {"final_momentum": 0.9}, SETTINGS, r"final_momentum must lie in \[momentum, 1\]"),
        (
            "mocov2plus",
            {"queue_size": 8},
            SETTINGS,
            r"queue_size \(8\) must be at least the batch size \(16\)",
        ),
    ],
)
def test_bad_options_are_refused(name, changes, settings, message):
    method = get_method(name)
    with pytest.raises(ValueError, match=message):
        method.check({**method.OPTIONS, **SMALL_HEADS[name], **changes}, settings)


@pytest.mark.parametrize("name", TWO_VIEW)
def test_examples_show_two_views(name, tiny_encoder):
    method = get_method(name)
    model = method.build(tiny_encoder(), options_of(name), augmentation=augmentation())
    shown = method.examples(model, images(4), options_of(name), seed=0)
    assert list(shown) == ["input", "view 1", "view 2"]
    assert all(v.shape == (4, 16, 16, 1) for v in shown.values())
    assert not np.allclose(shown["view 1"], shown["view 2"])


def test_head_batch_norm_standardises_small_activations():
    """The heads' BatchNorm takes PyTorch's eps 1e-5 as the references do: pre-BatchNorm
    activations of variance ~1e-4 (a projector's at initialisation) come out with unit
    spread. Keras' default epsilon 1e-3 would leave them at about 0.3."""
    from selfsup.pretext.two_view import mlp

    head = mlp([64, 16], "projector")
    features = tf.constant(np.random.default_rng(0).normal(0, 1, (256, 32)), tf.float32)
    head(features, training=False)
    dense, bn = head.get_layer("projector_dense1"), head.get_layer("projector_bn1")
    dense.kernel.assign(dense.kernel * 0.01 / float(tf.math.reduce_std(dense(features))))
    spread = tf.math.reduce_std(bn(dense(features), training=True), axis=0)
    assert float(tf.reduce_min(spread)) > 0.9
    assert bn.momentum == 0.9  # PyTorch's momentum 0.1 for the new batch


def test_barlow_twins_scale_loss_scales_the_loss(tiny_encoder):
    # solo-learn's recipes multiply the loss by scale_loss (0.1); the paper's code by 1.
    batch = tf.constant(images())
    losses = []
    for scale in (1.0, 0.1):
        model = get_method("barlow_twins").build(tiny_encoder(), options_of("barlow_twins", scale_loss=scale))
        losses.append(float(model.test_step(batch)["loss"]))
    assert losses[1] == pytest.approx(0.1 * losses[0], rel=1e-5)


def test_projectors_are_built_as_their_references():
    from selfsup.pretext.two_view import mlp

    def layers(name, **changes):
        method = get_method(name)
        options = {**method.OPTIONS, **changes}
        return [type(layer).__name__ for layer in method.heads(options)["projector"].layers]

    # solo-learn's SimCLR head: Linear-ReLU-Linear.
    assert layers("simclr") == ["Flatten", "Dense", "ReLU", "Dense"]
    # Three Dense layers for Barlow Twins and VICReg, the papers' depth.
    for name in ("barlow_twins", "vicreg"):
        assert layers(name).count("Dense") == 3 and layers(name)[-1] == "Dense"
    # NNCLR ends in an affine BatchNorm, SimSiam in one without scale and shift.
    nnclr_out = get_method("nnclr").heads(get_method("nnclr").OPTIONS)["projector"].layers[-1]
    simsiam_out = get_method("simsiam").heads(get_method("simsiam").OPTIONS)["projector"].layers[-1]
    assert nnclr_out.center and nnclr_out.scale
    assert not simsiam_out.center and not simsiam_out.scale
    with pytest.raises(ValueError, match="output_batch_norm must be one of"):
        mlp([8, 4], "head", "layer_norm")
