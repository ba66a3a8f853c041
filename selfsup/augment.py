"""Augmentations as Keras preprocessing layers, configured per training stage in the study.

They run on float batches inside the tf.data pipeline (selfsup.data.inputs), before a
pretext method's own transform: a rotation pretext flips and shifts the upright image
first and rotates it afterwards, so its label stays the rotation applied. They also run
inside a model's train_step (two views of one batch for a contrastive method): every
layer is seeded, draws its parameters per image, and does nothing unless called with
training=True.

Besides small geometric ones, these are the augmentations of SimCLR and BYOL: a random
resized crop, colour jitter, random grayscale, Gaussian blur and solarisation, which a
`preset` fills in per image size and method. A key given in the study overrides the
preset's; inside crop, color_jitter and blur field by field. The geometric ones and the
blur make no assumption about the pixel values (normalized images are fine); colour
jitter and solarisation assume pixels in [0, 1] (jitter clips to it).

A two-view method may augment its views differently (BYOL blurs view 1 always and view 2
rarely, and solarizes only view 2): `second_view` holds keys that override, for view 2
only, what view 1 resolves to (field by field, as over a preset). `build_views` makes the
two pipelines; without any second_view it returns one pipeline twice, so the views are
drawn as they always were. Stages that augment once (`build`) refuse a second view.
"""

from __future__ import annotations

import functools
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
SOLARIZE_THRESHOLD = 0.5  # on [0, 1] pixels, as BYOL's (augmentations.py:50, 65) and PIL's 128 of 255
FILL_MODE = "nearest"  # what pixels shifted in take: the edge's (as Keras' ImageDataGenerator)
BLUR_KERNEL = 0.1  # the blur's kernel spans about this fraction of the image's side (SimCLR)
_SEED_STRIDE = 1000  # seeds of the layers after flip (seed) and shift (seed + 1): seed + k * stride
_SECOND_VIEW_SEED = 500  # view 2's own pipeline is built from seed + this (none of view 1's seeds)
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


def build(settings: dict | None, seed: int):
    """A keras.Sequential of the augmentations `settings` asks for, or None for none, for
    a stage that augments each image once: ValueError if view 2 would differ (second_view,
    preset byol; see build_views).

    Order: crop, flip, shift, rotation, zoom, colour jitter, grayscale, blur, solarize. The
    layers compute in float32 whatever Keras' global dtype policy (mixed precision is for
    models).
    """
    check(settings, views=1)
    return _build(resolve(settings), seed)


def build_views(settings: dict | None, seed: int) -> tuple:
    """(view 1's, view 2's) augmentation layers of a two-view method, each None for none.

    Without a second view (view 2 resolves as view 1) it is one pipeline twice, the very
    object `build` makes, so the views are drawn as they always were. Otherwise view 2 has
    its own pipeline, built from seed + _SECOND_VIEW_SEED: called statefully, it draws
    other crops than view 1's (keyed by `apply`, each view has its own key anyway).
    """
    first = resolve(settings, 1)
    second = resolve(settings, 2)
    layers = _build(first, seed)
    if second == first:
        return layers, layers
    return layers, _build(second, seed + _SECOND_VIEW_SEED, name="augmentation_view2")


def _build(settings: dict, seed: int, name: str = "augmentation"):
    """The layers of one view's resolved settings, or None for none."""
    import keras

    layers = _layer_classes()

    def seed_of(k):
        return seed + k * _SEED_STRIDE

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        stages = []
        if settings["crop"]:
            crop = settings["crop"]
            stages.append(
                layers["RandomResizedCrop"](crop["scale"], crop["ratio"], seed=seed_of(1), name="crop")
            )
        if settings["horizontal_flip"]:
            stages.append(keras.layers.RandomFlip("horizontal", seed=seed, name="horizontal_flip"))
        if settings["shift"]:
            shift = settings["shift"]
            stages.append(
                keras.layers.RandomTranslation(shift, shift, fill_mode=FILL_MODE, seed=seed + 1, name="shift")
            )
        if settings["rotation"]:
            stages.append(
                keras.layers.RandomRotation(
                    settings["rotation"], fill_mode=FILL_MODE, seed=seed_of(2), name="rotation"
                )
            )
        if settings["zoom"]:
            stages.append(
                keras.layers.RandomZoom(settings["zoom"], fill_mode=FILL_MODE, seed=seed_of(3), name="zoom")
            )
        jitter = settings["color_jitter"]
        if (
            jitter
            and jitter["probability"]
            and any(jitter[k] for k in ("brightness", "contrast", "saturation", "hue"))
        ):
            inner = keras.layers.RandomColorJitter(
                value_range=(0, 1), seed=seed_of(4), **_jitter_factors(jitter)
            )
            stages.append(
                layers["RandomApply"](inner, jitter["probability"], seed=seed_of(5), name="color_jitter")
            )
        if settings["grayscale"]:
            stages.append(layers["RandomGrayscale"](settings["grayscale"], seed=seed_of(6), name="grayscale"))
        blur = settings["blur"]
        if blur and blur["probability"]:
            inner = layers["GaussianBlur"](blur["sigma"], seed=seed_of(7))
            stages.append(layers["RandomApply"](inner, blur["probability"], seed=seed_of(8), name="blur"))
        if settings["solarize"]:
            inner = layers["Solarize"](SOLARIZE_THRESHOLD)
            stages.append(
                layers["RandomApply"](inner, settings["solarize"], seed=seed_of(9), name="solarize")
            )
        if not stages:
            return None
        layers = keras.Sequential(stages, name=name)
        layers.base_seed = int(seed)  # what `apply` keys its draws with in the input pipeline
        return layers
    finally:
        keras.config.set_dtype_policy(policy)


