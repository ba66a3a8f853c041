"""What a stage's augmentation settings may say, checked without Keras: the keys and
their defaults, the SimCLR and BYOL presets, and how a view's settings resolve
(selfsup.augment builds the Keras layers from them).

A `preset` fills in the augmentations per image size and method; a key given in the
study overrides the preset's; inside crop, color_jitter and blur field by field. A
two-view method may augment its views differently (BYOL blurs view 1 always and view 2
rarely, and solarizes only view 2): `second_view` holds keys that override, for view 2
only, what view 1 resolves to (field by field, as over a preset).
"""

from __future__ import annotations

import math

DEFAULTS = {
    "preset": None,  # a name in PRESETS: a recipe the other keys override
    "crop": None,  # random resized crop, CROP's fields: an object, or true for the defaults
    "horizontal_flip": False,  # mirror left-right with probability 1/2
    "shift": 0.0,  # translate by up to this fraction of the height and width
    "rotation": 0.0,  # rotate by up to this fraction of a full turn, either way
    "zoom": 0.0,  # zoom in or out by up to this fraction of the size
    "color_jitter": None,  # COLOR_JITTER's fields: an object, or true for the defaults
    "grayscale": 0.0,  # probability of turning an RGB image gray (it keeps 3 channels)
    "blur": None,  # Gaussian blur, BLUR's fields: an object, or true for the defaults
    "solarize": 0.0,  # probability of solarizing an image (x -> 1 - x where x >= SOLARIZE_THRESHOLD)
    "second_view": None,  # keys overriding view 1's for view 2 of a two-view method (not preset, second_view)
}
# What the augmentations with several fields take for those not given: SimCLR's values,
# colour jitter at SimCLR's CIFAR-10 strength 0.5 (google-research/simclr README.md:83
# --color_jitter_strength=0.5; tf2/data_util.py:66-69 brightness, contrast, saturation
# 0.8 * strength, hue 0.2 * strength). simclr_large sets ImageNet's strength 1.0.
CROP = {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]}  # area fraction; width / height
COLOR_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "probability": 0.8}
BLUR = {"probability": 0.5, "sigma": [0.1, 2.0]}  # sigma in pixels, drawn per image
FIELDS = {"crop": CROP, "color_jitter": COLOR_JITTER, "blur": BLUR}
# BYOL's colour jitter, the same for both views (deepmind-research byol/utils/augmentations.py:
# 31-40 and 55-61; solo-learn scripts/pretrain/*/augmentations/asymmetric.yaml:5-12).
_BYOL_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "probability": 0.8}
PRESETS = {
    # 28-32 px colour images (SimCLR on CIFAR-10, google-research/simclr README.md:81-83:
    # colour jitter strength 0.5, no blur): gentler crops.
    "simclr_small": {
        "crop": {"scale": [0.2, 1.0]},
        "horizontal_flip": True,
        "color_jitter": {},
        "grayscale": 0.2,
    },
    # 64-96 px colour images (STL-10; SimCLR's ImageNet recipe): colour jitter at strength
    # 1.0 (google-research/simclr tf2/run.py:233 color_jitter_strength 1.0; data_util.py:
    # 66-69 0.8 * strength, 0.2 * strength for hue; 382-389 p 0.8, grayscale 0.2), blur
    # (run.py:237 use_blur; data_util.py:393-413 sigma 0.1-2, p 0.5). Blur only pays off here.
    "simclr_large": {
        "crop": {},
        "horizontal_flip": True,
        "color_jitter": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
        "grayscale": 0.2,
        "blur": {},
    },
    # One channel: brightness and contrast are all the colour jitter there is.
    "simclr_grayscale": {
        "crop": {"scale": [0.2, 1.0]},
        "horizontal_flip": True,
        "color_jitter": {"saturation": 0.0, "hue": 0.0},
    },
    # 64-96 px colour images, BYOL's asymmetric recipe (deepmind-research
    # byol/utils/augmentations.py:27-66; crop byol/utils/dataset.py:210-217, scale 0.08-1):
    # jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2; blur p 1.0 on view 1 and 0.1 on
    # view 2 (lines 43-49, 63-64); solarize 0.0 on view 1 and 0.2 on view 2 (lines 50, 65).
    # solo-learn's ImageNet-100 BYOL is the same (scripts/pretrain/imagenet-100/byol.yaml:3
    # -> augmentations/asymmetric.yaml:1-43).
    "byol": {
        "crop": {},
        "horizontal_flip": True,
        "color_jitter": _BYOL_JITTER,
        "grayscale": 0.2,
        "blur": {"probability": 1.0},
        "solarize": 0.0,
        "second_view": {"blur": {"probability": 0.1}, "solarize": 0.2},
    },
    # 28-32 px colour images, solo-learn's CIFAR BYOL (scripts/pretrain/cifar/byol.yaml:3 ->
    # augmentations/asymmetric.yaml:1-43): BYOL's crop, jitter and grayscale, no blur on
    # either view (gaussian_blur prob 0.0, lines 13-14 and 36-37), solarize 0.0 on view 1
    # and 0.2 on view 2 (lines 15-16 and 38-39).
    "byol_small": {
        "crop": {},
        "horizontal_flip": True,
        "color_jitter": _BYOL_JITTER,
        "grayscale": 0.2,
        "second_view": {"solarize": 0.2},
    },
}
# Keys that second_view may not hold.
_VIEW_1_ONLY = ("preset", "second_view")


