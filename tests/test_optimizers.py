"""selfsup.optimizers (LARS, weight decay sparing 1-D variables) and make_optimizer's checks."""

from __future__ import annotations

import contextlib

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


# --- solo-learn's LARS (clip_lr), PyTorch's coupled SGD decay, per-variable rates --------


def solo_learn_lars_reference(w, grads, rates, momentum, decay, eta, adapt=True, eps=1e-8):
    """solo-learn's LARS.step with clip_lr (solo/utils/lars.py lines 131-165) in NumPy:
    the weights after successive gradients at successive rates, and for each step whether
    the clip min(trust / lr, 1) bound."""
    w, v = w.astype("float64"), np.zeros_like(w, dtype="float64")
    clipped = []
    for g, lr in zip(grads, rates, strict=True):
        d = g.astype("float64")
        p_norm, g_norm = np.linalg.norm(w), np.linalg.norm(d)
        if adapt and p_norm != 0 and g_norm != 0:
            lars_lr = p_norm / (g_norm + p_norm * decay + eps) * eta
            with np.errstate(divide="ignore"):  # a tensor in torch: / 0 is inf, clipped to 1
                ratio = np.float64(lars_lr) / lr
            clipped.append(bool(ratio >= 1))
            lars_lr = min(ratio, 1)
            d = (d + decay * w) * lars_lr
        v = momentum * v + d  # torch's first buffer is d itself: the same as from v = 0
        w = w - lr * v
    return w, clipped


@pytest.mark.parametrize(
    "rates, expect_clipped",
    [
        ([0.1, 0.1, 0.1], [True] * 3),  # eta ||w|| / ||g|| ~ 0.13 > lr: the clip binds
        ([1.0, 1.0, 1.0], [False] * 3),  # ~ 0.13 < lr: trust / lr passes unclipped
        ([1.0, 0.1, 0.05], [False, True, True]),  # a schedule: lr after momentum, as torch
    ],
)
def test_lars_clip_lr_matches_solo_learn(rates, expect_clipped):
    settings = {"momentum": 0.9, "decay": 1e-4, "eta": 0.02}
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0, 1], rates)
    optimizer = optimizers.LARS(
        learning_rate=schedule, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.02, clip_lr=True
    )
    kernel, bias = run(optimizer, [W, B], zip(GW + [GW[0]], GB + [GB[0]], strict=True))
    expected, clipped = solo_learn_lars_reference(W, GW + [GW[0]], rates, **settings)
    assert clipped == expect_clipped
    np.testing.assert_allclose(kernel, expected, rtol=1e-6)
    # Biases (excluded): plain torch-style momentum SGD on the raw gradient, undecayed.
    expected_bias, _ = solo_learn_lars_reference(B, GB + [GB[0]], rates, **settings, adapt=False)
    np.testing.assert_allclose(bias, expected_bias, rtol=1e-6)
    if all(clipped):
        # Clipped, a step is lr per unit gradient; SimCLR's, lr * eta ||w|| / ||g||, about
        # 0.13 times that here.
        simclr = optimizers.LARS(
            learning_rate=schedule, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.02
        )
        (unclipped,) = run(simclr, [W], zip(GW + [GW[0]]))
        assert np.abs(expected - W).sum() > 5 * np.abs(unclipped - W).sum()


def test_lars_clip_lr_zero_gradient_is_not_decayed():
    # solo-learn adds the decay only where both norms are nonzero (lars.py line 141).
    optimizer = optimizers.LARS(learning_rate=0.5, weight_decay=0.1, trust_coefficient=0.02, clip_lr=True)
    (kernel,) = run(optimizer, [W], [[np.zeros_like(W)]])
    np.testing.assert_array_equal(kernel, W)


def torch_sgd_reference(w, grads, rates, momentum, decay):
    """torch.optim.SGD.step with weight_decay (torch/optim/sgd.py, _single_tensor_sgd)."""
    w, v = w.astype("float64"), np.zeros_like(w, dtype="float64")
    for g, lr in zip(grads, rates, strict=True):
        v = momentum * v + g + decay * w
        w = w - lr * v
    return w


def test_coupled_decay_is_torch_sgd():
    rates = [0.1, 0.05, 0.02]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0, 1], rates)
    settings = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.05}
    grads = list(zip(GW + [GW[1]], GB + [GB[1]], strict=True))
    coupled = make_optimizer({**settings, "weight_decay_mode": "coupled"}, learning_rate=schedule)
    kernel, bias = run(coupled, [W, B], grads)
    np.testing.assert_allclose(kernel, torch_sgd_reference(W, GW + [GW[1]], rates, 0.9, 0.05), rtol=1e-6)
    # PyTorch decays biases and norms too (SimSiam's and solo-learn's SimSiam recipes do).
    np.testing.assert_allclose(bias, torch_sgd_reference(B, GB + [GB[1]], rates, 0.9, 0.05), rtol=1e-6)
    decoupled_kernel, decoupled_bias = run(make_optimizer(settings, learning_rate=schedule), [W, B], grads)
    assert not np.allclose(decoupled_kernel, kernel, rtol=1e-3)
    assert not np.allclose(decoupled_bias, bias, rtol=1e-3)


