"""Learning-rate schedules, plateau reduction and best-epoch weights: their settings
(selfsup.training_settings), the optimizer's rate (selfsup.training.learning_rate) and
the callbacks (selfsup.callbacks)."""

from __future__ import annotations

import copy
import io
import json

import keras
import numpy as np
import pytest

from selfsup import callbacks, training_settings
from selfsup.training import learning_rate

# The reference study: Adam at 1e-3, as the Keras CIFAR-10 ResNet example.
REFERENCE = {
    "epochs": 200,
    "validation_split": 0.1,
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "lr_schedule": {"name": "step", "boundaries": [80, 120, 160, 180], "factors": [0.1, 0.01, 0.001, 0.0005]},
    "reduce_on_plateau": {
        "monitor": "val_loss",
        "factor": 0.316227766,
        "patience": 10,
        "min_learning_rate": 5.0e-7,
    },
    "keep_best": {"monitor": "val_accuracy"},
}


def settings(**changes) -> dict:
    """The reference settings with top-level keys replaced (None switches a feature off)."""
    result = copy.deepcopy(REFERENCE)
    result.update(changes)
    return result


def reference_rate(epoch):
    """lr_schedule of the Keras CIFAR-10 ResNet example, verbatim."""
    lr = 1e-3
    if epoch > 180:
        lr *= 0.5e-3
    elif epoch > 160:
        lr *= 1e-3
    elif epoch > 120:
        lr *= 1e-2
    elif epoch > 80:
        lr *= 1e-1
    return lr


def tiny_model(learning_rate=0.1, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    model.compile(keras.optimizers.SGD(learning_rate), "mse", jit_compile=False)
    return model


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


class LogValues(keras.callbacks.Callback):
    """Put `values[epoch]` into the logs as metric `name`, for the callbacks after it to see."""

    def __init__(self, name, values):
        super().__init__()
        self.name, self.values = name, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.name] = self.values[epoch]


class Record(keras.callbacks.Callback):
    """The learning rate each epoch starts with, and the weights each epoch ends with."""

    def __init__(self):
        super().__init__()
        self.rates, self.weights = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.rates[epoch] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = self.model.get_weights()


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def fit(model, callbacks, epochs, initial_epoch=0, **kwargs):
    x, y = tiny_data()
    return model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=0,
        **kwargs,
    )


# Step schedule


def test_step_schedule_reproduces_the_reference_study():
    (scheduler,) = callbacks.from_settings(settings(reduce_on_plateau=None, keep_best=None))
    assert isinstance(scheduler, keras.callbacks.LearningRateScheduler)
    expected = {
        0: 1e-3,
        80: 1e-3,
        81: 1e-4,
        120: 1e-4,
        121: 1e-5,
        160: 1e-5,
        161: 1e-6,
        180: 1e-6,
        181: 5e-7,
        199: 5e-7,
    }
    for epoch, rate in expected.items():
        # The current rate (second argument) must not matter: it may come from a resumed run.
        assert scheduler.schedule(epoch, 123.0) == pytest.approx(rate, rel=1e-12)
        assert scheduler.schedule(epoch, 123.0) == pytest.approx(reference_rate(epoch), rel=1e-12)
    for epoch in range(200):
        assert scheduler.schedule(epoch, 0.0) == pytest.approx(reference_rate(epoch), rel=1e-12)


def test_step_schedule_sets_the_rate_during_fit_and_after_a_resume():
    training = settings(
        epochs=4,
        optimizer={"name": "sgd", "learning_rate": 0.1},
        lr_schedule={"name": "step", "boundaries": [1], "factors": [0.1]},
        reduce_on_plateau=None,
        keep_best=None,
    )
    record = Record()
    fit(tiny_model(), callbacks.from_settings(training) + [record], epochs=4)
    assert record.rates == pytest.approx({0: 0.1, 1: 0.1, 2: 0.01, 3: 0.01})
    # A job resumed at epoch 3 (index 2) with the optimizer at its base rate.
    resumed = Record()
    fit(tiny_model(), callbacks.from_settings(training) + [resumed], epochs=4, initial_epoch=2)
    assert resumed.rates == pytest.approx({2: 0.01, 3: 0.01})


# Warmup + cosine