def apply(layers, images, key):
    """`layers(images, training=True)` with every random draw a pure function of `key`
    (a stateless [2] int seed tensor) instead of the layers' seed generators' state.

    Keras' preprocessing layers draw from SeedGenerators, variables advanced by each call:
    their draws then depend on every call made before (in another epoch, before a resume,
    or by a second tf.data iterator Keras opens at an epoch's end), and a restarted job
    starts them over. Here, while the layers are traced, each generator's `next` is
    replaced by keys folded from `key`, the generator's place in the layers and the count
    of its draws so far; the traced graph reads no generator state. Eagerly, it is the
    same: a call's draws depend on `key` alone.
    """
    import tensorflow as tf

    fold_in = tf.random.experimental.stateless_fold_in
    key = tf.cast(key, tf.int64)
    generators = _seed_generators(layers)

    def keyed(index):
        base = fold_in(key, index)
        draws = iter(range(2**31))

        def next_seed(ordered=True):
            return fold_in(base, next(draws))

        return next_seed

    for index, generator in enumerate(generators):
        generator.next = keyed(index)
    try:
        return layers(images, training=True)
    finally:
        for generator in generators:
            del generator.next  # back to the class's stateful method


def _seed_generators(layers) -> list:
    """Every SeedGenerator of `layers` and the layers inside them, in a fixed order."""
    # Keras tracks them per layer (Layer._seed_generators); layers.variables lists only
    # their state variables, not the generators whose `next` draws.
    generators = []
    for layer in layers._flatten_layers(include_self=True, recursive=True):
        for generator in layer._seed_generators:
            if all(generator is not seen for seen in generators):
                generators.append(generator)
    return generators


def _jitter_factors(jitter: dict) -> dict:
    """Keras' RandomColorJitter arguments for SimCLR's and BYOL's strengths (tf.image's
    semantics): brightness adds up to ±b (as SimCLR v1 and BYOL; SimCLR v2 multiplies by
    [1 - b, 1 + b]), contrast scales by [1 - c, 1 + c] about each channel's mean,
    saturation scales by [1 - s, 1 + s], hue turns by up to ±h of a full turn; in that
    order, where SimCLR and BYOL shuffle it per image."""
    b, c, s, h = (jitter[k] for k in ("brightness", "contrast", "saturation", "hue"))
    return {
        "brightness_factor": (-b, b) if b else None,
        # A single number would give [1, 1 + c] only.
        "contrast_factor": (c, c) if c else None,
        # Keras scales saturation by f / (1 - f), f drawn from these bounds.
        "saturation_factor": ((1 - s) / (2 - s), (1 + s) / (2 + s)) if s else None,
        # Keras turns hue by ±f / 2, f drawn from these bounds.
        "hue_factor": (0.0, 2 * h) if h else None,
    }


