"""What the reconstruction methods share: the decoder, its output/loss pairing, the
corruptions, the training batches and the examples.

autoencoder, denoising_autoencoder and inpainting differ only in how they corrupt
the input before the encoder sees it; the target is always the clean image. Each
corruption is a pure TensorFlow function of (images, options, seed), applied per batch
in the tf.data pipeline with a seed drawn per batch, so every epoch sees new noise and
a run is reproducible from its seed. Their targets are the pixels in [0, 1], so they
take no input normalization (PIXEL_TARGETS; the study check enforces it).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from selfsup import encoders
from selfsup.pretext.base import PretextMethod

# The loss each decoder output activation goes with.
OUTPUT_LOSSES = {"sigmoid": "binary_crossentropy", "linear": "mse"}
DECODERS = ("conv_transpose", "upsampling", "mlp", "mirror")

OPTIONS = {
    # conv_transpose: Conv2DTranspose stages; upsampling: UpSampling2D + Conv2D stages;
    # mlp: dense layers straight to the pixels (these three start from a Dense layer);
    # mirror: fully convolutional, the encoder's conv and pooling layers in reverse from
    # the code back to the image (needs a feature-map code, see code_layer).
    "decoder": "conv_transpose",
    # Conv decoders: one x2 upsampling stage per entry, widest first.
    "decoder_filters": [64, 32],
    # mlp decoder: hidden layers before the pixel layer.
    "decoder_units": [256],
    # sigmoid + binary_crossentropy for [0, 1] pixels, or linear + mse.
    "output_activation": "sigmoid",
    "loss": "binary_crossentropy",
    # The encoder layer whose output the decoder reconstructs from (None: the encoder's
    # output). Only the layers up to it learn from the reconstruction; e.g. conv4 for a
    # decoder that mirrors the convs, while a classifier later uses the whole encoder.
    "code_layer": None,
}

_PAIRING_REASONS = {
    ("sigmoid", "mse"): "mse on a sigmoid output learns slowly where the sigmoid saturates, "
    "which binary_crossentropy cancels exactly",
    ("linear", "binary_crossentropy"): "binary_crossentropy needs outputs in (0, 1), "
    "which a linear output does not guarantee",
}


def check(options: dict) -> None:
    """Reject unknown decoders and any output activation / loss pair but the two sound ones.

    Whether code_layer names a layer of the encoder, and whether its output suits the
    decoder, only the encoder can tell: `build` raises those.
    """
    if options["decoder"] not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {options['decoder']!r}")
    for key in ("decoder_filters", "decoder_units"):
        if not all(isinstance(n, int) and n > 0 for n in options[key]):
            raise ValueError(f"{key} must be a list of positive integers, got {options[key]!r}")
    code_layer = options["code_layer"]
    if code_layer is not None and not (isinstance(code_layer, str) and code_layer):
        raise ValueError(f"code_layer must be the name of an encoder layer, or null, got {code_layer!r}")
    activation, loss = options["output_activation"], options["loss"]
    if activation == "relu":
        raise ValueError(
            "output_activation 'relu' is not allowed: it has no upper bound and zero gradient "
            "wherever it outputs 0, so dark pixels get stuck; use sigmoid with binary_crossentropy "
            "for [0, 1] pixels, or linear with mse"
        )
    if activation not in OUTPUT_LOSSES:
        raise ValueError(f"output_activation must be sigmoid or linear, got {activation!r}")
    if loss not in OUTPUT_LOSSES.values():
        raise ValueError(f"loss must be binary_crossentropy or mse, got {loss!r}")
    if OUTPUT_LOSSES[activation] != loss:
        raise ValueError(
            f"output_activation {activation!r} goes with loss {OUTPUT_LOSSES[activation]!r}, "
            f"not {loss!r}: {_PAIRING_REASONS[activation, loss]}"
        )


# --- decoder --------------------------------------------------------------------------


def build_decoder(encoder: keras.Model, options: dict) -> keras.Model:
    """A model named "decoder" from the code (the output of the encoder's `code_layer`,
    or of the encoder) to images of exactly the encoder's input shape."""
    code = encoders.cut(encoder, options["code_layer"], "code_layer")
    if options["decoder"] == "mirror":
        return mirror_decoder(encoder, code, options["output_activation"])
    return decoder_from_shapes(code.output_shape[1:], encoder.input_shape[1:], options)


