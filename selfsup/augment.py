"""Augmentations as Keras preprocessing layers, configured per training stage in the study.

They run on float batches inside the tf.data pipeline (selfsup.data.inputs), before a
pretext method's own transform: a rotation pretext flips and shifts the upright image
first and rotates it afterwards, so its label stays the rotation applied. They also run
inside a model's train_step (two views of one batch for a contrastive method): every
layer is seeded, draws its parameters per image, and does nothing unless called with
training=True.

Besides small geometric ones, these are the augmentations of SimCLR and BYOL: a random
resized crop, colour jitter, random grayscale and Gaussian blur, which a `preset` fills in
per image size. A key given in the study overrides the preset's; inside crop, color_jitter
and blur field by field. The geometric ones and the blur make no assumption about the
pixel values (normalized images are fine); colour jitter assumes pixels in [0, 1] and
clips to it.
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
}
# What the augmentations with several fields take for those not given (SimCLR's values,
# colour jitter at strength 0.5 as for CIFAR-10).
CROP = {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]}  # area fraction; width / height
COLOR_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "probability": 0.8}
BLUR = {"probability": 0.5, "sigma": [0.1, 2.0]}  # sigma in pixels, drawn per image
FIELDS = {"crop": CROP, "color_jitter": COLOR_JITTER, "blur": BLUR}
PRESETS = {
    # 28-32 px colour images (SimCLR on CIFAR-10): gentler crops, no blur.
    "simclr_small": {
        "crop": {"scale": [0.2, 1.0]},
        "horizontal_flip": True,
        "color_jitter": {},
        "grayscale": 0.2,
    },
    # 64-96 px colour images (STL-10; SimCLR's ImageNet recipe): blur only pays off here.
    "simclr_large": {
        "crop": {},
        "horizontal_flip": True,
        "color_jitter": {},
        "grayscale": 0.2,
        "blur": {},
    },
    # One channel: brightness and contrast are all the colour jitter there is.
    "simclr_grayscale": {
        "crop": {"scale": [0.2, 1.0]},
        "horizontal_flip": True,
        "color_jitter": {"saturation": 0.0, "hue": 0.0},
    },
}
FILL_MODE = "nearest"  # what pixels shifted in take: the edge's (as Keras' ImageDataGenerator)
BLUR_KERNEL = 0.1  # the blur's kernel spans about this fraction of the image's side (SimCLR)
_SEED_STRIDE = 1000  # seeds of the layers after flip (seed) and shift (seed + 1): seed + k * stride


def resolve(settings: dict | None) -> dict:
    """Every key of DEFAULTS, the preset filled in; crop, color_jitter and blur are None
    (off) or dicts of all their fields."""
    settings = settings or {}
    resolved = dict(DEFAULTS)
    for layer in (PRESETS.get(settings.get("preset"), {}), settings):
        for key, value in layer.items():
            if key in FIELDS:
                value = {} if value is True else value if isinstance(value, dict) else None
                if value is not None and resolved[key] is not None:
                    value = {**resolved[key], **value}
            resolved[key] = value
    for key, fields in FIELDS.items():
        if resolved[key] is not None:
            resolved[key] = {**fields, **resolved[key]}
    return resolved


def check(settings: dict, *, channels: int | None = None) -> None:
    """Raise ValueError naming the key at fault; `channels` (None: unknown) rules out
    colour augmentations on images that have none."""
    settings = settings or {}
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"augmentation: unknown key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    preset = settings.get("preset")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise ValueError(f"augmentation.preset: unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    for key, fields in FIELDS.items():
        value = settings.get(key)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise ValueError(f"augmentation.{key}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
        elif value is not None and not isinstance(value, bool):
            raise ValueError(f"augmentation.{key} must be a mapping of {sorted(fields)}, true or false")
    resolved = resolve(settings)
    if not isinstance(resolved["horizontal_flip"], bool):
        raise ValueError(
            f"augmentation.horizontal_flip must be true or false, got {resolved['horizontal_flip']!r}"
        )
    _number("shift", resolved["shift"], 0, 1, "[0, 1)", open_top=True)
    _number("rotation", resolved["rotation"], 0, 0.5, "[0, 0.5]")
    _number("zoom", resolved["zoom"], 0, 1, "[0, 1)", open_top=True)
    _number("grayscale", resolved["grayscale"], 0, 1, "[0, 1]")
    if resolved["crop"]:
        _pair("crop.scale", resolved["crop"]["scale"], 1, "0 < min <= max <= 1")
        _pair("crop.ratio", resolved["crop"]["ratio"], math.inf, "0 < min <= max")
    if resolved["color_jitter"]:
        jitter = resolved["color_jitter"]
        for name in ("brightness", "contrast", "saturation", "probability"):
            _number(f"color_jitter.{name}", jitter[name], 0, 1, "[0, 1]")
        _number("color_jitter.hue", jitter["hue"], 0, 0.5, "[0, 0.5]")
    if resolved["blur"]:
        _number("blur.probability", resolved["blur"]["probability"], 0, 1, "[0, 1]")
        _pair("blur.sigma", resolved["blur"]["sigma"], math.inf, "0 < min <= max")
    if channels is not None and channels != 3:
        jitter = resolved["color_jitter"]
        for name in ("saturation", "hue"):
            if jitter and jitter["probability"] and jitter[name]:
                raise ValueError(
                    f"augmentation.color_jitter.{name}: no colour jitter on {channels}-channel images "
                    f"(got {name} {jitter[name]}); set saturation and hue to 0, keeping brightness and "
                    "contrast, or use preset simclr_grayscale"
                )
        if resolved["grayscale"]:
            raise ValueError(f"augmentation.grayscale: needs RGB images, these have {channels} channel(s)")


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
    """A keras.Sequential of the augmentations `settings` asks for, or None for none.

    Order: crop, flip, shift, rotation, zoom, colour jitter, grayscale, blur. The layers
    compute in float32 whatever Keras' global dtype policy (mixed precision is for models).
    """
    import keras

    layers = _layer_classes()
    settings = resolve(settings)

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
        if not stages:
            return None
        layers = keras.Sequential(stages, name="augmentation")
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
    """Keras' RandomColorJitter arguments for SimCLR's strengths (tf.image's semantics):
    brightness adds up to ±b, contrast scales by [1 - c, 1 + c] about each channel's mean,
    saturation scales by [1 - s, 1 + s], hue turns by up to ±h of a full turn."""
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
    class RandomGrayscale(keras.layers.RandomGrayscale):
        """Keras' RandomGrayscale (per image, keeps the channels), its seed in its config."""

        def get_config(self):
            return {**super().get_config(), "seed": self.seed}

    return {
        "RandomResizedCrop": RandomResizedCrop,
        "RandomApply": RandomApply,
        "GaussianBlur": GaussianBlur,
        "RandomGrayscale": RandomGrayscale,
    }


def __getattr__(name):
    # The layers subclass Keras classes; defining them on first use keeps keras out of
    # `import selfsup.augment`, which check() alone does not need.
    if name in ("RandomResizedCrop", "RandomApply", "GaussianBlur", "RandomGrayscale"):
        return _layer_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
