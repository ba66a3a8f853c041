"""selfsup.optimizers (LARS, weight decay sparing 1-D variables) and make_optimizer's checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from selfsup import optimizers
from selfsup.training import check_optimizer, make_optimizer

W = np.array([[1.0, -2.0], [3.0, 0.5]], dtype="float32")
B = np.array([0.5, -1.0], dtype="float32")
GW = [
    np.array([[0.2, 0.1], [-0.4, 0.3]], dtype="float32"),
    np.array([[-0.1, 0.5], [0.2, 0.2]], dtype="float32"),
]
GB = [np.array([0.3, -0.2], dtype="float32"), np.array([0.1, 0.4], dtype="float32")]


def lars_reference(w, grads, lr, momentum, decay, eta, adapt):
    """SimCLR's LARSOptimizer (classic momentum) in NumPy, over successive gradients."""
    w, v = w.astype("float64"), np.zeros_like(w, dtype="float64")
    for g in grads:
        g = g.astype("float64")
        trust = 1.0
        if adapt:
            g = g + decay * w
            w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
            trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
        v = momentum * v + lr * trust * g
        w = w - v
    return w


def run(optimizer, values, grads):
    """Apply successive gradient lists to fresh variables holding `values`; their values after."""
    variables = [keras.Variable(value) for value in values]
    for step in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
    return [np.asarray(v) for v in variables]


@pytest.mark.parametrize("exclude", [True, False])
def test_lars_steps_match_numpy(exclude):
    settings = {"lr": 0.1, "momentum": 0.9, "decay": 0.01, "eta": 0.001}
    optimizer = optimizers.LARS(
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.01,
        trust_coefficient=0.001,
        exclude_bias_and_norm=exclude,
    )
    kernel, bias = run(optimizer, [W, B], zip(GW, GB, strict=True))
    np.testing.assert_allclose(kernel, lars_reference(W, GW, adapt=True, **settings), rtol=1e-6)
    np.testing.assert_allclose(bias, lars_reference(B, GB, adapt=not exclude, **settings), rtol=1e-6)
    if exclude:
        # The bias is plain SGD with momentum: no decay, no trust ratio.
        step1 = B - 0.1 * GB[0]
        np.testing.assert_allclose(bias, step1 - (0.9 * 0.1 * GB[0] + 0.1 * GB[1]), rtol=1e-6)
    else:
        # The adapted bias moves about eta times less far than the excluded one would.
        assert np.abs(bias - B).max() < 1e-3


def test_lars_zero_norms_give_trust_one():
    optimizer = optimizers.LARS(learning_rate=0.1, momentum=0.9, weight_decay=0.0)
    zeros = np.zeros((2, 2), dtype="float32")
    # Zero gradient: nothing moves, and nothing becomes NaN.
    kernel, moved = run(optimizer, [W, zeros], [[np.zeros_like(W), GW[0]]])
    np.testing.assert_array_equal(kernel, W)
    # Zero weights: trust 1, a plain SGD step.
    np.testing.assert_allclose(moved, -0.1 * GW[0], rtol=1e-6)
    np.testing.assert_allclose(
        moved, lars_reference(zeros, [GW[0]], 0.1, 0.9, 0.0, 0.001, adapt=True), rtol=1e-6
    )


def test_lars_zero_gradient_with_decay_follows_the_decay():
    # g = wd * w, so trust = eta / wd and the step is lr * eta * w.
    optimizer = optimizers.LARS(learning_rate=0.5, momentum=0.0, weight_decay=0.01, trust_coefficient=0.001)
    (kernel,) = run(optimizer, [W], [[np.zeros_like(W)]])
    np.testing.assert_allclose(kernel, W * (1 - 0.5 * 0.001), rtol=1e-6)


def test_lars_follows_a_learning_rate_schedule():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.1, 0.01])
    optimizer = optimizers.LARS(learning_rate=schedule, momentum=0.9, weight_decay=0.01)
    kernel, bias = run(optimizer, [W, B], zip(GW, GB, strict=True))
    # Step 0 at 0.1, step 1 at 0.01: the reference with a per-step rate.
    v = np.zeros_like(B, dtype="float64")
    expected = B.astype("float64")
    for rate, g in zip([0.1, 0.01], GB, strict=True):
        v = 0.9 * v + rate * g
        expected = expected - v
    np.testing.assert_allclose(bias, expected, rtol=1e-6)
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(0.01)


def test_lars_config_round_trip():
    schedule = keras.optimizers.schedules.CosineDecay(0.0, 100, warmup_target=0.3, warmup_steps=10)
    optimizer = optimizers.LARS(
        learning_rate=schedule,
        momentum=0.8,
        weight_decay=1e-6,
        trust_coefficient=0.02,
        exclude_bias_and_norm=False,
    )
    config = optimizer.get_config()
    assert config["weight_decay"] == 1e-6 and config["trust_coefficient"] == 0.02
    assert config["momentum"] == 0.8 and config["exclude_bias_and_norm"] is False
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, optimizers.LARS)
    assert {k: again.get_config()[k] for k in config if k != "learning_rate"} == {
        k: v for k, v in config.items() if k != "learning_rate"
    }
    assert isinstance(again._learning_rate, keras.optimizers.schedules.CosineDecay)
    # Keras' own (decoupled) decay stays off: LARS decays inside its update.
    assert again.weight_decay is None


