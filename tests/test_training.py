"""selfsup.training: thread and seed setup, optimizers, the NaN guard, resuming, history."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from selfsup.training import TrainingDiverged, fit, make_optimizer


def test_configure_caps_threads_and_seeds_everything():
    # Thread pools are fixed once TensorFlow has started, so this needs a fresh process.
    code = """
import json, random
import numpy as np, keras
from selfsup.training import configure, thread_settings
configure(threads=1, seed=5)
first = [random.random(), float(np.random.random()), float(keras.random.uniform(()))]
keras.utils.set_random_seed(5)
again = [random.random(), float(np.random.random()), float(keras.random.uniform(()))]
deterministic = thread_settings()
configure(threads=1, seed=5, deterministic=False)
print(json.dumps({**thread_settings(), "first": first, "again": again, "deterministic": deterministic}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["intra_op_threads"] == 1
    assert result["inter_op_threads"] == 1
    # Python, NumPy and Keras generators are all seeded by configure: re-seeding repeats them.
    assert result["first"] == result["again"]
    # Deterministic ops and sums as written by default; `deterministic: false` gives
    # TensorFlow's defaults back.
    assert result["deterministic"]["deterministic_ops"] is True
    assert result["deterministic"]["arithmetic_rewrites"] is False
    assert result["deterministic_ops"] is False
    assert result["arithmetic_rewrites"] is True


@pytest.mark.parametrize(
    "settings, kind",
    [
        ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, keras.optimizers.SGD),
        ({"name": "adam", "learning_rate": 0.1}, keras.optimizers.Adam),
        ({"name": "adamw", "learning_rate": 0.1}, keras.optimizers.AdamW),
        ({"name": "rmsprop", "learning_rate": 0.1}, keras.optimizers.RMSprop),
    ],
)
def test_make_optimizer(settings, kind):
    optimizer = make_optimizer(settings)
    assert type(optimizer) is kind
    assert float(optimizer.learning_rate) == pytest.approx(0.1)
    if settings["name"] == "sgd":
        assert optimizer.momentum == 0.9


def test_make_optimizer_sgd_momentum_defaults_to_zero():
    assert make_optimizer({"name": "sgd", "learning_rate": 0.01}).momentum == 0.0


def test_make_optimizer_unknown():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; choose one of sgd, adam, adamw, rmsprop"):
        make_optimizer({"name": "lamb", "learning_rate": 0.1})


def tiny_model(optimizer, seed=0, loss="sparse_categorical_crossentropy"):
    keras.utils.set_random_seed(seed)
    units, activation = (4, "softmax") if loss.startswith("sparse") else (1, None)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(units, activation=activation),
        ]
    )
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"] if units > 1 else None)
    return model


def tiny_data(n=64, batch_size=16):
    rng = np.random.default_rng(0)
    x = rng.random((n, 8)).astype(np.float32)
    y = (x[:, 0] * 4).astype(np.int64).clip(0, 3)
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def test_fit_returns_history_per_epoch():
    x, y, data = tiny_data()
    stream = io.StringIO()
    history = fit(
        tiny_model(keras.optimizers.Adam(0.01)),
        data,
        epochs=3,
        samples_per_epoch=64,
        validation_data=(x, y),
        stream=stream,
    )
    assert list(history.epoch) == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.columns)
    assert np.isfinite(history.loss).all()
    assert history.attrs["resumed_from_epoch"] == 0
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "samples/s" in lines[0]


def test_nan_loss_raises():
    _, _, data = tiny_data()
    with pytest.raises(
        TrainingDiverged, match=r"loss became nan at epoch 1, by batch \d+; lower the learning rate"
    ):
        fit(
            tiny_model(keras.optimizers.SGD(1e30)), data, epochs=3, samples_per_epoch=64, stream=io.StringIO()
        )


def test_infinite_loss_raises():
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.random((64, 8)), rng.random((64, 1)))).batch(8)
    with pytest.raises(TrainingDiverged, match="loss became inf"):
        fit(
            tiny_model(keras.optimizers.SGD(1e30), loss="mse"),
            data,
            epochs=3,
            samples_per_epoch=64,
            stream=io.StringIO(),
        )


