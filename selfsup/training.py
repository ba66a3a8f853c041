"""What every training job shares: threads and seeds, optimizers, NaN guard, resuming,
progress lines and the epoch history."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def configure(threads: int, seed: int, deterministic: bool = True) -> None:
    """Cap TensorFlow's thread pools at `threads`, seed every generator, and make ops
    deterministic unless `deterministic` is False (the study's `deterministic` setting:
    measured 21% slower on CPU, see benchmarks/results/profile.md).

    Must run before TensorFlow executes its first operation, so scripts call it first.
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    threads = max(1, int(threads))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()  # not public in TF 2.21; undoes an inherited TF_DETERMINISTIC_OPS
    keras.utils.set_random_seed(int(seed))


def thread_settings() -> dict[str, int]:
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "deterministic_ops": bool(tf_config.is_op_determinism_enabled()),
    }


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def set_precision(policy: str) -> None:
    """Keras' dtype policy for the models built next: float32, or mixed precision for
    accelerators (mixed_float16 gets loss scaling from Keras by itself)."""
    import keras

    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {policy!r}")
    keras.mixed_precision.set_global_policy(policy)


def make_optimizer(settings: dict, learning_rate=None):
    """An optimizer from {name, learning_rate, momentum?}; `learning_rate` (a float or a
    schedule, see selfsup.schedules) replaces the settings' rate when given."""
    import keras

    name = settings["name"]
    kwargs = {"learning_rate": settings["learning_rate"] if learning_rate is None else learning_rate}
    if name == "sgd":
        return keras.optimizers.SGD(momentum=settings.get("momentum", 0.0), **kwargs)
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        return keras.optimizers.AdamW(**kwargs)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose one of sgd, adam, adamw, rmsprop")


def _callbacks():
    import keras

    class NanGuard(keras.callbacks.Callback):
        """Fail loudly on a NaN loss; Keras' TerminateOnNaN would just stop and succeed."""

        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise TrainingDiverged(
                    f"training diverged: loss became {float(loss)} at epoch {self.epoch + 1}, "
                    f"batch {batch + 1}; lower the learning rate or check the input scaling"
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

    return NanGuard, RateLog, ProgressLine


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

    With `resume_dir`, the state after each completed epoch is kept there, and a later
    call with the same directory resumes from it; the directory is removed on success.
    Raises TrainingDiverged when the loss becomes NaN.
    """
    import keras

    NanGuard, RateLog, ProgressLine = _callbacks()
    # Schedules first, so the rate they set is the one logged, printed and kept in the history.
    callbacks = [
        NanGuard(),
        *(extra_callbacks or []),
        RateLog(),
        ProgressLine(epochs, samples_per_epoch, stream),
    ]
    history_path = None
    resumed_from = 0
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        history_path = resume_dir / "history.csv"
        if history_path.exists():
            resumed_from = len(pd.read_csv(history_path))
            print(f"resuming after epoch {resumed_from} from {resume_dir}", file=stream, flush=True)
        resume_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.BackupAndRestore(str(resume_dir / "state")))
        callbacks.append(keras.callbacks.CSVLogger(str(history_path), append=resumed_from > 0))
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=early_stopping["monitor"],
                patience=early_stopping["patience"],
                restore_best_weights=early_stopping.get("restore_best_weights", True),
                mode="auto",
            )
        )
    result = model.fit(
        train_data,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipelines shuffle, seeded
        verbose=0,
    )
    if history_path is not None:
        # Keras' CSVLogger adds empty val_* columns when there is no validation data.
        history = pd.read_csv(history_path).dropna(axis=1, how="all")
        shutil.rmtree(resume_dir)
    else:
        history = pd.DataFrame(result.history)
        history.insert(0, "epoch", np.arange(len(history)))
    history.attrs["resumed_from_epoch"] = resumed_from
    return history