def test_lars_trains_a_small_model():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) + 0.5).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    # Kernels move by about trust_coefficient * lr of their norm per step; biases and
    # BatchNorm, excluded, by plain SGD with momentum at lr, which bounds lr.
    model.compile(
        optimizer=make_optimizer({"name": "lars", "learning_rate": 0.1, "weight_decay": 1e-4}), loss="mse"
    )
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize("name", ["sgd", "adamw", "rmsprop"])
def test_decoupled_decay_shrinks_kernels_not_vectors(name):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(), keras.layers.Dense(2)]
    )
    optimizer = make_optimizer({"name": name, "learning_rate": 0.1, "weight_decay": 0.05})
    before = [np.asarray(v) for v in model.trainable_variables]
    # Zero gradients: the optimizers' own steps are 0, so only the decay moves anything.
    for _ in range(3):
        optimizer.apply(
            [keras.ops.zeros(v.shape) for v in model.trainable_variables], model.trainable_variables
        )
    for variable, start in zip(model.trainable_variables, before, strict=True):
        after = np.asarray(variable)
        if variable.ndim == 1:  # biases, BatchNorm gamma and beta
            np.testing.assert_array_equal(after, start, err_msg=variable.path)
        else:
            np.testing.assert_allclose(after, start * (1 - 0.1 * 0.05) ** 3, rtol=1e-5, err_msg=variable.path)


def test_decoupled_decay_uses_the_scheduled_rate():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.1, 0.01])
    optimizer = make_optimizer(
        {"name": "sgd", "learning_rate": 1.0, "weight_decay": 0.5}, learning_rate=schedule
    )
    kernel, bias = run(optimizer, [W, B], [[np.zeros_like(W), np.zeros_like(B)]] * 2)
    np.testing.assert_allclose(kernel, W * (1 - 0.1 * 0.5) * (1 - 0.01 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(bias, B)


def test_no_decay_by_default():
    optimizer = make_optimizer({"name": "sgd", "learning_rate": 0.1})
    assert optimizer.weight_decay is None
    assert make_optimizer({"name": "adamw", "learning_rate": 0.1}).weight_decay == 0.0  # not Keras' 0.004
    (kernel,) = run(optimizer, [W], [[np.zeros_like(W)]])
    np.testing.assert_array_equal(kernel, W)


def test_make_optimizer_lars_defaults_and_settings():
    lars = make_optimizer({"name": "lars", "learning_rate": 0.3})
    assert isinstance(lars, optimizers.LARS)
    assert (lars.momentum, lars.lars_weight_decay, lars.trust_coefficient) == (0.9, 0.0, 0.001)
    lars = make_optimizer(
        {
            "name": "lars",
            "learning_rate": 0.3,
            "momentum": 0.5,
            "weight_decay": 1e-6,
            "trust_coefficient": 0.01,
        }
    )
    assert (lars.momentum, lars.lars_weight_decay, lars.trust_coefficient) == (0.5, 1e-6, 0.01)
    assert lars.weight_decay is None
    assert make_optimizer({"name": "rmsprop", "learning_rate": 0.1, "momentum": 0.5}).momentum == 0.5


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"name": "adam", "learning_rate": 0.1, "trust_coefficient": 0.01},
            r"^optimizer\.trust_coefficient: only lars",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "trust_coefficient": 0.01},
            r"^optimizer\.trust_coefficient: only lars",
        ),
        (
            {"name": "lars", "learning_rate": 0.1, "trust_coefficient": 0.0},
            r"^optimizer\.trust_coefficient: must be > 0",
        ),
        (
            {"name": "adam", "learning_rate": 0.1, "weight_decay": 0.01},
            r"^optimizer\.weight_decay: .*use name adamw",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "weight_decay": -1.0},
            r"^optimizer\.weight_decay: must be >= 0",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "weight_decay": "1e-4"},
            r"^optimizer\.weight_decay: must be a number",
        ),
        (
            {"name": "adamw", "learning_rate": 0.1, "momentum": 0.9},
            r"^optimizer\.momentum: adamw takes no momentum",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "momentum": 1.5},
            r"^optimizer\.momentum: must be in \[0, 1\]",
        ),
        ({"name": "sgd", "learning_rate": 0.1, "nesterov": True}, r"^optimizer\.nesterov: unknown setting"),
        ({"name": "lamb", "learning_rate": 0.1}, r"^optimizer\.name: unknown optimizer 'lamb'; .*lars"),
    ],
)
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        check_optimizer(settings)
    with pytest.raises(ValueError, match=message):
        make_optimizer(settings)


def test_good_settings_pass():
    for settings in [
        {"name": "adam", "learning_rate": 0.003, "weight_decay": 0.0},
        {"name": "adamw", "learning_rate": 0.003, "weight_decay": 0.05},
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
        {"name": "lars", "learning_rate": 4.8, "weight_decay": 1e-6, "trust_coefficient": 0.001},
    ]:
        check_optimizer(settings)