def test_warmup_cosine_rates():
    training = settings(
        epochs=10,
        optimizer={"name": "adam", "learning_rate": 0.01},
        lr_schedule={"name": "warmup_cosine", "warmup_epochs": 2, "min_factor": 0.1},
        reduce_on_plateau=None,
    )
    schedule = learning_rate(training, steps_per_epoch=5)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)

    def rate(step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    assert rate(0) == pytest.approx(0.0, abs=1e-9)
    assert rate(5) == pytest.approx(0.005)  # half way through the 10 warmup steps
    assert rate(10) == pytest.approx(0.01)  # end of warmup: the base rate
    # Half way through the 40 decay steps, the cosine is at the middle of its range.
    assert rate(30) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert rate(50) == pytest.approx(0.001)  # end: base * min_factor
    assert rate(80) == pytest.approx(0.001)  # and it stays there


def test_warmup_cosine_without_warmup_starts_at_the_base_rate():
    training = settings(
        epochs=4,
        lr_schedule={"name": "warmup_cosine", "warmup_epochs": 0},
        reduce_on_plateau=None,
    )
    schedule = learning_rate(training, steps_per_epoch=2)
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(1e-3)
    assert float(keras.ops.convert_to_numpy(schedule(8))) == pytest.approx(0.0, abs=1e-9)
    assert (
        callbacks.from_settings(
            settings(lr_schedule=training["lr_schedule"], epochs=4, reduce_on_plateau=None, keep_best=None)
        )
        == []
    )


def test_without_a_per_step_schedule_the_rate_is_the_base_float():
    assert learning_rate(settings(), steps_per_epoch=10) == 1e-3
    assert learning_rate(settings(lr_schedule=None), steps_per_epoch=10) == 1e-3


# check


def test_the_reference_settings_and_empty_ones_pass():
    training_settings.check_schedules(settings())
    training_settings.check_schedules({"epochs": 3, "optimizer": {"name": "adam", "learning_rate": 0.1}})
    training_settings.check_schedules(
        settings(lr_schedule=None, reduce_on_plateau=None, keep_best=None, validation_split=0)
    )
    # An empty section is off, like None.
    training_settings.check_schedules(
        settings(lr_schedule={}, reduce_on_plateau={}, keep_best={}, validation_split=0)
    )
    assert callbacks.from_settings(settings(lr_schedule=None, reduce_on_plateau=None, keep_best=None)) == []


@pytest.mark.parametrize(
    "changes, key, words",
    [
        ({"lr_schedule": {"name": "linear"}}, "lr_schedule.name", "unknown schedule 'linear'"),
        (
            {"lr_schedule": {"name": "step", "boundaries": [80, 80], "factors": [0.1, 0.01]}},
            "lr_schedule.boundaries",
            "strictly increasing",
        ),
        (
            {"lr_schedule": {"name": "step", "boundaries": [120, 80], "factors": [0.1, 0.01]}},
            "lr_schedule.boundaries",
            "strictly increasing",
        ),
        (
            {"lr_schedule": {"name": "step", "boundaries": [0, 80], "factors": [0.1, 0.01]}},
            "lr_schedule.boundaries",
            "positive",
        ),
        (
            {"lr_schedule": {"name": "step", "boundaries": [8.5], "factors": [0.1]}},
            "lr_schedule.boundaries",
            "integers",
        ),
        ({"lr_schedule": {"name": "step", "factors": [0.1]}}, "lr_schedule.boundaries", "non-empty"),
        (
            {"lr_schedule": {"name": "step", "boundaries": [80, 120], "factors": [0.1]}},
            "lr_schedule.factors",
            "one factor per boundary (2)",
        ),
        (
            {"lr_schedule": {"name": "step", "boundaries": [80, 120], "factors": [0.1, 0]}},
            "lr_schedule.factors",
            "positive",
        ),
        (
            {"lr_schedule": {"name": "step", "boundaries": [80], "factors": [-0.1]}},
            "lr_schedule.factors",
            "positive",
        ),
        (
            {"lr_schedule": {"name": "step", "boundary": [80], "factors": [0.1]}},
            "lr_schedule.boundary",
            "unknown setting",
        ),
        (
            {"lr_schedule": {"name": "warmup_cosine", "warmup_epochs": 200}, "reduce_on_plateau": None},
            "lr_schedule.warmup_epochs",
            "less than epochs (200)",
        ),
        (
            {"lr_schedule": {"name": "warmup_cosine", "warmup_epochs": -1}, "reduce_on_plateau": None},
            "lr_schedule.warmup_epochs",
            "non-negative",
        ),
        (
            {"lr_schedule": {"name": "warmup_cosine", "min_factor": 2}, "reduce_on_plateau": None},
            "lr_schedule.min_factor",
            "between 0 and 1",
        ),
        (
            {"lr_schedule": {"name": "warmup_cosine", "warmup_epochs": 10}},
            "reduce_on_plateau",
            "cannot be combined",
        ),
        (
            {"reduce_on_plateau": {"monitor": "loss", "factor": 1.5}},
            "reduce_on_plateau.factor",
            "between 0 and 1",
        ),
        (
            {"reduce_on_plateau": {"monitor": "loss", "patience": -1}},
            "reduce_on_plateau.patience",
            "non-negative",
        ),
        ({"validation_split": 0, "keep_best": None}, "reduce_on_plateau.monitor", "no validation set"),
        ({"validation_split": 0, "reduce_on_plateau": None}, "keep_best.monitor", "no validation set"),
        ({"keep_best": {"monitor": "val_loss", "mode": "max"}}, "keep_best.mode", "unknown setting"),
        ({"lr_schedule": "step"}, "lr_schedule", "must be a mapping"),
    ],
)
def test_check_names_the_key(changes, key, words):
    with pytest.raises(ValueError) as err:
        training_settings.check_schedules(settings(**changes))
    message = str(err.value)
    assert message.startswith(key) and words in message


def test_check_explains_what_fixes_a_val_monitor_without_validation():
    with pytest.raises(ValueError) as err:
        training_settings.check_schedules(settings(validation_split=0, reduce_on_plateau=None))
    assert "set validation_split, or monitor a training metric such as 'accuracy'" in str(err.value)
    # Training metrics need no validation set.
    training_settings.check_schedules(
        settings(validation_split=0, reduce_on_plateau={"monitor": "loss"}, keep_best={"monitor": "accuracy"})
    )


def test_callbacks_and_learning_rate_check_first():
    with pytest.raises(ValueError, match="lr_schedule.factors"):
        callbacks.from_settings(settings(lr_schedule={"name": "step", "boundaries": [1], "factors": []}))
    with pytest.raises(ValueError, match="lr_schedule.name"):
        learning_rate(settings(lr_schedule={"name": "cosine"}), steps_per_epoch=1)


def test_mode_from_the_metric_name():
    assert training_settings.mode("val_accuracy") == "max"
    assert training_settings.mode("sparse_categorical_accuracy") == "max"
    assert training_settings.mode("val_auc") == "max"
    assert training_settings.mode("val_loss") == "min"
    assert training_settings.mode("loss") == "min"
    assert training_settings.mode("val_mean_squared_error") == "min"


# Reduce on plateau


def test_reduce_on_plateau_lowers_the_rate_on_a_flat_metric_down_to_the_floor():
    training = settings(
        optimizer={"name": "sgd", "learning_rate": 1e-3},
        lr_schedule=None,
        reduce_on_plateau={"monitor": "flat", "factor": 0.1, "patience": 1, "min_learning_rate": 5e-5},
        keep_best=None,
    )
    (plateau,) = callbacks.from_settings(training)
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    record = Record()
    fit(tiny_model(1e-3), [LogValues("flat", [1.0] * 5), plateau, record], epochs=5)
    # Best at epoch 1, no improvement at 2: reduce; again at 3, floored at 5e-5.
    assert record.rates == pytest.approx({0: 1e-3, 1: 1e-3, 2: 1e-4, 3: 5e-5, 4: 5e-5})


# Keep best


def test_keep_best_restores_the_best_epoch_and_says_so():
    stream = io.StringIO()
    keep = callbacks.KeepBest("score", stream=stream)
    record = Record()
    model = tiny_model()
    # A loss-like name, so lower is better: epoch index 1 is the best.
    fit(model, [LogValues("score", [3.0, 1.0, 2.0, 4.0]), record, keep], epochs=4)
    assert not same_weights(record.weights[1], record.weights[3])
    assert same_weights(model.get_weights(), record.weights[1])
    assert stream.getvalue() == "keep_best: restoring the weights of epoch 2 (score 1.0000)\n"


def test_keep_best_maximizes_accuracy_like_metrics():
    stream = io.StringIO()
    record = Record()
    model = tiny_model()
    fit(
        model,
        [
            LogValues("val_accuracy", [0.2, 0.5, 0.9, 0.4]),
            record,
            callbacks.KeepBest("val_accuracy", stream=stream),
        ],
        epochs=4,
    )
    assert same_weights(model.get_weights(), record.weights[2])
    assert "epoch 3 (val_accuracy 0.9000)" in stream.getvalue()


def test_keep_best_on_a_real_validation_loss_with_a_step_schedule():
    # A step up to a huge rate after epoch index 1 makes SGD overshoot: the last epochs are the worst.
    training = settings(
        epochs=4,
        optimizer={"name": "sgd", "learning_rate": 0.1},
        lr_schedule={"name": "step", "boundaries": [1], "factors": [50]},
        reduce_on_plateau=None,
        keep_best={"monitor": "val_loss"},
    )
    scheduler, keep = callbacks.from_settings(training, stream=io.StringIO())
    record = Record()
    model = tiny_model(learning_rate=0.1)
    history = fit(model, [scheduler, record, keep], epochs=4, validation_split=0.5)
    assert record.rates == pytest.approx({0: 0.1, 1: 0.1, 2: 5.0, 3: 5.0})
    val_loss = history.history["val_loss"]
    assert int(np.argmin(val_loss)) == 1 and val_loss[3] > val_loss[1]
    assert same_weights(model.get_weights(), record.weights[1])
    assert keep.best == pytest.approx(val_loss[1])


def test_keep_best_rejects_a_metric_training_does_not_log():
    with pytest.raises(
        ValueError, match="keep_best.monitor 'val_acc' is not among the metrics of this training: loss"
    ):
        fit(tiny_model(), [callbacks.KeepBest("val_acc", stream=io.StringIO())], epochs=1)


class Kill(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


def test_keep_best_survives_a_resume_through_state_dir(tmp_path):
    state = tmp_path / "state"
    values = [5.0, 1.0, 3.0, 4.0, 6.0]
    record = Record()
    model = tiny_model()
    with pytest.raises(KeyboardInterrupt):
        fit(
            model,
            [LogValues("score", values), record, callbacks.KeepBest("score", state_dir=state), Kill(2)],
            epochs=5,
        )
    assert json.loads((state / "best.json").read_text()) == {"monitor": "score", "value": 1.0, "epoch": 1}
    assert sorted(p.name for p in state.iterdir()) == ["best.json", "best.weights.h5"]
    # A new process: a fresh model given the last completed epoch's weights, as
    # BackupAndRestore would, continues at epoch index 3 with worse values only.
    stream = io.StringIO()
    resumed = tiny_model(seed=1)
    resumed.set_weights(record.weights[2])
    resumed_record = Record()
    keep = callbacks.KeepBest("score", state_dir=state, stream=stream)
    fit(resumed, [LogValues("score", values), resumed_record, keep], epochs=5, initial_epoch=3)
    assert same_weights(resumed.get_weights(), record.weights[1])
    assert not same_weights(resumed.get_weights(), resumed_record.weights[4])
    assert stream.getvalue() == "keep_best: restoring the weights of epoch 2 (score 1.0000)\n"


def test_keep_best_after_a_resume_prefers_a_better_new_epoch(tmp_path):
    state = tmp_path / "state"
    values = [5.0, 2.0, 3.0, 0.5, 6.0]
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_model(),
            [LogValues("score", values), callbacks.KeepBest("score", state_dir=state), Kill(2)],
            epochs=5,
        )
    record = Record()
    resumed = tiny_model(seed=1)
    stream = io.StringIO()
    keep = callbacks.KeepBest("score", state_dir=state, stream=stream)
    fit(resumed, [LogValues("score", values), record, keep], epochs=5, initial_epoch=3)
    assert same_weights(resumed.get_weights(), record.weights[3])
    assert json.loads((state / "best.json").read_text())["epoch"] == 3
    assert "epoch 4 (score 0.5000)" in stream.getvalue()


def test_keep_best_ignores_a_record_of_another_metric(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "best.json").write_text(json.dumps({"monitor": "loss", "value": -1.0, "epoch": 0}))
    record = Record()
    model = tiny_model()
    fit(
        model,
        [
            LogValues("score", [2.0, 1.0]),
            record,
            callbacks.KeepBest("score", state_dir=state, stream=io.StringIO()),
        ],
        epochs=2,
    )
    assert same_weights(model.get_weights(), record.weights[1])
