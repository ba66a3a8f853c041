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


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "lars")
_OPTIMIZER_KEYS = ("name", "learning_rate", "momentum", "weight_decay", "trust_coefficient")


def check_optimizer(settings: dict) -> None:
    """Reject optimizer settings that the schema lets through but make no sense together;
    messages start with "optimizer.<key>: "."""
    unknown = sorted(set(settings) - set(_OPTIMIZER_KEYS))
    if unknown:
        raise ValueError(
            f"optimizer.{unknown[0]}: unknown setting; optimizer takes {', '.join(_OPTIMIZER_KEYS)}"
        )
    name = settings.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    for key in ("learning_rate", "momentum", "weight_decay", "trust_coefficient"):
        value = settings.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"optimizer.{key}: must be a number, got {value!r}")
    momentum = settings.get("momentum", 0.0)
    if not 0 <= momentum <= 1:
        raise ValueError(f"optimizer.momentum: must be in [0, 1], got {momentum!r}")
    if momentum and name in ("adam", "adamw"):
        raise ValueError(
            f"optimizer.momentum: {name} takes no momentum (its first-moment average plays that "
            "role); remove it, or use sgd, rmsprop or lars"
        )
    decay = settings.get("weight_decay", 0.0)
    if decay < 0:
        raise ValueError(f"optimizer.weight_decay: must be >= 0, got {decay!r}")
    if decay and name == "adam":
        # Adam "with weight decay" means an L2 term in the gradient to some (PyTorch's Adam)
        # and decoupled decay to others (Keras' Adam, which is then AdamW): make it explicit.
        raise ValueError(
            "optimizer.weight_decay: adam with weight decay is ambiguous (L2 penalty or decoupled "
            "decay); use name adamw, whose decay is decoupled (Loshchilov & Hutter)"
        )
    if "trust_coefficient" in settings:
        if name != "lars":
            raise ValueError(f"optimizer.trust_coefficient: only lars takes it, not {name}; remove it")
        if not settings["trust_coefficient"] > 0:
            raise ValueError(
                f"optimizer.trust_coefficient: must be > 0, got {settings['trust_coefficient']!r}"
            )


def make_optimizer(settings: dict, learning_rate=None):
    """An optimizer from {name, learning_rate, momentum?, weight_decay?, trust_coefficient?}
    (checked by check_optimizer); `learning_rate` (a float or a schedule, see
    selfsup.schedules) replaces the settings' rate when given.

    weight_decay (default 0) is decoupled decay, w <- w - lr * weight_decay * w at each step
    before the update (see selfsup.optimizers), for sgd, adamw and rmsprop; lars adds it to
    the gradient as its authors do. Either way biases and normalization parameters (1-D
    variables) are not decayed. momentum defaults to 0, or 0.9 for lars."""
    import keras

    from selfsup import optimizers

    check_optimizer(settings)
    name = settings["name"]
    rate = settings["learning_rate"] if learning_rate is None else learning_rate
    decay = float(settings.get("weight_decay", 0.0))
    if name == "lars":
        return optimizers.LARS(
            learning_rate=rate,
            momentum=settings.get("momentum", 0.9),
            weight_decay=decay,
            trust_coefficient=settings.get("trust_coefficient", 0.001),
        )
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    # Without decay, Keras' own classes; with it, subclasses that spare 1-D variables.
    if name == "adamw":
        # Always explicit: Keras' AdamW would otherwise decay by 0.004, biases included.
        return (optimizers.AdamW if decay else keras.optimizers.AdamW)(learning_rate=rate, weight_decay=decay)
    kwargs = {"learning_rate": rate, "momentum": settings.get("momentum", 0.0)}
    if name == "sgd":
        return optimizers.SGD(weight_decay=decay, **kwargs) if decay else keras.optimizers.SGD(**kwargs)
    return optimizers.RMSprop(weight_decay=decay, **kwargs) if decay else keras.optimizers.RMSprop(**kwargs)


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
            # Every loss the model reports: a method that logs its loss terms
            # (VICReg's variance, say) diverges in one before the total shows it.
            for name, value in (logs or {}).items():
                if name.endswith("loss") and not math.isfinite(float(value)):
                    raise TrainingDiverged(
                        f"training diverged: {name} became {float(value)} at epoch {self.epoch + 1}, "
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