def test_early_stopping_stops():
    # A zero learning rate never improves the loss: stop after 1 + patience epochs.
    _, _, data = tiny_data()
    history = fit(
        tiny_model(keras.optimizers.SGD(0.0)),
        data,
        epochs=10,
        samples_per_epoch=64,
        early_stopping={"monitor": "loss", "patience": 2},
        stream=io.StringIO(),
    )
    assert len(history) == 3


class Interrupted(Exception):
    """Stands for the job being killed."""


class DyingModel(keras.Sequential):
    """A model whose training step dies once `die_after_steps` steps are done, as a killed job."""

    die_after_steps = None

    def train_step(self, data):
        if self.die_after_steps is not None and int(self.optimizer.iterations) >= self.die_after_steps:
            raise Interrupted(f"killed after {int(self.optimizer.iterations)} steps")
        return super().train_step(data)


def test_resume_after_interruption(tmp_path):
    x, y, data = tiny_data()
    resume_dir = tmp_path / "resume"
    keras.utils.set_random_seed(1)
    first = DyingModel(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    # Eager steps, so the step can look at the step count in Python and die between epochs.
    first.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=True,
    )
    first.die_after_steps = 2 * 4  # two epochs of 4 batches
    with pytest.raises(Interrupted, match="killed after 8 steps"):
        fit(first, data, epochs=4, samples_per_epoch=64, resume_dir=resume_dir, stream=io.StringIO())
    assert (resume_dir / "history.csv").read_text().count("\n") == 3  # header + 2 epochs
    after_two_epochs = first.get_weights()
    # A second copy of the saved state, to check what a restart restores.
    shutil.copytree(resume_dir, tmp_path / "copy")

    stream = io.StringIO()
    history = fit(
        tiny_model(keras.optimizers.SGD(0.5), seed=2),
        data,
        epochs=4,
        samples_per_epoch=64,
        resume_dir=resume_dir,
        stream=stream,
    )
    assert len(history) == 4
    assert list(history.epoch) == [0, 1, 2, 3]
    assert history.attrs["resumed_from_epoch"] == 2
    assert np.isfinite(history.loss).all()
    assert not resume_dir.exists()
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"resuming after epoch 2 from {resume_dir}"
    assert [line.split("  ")[0] for line in lines[1:]] == ["epoch 3/4", "epoch 4/4"]

    # A restart asking for the 2 epochs already done trains nothing: it only restores the
    # weights of the interrupted run into a freshly initialized model.
    restarted = tiny_model(keras.optimizers.SGD(0.5), seed=3)
    history = fit(
        restarted, data, epochs=2, samples_per_epoch=64, resume_dir=tmp_path / "copy", stream=io.StringIO()
    )
    assert len(history) == 2
    for restored, saved in zip(restarted.get_weights(), after_two_epochs, strict=True):
        np.testing.assert_array_equal(restored, saved)


def test_resume_dir_without_interruption(tmp_path):
    _, _, data = tiny_data()
    history = fit(
        tiny_model(keras.optimizers.Adam(0.01)),
        data,
        epochs=2,
        samples_per_epoch=64,
        resume_dir=tmp_path / "resume",
        stream=io.StringIO(),
    )
    assert list(history.epoch) == [0, 1]
    assert history.attrs["resumed_from_epoch"] == 0
    assert not (tmp_path / "resume").exists()
    # The same columns as without resume_dir: no empty val_* ones without validation data,
    # and the learning rate in force during each epoch.
    assert sorted(history.columns) == ["accuracy", "epoch", "learning_rate", "loss"]
    np.testing.assert_allclose(history["learning_rate"], [0.01, 0.01], rtol=1e-6)
    plain = fit(
        tiny_model(keras.optimizers.Adam(0.01)), data, epochs=1, samples_per_epoch=64, stream=io.StringIO()
    )
    assert sorted(plain.columns) == sorted(history.columns)


def test_precision_policies_and_their_errors():
    import keras

    from selfsup.training import set_precision

    try:
        set_precision("mixed_bfloat16")
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
        with pytest.raises(
            ValueError, match="precision must be one of float32, mixed_bfloat16, mixed_float16"
        ):
            set_precision("float16")
    finally:
        set_precision("float32")


def test_jit_compile_setting_reaches_the_model():
    import keras

    from selfsup.stages.common import compile_model as _compile

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    settings = {"optimizer": {"name": "adam", "learning_rate": 0.01}, "epochs": 2, "jit_compile": True}
    _compile(model, settings, steps_per_epoch=3, loss="mse")
    assert model.jit_compile is True
    _compile(model, {**settings, "jit_compile": False}, steps_per_epoch=3, loss="mse")
    assert model.jit_compile is False