# Layers that keep the shape of a feature map and hold nothing spatial to undo: the
# mirror decoder passes over them.
_SHAPE_KEEPING = (layers.Dropout, layers.BatchNormalization, layers.Activation, layers.ReLU)


def mirror_decoder(encoder: keras.Model, code: keras.Model, output_activation: str) -> keras.Model:
    """A fully convolutional decoder (no Dense layer) that walks `code`'s layers back to the image.

    Each MaxPooling2D (pool size p) becomes UpSampling2D(p), each Conv2D (f filters)
    a ReLU Conv2DTranspose of f filters with its kernel, strides and padding; the mirror
    of the first conv outputs the image's channels with `output_activation` instead
    (layer "pixels"). `code` is `encoder` cut at the code layer (selfsup.encoders.cut).

    Study F's network 1 (cifar100_semisupervised) cut at conv4 on 32x32x3 images gives
    ConvT(128) 6x6 > Up 12 > ConvT(64) 14 > Up 28 > ConvT(32) 30 > ConvT(3, sigmoid) 32:
    the reference decoder without its optional extra same-padded 16-filter layer, which
    has no conv to mirror (it would be a 16-filter conv between conv1 and conv2).
    """
    image_shape = tuple(encoder.input_shape[1:])
    code_shape = tuple(code.output_shape[1:])
    if len(code_shape) != 3:
        maps = [layer.name for layer in encoder.layers[1:] if len(layer.output.shape) == 4]
        raise ValueError(
            f"decoder mirror needs a feature map as its code, but the code ({code.layers[-1].name}) is "
            f"flat, of shape {code_shape}; set code_layer to one of the encoder's conv or pooling "
            f"layers: {', '.join(maps)}"
        )
    convs = [layer for layer in code.layers if isinstance(layer, layers.Conv2D)]
    if not convs:
        raise ValueError(
            "decoder mirror needs a Conv2D layer up to the code layer, to mirror into the pixels"
        )
    inputs = keras.Input(code_shape, name="code")
    x = inputs
    for layer in reversed(code.layers[1:]):
        if isinstance(layer, _SHAPE_KEEPING):
            continue
        if isinstance(layer, layers.MaxPooling2D):
            x = layers.UpSampling2D(layer.pool_size, name=f"mirror_{layer.name}")(x)
        elif isinstance(layer, layers.Conv2D):
            first = layer is convs[0]
            x = layers.Conv2DTranspose(
                image_shape[-1] if first else layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=layer.padding,
                activation=output_activation if first else "relu",
                name="pixels" if first else f"mirror_{layer.name}",
            )(x)
        else:
            raise ValueError(
                f"decoder mirror mirrors Conv2D and MaxPooling2D layers only; the encoder's layer "
                f"{layer.name!r} ({type(layer).__name__}) has no mirror; use decoder conv_transpose or "
                "upsampling, or a code_layer before it"
            )
        # Each mirror must restore its layer's input size, or the image comes out the wrong size.
        wanted = tuple(layer.input.shape[1:3])
        if tuple(x.shape[1:3]) != wanted:
            raise ValueError(
                f"decoder mirror: the mirror of {layer.name} turns {tuple(layer.output.shape[1:3])} back "
                f"into {tuple(x.shape[1:3])}, not its input size {wanted} (pooling or strides dropped "
                f"rows or columns), so {image_shape[0]}x{image_shape[1]} images cannot be rebuilt "
                "exactly; use an image size where no layer drops any, or decoder conv_transpose or upsampling"
            )
    if tuple(x.shape[1:]) != image_shape:
        raise ValueError(f"decoder mirror outputs {tuple(x.shape[1:])}, not the image shape {image_shape}")
    return keras.Model(inputs, x, name="decoder")