def test_coupled_decay_alone_shrinks_about_ten_times_more():
    # Zero gradients, momentum 0.9: the coupled decay accumulates in the buffer.
    settings = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.01}
    zeros = [[np.zeros_like(W)]] * 30
    (coupled,) = run(make_optimizer({**settings, "weight_decay_mode": "coupled"}), [W], zeros)
    (decoupled,) = run(make_optimizer(settings), [W], zeros)
    np.testing.assert_allclose(decoupled, W * (1 - 0.1 * 0.01) ** 30, rtol=1e-6)
    ratio = np.log(coupled / W).mean() / np.log(decoupled / W).mean()
    assert 5 < ratio < 10  # the buffer's 1 / (1 - 0.9) = 10, not yet reached after 30 steps


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "lars"])
def test_bias_lr_factor_scales_the_steps_of_vectors(name):
    settings = {"name": name, "learning_rate": 0.1}
    grads = list(zip(GW, GB, strict=True))
    kernel, bias = run(make_optimizer(settings), [W, B], grads)
    kernel_f, bias_f = run(make_optimizer({**settings, "bias_lr_factor": 0.024}), [W, B], grads)
    np.testing.assert_allclose(kernel_f, kernel, rtol=1e-6)
    # Every one of these steps is linear in the rate (LARS: its excluded biases are plain SGD).
    # (float32 rounding of B + step: about 1e-7)
    np.testing.assert_allclose(bias_f - B, 0.024 * (bias - B), rtol=1e-3, atol=2e-7)
    assert np.abs(bias - B).min() > 1e-3


def scoped(values):
    """keras.Variables whose paths put them under layers: {"predictor/kernel": array}."""
    variables = []
    for path, value in values.items():
        *scopes, weight = path.split("/")
        with contextlib.ExitStack() as stack:
            for scope in scopes:
                stack.enter_context(keras.name_scope(scope))
            variables.append(keras.Variable(value, name=weight))
        assert variables[-1].path == path
    return variables


def test_fixed_lr_for_ignores_the_schedule():
    # Warmup from 0: at step 0 the scheduled variables stay put, the predictor's do not.
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.0, 0.01])
    optimizer = make_optimizer(
        {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9, "fixed_lr_for": ["predictor"]},
        learning_rate=schedule,
    )
    variables = scoped({"model/predictor/dense/bias": B, "encoder/dense/bias": B, "predictor_x/bias": B})
    for g in GB:
        optimizer.apply([keras.ops.convert_to_tensor(g)] * 3, variables)
    head, encoder, lookalike = (np.asarray(v) for v in variables)
    # Keras' SGD: m <- 0.9 m - lr g; w <- w + m.
    np.testing.assert_allclose(head, B - 0.5 * GB[0] - (0.9 * 0.5 * GB[0] + 0.5 * GB[1]), rtol=1e-6)
    np.testing.assert_allclose(encoder, B - 0.01 * GB[1], rtol=1e-6)
    np.testing.assert_allclose(lookalike, encoder)  # a layer name, not a prefix of one
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(0.01)


def test_fixed_lr_for_sets_the_rate_of_solo_learn_lars_clip():
    rates = [0.0, 0.01, 0.01]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0, 1], rates)
    settings = {"name": "lars", "learning_rate": 0.5, "weight_decay": 1e-4, "trust_coefficient": 0.02}
    optimizer = make_optimizer(
        {**settings, "clip_lr": True, "fixed_lr_for": ["predictor"]}, learning_rate=schedule
    )
    variables = scoped({"predictor/kernel": W, "encoder/kernel": W})
    grads = GW + [GW[0]]
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)] * 2, variables)
    head, encoder = (np.asarray(v) for v in variables)
    reference = {"momentum": 0.9, "decay": 1e-4, "eta": 0.02}
    expected_head, head_clipped = solo_learn_lars_reference(W, grads, [0.5] * 3, **reference)
    expected_encoder, encoder_clipped = solo_learn_lars_reference(W, grads, rates, **reference)
    assert (head_clipped, encoder_clipped) == ([False] * 3, [True] * 3)
    np.testing.assert_allclose(head, expected_head, rtol=1e-6)
    np.testing.assert_allclose(encoder, expected_encoder, rtol=1e-6)


def test_fixed_lr_variables_are_decayed_at_their_rate():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.0, 0.01])
    optimizer = make_optimizer(
        {"name": "sgd", "learning_rate": 0.5, "weight_decay": 0.1, "fixed_lr_for": ["predictor"]},
        learning_rate=schedule,
    )
    variables = scoped({"predictor/kernel": W, "encoder/kernel": W, "predictor/bias": B})
    for _ in range(2):
        optimizer.apply([keras.ops.zeros(v.shape) for v in variables], variables)
    head, encoder, bias = (np.asarray(v) for v in variables)
    np.testing.assert_allclose(head, W * (1 - 0.5 * 0.1) ** 2, rtol=1e-6)
    np.testing.assert_allclose(encoder, W * (1 - 0.0 * 0.1) * (1 - 0.01 * 0.1), rtol=1e-6)
    np.testing.assert_array_equal(bias, B)


