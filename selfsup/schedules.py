"""Learning-rate schedules, plateau reduction and best-epoch weights, from study settings.

A training section may hold (each optional; absent or None means off):
- lr_schedule: {name: step, boundaries, factors} or {name: warmup_cosine, warmup_epochs,
  min_factor}, scaling the optimizer's base learning rate;
- reduce_on_plateau: {monitor, factor, patience, min_learning_rate};
- keep_best: {monitor}: end training with the weights of the best epoch.
`check` validates them, `learning_rate` gives what the optimizer takes, and `callbacks`
the Keras callbacks that do the rest.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

SCHEDULES = ("step", "warmup_cosine")
KNOWN_KEYS = {
    "lr_schedule": {"name", "boundaries", "factors", "warmup_epochs", "min_factor"},
    "reduce_on_plateau": {"monitor", "factor", "patience", "min_learning_rate"},
    "keep_best": {"monitor"},
}
DEFAULT_MONITOR = "val_loss"
# Names of metrics that get better as they grow; everything else is treated like a loss.
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "iou")


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def mode(monitor: str) -> str:
    """The direction in which `monitor` improves: max for accuracy-like names, min for loss-like ones."""
    name = monitor.removeprefix("val_").lower()
    return "max" if any(word in name for word in _HIGHER_IS_BETTER) else "min"


def check(training_settings: dict) -> None:
    """Raise ValueError, naming the key, for inconsistent lr_schedule / reduce_on_plateau / keep_best."""
    for section, known in KNOWN_KEYS.items():
        value = training_settings.get(section)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{section} must be a mapping of settings or null, got {value!r}")
        unknown = sorted(set(value or {}) - known)
        if unknown:
            raise ValueError(
                f"{section}.{unknown[0]}: unknown setting; {section} takes {', '.join(sorted(known))}"
            )
    schedule = training_settings.get("lr_schedule")
    if schedule:
        _check_schedule(schedule, training_settings)
    plateau = training_settings.get("reduce_on_plateau")
    if plateau:
        if schedule and schedule.get("name") == "warmup_cosine":
            raise ValueError(
                "reduce_on_plateau: cannot be combined with lr_schedule warmup_cosine, which sets the "
                "rate at every step, so a plateau callback cannot change it; drop one of them"
            )
        factor = plateau.get("factor", 0.1)
        if not _is_number(factor) or not 0 < factor < 1:
            raise ValueError(f"reduce_on_plateau.factor must be between 0 and 1 (exclusive), got {factor!r}")
        patience = plateau.get("patience", 10)
        if not _is_int(patience) or patience < 0:
            raise ValueError(f"reduce_on_plateau.patience must be a non-negative integer, got {patience!r}")
        min_rate = plateau.get("min_learning_rate", 0.0)
        if not _is_number(min_rate) or min_rate < 0:
            raise ValueError(f"reduce_on_plateau.min_learning_rate must be >= 0, got {min_rate!r}")
    for section in ("reduce_on_plateau", "keep_best"):
        settings = training_settings.get(section)
        if not settings:
            continue
        monitor = settings.get("monitor", DEFAULT_MONITOR)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{section}.monitor must be a metric name such as val_loss, got {monitor!r}")
        if monitor.startswith("val_") and not training_settings.get("validation_split", 0):
            raise ValueError(
                f"{section}.monitor is {monitor!r}, but validation_split is 0, so there is no validation "
                f"set to compute it on; set validation_split, or monitor a training metric such as "
                f"{monitor.removeprefix('val_')!r}"
            )


def _check_schedule(schedule: dict, training_settings: dict) -> None:
    name = schedule.get("name")
    if name not in SCHEDULES:
        raise ValueError(f"lr_schedule.name: unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if name == "step":
        boundaries = schedule.get("boundaries")
        if (
            not isinstance(boundaries, list | tuple)
            or not boundaries
            or not all(_is_int(b) and b > 0 for b in boundaries)
            or any(a >= b for a, b in zip(boundaries, boundaries[1:], strict=False))
        ):
            raise ValueError(
                f"lr_schedule.boundaries must be a non-empty list of strictly increasing positive "
                f"integers (epochs), got {boundaries!r}"
            )
        factors = schedule.get("factors")
        if not isinstance(factors, list | tuple) or len(factors) != len(boundaries):
            raise ValueError(
                f"lr_schedule.factors must list one factor per boundary ({len(boundaries)}), got {factors!r}"
            )
        if not all(_is_number(f) and f > 0 for f in factors):
            raise ValueError(f"lr_schedule.factors must all be positive numbers, got {factors!r}")
    else:
        warmup = schedule.get("warmup_epochs", 0)
        epochs = training_settings.get("epochs")
        if not _is_int(warmup) or warmup < 0:
            raise ValueError(f"lr_schedule.warmup_epochs must be a non-negative integer, got {warmup!r}")
        if epochs is not None and warmup >= epochs:
            raise ValueError(
                f"lr_schedule.warmup_epochs ({warmup}) must be less than epochs ({epochs}), "
                f"or nothing is left to decay over"
            )
        min_factor = schedule.get("min_factor", 0.0)
        if not _is_number(min_factor) or not 0 <= min_factor <= 1:
            raise ValueError(f"lr_schedule.min_factor must be between 0 and 1, got {min_factor!r}")


def step_rate(schedule: dict, base: float, epoch: int) -> float:
    """The step schedule's rate at 0-based `epoch`."""
    rate = base
    for boundary, factor in zip(schedule["boundaries"], schedule["factors"], strict=True):
        # `>` on the 0-based index, as the Keras CIFAR-10 ResNet example: with boundary 80
        # the new rate starts at index 81, the 82nd epoch.
        if epoch > boundary:
            rate = base * factor
    return rate