def resolve(settings: dict | None, view: int = 1) -> dict:
    """Every key of DEFAULTS but second_view, for view 1 or 2, the preset filled in; crop,
    color_jitter and blur are None (off) or dicts of all their fields.

    View 2 resolves as view 1 with each source's second_view on top of it: the preset, the
    preset's second_view, the study's keys, the study's second_view. A key given in the
    study thus applies to both views unless its second_view says otherwise."""
    settings = settings or {}
    preset = PRESETS.get(settings.get("preset"), {})
    sources = [preset, settings]
    if view == 2:
        sources = [preset, preset.get("second_view") or {}, settings, settings.get("second_view") or {}]
    elif view != 1:
        raise ValueError(f"view must be 1 or 2, got {view!r}")
    resolved = {key: value for key, value in DEFAULTS.items() if key != "second_view"}
    for layer in sources:
        for key, value in layer.items():
            if key == "second_view":
                continue
            if key in FIELDS:
                value = {} if value is True else value if isinstance(value, dict) else None
                if value is not None and resolved[key] is not None:
                    value = {**resolved[key], **value}
            resolved[key] = value
    for key, fields in FIELDS.items():
        if resolved[key] is not None:
            resolved[key] = {**fields, **resolved[key]}
    return resolved


def check(settings: dict, *, channels: int | None = None, views: int | None = None) -> None:
    """Raise ValueError naming the key at fault; `channels` (None: unknown) rules out
    colour augmentations on images that have none; `views` (None: unknown) is how many
    views of an image the stage draws: 1 refuses settings whose view 2 differs from view 1
    (a second_view, preset byol)."""
    settings = settings or {}
    _check_keys(settings, "", sorted(DEFAULTS))
    preset = settings.get("preset")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise ValueError(f"augmentation.preset: unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    second = settings.get("second_view")
    if second is not None:
        if not isinstance(second, dict):
            raise ValueError(
                "augmentation.second_view must be a mapping of augmentation keys that override "
                f"view 1's for view 2, got {second!r}"
            )
        inner = [key for key in _VIEW_1_ONLY if key in second]
        if inner:
            raise ValueError(
                f"augmentation.second_view may not contain {inner}: it overrides view 1's keys for "
                "view 2, and both views share the preset"
            )
        _check_keys(second, "second_view", sorted(set(DEFAULTS) - set(_VIEW_1_ONLY)))
    first = resolve(settings, 1)
    _check_resolved(first, "", channels)
    if second is not None or "second_view" in PRESETS.get(preset, {}):
        _check_resolved(resolve(settings, 2), "second_view.", channels)
    if views == 1 and resolve(settings, 2) != first:
        if second is not None:
            raise ValueError(
                "augmentation.second_view: only two-view methods (simclr, byol, ...) draw a second "
                "view; this stage augments each image once"
            )
        raise ValueError(
            f"augmentation.preset: {preset} augments view 2 differently (a second_view), which only "
            "two-view methods (simclr, byol, ...) draw; this stage augments each image once"
        )


def _check_keys(settings: dict, where: str, allowed: list[str]) -> None:
    """Unknown keys, and crop, color_jitter and blur that are neither mappings of their
    fields nor booleans, in `settings` (the study's augmentation or its `where`)."""
    at = f"augmentation.{where}" if where else "augmentation"
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"{at}: unknown key(s) {unknown}; allowed: {allowed}")
    for key, fields in FIELDS.items():
        value = settings.get(key)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise ValueError(f"{at}.{key}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
        elif value is not None and not isinstance(value, bool):
            raise ValueError(f"{at}.{key} must be a mapping of {sorted(fields)}, true or false")


def _check_resolved(resolved: dict, where: str, channels: int | None) -> None:
    """The values of one view's resolved settings; `where` prefixes the keys named."""
    if not isinstance(resolved["horizontal_flip"], bool):
        raise ValueError(
            f"augmentation.{where}horizontal_flip must be true or false, got {resolved['horizontal_flip']!r}"
        )
    _number(f"{where}shift", resolved["shift"], 0, 1, "[0, 1)", open_top=True)
    _number(f"{where}rotation", resolved["rotation"], 0, 0.5, "[0, 0.5]")
    _number(f"{where}zoom", resolved["zoom"], 0, 1, "[0, 1)", open_top=True)
    _number(f"{where}grayscale", resolved["grayscale"], 0, 1, "[0, 1]")
    _number(f"{where}solarize", resolved["solarize"], 0, 1, "[0, 1]")
    if resolved["crop"]:
        _pair(f"{where}crop.scale", resolved["crop"]["scale"], 1, "0 < min <= max <= 1")
        _pair(f"{where}crop.ratio", resolved["crop"]["ratio"], math.inf, "0 < min <= max")
    if resolved["color_jitter"]:
        jitter = resolved["color_jitter"]
        for name in ("brightness", "contrast", "saturation", "probability"):
            _number(f"{where}color_jitter.{name}", jitter[name], 0, 1, "[0, 1]")
        _number(f"{where}color_jitter.hue", jitter["hue"], 0, 0.5, "[0, 0.5]")
    if resolved["blur"]:
        _number(f"{where}blur.probability", resolved["blur"]["probability"], 0, 1, "[0, 1]")
        _pair(f"{where}blur.sigma", resolved["blur"]["sigma"], math.inf, "0 < min <= max")
    if channels is not None and channels != 3:
        jitter = resolved["color_jitter"]
        for name in ("saturation", "hue"):
            if jitter and jitter["probability"] and jitter[name]:
                raise ValueError(
                    f"augmentation.{where}color_jitter.{name}: no colour jitter on {channels}-channel "
                    f"images (got {name} {jitter[name]}); set saturation and hue to 0, keeping brightness "
                    "and contrast, or use preset simclr_grayscale"
                )
        if resolved["grayscale"]:
            raise ValueError(
                f"augmentation.{where}grayscale: needs RGB images, these have {channels} channel(s)"
            )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(key: str, value, low: float, high: float, shown: str, open_top: bool = False) -> None:
    if not _is_number(value) or not low <= value <= high or (open_top and value == high):
        raise ValueError(f"augmentation.{key} must lie in {shown}, got {value}")


def _pair(key: str, value, high: float, shown: str) -> None:
    good = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and 0 < value[0] <= value[1] <= high
    )
    if not good:
        raise ValueError(f"augmentation.{key} must be [min, max] with {shown}, got {value}")