def decoder_from_shapes(feature_shape, image_shape, options: dict) -> keras.Model:
    """A conv_transpose, upsampling or mlp decoder from features of `feature_shape` to
    images of exactly `image_shape`: these start from a Dense layer, so only the shapes matter.

    Conv decoders start from a grid of ceil(size / 2**stages) and double it per stage,
    so they may overshoot sizes that are not multiples of 2**stages (28 with three
    stages gives 32); a center crop then trims to the exact size.
    """
    if options["decoder"] == "mirror":
        raise ValueError("decoder mirror mirrors the encoder's layers: build it with build_decoder")
    height, width, channels = (int(n) for n in image_shape)
    activation = options["output_activation"]
    inputs = keras.Input(tuple(feature_shape), name="features")
    x = layers.Flatten(name="flatten")(inputs) if len(feature_shape) > 1 else inputs
    if options["decoder"] == "mlp":
        for i, units in enumerate(options["decoder_units"], start=1):
            x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = layers.Dense(height * width * channels, activation=activation, name="pixels")(x)
        outputs = layers.Reshape((height, width, channels), name="reconstruction")(x)
        return keras.Model(inputs, outputs, name="decoder")

    filters = options["decoder_filters"]
    scale = 2 ** len(filters)
    grid = (math.ceil(height / scale), math.ceil(width / scale))
    start = filters[0] if filters else channels
    x = layers.Dense(grid[0] * grid[1] * start, activation="relu", name="dense")(x)
    x = layers.Reshape((*grid, start), name="grid")(x)
    for i, n in enumerate(filters, start=1):
        if options["decoder"] == "conv_transpose":
            x = layers.Conv2DTranspose(n, 3, strides=2, padding="same", activation="relu", name=f"deconv{i}")(
                x
            )
        else:
            x = layers.UpSampling2D(2, name=f"upsample{i}")(x)
            x = layers.Conv2D(n, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.Conv2D(channels, 3, padding="same", activation=activation, name="pixels")(x)
    extra_h, extra_w = grid[0] * scale - height, grid[1] * scale - width
    if extra_h or extra_w:
        x = layers.Cropping2D(
            ((extra_h // 2, extra_h - extra_h // 2), (extra_w // 2, extra_w - extra_w // 2)), name="crop"
        )(x)
    return keras.Model(inputs, x, name="decoder")


def build(encoder: keras.Model, options: dict, name: str) -> keras.Model:
    """Image -> encoder (up to code_layer) -> decoder -> image of the same shape."""
    code = encoders.cut(encoder, options["code_layer"], "code_layer")
    decoder = build_decoder(encoder, options)
    inputs = keras.Input(encoder.input_shape[1:], name="image")
    return keras.Model(inputs, decoder(code(inputs)), name=name)


def compile_args(options: dict) -> dict:
    return {"loss": options["loss"], "metrics": ["mae"]}


# --- corruptions ----------------------------------------------------------------------
# `seed` is a stateless seed: a shape [2] integer tensor.


def gaussian_noise(images, stddev: float, seed):
    """Add N(0, stddev^2) to every pixel, clipped back to [0, 1]."""
    noise = tf.random.stateless_normal(tf.shape(images), seed, stddev=stddev)
    return tf.clip_by_value(images + noise, 0.0, 1.0)


def masking_noise(images, fraction: float, seed):
    """Set each pixel to 0 with probability `fraction` (Vincent et al.'s masking noise)."""
    keep = tf.random.stateless_uniform(tf.shape(images), seed) >= fraction
    return images * tf.cast(keep, images.dtype)


def rectangle_mask(images, fraction: float, seed):
    """One rectangle per image covering `fraction` of its area (same aspect ratio), at a random place.

    Returns a float mask of shape (N, H, W, 1): 1 where removed.
    """
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    side = math.sqrt(fraction)
    rect_h = tf.maximum(1, tf.cast(tf.round(side * tf.cast(height, tf.float32)), tf.int32))
    rect_w = tf.maximum(1, tf.cast(tf.round(side * tf.cast(width, tf.float32)), tf.int32))
    corner = tf.random.stateless_uniform((n, 2), seed)
    top = tf.cast(corner[:, 0] * tf.cast(height - rect_h + 1, tf.float32), tf.int32)
    left = tf.cast(corner[:, 1] * tf.cast(width - rect_w + 1, tf.float32), tf.int32)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + rect_h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + rect_w)[:, None, None])
    )
    return tf.cast(inside, images.dtype)[..., None]