def test_fixed_lr_for_an_absent_layer_fails_when_built():
    optimizer = make_optimizer({"name": "sgd", "learning_rate": 0.1, "fixed_lr_for": ["predictor"]})
    with pytest.raises(
        ValueError, match="fixed_lr_for: no trainable variable belongs to a layer named 'predictor'"
    ):
        optimizer.build(scoped({"encoder/kernel": W}))


def test_new_settings_round_trip_and_resume(tmp_path):
    settings = {
        "name": "sgd",
        "learning_rate": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "weight_decay_mode": "coupled",
        "fixed_lr_for": ["predictor"],
        "bias_lr_factor": 0.5,
    }
    optimizer = make_optimizer(settings)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(again) is optimizers.SGD and again.get_config() == optimizer.get_config()
    assert (again.weight_decay_mode, again.coupled_weight_decay, again.fixed_lr_for) == (
        "coupled",
        5e-4,
        ("predictor",),
    )
    lars = make_optimizer({"name": "lars", "learning_rate": 1.0, "trust_coefficient": 0.02, "clip_lr": True})
    assert keras.optimizers.deserialize(keras.optimizers.serialize(lars)).clip_lr is True

    def model(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dense(4, name="encoder"),
                keras.layers.Dense(2, name="predictor"),
            ]
        )

    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    first = model(0)
    first.compile(optimizer=make_optimizer(settings), loss="mse")
    first.fit(x, x[:, :2], epochs=2, batch_size=4, verbose=0)
    first.save_weights(tmp_path / "state.weights.h5")
    second = model(1)
    second.compile(optimizer=make_optimizer(settings), loss="mse")
    second.optimizer.build(second.trainable_variables)  # as selfsup.training._Resume.restore
    second.load_weights(tmp_path / "state.weights.h5")
    for a, b in zip(first.optimizer.variables, second.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    first.fit(x, x[:, :2], epochs=1, batch_size=4, verbose=0)
    second.fit(x, x[:, :2], epochs=1, batch_size=4, verbose=0)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"name": "sgd", "learning_rate": 0.1, "clip_lr": True}, r"^optimizer\.clip_lr: only lars"),
        ({"name": "lars", "learning_rate": 0.1, "clip_lr": 1}, r"^optimizer\.clip_lr: must be true or false"),
        (
            {"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.1, "weight_decay_mode": "coupled"},
            r"^optimizer\.weight_decay_mode: coupled .* sgd only",
        ),
        (
            {"name": "lars", "learning_rate": 0.1, "weight_decay_mode": "coupled"},
            r"^optimizer\.weight_decay_mode: lars always adds its decay",
        ),
        (
            {"name": "adam", "learning_rate": 0.1, "weight_decay_mode": "decoupled"},
            r"^optimizer\.weight_decay_mode: adam",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "weight_decay_mode": "l2"},
            r"^optimizer\.weight_decay_mode: must be",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "bias_lr_factor": 0},
            r"^optimizer\.bias_lr_factor: must be > 0",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "bias_lr_factor": "0.1"},
            r"^optimizer\.bias_lr_factor: must be a number",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "fixed_lr_for": "predictor"},
            r"^optimizer\.fixed_lr_for: must be a non-empty list",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "fixed_lr_for": []},
            r"^optimizer\.fixed_lr_for: must be a non-empty list",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "fixed_lr_for": ["a/b"]},
            r"^optimizer\.fixed_lr_for: must be a non-empty list",
        ),
        (
            {"name": "sgd", "learning_rate": 0.1, "fixed_lr_for": ["p", "p"]},
            r"^optimizer\.fixed_lr_for: .* names a layer twice",
        ),
    ],
)
def test_bad_new_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        check_optimizer(settings)
    with pytest.raises(ValueError, match=message):
        make_optimizer(settings)


def test_good_new_settings_pass():
    for settings in [
        {
            "name": "lars",
            "learning_rate": 1.0,
            "weight_decay": 1e-5,
            "trust_coefficient": 0.02,
            "clip_lr": True,
        },
        {"name": "lars", "learning_rate": 0.2, "weight_decay": 1e-6, "bias_lr_factor": 0.024},
        {
            "name": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "weight_decay_mode": "coupled",
        },
        {"name": "adamw", "learning_rate": 0.001, "weight_decay": 0.05, "weight_decay_mode": "decoupled"},
        {"name": "adam", "learning_rate": 0.001, "fixed_lr_for": ["predictor", "projector"]},
    ]:
        check_optimizer(settings)
