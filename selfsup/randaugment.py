"""FixMatch's strong augmentation: RandAugment with a policy drawn per image, then Cutout.

Follows the RandAugment variant FixMatch trains with (Sohn et al. 2020), the `rac`
augmentation of google-research/fixmatch: `AugmentPoolRAMC(nops=2, magnitude=10)` in
libml/augment.py draws, for every image, 2 of the 14 operations of `RANDOM_POLICY_OPS`
(with replacement), each applied with probability 0.5 at an integer level in 1..9; the
operations are PIL's, as third_party/auto_augment/augmentations.py calls them; then
`cutout_numpy(size=16)` greys out a 16-pixel square (half the side of a 32-pixel image)
centred anywhere in the image, in every strong view.

Keras' own `keras.layers.RandAugment` is not this: from Keras 3.11 it draws one sequence
of operations per call (every image of a batch gets the same ones), its magnitudes are
Keras' own, and it has no identity and no cutout.

Images are float in [0, 1], shape (batch, height, width, channels) with 1 or 3 channels.
Deviations from the reference, and why:
- The operations run in TensorFlow on the whole batch (each operation is computed for
  every image and selected per image), not in PIL image by image: the pipeline stays in
  the graph. Each matches PIL on 8-bit images (tests/test_randaugment.py compares them)
  up to the rounding of one grey level: pixels stay floats between operations instead of
  being rounded to 8 bits after each one.
- Translations are `level` pixels of a 32-pixel side, as the reference, scaled by the
  side for other image sizes (the reference's are absolute pixels and it trains on 32).
  The cutout is half the image's shorter side (16 of 32), for the same reason.
- Pixels that geometric operations bring in, and the cutout, are mid-grey (0.5), as the
  reference's (its transparent border and its cutout are 0 in its [-1, 1] range).
"""

from __future__ import annotations

import math

import tensorflow as tf

# RANDOM_POLICY_OPS of libml/augment.py, in its order.
OPERATIONS = (
    "identity",
    "auto_contrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "translate_x",
    "translate_y",
    "posterize",
    "shear_y",
)
OPS_PER_IMAGE = 2  # nops
PROBABILITY = 0.5  # each drawn operation applies with this probability (TransformT.pil_transformer)
MAX_LEVEL = 10  # levels are integers in 1 .. MAX_LEVEL - 1 (np.random.randint(1, magnitude))
CUTOUT = 0.5  # the cutout square's side, as a fraction of the image's shorter side (16 of 32)
FILL = 0.5  # mid-grey: what geometric operations bring in, and the cutout
REFERENCE_SIDE = 32  # the image side the reference's pixel translations are for


def _int_parameter(level, maximum):
    """augmentations.py's int_parameter: int(level * maximum / 10)."""
    return tf.math.floor(tf.cast(level, tf.float32) * maximum / MAX_LEVEL)


def _float_parameter(level, maximum):
    return tf.cast(level, tf.float32) * maximum / MAX_LEVEL


def _per_image(values):
    return tf.reshape(values, [-1, 1, 1, 1])


def _grey(images):
    """PIL's 'L' conversion (ITU-R 601-2 luma) of RGB images; grey images as they are."""
    if images.shape[-1] == 1:
        return images
    weights = tf.constant([0.299, 0.587, 0.114], images.dtype)
    return tf.reduce_sum(images * weights, axis=-1, keepdims=True)


def _blend(degenerate, images, factor):
    """PIL's ImageEnhance: degenerate + factor * (image - degenerate), clipped."""
    return tf.clip_by_value(degenerate + _per_image(factor) * (images - degenerate), 0.0, 1.0)


def _to_levels(images):
    """8-bit grey levels 0..255 of [0, 1] pixels, as PIL holds them."""
    return tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0)


