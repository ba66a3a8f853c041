"""The Keras callbacks a study's settings ask for: the step schedule, plateau reduction,
keep_best (selfsup.training_settings checks their settings) and the kNN monitor of
pretext training (selfsup.monitor)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import keras

from selfsup import monitor
from selfsup.training_settings import DEFAULT_MONITOR, check_schedules, mode, step_rate


def from_settings(
    training_settings: dict, state_dir: str | os.PathLike | None = None, stream=sys.stderr
) -> list:
    """Keras callbacks for the step schedule, reduce_on_plateau and keep_best (those set).

    `state_dir` keeps KeepBest's best weights across a killed and resumed job; use a
    directory that is removed when training completes, such as the resume directory.
    With both a step schedule and reduce_on_plateau, the schedule sets the rate again at
    the start of every epoch, undoing any reduction, as in the Keras CIFAR-10 example
    that combines them.
    """
    check_schedules(training_settings)
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
        result.append(KeepBest(keep_best.get("monitor", DEFAULT_MONITOR), state_dir=state_dir, stream=stream))
    return result


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
        record.write_text(json.dumps({"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch}))
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


class KnnMonitor(keras.callbacks.Callback):
    """Logs `knn_accuracy` (selfsup.monitor) after every `every`-th and the last epoch
    (NaN in between, so every history row has the column).

    `images`: the held-out slice as model inputs (scaled and normalized like training).
    """

    def __init__(self, encoder, images, labels, *, every: int, k: int, temperature: float, stream=sys.stderr):
        super().__init__()
        self.encoder, self.images, self.labels = encoder, images, labels
        self.every, self.k, self.temperature = every, k, temperature

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs")
        accuracy = math.nan
        if (epoch + 1) % self.every == 0 or last:
            features = monitor.encoder_features(self.encoder, self.images)
            accuracy = monitor.knn_accuracy(features, self.labels, self.k, self.temperature)
        if logs is not None:
            logs["knn_accuracy"] = accuracy
