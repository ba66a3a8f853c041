"""Augmentations as Keras preprocessing layers, configured per training stage in the study.

They run on float batches inside the tf.data pipeline (selfsup.inputs), before a
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

import math

import keras
import tensorflow as tf

from selfsup.augment_settings import check, resolve

SOLARIZE_THRESHOLD = 0.5  # on [0, 1] pixels, as BYOL's (augmentations.py:50, 65) and PIL's 128 of 255
FILL_MODE = "nearest"  # what pixels shifted in take: the edge's (as Keras' ImageDataGenerator)
BLUR_KERNEL = 0.1  # the blur's kernel spans about this fraction of the image's side (SimCLR)
_SEED_STRIDE = 1000  # seeds of the layers after flip (seed) and shift (seed + 1): seed + k * stride
_SECOND_VIEW_SEED = 500  # view 2's own pipeline is built from seed + this (none of view 1's seeds)


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

    def seed_of(k):
        return seed + k * _SEED_STRIDE

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        stages = []
        if settings["crop"]:
            crop = settings["crop"]
            stages.append(RandomResizedCrop(crop["scale"], crop["ratio"], seed=seed_of(1), name="crop"))
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
            stages.append(RandomApply(inner, jitter["probability"], seed=seed_of(5), name="color_jitter"))
        if settings["grayscale"]:
            stages.append(RandomGrayscale(settings["grayscale"], seed=seed_of(6), name="grayscale"))
        blur = settings["blur"]
        if blur and blur["probability"]:
            inner = GaussianBlur(blur["sigma"], seed=seed_of(7))
            stages.append(RandomApply(inner, blur["probability"], seed=seed_of(8), name="blur"))
        if settings["solarize"]:
            inner = Solarize(SOLARIZE_THRESHOLD)
            stages.append(RandomApply(inner, settings["solarize"], seed=seed_of(9), name="solarize"))
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