def patch_mask(images, patch_size: int, fraction: float, seed):
    """Cut the image into patch_size squares and remove each with probability `fraction`.

    Returns a float mask of shape (N, H, W, 1): 1 where removed.
    """
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    cells = (-(-height // patch_size), -(-width // patch_size))  # ceil division
    removed = tf.random.stateless_uniform((n, cells[0], cells[1]), seed) < fraction
    mask = tf.repeat(tf.repeat(tf.cast(removed, images.dtype), patch_size, axis=1), patch_size, axis=2)
    return mask[:, :height, :width, None]


def region_weights(mask, region_weight: float):
    """Per-pixel loss weights of shape (N, H, W): `region_weight` inside the removed region, 1 outside,
    scaled to mean 1 per image so the loss keeps the scale of the unweighted one."""
    weights = 1.0 + (region_weight - 1.0) * mask[..., 0]
    return weights / tf.reduce_mean(weights, axis=(1, 2), keepdims=True)


# --- batches and examples -------------------------------------------------------------


def transform(images, labels, seed, corrupt, options: dict):
    """A training batch (corrupted, clean) or (corrupted, clean, pixel weights).

    `corrupt(images, options, seed) -> (corrupted, weights or None)`; None means no
    corruption (the plain autoencoder). `seed` is drawn per batch by the input pipeline,
    so every epoch sees new noise and a run is reproducible from its seed.
    """
    if corrupt is None:
        return images, images
    corrupted, weights = corrupt(images, options, seed)
    return (corrupted, images) if weights is None else (corrupted, images, weights)


def examples(model: keras.Model, images: np.ndarray, corrupt, options: dict, seed: int) -> dict:
    """Input, corrupted input (when there is a corruption) and the model's reconstruction."""
    images = np.asarray(images, dtype=np.float32)
    if corrupt is None:
        return {"input": images, "output": model.predict(images, verbose=0)}
    corrupted, _ = corrupt(tf.constant(images), options, tf.constant([seed, seed], tf.int64))
    corrupted = np.asarray(corrupted)
    return {"input": images, "corrupted": corrupted, "output": model.predict(corrupted, verbose=0)}


class ReconstructionMethod(PretextMethod):
    """The family's method: subclasses set `name` and, unless they reconstruct the
    image as it is, `corrupt(images, options, seed) -> (corrupted, weights or None)`."""

    name = "autoencoder"
    corrupt = None
    OPTIONS = OPTIONS
    PIXEL_TARGETS = True

    def check(self, options: dict, settings: dict | None = None) -> None:
        check(options)

    def build(self, encoder: keras.Model, options: dict, augmentation=None, total_steps=None) -> keras.Model:
        return build(encoder, options, name=self.name)

    def compile_args(self, options: dict) -> dict:
        return compile_args(options)

    def metric_names(self, options: dict) -> list[str]:
        return ["loss", "mae"]

    def transform(self, images, labels, seed, options: dict):
        return transform(images, labels, seed, self.corrupt, options)

    def examples(self, model: keras.Model, images: np.ndarray, options: dict, seed: int) -> dict:
        return examples(model, images, self.corrupt, options, seed)
