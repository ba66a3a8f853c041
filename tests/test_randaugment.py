"""selfsup.randaugment: FixMatch's strong augmentation, each operation against PIL (the
library the reference applies them with), and a policy drawn per image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from selfsup import randaugment

RNG = np.random.default_rng(0)
# Smooth-ish 8-bit images with some structure (an equalization of pure noise is nearly flat).
_ramp = np.linspace(0, 200, 32)[None, :, None, None] + np.linspace(0, 40, 32)[None, None, :, None]
IMAGES = {
    "rgb": np.clip(_ramp + RNG.integers(0, 50, (4, 32, 32, 3)), 0, 255).astype(np.uint8),
    "grey": np.clip(_ramp + RNG.integers(0, 50, (4, 32, 32, 1)), 0, 255).astype(np.uint8),
}
GREY = 128  # PIL's mid-grey fill; ours is 0.5 (127.5 of 255)


def pil_images(images):
    return [Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image) for image in images]


def from_pil(images, channels):
    stacked = np.stack([np.asarray(image, dtype=np.float32) for image in images]) / 255.0
    return stacked[..., None] if channels == 1 else stacked


def ours(name, images, level, sign=1.0):
    batch = len(images)
    return np.asarray(
        randaugment.apply_operation(
            name, images.astype(np.float32) / 255.0, np.full(batch, level), np.full(batch, sign)
        )
    )


PIL_OPERATIONS = {
    # As third_party/auto_augment/augmentations.py of the reference calls PIL.
    "auto_contrast": lambda img, level: ImageOps.autocontrast(img),
    "equalize": lambda img, level: ImageOps.equalize(img),
    "solarize": lambda img, level: ImageOps.solarize(img, 256 - int(level * 256 / 10)),
    "posterize": lambda img, level: ImageOps.posterize(img, 4 - int(level * 4 / 10)),
    "color": lambda img, level: ImageEnhance.Color(img).enhance(level * 1.8 / 10 + 0.1),
    "contrast": lambda img, level: ImageEnhance.Contrast(img).enhance(level * 1.8 / 10 + 0.1),
    "brightness": lambda img, level: ImageEnhance.Brightness(img).enhance(level * 1.8 / 10 + 0.1),
    "sharpness": lambda img, level: ImageEnhance.Sharpness(img).enhance(level * 1.8 / 10 + 0.1),
}
# PIL rounds to 8 bits inside the operation (autocontrast truncates, blends round).
TOLERANCE = {"auto_contrast": 1.01 / 255, "equalize": 1e-6, "solarize": 1e-6, "posterize": 1e-6}


@pytest.mark.parametrize("kind", sorted(IMAGES))
@pytest.mark.parametrize("name", sorted(PIL_OPERATIONS))
def test_pointwise_operations_match_pil(name, kind):
    images = IMAGES[kind]
    for level in (1, 5, 9):
        expected = from_pil(
            [PIL_OPERATIONS[name](img, level) for img in pil_images(images)], images.shape[-1]
        )
        np.testing.assert_allclose(ours(name, images, level), expected, atol=TOLERANCE.get(name, 2.01 / 255))


PIL_GEOMETRY = {
    "rotate": lambda img, level, sign: img.rotate(sign * int(level * 30 / 10), fillcolor=GREY),
    "shear_x": lambda img, level, sign: img.transform(
        img.size, Image.AFFINE, (1, sign * level * 0.3 / 10, 0, 0, 1, 0), fillcolor=GREY
    ),
    "shear_y": lambda img, level, sign: img.transform(
        img.size, Image.AFFINE, (1, 0, 0, sign * level * 0.3 / 10, 1, 0), fillcolor=GREY
    ),
    "translate_x": lambda img, level, sign: img.transform(
        img.size, Image.AFFINE, (1, 0, sign * int(level * 10 / 10), 0, 1, 0), fillcolor=GREY
    ),
    "translate_y": lambda img, level, sign: img.transform(
        img.size, Image.AFFINE, (1, 0, 0, 0, 1, sign * int(level * 10 / 10)), fillcolor=GREY
    ),
}


@pytest.mark.parametrize("name", sorted(PIL_GEOMETRY))
def test_geometric_operations_take_the_pixels_pil_takes(name):
    """Nearest-pixel resampling as PIL's; a pixel whose source lies on a rounding edge may
    differ (float arithmetic), so nearly every pixel, not every one, must agree."""
    images = IMAGES["grey"]
    for level, sign in ((3, 1.0), (9, -1.0)):
        expected = from_pil([PIL_GEOMETRY[name](img, level, sign) for img in pil_images(images)], 1)
        agree = np.abs(ours(name, images, level, sign) - expected) <= 1.01 / 255
        assert agree.mean() > 0.99, (name, level, sign, agree.mean())
        if name.startswith("translate"):
            assert agree.all()


def test_the_policy_is_drawn_per_image():
    """Images of one batch get different operations (Keras' RandAugment gives a batch one
    sequence), and each image's strong view is its own policy applied to it alone."""
    batch = 16
    image = IMAGES["rgb"][:1].astype(np.float32) / 255.0
    images = np.repeat(image, batch, axis=0)
    policy = randaugment.draw_policy(batch, [3, 4])
    operations = np.asarray(policy["operation"])
    assert len({tuple(column) for column in operations.T}) > batch // 2
    out = np.asarray(randaugment.apply_policy(images, policy, cutout=0.0))
    for i in range(batch):
        alone = image
        for round_ in range(randaugment.OPS_PER_IMAGE):
            if bool(policy["applies"][round_, i]):
                name = randaugment.OPERATIONS[int(operations[round_, i])]
                level = policy["level"][round_, i : i + 1]
                alone = randaugment.apply_operation(name, alone, level, policy["sign"][round_, i : i + 1])
        np.testing.assert_allclose(out[i], np.asarray(alone)[0], atol=1e-6)
    assert len({out[i].tobytes() for i in range(batch)}) > batch // 2


def test_policy_draws_follow_the_reference():
    """2 operations per image out of 14, with replacement; each applies half the time;
    integer levels 1..9 (np.random.randint(1, 10))."""
    policy = randaugment.draw_policy(4000, [1, 2])
    operations, levels = np.asarray(policy["operation"]), np.asarray(policy["level"])
    assert operations.shape == (2, 4000)
    assert set(np.unique(operations)) == set(range(14))
    assert set(np.unique(levels)) == set(range(1, 10))
    assert abs(np.asarray(policy["applies"]).mean() - 0.5) < 0.02
    assert (operations[0] == operations[1]).mean() > 0.04  # with replacement: about 1 in 14
    again = randaugment.draw_policy(4000, [1, 2])
    np.testing.assert_array_equal(np.asarray(again["operation"]), operations)  # the seed decides


def test_cutout_greys_one_square_of_half_the_side():
    images = np.zeros((200, 32, 32, 1), np.float32)
    out = np.asarray(randaugment.cut_out(images, [5, 6]))[..., 0]
    grey = out == randaugment.FILL
    assert set(np.unique(out)) <= {0.0, randaugment.FILL}
    areas = grey.sum(axis=(1, 2))
    assert areas.max() == 16 * 16 and areas.min() >= 8 * 8  # clipped at the borders
    for mask in grey:
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        assert mask.sum() == len(rows) * len(cols)  # one rectangle
    assert len({mask.tobytes() for mask in grey}) > 100  # centred anywhere, per image


def test_rand_augment_keeps_shape_and_range():
    images = IMAGES["rgb"].astype(np.float32) / 255.0
    out = np.asarray(randaugment.rand_augment(images, [7, 8]))
    assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, images)