def test_nan_in_any_reported_loss_raises():
    """A model that reports its loss terms: a NaN in one of them stops training even while
    the total it optimizes is still finite."""

    class TermsModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)
            self.total = keras.metrics.Mean(name="loss")
            self.term = keras.metrics.Mean(name="variance_loss")

        def call(self, x):
            return self.dense(x)

        @property
        def metrics(self):
            return [self.total, self.term]

        def train_step(self, data):
            x, _ = data
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self(x)))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            self.total.update_state(loss)
            self.term.update_state(tf.math.log(-tf.ones(())))  # NaN
            return {m.name: m.result() for m in self.metrics}

    model = TermsModel()
    model.compile(optimizer="sgd")
    data = tf.data.Dataset.from_tensor_slices((np.ones((16, 4), "float32"), np.ones((16, 1)))).batch(8)
    with pytest.raises(TrainingDiverged, match=r"variance_loss became nan at epoch 1, by batch 1"):
        fit(model, data, epochs=2, samples_per_epoch=16, stream=io.StringIO())


def test_several_steps_per_execution_train_exactly_as_one(monkeypatch):
    # A pure speed-up: the same steps in the same order, so the same weights and history,
    # bit for bit, including an epoch whose step count is no multiple of it.
    from selfsup import training
    from selfsup.inputs import batches
    from selfsup.stages import common

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 6, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 100)
    settings = {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, "epochs": 3}

    def train(steps_per_execution):
        monkeypatch.setattr(training, "STEPS_PER_EXECUTION", steps_per_execution)
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
        data = batches(images, np.arange(100), labels, batch_size=8, shuffle_seed=1)  # 13 steps
        common.compile_model(
            model, settings, 13, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        assert model.steps_per_execution == steps_per_execution
        history = fit(model, data, epochs=3, samples_per_epoch=100, stream=io.StringIO())
        return model.get_weights(), history

    assert training.STEPS_PER_EXECUTION > 1
    from test_stages import deterministic_ops

    with deterministic_ops():  # as jobs train
        (one, one_history), (several, several_history) = train(1), train(training.STEPS_PER_EXECUTION)
    for a, b in zip(one, several, strict=True):
        assert np.array_equal(a, b)
    pd.testing.assert_frame_equal(one_history, several_history, check_exact=True)


def test_nan_loss_raises_with_several_steps_per_execution():
    from selfsup.stages import common

    _, _, data = tiny_data()
    model = tiny_model(keras.optimizers.SGD(1e30))
    settings = {"optimizer": {"name": "sgd", "learning_rate": 1e30}, "epochs": 3}
    common.compile_model(model, settings, 8, loss="sparse_categorical_crossentropy")
    assert model.steps_per_execution > 1
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 1"):
        fit(model, data, epochs=3, samples_per_epoch=64, stream=io.StringIO())


def test_each_fit_writes_its_epochs_as_tensorboard_scalars(tmp_path, monkeypatch):
    from tensorflow.python.summary.summary_iterator import summary_iterator

    from selfsup import training

    monkeypatch.setenv(training.TENSORBOARD_VARIABLE, str(tmp_path / "job.tensorboard"))
    x, y, data = tiny_data()
    fit(tiny_model(keras.optimizers.Adam(0.01)), data, epochs=3, samples_per_epoch=64, stream=io.StringIO())
    history = fit(
        tiny_model(keras.optimizers.Adam(0.01)),
        data,
        epochs=2,
        samples_per_epoch=64,
        validation_data=(x, y),
        stream=io.StringIO(),
    )
    runs = sorted(p.name for p in (tmp_path / "job.tensorboard").iterdir())
    assert len(runs) == 2 and runs[0].startswith("fit") and runs[1].startswith("fit")
    scalars = {}
    (events,) = (tmp_path / "job.tensorboard" / runs[1]).glob("events.out.tfevents*")
    for event in summary_iterator(str(events)):
        for value in event.summary.value:
            scalars[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    # The second fit's history, every column, epochs 1 and 2.
    for epoch, row in history.iterrows():
        for name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert scalars[(name, epoch + 1)] == pytest.approx(row[name], rel=1e-6)