@functools.cache
def _layer_classes() -> dict:
    import keras
    import tensorflow as tf

    register = keras.saving.register_keras_serializable(package="selfsup")

    @register
    class RandomResizedCrop(keras.layers.Layer):
        """Crop a random box from each image and resize it back to the image's size.

        Per image, the box covers a fraction of the image's area drawn from `scale`, with
        a width / height drawn log-uniformly from `ratio`, clipped to the image, at a
        uniform position; bilinear resizing, one crop_and_resize for the batch.
        """

        def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
            super().__init__(**kwargs)
            self.scale = tuple(float(v) for v in scale)
            self.ratio = tuple(float(v) for v in ratio)
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            shape = tf.shape(inputs)
            n = shape[0]
            height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            area = keras.random.uniform((n,), *self.scale, seed=self.seed_generator)
            log_ratio = keras.random.uniform(
                (n,), math.log(self.ratio[0]), math.log(self.ratio[1]), seed=self.seed_generator
            )
            ratio = tf.exp(log_ratio)
            # Sides as fractions of the image's: w * h = area * W * H pixels, w / h = ratio.
            box_width = tf.minimum(1.0, tf.sqrt(area * ratio * height / width))
            box_height = tf.minimum(1.0, tf.sqrt(area / ratio * width / height))
            top = keras.random.uniform((n,), seed=self.seed_generator) * (1.0 - box_height)
            left = keras.random.uniform((n,), seed=self.seed_generator) * (1.0 - box_width)
            boxes = tf.stack([top, left, top + box_height, left + box_width], axis=1)
            size = inputs.shape[1:3] if None not in inputs.shape[1:3] else shape[1:3]
            crops = tf.image.crop_and_resize(inputs, boxes, tf.range(n), size, method="bilinear")
            return tf.cast(crops, inputs.dtype)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "scale": self.scale, "ratio": self.ratio, "seed": self.seed}

    @register
    class RandomApply(keras.layers.Layer):
        """Apply `layer` to each image with probability `probability`, else keep it.

        The layer runs on the whole batch; a per-image draw picks its output or the input.
        """

        def __init__(self, layer, probability=0.5, seed=None, **kwargs):
            super().__init__(**kwargs)
            if isinstance(layer, dict):
                layer = keras.saving.deserialize_keras_object(layer)
            self.layer = layer
            self.probability = float(probability)
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)

        def build(self, input_shape):
            if not self.layer.built:
                self.layer.build(input_shape)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            applied = self.layer(inputs, training=True)
            draw = keras.random.uniform(tf.shape(inputs)[:1], seed=self.seed_generator)
            chosen = tf.reshape(draw < self.probability, [-1] + [1] * (len(inputs.shape) - 1))
            return tf.where(chosen, tf.cast(applied, inputs.dtype), inputs)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {
                **super().get_config(),
                "layer": keras.saving.serialize_keras_object(self.layer),
                "probability": self.probability,
                "seed": self.seed,
            }

    @register
    class GaussianBlur(keras.layers.Layer):
        """Blur each image with a Gaussian of its own sigma, drawn uniformly from `sigma`.

        Separable, with a kernel of 2r + 1 taps, r = max(1, int(kernel * side) // 2) per
        axis (SimCLR's, 10% of the side), reflecting at the edges. Meant for larger
        images: on 32 px the kernel has 3 taps. Needs a known height and width.
        """

        def __init__(self, sigma=(0.1, 2.0), kernel=BLUR_KERNEL, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.sigma = tuple(float(v) for v in sigma)
            self.kernel = float(kernel)
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)

        def _radius(self, side):
            if side is None:
                raise ValueError("GaussianBlur needs images of a known height and width")
            return max(1, int(self.kernel * side) // 2)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            sigma = keras.random.uniform(tf.shape(inputs)[:1], *self.sigma, seed=self.seed_generator)
            x = inputs
            for axis in (1, 2):
                side = inputs.shape[axis]
                radius = self._radius(side)
                offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
                weights = tf.exp(-tf.square(offsets)[None, :] / (2.0 * tf.square(sigma)[:, None]))
                weights = tf.cast(weights / tf.reduce_sum(weights, axis=1, keepdims=True), x.dtype)
                paddings = [[0, 0]] * 4
                paddings[axis] = [radius, radius]
                padded = tf.pad(x, paddings, mode="REFLECT")
                taps = [
                    padded[:, k : k + side] if axis == 1 else padded[:, :, k : k + side]
                    for k in range(2 * radius + 1)
                ]
                x = tf.add_n([weights[:, k, None, None, None] * tap for k, tap in enumerate(taps)])
            return x

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "sigma": self.sigma, "kernel": self.kernel, "seed": self.seed}

    @register
    class Solarize(keras.layers.Layer):
        """Solarize every image: each value x >= `threshold` becomes 1 - x, the others stay
        (BYOL's, deepmind-research byol/utils/augmentations.py:437;
        PIL's ImageOps.solarize as solo-learn uses it). Assumes pixels in [0, 1];
        deterministic: RandomApply picks the images.
        """

        def __init__(self, threshold=SOLARIZE_THRESHOLD, **kwargs):
            super().__init__(**kwargs)
            self.threshold = float(threshold)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            return tf.where(inputs >= tf.cast(self.threshold, inputs.dtype), 1.0 - inputs, inputs)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "threshold": self.threshold}

    @register
    class RandomGrayscale(keras.layers.RandomGrayscale):
        """Keras' RandomGrayscale (per image, keeps the channels), its seed in its config."""

        def get_config(self):
            return {**super().get_config(), "seed": self.seed}

    return {
        "RandomResizedCrop": RandomResizedCrop,
        "RandomApply": RandomApply,
        "GaussianBlur": GaussianBlur,
        "Solarize": Solarize,
        "RandomGrayscale": RandomGrayscale,
    }


def __getattr__(name):
    # The layers subclass Keras classes; defining them on first use keeps keras out of
    # `import selfsup.augment`, which check() alone does not need.
    if name in ("RandomResizedCrop", "RandomApply", "GaussianBlur", "Solarize", "RandomGrayscale"):
        return _layer_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