def learning_rate(training_settings: dict, steps_per_epoch: int):
    """The optimizer's learning_rate: a per-step schedule for warmup_cosine, else the base rate."""
    check(training_settings)
    import keras

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


def callbacks(training_settings: dict, state_dir: str | os.PathLike | None = None, stream=sys.stderr) -> list:
    """Keras callbacks for the step schedule, reduce_on_plateau and keep_best (those set).

    `state_dir` keeps KeepBest's best weights across a killed and resumed job; use a
    directory that is removed when training completes, such as the resume directory.
    With both a step schedule and reduce_on_plateau, the schedule sets the rate again at
    the start of every epoch, undoing any reduction, as in the Keras CIFAR-10 example
    that combines them.
    """
    check(training_settings)
    import keras

    result = []
    schedule = training_settings.get("lr_schedule")
    if schedule and schedule["name"] == "step":
        base = float(training_settings["optimizer"]["learning_rate"])
        schedule = dict(schedule)

        # Computed from the epoch index alone, not the current rate, so a job resumed at a
        # later epoch gets the same rate as an uninterrupted one.
        def rate(epoch, current_rate=None):
            return step_rate(schedule, base, epoch)

        result.append(keras.callbacks.LearningRateScheduler(rate))
    plateau = training_settings.get("reduce_on_plateau")
    if plateau:
        monitor = plateau.get("monitor", DEFAULT_MONITOR)
        result.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                # Keras' "auto" mode fails on metrics it did not compile itself.
                mode=mode(monitor),
                factor=plateau.get("factor", 0.1),
                patience=plateau.get("patience", 10),
                min_lr=plateau.get("min_learning_rate", 0.0),
            )
        )
    keep_best = training_settings.get("keep_best")
    if keep_best:
        keep_best_class = _keep_best_class()
        result.append(
            keep_best_class(keep_best.get("monitor", DEFAULT_MONITOR), state_dir=state_dir, stream=stream)
        )
    return result


@functools.cache
def _keep_best_class():
    import keras

    class KeepBest(keras.callbacks.Callback):
        """Track `monitor` and end training with the weights of the epoch where it was best.

        With `state_dir`, the best weights and value are also written there on every
        improvement and read back when training begins, so a resumed job still ends with
        the best epoch's weights even when that epoch ran before the interruption.
        """

        WEIGHTS = "best.weights.h5"
        RECORD = "best.json"

        def __init__(self, monitor: str, state_dir=None, stream=sys.stderr):
            super().__init__()
            self.monitor = monitor
            self.mode = mode(monitor)
            self.state_dir = Path(state_dir) if state_dir is not None else None
            self.stream = stream
            self.best = None
            self.best_epoch = None
            self.best_weights = None

        def _better(self, value: float) -> bool:
            if self.best is None:
                return True
            return value > self.best if self.mode == "max" else value < self.best

        def on_train_begin(self, logs=None):
            self.best = self.best_epoch = self.best_weights = None
            if self.state_dir is not None and (self.state_dir / self.RECORD).exists():
                record = json.loads((self.state_dir / self.RECORD).read_text())
                if record["monitor"] == self.monitor and (self.state_dir / self.WEIGHTS).exists():
                    # The weights stay on disk until needed: loading them here would
                    # overwrite the state the job resumes from.
                    self.best, self.best_epoch = record["value"], record["epoch"]

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if self.monitor not in logs:
                raise ValueError(
                    f"keep_best.monitor {self.monitor!r} is not among the metrics of this training: "
                    f"{', '.join(sorted(logs)) or 'none'}"
                )
            value = float(logs[self.monitor])
            if math.isnan(value) or not self._better(value):
                return
            self.best, self.best_epoch = value, epoch
            self.best_weights = self.model.get_weights()
            if self.state_dir is not None:
                self._save()

        def _save(self):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Write both files aside, then rename, so a job killed mid-write leaves the
            # previous best intact rather than a torn file.
            weights = self.state_dir / ("partial." + self.WEIGHTS)
            record = self.state_dir / (self.RECORD + ".partial")
            self.model.save_weights(weights)
            record.write_text(
                json.dumps({"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch})
            )
            os.replace(weights, self.state_dir / self.WEIGHTS)
            os.replace(record, self.state_dir / self.RECORD)

        def on_train_end(self, logs=None):
            if self.best is None:
                return
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            else:
                self.model.load_weights(self.state_dir / self.WEIGHTS)
            print(
                f"keep_best: restoring the weights of epoch {self.best_epoch + 1} "
                f"({self.monitor} {self.best:.4f})",
                file=self.stream,
                flush=True,
            )

    return KeepBest


def __getattr__(name):
    # KeepBest subclasses a Keras class; defining it on first use keeps keras out of
    # `import selfsup.schedules`, which check() alone does not need.
    if name == "KeepBest":
        return _keep_best_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