def auto_contrast(images, level=None):
    """ImageOps.autocontrast: each channel stretched to the full range (cutoff 0)."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    spread = high - low
    stretched = (images - low) / tf.where(spread > 0, spread, 1.0)
    return tf.where(spread > 0, stretched, images)


def equalize(images, level=None):
    """ImageOps.equalize per channel, PIL's lookup table: step = (pixels - count of the
    highest level present) // 255, level i -> (step // 2 + pixels below i) // step."""
    levels = tf.cast(_to_levels(images), tf.int32)
    batch, height, width, channels = (tf.shape(images)[i] for i in range(4))
    flat = tf.reshape(tf.transpose(levels, [0, 3, 1, 2]), [batch, channels, height * width])
    histogram = tf.reduce_sum(tf.one_hot(flat, 256, dtype=tf.int32), axis=2)  # (b, c, 256)
    present = tf.range(256)[tf.newaxis, tf.newaxis, :] * tf.cast(histogram > 0, tf.int32)
    last = tf.gather(histogram, tf.reduce_max(present, axis=-1), batch_dims=2)
    step = (height * width - last) // 255  # (b, c)
    below = tf.cumsum(histogram, axis=-1, exclusive=True)
    safe_step = tf.maximum(step, 1)[..., tf.newaxis]
    table = tf.minimum((safe_step // 2 + below) // safe_step, 255)
    table = tf.where(step[..., tf.newaxis] > 0, table, tf.range(256)[tf.newaxis, tf.newaxis, :])
    mapped = tf.gather(table, flat, batch_dims=2)  # (b, c, h * w)
    mapped = tf.transpose(tf.reshape(mapped, [batch, channels, height, width]), [0, 2, 3, 1])
    return tf.cast(mapped, images.dtype) / 255.0


def solarize(images, level):
    """ImageOps.solarize(img, 256 - int_parameter(level, 256)): levels at or above the
    threshold inverted."""
    threshold = 256.0 - _int_parameter(level, 256)
    return tf.where(_to_levels(images) >= _per_image(threshold), 1.0 - images, images)


def posterize(images, level):
    """ImageOps.posterize(img, 4 - int_parameter(level, 4)): keep that many high bits."""
    bits = 4.0 - _int_parameter(level, 4)
    quantum = _per_image(tf.pow(2.0, 8.0 - bits))
    return tf.math.floor(_to_levels(images) / quantum) * quantum / 255.0


def color(images, level):
    """ImageEnhance.Color(img).enhance(float_parameter(level, 1.8) + 0.1): towards grey."""
    return _blend(_grey(images), images, _float_parameter(level, 1.8) + 0.1)


def contrast(images, level):
    """ImageEnhance.Contrast: towards the image's mean grey level (rounded, as PIL's)."""
    mean = tf.round(tf.reduce_mean(_to_levels(_grey(images)), axis=[1, 2, 3], keepdims=True)) / 255.0
    return _blend(mean, images, _float_parameter(level, 1.8) + 0.1)


def brightness(images, level):
    """ImageEnhance.Brightness: towards black."""
    return _blend(tf.zeros_like(images), images, _float_parameter(level, 1.8) + 0.1)


def sharpness(images, level):
    """ImageEnhance.Sharpness: towards PIL's SMOOTH filter (3x3, centre 5, others 1, over
    13), which leaves the border pixels as they are."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    channels = images.shape[-1]
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID")
    smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    inner = tf.pad(tf.ones([height - 2, width - 2]), [[1, 1], [1, 1]])[tf.newaxis, :, :, tf.newaxis]
    degenerate = tf.where(inner > 0, smooth, images)
    return _blend(degenerate, images, _float_parameter(level, 1.8) + 0.1)


def _transform(images, rows):
    """Each image resampled as PIL's Image.transform(AFFINE, (a, b, c, d, e, f), NEAREST)
    does it: output pixel (x, y) takes input pixel floor(a (x + 0.5) + b (y + 0.5) + c),
    likewise for y with d, e, f; outside the image, FILL. rows: (batch, 6) of a..f.
    TensorFlow's transform rounds a x + b y + c' to the nearest pixel instead, so
    c' = c + (a + b - 1) / 2 gives PIL's pixel."""
    a, b, c, d, e, f = tf.unstack(rows, axis=1)
    shifted = tf.stack([a, b, c + (a + b - 1) / 2, d, e, f + (d + e - 1) / 2], axis=1)
    batch = tf.shape(images)[0]
    transforms = tf.concat([shifted, tf.zeros([batch, 2])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=FILL,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )


def _signed(values, signs):
    return values * signs


def rotate(images, level, signs):
    """img.rotate(int_parameter(level, 30) degrees, either way): PIL's matrix about the
    centre (width / 2, height / 2), counter-clockwise for a positive angle."""
    radians = -_signed(_int_parameter(level, 30), signs) * math.pi / 180.0
    cx = tf.cast(tf.shape(images)[2], tf.float32) / 2
    cy = tf.cast(tf.shape(images)[1], tf.float32) / 2
    a, b = tf.cos(radians), tf.sin(radians)
    d, e = -tf.sin(radians), tf.cos(radians)
    rows = tf.stack([a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy], axis=1)
    return _transform(images, rows)


def shear_x(images, level, signs):
    """img.transform(AFFINE, (1, v, 0, 0, 1, 0)), v = float_parameter(level, 0.3), either way."""
    v = _signed(_float_parameter(level, 0.3), signs)
    one, zero = tf.ones_like(v), tf.zeros_like(v)
    return _transform(images, tf.stack([one, v, zero, zero, one, zero], axis=1))


def shear_y(images, level, signs):
    v = _signed(_float_parameter(level, 0.3), signs)
    one, zero = tf.ones_like(v), tf.zeros_like(v)
    return _transform(images, tf.stack([one, zero, zero, v, one, zero], axis=1))


def _shift(images, level, signs):
    """int_parameter(level, 10) pixels of a 32-pixel side, either way, scaled to the side."""
    side = tf.cast(tf.shape(images)[2], tf.float32)
    return _signed(tf.round(_int_parameter(level, 10) * side / REFERENCE_SIDE), signs)


def translate_x(images, level, signs):
    t = _shift(images, level, signs)
    one, zero = tf.ones_like(t), tf.zeros_like(t)
    return _transform(images, tf.stack([one, zero, t, zero, one, zero], axis=1))


def translate_y(images, level, signs):
    t = _shift(images, level, signs)
    one, zero = tf.ones_like(t), tf.zeros_like(t)
    return _transform(images, tf.stack([one, zero, zero, zero, one, t], axis=1))


GEOMETRIC = {
    "rotate": rotate,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
}
POINTWISE = {
    "identity": lambda images, level: images,
    "auto_contrast": auto_contrast,
    "equalize": equalize,
    "solarize": solarize,
    "color": color,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
    "posterize": posterize,
}
assert set(GEOMETRIC) | set(POINTWISE) == set(OPERATIONS)


def apply_operation(name: str, images, level, signs=None):
    """Operation `name` at per-image integer `level` (batch,), and for the geometric ones
    per-image direction `signs` (batch,) of +1 or -1 (default +1)."""
    if name in GEOMETRIC:
        signs = tf.ones(tf.shape(images)[:1]) if signs is None else tf.cast(signs, tf.float32)
        return GEOMETRIC[name](images, level, signs)
    return POINTWISE[name](images, level)


def draw_policy(batch: int, seed) -> dict:
    """Per image and per round: the operation (index into OPERATIONS), whether it applies,
    its level and direction. `seed`: a stateless seed (2 integers)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    shape = [OPS_PER_IMAGE, batch]
    return {
        "operation": tf.random.stateless_uniform(shape, seeds[0], 0, len(OPERATIONS), tf.int32),
        "applies": tf.random.stateless_uniform(shape, seeds[1]) < PROBABILITY,
        "level": tf.random.stateless_uniform(shape, seeds[2], 1, MAX_LEVEL, tf.int32),
        "sign": tf.where(tf.random.stateless_uniform(shape, seeds[3]) < 0.5, -1.0, 1.0),
        "cutout_seed": seeds[4],
    }


def apply_policy(images, policy: dict, cutout: float = CUTOUT):
    """The drawn operations, round by round, each image through its own; then cutout."""
    for round_ in range(OPS_PER_IMAGE):
        operation, level = policy["operation"][round_], policy["level"][round_]
        result = images
        for index, name in enumerate(OPERATIONS):
            chosen = _per_image(operation == index) & _per_image(policy["applies"][round_])
            result = tf.where(chosen, apply_operation(name, images, level, policy["sign"][round_]), result)
        images = result
    return cut_out(images, policy["cutout_seed"], cutout)


def cut_out(images, seed, size: float = CUTOUT):
    """cutout_numpy: a square of `size` x the shorter side, centred uniformly anywhere
    (clipped at the borders), set to mid-grey, in every image."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    side = tf.cast(tf.round(size * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32)
    centres = tf.random.stateless_uniform([batch, 2], seed, 0, tf.int32.max, tf.int32)
    cy, cx = centres[:, 0] % height, centres[:, 1] % width
    rows, cols = tf.range(height)[tf.newaxis, :], tf.range(width)[tf.newaxis, :]
    top, left = (cy - side // 2)[:, tf.newaxis], (cx - side // 2)[:, tf.newaxis]
    in_rows = (rows >= top) & (rows < top + side)  # (batch, height)
    in_cols = (cols >= left) & (cols < left + side)
    box = in_rows[:, :, tf.newaxis, tf.newaxis] & in_cols[:, tf.newaxis, :, tf.newaxis]
    return tf.where(box, tf.constant(FILL, images.dtype), images)


def rand_augment(images, seed, cutout: float = CUTOUT):
    """FixMatch's strong view of `images` ([0, 1] floats), a policy drawn per image."""
    images = tf.convert_to_tensor(images, tf.float32)
    return apply_policy(images, draw_policy(tf.shape(images)[0], seed), cutout)
