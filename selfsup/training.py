"""What every training job shares: threads and seeds, optimizers, NaN guard, resuming,
progress lines and the epoch history."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from selfsup import devices, optimizers
from selfsup.jobs import TENSORBOARD_VARIABLE
from selfsup.training_settings import PRECISIONS, check_optimizer, check_schedules


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def configure(threads: int, seed: int, deterministic: bool = True) -> None:
    """Size TensorFlow's thread pools to `threads`, seed every generator, and make ops
    deterministic unless `deterministic` is False (the study's `deterministic` setting:
    measured 21% slower on an AVX2 CPU, within the noise on an AVX-512 one; see
    benchmarks/results/profile.md).

    `threads` is the study's `threads`, never the job's Snakemake threads (capped by
    `--cores`): the intra-op count decides how TensorFlow splits its sums, and a
    different count gives different weights, even with deterministic ops
    (benchmarks/results/cores.md); the inter-op count changes nothing.
    Must run before TensorFlow executes its first operation, so scripts call it first.
    """

    devices.configure_tensorflow_gpus(tf=tf)
    threads = max(1, int(threads))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    set_determinism(deterministic)
    keras.utils.set_random_seed(int(seed))


def set_determinism(deterministic: bool) -> None:
    """Deterministic ops and every float sum computed as the code groups it, or
    TensorFlow's defaults (faster on some CPUs, and not repeatable bit for bit).

    Grappler's arithmetic optimizer rewrites a chain of additions into one AddN where the
    graph around it allows: only when each inner sum has no other reader, and only where
    it knows the shapes. The two groupings round differently, so a change elsewhere in the
    graph (one more reader of a step's loss, say) changes the last digit of a reported
    number: a loss metric's running total `t + (hinge + l2)` becomes `(t + hinge) + l2`.
    A resumed outlier filter once reported its epoch's loss one unit in the last place
    apart from the uninterrupted run that way, with identical weights. With the rewrite
    off, every sum is the one the code writes (tests/test_stages.py holds it)."""

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()  # not public in TF 2.21; undoes an inherited TF_DETERMINISTIC_OPS
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": not deterministic})


def thread_settings() -> dict[str, int]:

    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "deterministic_ops": bool(tf_config.is_op_determinism_enabled()),
        "arithmetic_rewrites": tf.config.optimizer.get_experimental_options().get(
            "arithmetic_optimization", True
        ),
    }


# Training steps run per call into TensorFlow: fewer trips through Python per epoch
# (benchmarks/results/profile.md). The steps and their order are the same, so results are
# too, bit for bit; Keras calls the callbacks' batch hooks once per call.
STEPS_PER_EXECUTION = 8


def set_precision(policy: str) -> None:
    """Keras' dtype policy for the models built next: float32, or mixed precision for
    accelerators (mixed_float16 gets loss scaling from Keras by itself)."""

    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {policy!r}")
    keras.mixed_precision.set_global_policy(policy)


def make_optimizer(settings: dict, learning_rate=None):
    """An optimizer from {name, learning_rate, momentum?, weight_decay?, weight_decay_mode?,
    trust_coefficient?, clip_lr?, bias_lr_factor?, fixed_lr_for?} (checked by
    check_optimizer); `learning_rate` (a float or a schedule, see learning_rate)
    replaces the settings' rate when given.

    weight_decay (default 0) is decoupled decay, w <- w - lr * weight_decay * w at each step
    before the update (see selfsup.optimizers), for sgd, adamw and rmsprop; lars adds it to
    the gradient as its authors do, and so does sgd with weight_decay_mode coupled
    (PyTorch's SGD). Biases and normalization parameters (1-D variables) are not decayed,
    except by coupled decay, which decays every variable as PyTorch does. momentum
    defaults to 0, or 0.9 for lars. clip_lr makes lars solo-learn's. bias_lr_factor
    multiplies the rate of 1-D variables; the variables of the layers in fixed_lr_for
    keep the settings' learning_rate, never the schedule's (see selfsup.optimizers)."""

    check_optimizer(settings)
    name = settings["name"]
    rate = settings["learning_rate"] if learning_rate is None else learning_rate
    decay = float(settings.get("weight_decay", 0.0))
    rates = {}
    if settings.get("bias_lr_factor", 1.0) != 1.0:
        rates["bias_lr_factor"] = float(settings["bias_lr_factor"])
    if settings.get("fixed_lr_for"):
        rates["fixed_lr_for"] = tuple(settings["fixed_lr_for"])
        rates["fixed_learning_rate"] = float(settings["learning_rate"])
    if name == "lars":
        return optimizers.LARS(
            learning_rate=rate,
            momentum=settings.get("momentum", 0.9),
            weight_decay=decay,
            trust_coefficient=settings.get("trust_coefficient", 0.001),
            clip_lr=settings.get("clip_lr", False),
            **rates,
        )
    if name == "adam":
        return (
            optimizers.Adam(learning_rate=rate, **rates)
            if rates
            else keras.optimizers.Adam(learning_rate=rate)
        )
    # Without decay or per-variable rates, Keras' own classes; with them, subclasses that
    # spare 1-D variables from decoupled decay and set each variable's rate.
    if name == "adamw":
        # Always explicit: Keras' AdamW would otherwise decay by 0.004, biases included.
        kind = optimizers.AdamW if decay or rates else keras.optimizers.AdamW
        return kind(learning_rate=rate, weight_decay=decay, **rates)
    kwargs = {"learning_rate": rate, "momentum": settings.get("momentum", 0.0)}
    if name == "sgd":
        mode = settings.get("weight_decay_mode", "decoupled")
        if decay or rates or mode == "coupled":
            return optimizers.SGD(weight_decay=decay or None, weight_decay_mode=mode, **kwargs, **rates)
        return keras.optimizers.SGD(**kwargs)
    if decay or rates:
        return optimizers.RMSprop(weight_decay=decay or None, **kwargs, **rates)
    return keras.optimizers.RMSprop(**kwargs)


def learning_rate(training_settings: dict, steps_per_epoch: int):
    """The optimizer's learning_rate: a per-step schedule for warmup_cosine, else the base rate."""
    check_schedules(training_settings)
    base = float(training_settings["optimizer"]["learning_rate"])
    schedule = training_settings.get("lr_schedule")
    if not schedule or schedule["name"] != "warmup_cosine":
        return base
    warmup_steps = int(schedule.get("warmup_epochs", 0)) * int(steps_per_epoch)
    decay_steps = max(1, int(training_settings["epochs"]) * int(steps_per_epoch) - warmup_steps)
    alpha = float(schedule.get("min_factor", 0.0))
    if warmup_steps == 0:
        # CosineDecay's warmup branch divides by warmup_steps, so leave it out entirely.
        return keras.optimizers.schedules.CosineDecay(base, decay_steps, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, alpha=alpha, warmup_target=base, warmup_steps=warmup_steps
    )


class NanGuard(keras.callbacks.Callback):
    """Fail loudly on a NaN loss; Keras' TerminateOnNaN would just stop and succeed."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # Every loss the model reports: a method that logs its loss terms
        # (VICReg's variance, say) diverges in one before the total shows it.
        for name, value in (logs or {}).items():
            if name.endswith("loss") and not math.isfinite(float(value)):
                raise TrainingDiverged(
                    f"training diverged: {name} became {float(value)} at epoch {self.epoch + 1}, "
                    f"by batch {batch + 1}; lower the learning rate or check the input scaling"
                )


class RateLog(keras.callbacks.Callback):
    """The learning rate in force during the epoch (as a schedule set it when the epoch
    began, before a plateau callback lowers it for the next), in its history row."""

    def on_epoch_begin(self, epoch, logs=None):
        self.rate = float(np.asarray(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.rate


class ProgressLine(keras.callbacks.Callback):
    """One line per epoch with metrics, throughput and time left, for logs."""

    def __init__(self, epochs, samples_per_epoch, stream):
        super().__init__()
        self.epochs, self.samples, self.stream = epochs, samples_per_epoch, stream

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        eta = seconds * (self.epochs - epoch - 1)
        print(
            f"epoch {epoch + 1}/{self.epochs}  {metrics}  {seconds:.1f} s "
            f"({self.samples / max(seconds, 1e-9):.0f} samples/s, about {eta:.0f} s left)",
            file=self.stream,
            flush=True,
        )


class EpochScalars(keras.callbacks.Callback):
    """Every number of the epoch's history row (loss terms, accuracy, the learning rate,
    kNN accuracy, embedding spread) as a TensorBoard scalar, at step = epoch number."""

    def __init__(self, folder):
        super().__init__()
        self.folder = str(folder)

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(self.folder)

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                value = float(value)
                if math.isfinite(value):
                    tf.summary.scalar(name, value, step=epoch + 1)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class EpochClock(keras.callbacks.Callback):
    """Sets the input pipeline's epoch counter (selfsup.inputs.batches) as each
    epoch begins. Keras opens the epoch's dataset iterator after on_epoch_begin, and
    the pipeline reads the counter when an iteration starts."""

    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def on_epoch_begin(self, epoch, logs=None):
        if self.counter is not None:
            self.counter.assign(epoch)


_fits_in_this_process = 0


class _Resume:
    """The state of a training after each completed epoch, in `resume_dir`, and how to
    bring it back, so that a killed and resumed job ends exactly as an uninterrupted one.

    What an epoch's end leaves behind: the model's weights with the optimizer's (its step
    count, moments and learning rate, so schedules continue), every other variable of the
    model (the state of its seed generators: dropout, in-model augmentation), the state of
    the callbacks that carry some (early stopping, plateau reduction: counters, best
    value and weights) and the history rows. The data order and every per-batch draw of
    the input pipeline are functions of (seed, epoch, batch) (selfsup.inputs), so
    they need no saving. Files are numbered by epoch and `state.json`, written last by an
    atomic rename, names the complete set: a job killed while saving resumes from the
    epoch before.
    """

    STATE = "state.json"

    def __init__(self, folder):
        self.folder = Path(folder)

    def load(self) -> dict | None:
        path = self.folder / self.STATE
        return json.loads(path.read_text()) if path.exists() else None

    @staticmethod
    def _extra_variables(model) -> list:
        """Model variables that save_weights leaves out: seed generator states."""
        saved = {id(v) for v in model.weights}
        return [v for v in model.variables if id(v) not in saved]

    def save(self, model, epoch: int, history: list, callbacks: list, stopped: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch{epoch}.weights.h5"
        arrays = f"epoch{epoch}.state.npz"
        model.save_weights(self.folder / weights)
        values = {f"variable{i}": np.asarray(v) for i, v in enumerate(self._extra_variables(model))}
        states = []
        for i, callback in enumerate(_stateful(callbacks)):
            state, best_weights = _callback_state(callback)
            states.append(state)
            for j, array in enumerate(best_weights or []):
                values[f"callback{i}_weight{j}"] = array
        np.savez(self.folder / arrays, **values)
        record = {
            "epoch": epoch,
            "stopped": stopped,
            "weights": weights,
            "arrays": arrays,
            "callbacks": states,
            "history": history,
        }
        partial = self.folder / (self.STATE + ".partial")
        partial.write_text(json.dumps(record))
        os.replace(partial, self.folder / self.STATE)
        # For people and tests watching a job: the epochs done so far.
        pd.DataFrame(history).to_csv(self.folder / "history.partial.csv", index=False)
        os.replace(self.folder / "history.partial.csv", self.folder / "history.csv")
        for path in self.folder.glob("epoch*"):
            if path.name not in (weights, arrays):
                path.unlink()

    def restore(self, model, record: dict, callbacks: list) -> None:
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / record["weights"])
        with np.load(self.folder / record["arrays"]) as arrays:
            for i, variable in enumerate(self._extra_variables(model)):
                variable.assign(arrays[f"variable{i}"])
            for i, (callback, state) in enumerate(
                zip(_stateful(callbacks), record["callbacks"], strict=True)
            ):
                count = sum(key.startswith(f"callback{i}_weight") for key in arrays.files)
                best_weights = [arrays[f"callback{i}_weight{j}"] for j in range(count)] if count else None
                _set_callback_state(callback, state, best_weights)


# The attributes of Keras' stateful callbacks that decide what their next epoch does.
_CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


def _stateful(callbacks: list) -> list:
    """The callbacks whose state `_CALLBACK_STATE` lists, in order."""

    kinds = tuple(getattr(keras.callbacks, name) for name in _CALLBACK_STATE)
    return [callback for callback in callbacks if isinstance(callback, kinds)]


def _callback_state(callback) -> tuple[dict, list | None]:

    for name, attributes in _CALLBACK_STATE.items():
        if isinstance(callback, getattr(keras.callbacks, name)):
            state = {key: _plain(getattr(callback, key, None)) for key in attributes}
            return state, getattr(callback, "best_weights", None)
    raise TypeError(f"no saved state for {type(callback).__name__}")


def _set_callback_state(callback, state: dict, best_weights) -> None:
    for key, value in state.items():
        setattr(callback, key, value)
    if hasattr(callback, "best_weights"):
        callback.best_weights = best_weights


def _plain(value):
    """A JSON value: Python numbers (floats round-trip exactly), None kept."""
    if isinstance(value, np.generic | np.ndarray):
        return value.item()
    return value


def fit(
    model,
    train_data,
    *,
    epochs: int,
    samples_per_epoch: int,
    validation_data=None,
    early_stopping: dict | None = None,
    extra_callbacks: list | None = None,
    resume_dir: str | os.PathLike | None = None,
    stream=sys.stderr,
) -> pd.DataFrame:
    """Train `model` and return its per-epoch history.

    When `train_data` comes from `selfsup.inputs.batches`, its epoch counter is set
    at the beginning of every epoch, so its order and draws are those of that epoch.
    With `resume_dir`, the state after each completed epoch is kept there (see
    `_Resume`), and a later call with the same directory, on a model built afresh the
    same way, resumes from it and ends with the same weights and history as a run never
    interrupted; the directory is removed on success.
    Raises TrainingDiverged when the loss becomes NaN.
    """

    global _fits_in_this_process
    # Schedules first, so the rate they set is the one logged, printed and kept in the history.
    callbacks = [
        EpochClock(getattr(train_data, "epoch_counter", None)),
        NanGuard(),
        *(extra_callbacks or []),
        RateLog(),
        ProgressLine(epochs, samples_per_epoch, stream),
    ]
    if os.environ.get(TENSORBOARD_VARIABLE):
        _fits_in_this_process += 1
        folder = Path(os.environ[TENSORBOARD_VARIABLE]) / f"fit{_fits_in_this_process}"
        callbacks.append(EpochScalars(folder))
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=early_stopping["monitor"],
                patience=early_stopping["patience"],
                restore_best_weights=early_stopping.get("restore_best_weights", True),
                mode="auto",
            )
        )
    resumed_from = 0
    keeper = None
    if resume_dir is not None:
        keeper = _Resume(resume_dir)
        record = keeper.load()
        if record is not None:
            resumed_from = record["epoch"]
            print(f"resuming after epoch {resumed_from} from {resume_dir}", file=stream, flush=True)
        # Last: it restores the other callbacks' state after their own on_train_begin
        # has reset it, and saves it after their on_epoch_end.
        callbacks.append(ResumeCallback(keeper, record, list(callbacks), epochs))
    result = model.fit(
        train_data,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipelines shuffle, seeded
        verbose=0,
    )
    if keeper is not None:
        history = pd.DataFrame(callbacks[-1].history)
        shutil.rmtree(resume_dir, ignore_errors=True)
    else:
        history = pd.DataFrame(result.history)
        history.insert(0, "epoch", np.arange(len(history)))
    history.attrs["resumed_from_epoch"] = resumed_from
    return history


class ResumeCallback(keras.callbacks.Callback):
    """Brings `record` back when training begins; saves the state after every epoch."""

    def __init__(self, keeper: _Resume, record: dict | None, others: list, epochs: int):
        super().__init__()
        self.keeper, self.record, self.others, self.epochs = keeper, record, others, epochs
        self.history = list(record["history"]) if record else []

    def on_train_begin(self, logs=None):
        if self.record is None:
            return
        self.keeper.restore(self.model, self.record, self.others)
        # Keras' own resume hook (BackupAndRestore sets it too); a run that early
        # stopping had ended trains no further epoch.
        self.model._initial_epoch = self.epochs if self.record["stopped"] else self.record["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{key: _plain(value) for key, value in (logs or {}).items()}}
        self.history.append({key: float(v) if key != "epoch" else v for key, v in row.items()})
        self.keeper.save(self.model, epoch + 1, self.history, self.others, bool(self.model.stop_training))

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # Keras never resets it: a later fit would skip epochs
