"""Augmentations as Keras preprocessing layers, configured per training stage in the study.

They run on float batches inside the tf.data pipeline (selfsup.data.inputs), before a
pretext method's own transform: a rotation pretext flips and shifts the upright image
first and rotates it afterwards, so its label stays the rotation applied.
"""

from __future__ import annotations

DEFAULTS = {
    "horizontal_flip": False,  # mirror left-right with probability 1/2
    "shift": 0.0,  # translate by up to this fraction of the height and width
}
FILL_MODE = "nearest"  # what pixels shifted in take: the edge's (as Keras' ImageDataGenerator)


def check(settings: dict) -> None:
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"augmentation: unknown key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    flip = settings.get("horizontal_flip", False)
    if not isinstance(flip, bool):
        raise ValueError(f"augmentation.horizontal_flip must be true or false, got {flip!r}")
    shift = settings.get("shift", 0.0)
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0 <= shift < 1:
        raise ValueError(f"augmentation.shift must lie in [0, 1), got {shift}")


def build(settings: dict | None, seed: int):
    """A keras.Sequential of the augmentations `settings` asks for, or None for none."""
    import keras

    settings = {**DEFAULTS, **(settings or {})}
    stages = []
    if settings["horizontal_flip"]:
        stages.append(keras.layers.RandomFlip("horizontal", seed=seed, name="horizontal_flip"))
    if settings["shift"]:
        shift = settings["shift"]
        stages.append(
            keras.layers.RandomTranslation(shift, shift, fill_mode=FILL_MODE, seed=seed + 1, name="shift")
        )
    return keras.Sequential(stages, name="augmentation") if stages else None
