"""What a training section of a study may say, checked without Keras: the optimizer, the
precision, the learning-rate schedule, plateau reduction and keep_best.

The workflow reads this while it parses; selfsup.training, selfsup.callbacks and
selfsup.optimizers build the Keras objects from the same settings.

A training section may hold (each optional; absent or None means off):
- lr_schedule: {name: step, boundaries, factors} or {name: warmup_cosine, warmup_epochs,
  min_factor}, scaling the optimizer's base learning rate;
- reduce_on_plateau: {monitor, factor, patience, min_learning_rate};
- keep_best: {monitor}: end training with the weights of the best epoch.
"""

from __future__ import annotations

import numpy as np

from selfsup import augment_settings

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "lars")
_OPTIMIZER_KEYS = (
    "name",
    "learning_rate",
    "momentum",
    "weight_decay",
    "weight_decay_mode",
    "trust_coefficient",
    "clip_lr",
    "bias_lr_factor",
    "fixed_lr_for",
)


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
    for key in ("learning_rate", "momentum", "weight_decay", "trust_coefficient", "bias_lr_factor"):
        value = settings.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"optimizer.{key}: must be a number, got {value!r}")
    momentum = settings.get("momentum", 0.0)
    if not 0 <= momentum <= 1:
        raise ValueError(f"optimizer.momentum: must be in [0, 1], got {momentum!r}")
    # Present at all, even 0: an option the optimizer would ignore is a mistake to report.
    if "momentum" in settings and name in ("adam", "adamw"):
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
    if "weight_decay_mode" in settings:
        mode = settings["weight_decay_mode"]
        if mode not in ("decoupled", "coupled"):
            raise ValueError(f"optimizer.weight_decay_mode: must be decoupled or coupled, got {mode!r}")
        if name == "lars":
            raise ValueError(
                "optimizer.weight_decay_mode: lars always adds its decay to the gradient (coupled), "
                "as its references do; remove it"
            )
        if name == "adam":
            raise ValueError(
                "optimizer.weight_decay_mode: adam takes no weight decay; remove it, or use adamw"
            )
        if mode == "coupled" and name != "sgd":
            raise ValueError(
                f"optimizer.weight_decay_mode: coupled (PyTorch's SGD weight decay) is for sgd only; "
                f"{name}'s decay is decoupled"
            )
    if "trust_coefficient" in settings:
        if name != "lars":
            raise ValueError(f"optimizer.trust_coefficient: only lars takes it, not {name}; remove it")
        if not settings["trust_coefficient"] > 0:
            raise ValueError(
                f"optimizer.trust_coefficient: must be > 0, got {settings['trust_coefficient']!r}"
            )
    if "clip_lr" in settings:
        if not isinstance(settings["clip_lr"], bool):
            raise ValueError(f"optimizer.clip_lr: must be true or false, got {settings['clip_lr']!r}")
        if name != "lars":
            raise ValueError(f"optimizer.clip_lr: only lars takes it, not {name}; remove it")
    if not settings.get("bias_lr_factor", 1.0) > 0:
        raise ValueError(f"optimizer.bias_lr_factor: must be > 0, got {settings['bias_lr_factor']!r}")
    if "fixed_lr_for" in settings:
        layers = settings["fixed_lr_for"]
        if (
            not isinstance(layers, list | tuple)
            or not layers
            or not all(isinstance(layer, str) and layer and "/" not in layer for layer in layers)
        ):
            raise ValueError(
                f"optimizer.fixed_lr_for: must be a non-empty list of layer names such as "
                f"[predictor], got {layers!r}"
            )
        if len(set(layers)) != len(layers):
            raise ValueError(f"optimizer.fixed_lr_for: {list(layers)!r} names a layer twice")


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


def check_schedules(training_settings: dict) -> None:
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


def check_training(where: str, settings: dict, channels: int | None = None, views: int | None = None) -> None:
    """Cross-key rules of one stage's training settings (schedules, augmentation,
    optimizer); `channels` of the images rules out colour augmentations on grayscale;
    `views` 1 (a stage that augments each image once) rules out a second view."""
    try:
        check_schedules(settings)
        augment_settings.check(settings.get("augmentation") or {}, channels=channels, views=views)
        if settings.get("optimizer"):
            check_optimizer(settings["optimizer"])
    except ValueError as err:
        raise ValueError(f"{where}.{err}") from None


def check_monitors(where: str, settings: dict, reported: list[str]) -> None:
    """Every metric a callback watches must be one the model reports: `reported` names
    training metrics; their val_ forms exist when there is a validation split."""
    allowed = list(reported)
    if settings.get("validation_split", 0):
        allowed += [f"val_{name}" for name in reported if name != "knn_accuracy"]
    for section in ("early_stopping", "reduce_on_plateau", "keep_best"):
        if settings.get(section):
            monitor = settings[section].get("monitor", DEFAULT_MONITOR)
            if monitor not in allowed:
                raise ValueError(
                    f"{where}.{section}.monitor: {monitor!r} is not reported by this training; "
                    f"allowed: {', '.join(allowed)}"
                )
