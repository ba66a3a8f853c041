"""selfsup.augment: its custom layers, the SimCLR-style recipe, presets and check()."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from selfsup import augment, augment_settings
from selfsup.pretext.two_view import TwoViewModel

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "study.schema.yaml"

JITTER_OFF = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def images(n=8, size=12, channels=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 0.9, (n, size, size, channels)).astype(np.float32)


def run(layer, x) -> np.ndarray:
    return np.asarray(layer(x, training=True))


def layers(seed):
    """One of each layer this module makes, and the settings that ask for it."""
    return {
        "crop": augment.RandomResizedCrop((0.2, 0.6), seed=seed),
        "jitter": augment.RandomApply(
            augment.build({"color_jitter": {"probability": 1.0}}, seed).layers[0].layer, 0.5, seed=seed
        ),
        "grayscale": augment.RandomGrayscale(0.5, seed=seed),
        "blur": augment.GaussianBlur((0.5, 2.0), kernel=0.5, seed=seed),
        "solarize": augment.RandomApply(augment.Solarize(), 0.5, seed=seed),
    }


@pytest.mark.parametrize("name", ["crop", "jitter", "grayscale", "blur", "solarize"])
def test_layers_keep_shape_and_dtype_repeat_with_their_seed_and_vary_per_image(name):
    x = np.repeat(images(1), 8, axis=0)  # eight copies: differences come from the layer
    out = run(layers(1)[name], x)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(run(layers(1)[name], x), out)
    assert not np.allclose(run(layers(2)[name], x), out)
    assert len({image.tobytes() for image in out}) > 1
    # Outside training, nothing changes.
    np.testing.assert_array_equal(np.asarray(layers(1)[name](x, training=False)), x)


@pytest.mark.parametrize("name", ["crop", "jitter", "grayscale", "blur", "solarize"])
def test_layers_round_trip_their_config(name):
    layer = layers(3)[name]
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    x = images()
    np.testing.assert_allclose(run(again, x), run(layer, x), atol=1e-6)


def test_a_whole_crop_is_the_identity():
    x = images(size=10)
    crop = augment.RandomResizedCrop((1.0, 1.0), (1.0, 1.0), seed=0)
    np.testing.assert_allclose(run(crop, x), x, atol=1e-5)


def test_small_crops_zoom_in():
    # A left-to-right ramp: a crop of a tenth of the area spans a narrower range of values.
    ramp = np.broadcast_to(np.linspace(0, 1, 16, dtype=np.float32)[None, None, :, None], (8, 16, 16, 1))
    out = run(augment.RandomResizedCrop((0.1, 0.1), (1.0, 1.0), seed=0), ramp)
    spans = out[:, 0, -1, 0] - out[:, 0, 0, 0]
    np.testing.assert_allclose(spans, np.sqrt(0.1), atol=0.02)  # side sqrt(0.1) of the image
    assert np.all(np.diff(out, axis=2) >= -1e-6)  # still a ramp, not mirrored or rotated
    assert len(set(np.round(out[:, 0, 0, 0], 4))) > 1  # at a different place in each image


def test_crops_of_a_wide_ratio_stay_inside_the_image():
    ramp = np.broadcast_to(np.linspace(0, 1, 16, dtype=np.float32)[None, None, :, None], (8, 16, 16, 1))
    out = run(augment.RandomResizedCrop((0.5, 0.5), (4.0, 4.0), seed=0), ramp)
    np.testing.assert_allclose(out[:, :, 0], 0, atol=1e-6)  # clipped to the full width
    np.testing.assert_allclose(out[:, :, -1], 1, atol=1e-6)


def test_random_apply_never_or_always():
    x = images()
    jitter = augment.build({"color_jitter": {"probability": 1.0}}, 0).layers[0].layer
    np.testing.assert_array_equal(run(augment.RandomApply(jitter, 0.0, seed=0), x), x)
    always = run(augment.RandomApply(jitter, 1.0, seed=0), x)
    assert all(not np.allclose(a, b) for a, b in zip(always, x, strict=True))


def test_grayscale_makes_equal_channels_for_some_images():
    x = images()
    out = run(augment.build({"grayscale": 0.5}, seed=0), x)
    gray = [np.allclose(o[..., 0], o[..., 1]) and np.allclose(o[..., 0], o[..., 2]) for o in out]
    kept = [np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(g or k for g, k in zip(gray, kept, strict=True)) and any(gray) and any(kept)
    assert np.all(run(augment.build({"grayscale": 1.0}, seed=0), x).std(axis=-1) < 1e-6)


def test_blur_keeps_flat_images_and_the_mean_and_smooths():
    flat = np.full((4, 16, 16, 3), 0.3, np.float32)
    blur = augment.GaussianBlur((1.0, 2.0), seed=0)
    np.testing.assert_allclose(run(blur, flat), flat, atol=1e-6)  # normalized kernel, reflected edges
    x = images(size=16)
    out = run(blur, x)
    assert np.all(np.abs(np.diff(out, axis=1)).mean(axis=(1, 2, 3)) < np.abs(np.diff(x, axis=1)).mean())
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.03)
    # A tiny sigma leaves the image as it was.
    np.testing.assert_allclose(run(augment.GaussianBlur((0.05, 0.05), seed=0), x), x, atol=1e-6)


def test_solarize_inverts_the_values_at_or_above_the_threshold_per_image():
    x = np.array([0.0, 0.2, 0.49, 0.5, 0.7, 1.0], np.float32).reshape(1, 1, 6, 1).repeat(4, axis=0)
    always = run(augment.build({"solarize": 1.0}, seed=0), x)
    np.testing.assert_allclose(always, np.where(x >= 0.5, 1.0 - x, x))
    assert [layer.name for layer in augment.build({"solarize": 1.0}, seed=0).layers] == ["solarize"]
    assert augment.build({"solarize": 0.0}, seed=0) is None
    np.testing.assert_array_equal(run(augment.RandomApply(augment.Solarize(), 0.0, seed=0), x), x)


def test_apply_repeats_the_solarize_draws_for_a_key():
    x = images(n=32)
    layers = augment.build({"solarize": 0.5}, seed=0)
    key = tf.constant([3, 4], tf.int64)
    out = np.asarray(augment.apply(layers, x, key))
    run(layers, x)  # advances the generators' state, which apply ignores
    np.testing.assert_array_equal(np.asarray(augment.apply(layers, x, key)), out)
    flipped = [not np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert 0 < sum(flipped) < len(x)
    other = np.asarray(augment.apply(layers, x, tf.constant([3, 5], tf.int64)))
    assert not np.array_equal(other, out)


def test_simclr_large_jitters_at_simclrs_imagenet_strength_the_small_presets_at_cifars():
    # google-research/simclr: 0.8 * s for brightness, contrast, saturation, 0.2 * s for hue;
    # s = 1.0 on ImageNet, 0.5 on CIFAR-10.
    strength = {"probability": 0.8}
    assert augment_settings.resolve({"preset": "simclr_large"})["color_jitter"] == {
        "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2, **strength
    }  # fmt: skip
    assert augment_settings.resolve({"preset": "simclr_small"})["color_jitter"] == {
        "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, **strength
    }  # fmt: skip
    augment_settings.check({"preset": "simclr_large"}, channels=3)


def test_byol_presets_differ_per_view_as_their_sources():
    byol_1 = augment_settings.resolve({"preset": "byol"}, view=1)
    byol_2 = augment_settings.resolve({"preset": "byol"}, view=2)
    jitter = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "probability": 0.8}
    for view in (byol_1, byol_2):
        assert view["crop"] == augment_settings.CROP and view["horizontal_flip"] is True
        assert view["color_jitter"] == jitter and view["grayscale"] == 0.2
    assert (byol_1["blur"]["probability"], byol_1["solarize"]) == (1.0, 0.0)
    assert (byol_2["blur"]["probability"], byol_2["solarize"]) == (0.1, 0.2)
    small_1 = augment_settings.resolve({"preset": "byol_small"}, view=1)
    small_2 = augment_settings.resolve({"preset": "byol_small"}, view=2)
    assert small_1["blur"] is None and small_2["blur"] is None
    assert (small_1["solarize"], small_2["solarize"]) == (0.0, 0.2)
    assert small_1["color_jitter"] == jitter
    # A study's key applies to both views, field by field; its second_view to view 2 only.
    settings = {"preset": "byol", "blur": {"sigma": [1.0, 2.0]}, "second_view": {"solarize": 0.5}}
    assert augment_settings.resolve(settings, view=2)["blur"] == {"probability": 0.1, "sigma": [1.0, 2.0]}
    assert augment_settings.resolve(settings, view=1)["blur"] == {"probability": 1.0, "sigma": [1.0, 2.0]}
    assert [augment_settings.resolve(settings, view=view)["solarize"] for view in (1, 2)] == [0.0, 0.5]


def test_byol_blurs_view_1_always_and_solarizes_a_fifth_of_view_2():
    # Bright noise: a blurred image loses most of its pixel-to-pixel differences (solarizing
    # keeps them), a solarized one turns dark (every value is above the threshold).
    # The geometric and colour stages are off, for both views, to see blur and solarize.
    n = 200
    x = np.random.default_rng(0).uniform(0.55, 0.95, (n, 32, 32, 3)).astype(np.float32)
    settings = {
        "preset": "byol",
        "crop": False,
        "horizontal_flip": False,
        "color_jitter": False,
        "grayscale": 0,
        "blur": {"sigma": [1.0, 2.0]},
    }
    first, second = augment.build_views(settings, seed=0)
    assert first is not second
    model = TwoViewModel(
        keras.layers.Identity(), keras.layers.Identity(), augmentation=first, second_augmentation=second
    )
    assert model.view_augmentations == (first, second)
    views = model.views((x, tf.constant([7, 11], tf.int64)))

    def energy(batch):
        return np.square(np.diff(batch, axis=1)).mean(axis=(1, 2, 3))

    blurred = [energy(np.asarray(view)) < 0.7 * energy(x) for view in views]
    solarized = [np.asarray(view).max(axis=(1, 2, 3)) < 0.5 for view in views]
    assert blurred[0].all() and not solarized[0].any()
    assert 0.12 <= solarized[1].mean() <= 0.28
    assert 0.03 <= blurred[1].mean() <= 0.18
    # Unblurred images of view 2 are the input, or its solarized form, exactly.
    kept = ~blurred[1]
    np.testing.assert_allclose(
        np.asarray(views[1])[kept],
        np.where(solarized[1][kept, None, None, None], 1 - x[kept], x[kept]),
        atol=1e-6,
    )


def test_without_a_second_view_both_views_come_from_one_pipeline_as_before():
    x = images(n=6, size=16)
    settings = {"preset": "simclr_small"}
    first, second = augment.build_views(settings, seed=3)
    assert first is second
    # The same pipeline `build` makes: the same draws, keyed or from the seed generators.
    model = TwoViewModel(keras.layers.Identity(), keras.layers.Identity(), augmentation=first)
    assert model.view_augmentations == (first, first)
    key = tf.constant([1, 2], tf.int64)
    reference = augment.build(settings, seed=3)
    fold_in = tf.random.experimental.stateless_fold_in
    for view, out in zip((1, 2), model.views((x, key)), strict=True):
        np.testing.assert_array_equal(
            np.asarray(out), np.asarray(augment.apply(reference, x, fold_in(key, view)))
        )
    for out in model.views(x):
        np.testing.assert_array_equal(np.asarray(out), run(reference, x))
    # A second_view that changes nothing is no second view.
    again = augment.build_views({**settings, "second_view": {"grayscale": 0.2}}, seed=3)
    assert again[0] is again[1]


def test_stages_that_augment_once_refuse_a_second_view():
    with pytest.raises(ValueError, match=r"^augmentation\.second_view: only two-view methods"):
        augment_settings.check({"second_view": {"solarize": 0.2}}, views=1)
    with pytest.raises(ValueError, match=r"^augmentation\.preset: byol augments view 2 differently"):
        augment.build({"preset": "byol"}, seed=0)
    augment_settings.check({"preset": "byol"}, views=2, channels=3)
    augment_settings.check({"preset": "simclr_large", "solarize": 0.2}, views=1)


def test_the_schema_lists_the_keys_and_presets():
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load(SCHEMA.read_text())
    definition = schema["$defs"]["augmentation"]
    assert set(definition["properties"]) == set(augment_settings.DEFAULTS)
    assert definition["properties"]["preset"]["enum"] == list(augment_settings.PRESETS)
    second = definition["properties"]["second_view"]["properties"]
    assert set(second) == set(augment_settings.DEFAULTS) - {"preset", "second_view"}
    validator = Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/augmentation"})
    validator.validate({"preset": "byol", "second_view": {"blur": {"probability": 0.5}, "solarize": 0.2}})
    assert not validator.is_valid({"second_view": {"preset": "byol"}})
    assert not validator.is_valid({"second_view": {"solarize": 1.5}})


def test_color_jitter_on_one_channel_with_brightness_and_contrast():
    x = images(channels=1)
    out = run(augment.build({"preset": "simclr_grayscale"}, seed=0), x)
    assert out.shape == x.shape and not np.allclose(out, x)
    assert out.min() >= 0 and out.max() <= 1


def test_build_orders_the_layers_and_presets_fill_in():
    names = [
        layer.name
        for layer in augment.build(
            {"preset": "simclr_large", "shift": 0.1, "rotation": 0.05, "zoom": 0.1}, seed=0
        ).layers
    ]
    assert names == [
        "crop",
        "horizontal_flip",
        "shift",
        "rotation",
        "zoom",
        "color_jitter",
        "grayscale",
        "blur",
    ]
    small = augment.build({"preset": "simclr_small"}, 0)
    assert [layer.name for layer in small.layers] == ["crop", "horizontal_flip", "color_jitter", "grayscale"]
    assert small.layers[0].scale == (0.2, 1.0)
    # Explicit keys override the preset's, field by field inside an object.
    settings = augment_settings.resolve(
        {"preset": "simclr_grayscale", "horizontal_flip": False, "color_jitter": {"probability": 1.0}}
    )
    assert settings["horizontal_flip"] is False
    assert settings["color_jitter"] == {
        **augment_settings.COLOR_JITTER,
        **JITTER_OFF,
        "brightness": 0.4,
        "contrast": 0.4,
        "probability": 1.0,
    }
    assert augment_settings.resolve({"preset": "simclr_large", "blur": False})["blur"] is None
    assert augment_settings.resolve({"crop": True})["crop"] == augment_settings.CROP
    assert augment.build({"color_jitter": {**JITTER_OFF}}, 0) is None
    assert (
        augment.build(
            {
                "preset": "simclr_large",
                "blur": {"probability": 0},
                "crop": False,
                "horizontal_flip": False,
                "color_jitter": False,
                "grayscale": 0,
            },
            0,
        )
        is None
    )


def test_build_in_tf_data_and_in_a_tf_function():
    x = images(n=6, size=16)
    aug = augment.build({"preset": "simclr_large", "rotation": 0.05, "zoom": 0.1, "shift": 0.1}, seed=4)
    data = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: aug(b, training=True))
    first = np.concatenate([b.numpy() for b in data])
    second = np.concatenate([b.numpy() for b in data])
    assert first.shape == x.shape and first.dtype == np.float32
    assert not np.allclose(first, second)  # new draws every epoch

    step = tf.function(lambda b: aug(b, training=True))
    assert step(x).shape == x.shape and step(x[:3]).shape == (3, 16, 16, 3)


def test_presets_pass_check_on_their_images():
    augment_settings.check({"preset": "simclr_small"}, channels=3)
    augment_settings.check({"preset": "simclr_large"}, channels=3)
    augment_settings.check({"preset": "simclr_grayscale"}, channels=1)
    augment_settings.check({"preset": "simclr_grayscale", "color_jitter": {"brightness": 0.8}}, channels=1)
    augment_settings.check(
        {"color_jitter": {"saturation": 0, "hue": 0}, "rotation": 0.1, "zoom": 0.2}, channels=1
    )
    augment_settings.check({"preset": "simclr_small"})  # channels unknown: not checked
    augment_settings.check(
        {"horizontal_flip": False, "shift": 0.0, "crop": True, "blur": {"sigma": [0.5, 0.5]}}
    )


@pytest.mark.parametrize(
    ("settings", "channels", "message"),
    [
        ({"jitter": 0.4}, None, r"^augmentation: unknown key\(s\) \['jitter'\]; allowed: \['blur', "),
        (
            {"preset": "simclr"},
            None,
            r"^augmentation\.preset: unknown preset 'simclr'; allowed: \['byol', 'byol_small', 'simclr_grayscale'",
        ),
        (
            {"crop": {"area": [0.1, 1]}},
            None,
            r"^augmentation\.crop: unknown key\(s\) \['area'\]; allowed: \['ratio', 'scale'\]",
        ),
        (
            {"blur": 0.5},
            None,
            r"^augmentation\.blur must be a mapping of \['probability', 'sigma'\], true or false",
        ),
        (
            {"color_jitter": {}},
            1,
            r"^augmentation\.color_jitter\.saturation: no colour jitter on 1-channel images",
        ),
        (
            {"color_jitter": {"saturation": 0}},
            1,
            r"^augmentation\.color_jitter\.hue: no colour jitter on 1-channel",
        ),
        ({"preset": "simclr_small"}, 1, r"^augmentation\.color_jitter\.saturation: no colour jitter"),
        ({"grayscale": 0.2}, 1, r"^augmentation\.grayscale: needs RGB images, these have 1 channel"),
        ({"shift": 1.5}, None, r"^augmentation\.shift must lie in \[0, 1\), got 1\.5"),
        ({"rotation": 0.6}, None, r"^augmentation\.rotation must lie in \[0, 0\.5\], got 0\.6"),
        ({"zoom": 1.0}, None, r"^augmentation\.zoom must lie in \[0, 1\), got 1\.0"),
        ({"grayscale": True}, None, r"^augmentation\.grayscale must lie in \[0, 1\], got True"),
        ({"horizontal_flip": 1}, None, r"^augmentation\.horizontal_flip must be true or false, got 1"),
        (
            {"crop": {"scale": [0.5, 0.2]}},
            None,
            r"^augmentation\.crop\.scale must be \[min, max\] with 0 < min <= max <= 1",
        ),
        ({"crop": {"scale": [0, 1]}}, None, r"^augmentation\.crop\.scale must be"),
        (
            {"crop": {"ratio": 1.0}},
            None,
            r"^augmentation\.crop\.ratio must be \[min, max\] with 0 < min <= max, got 1\.0",
        ),
        (
            {"color_jitter": {"hue": 0.6}},
            None,
            r"^augmentation\.color_jitter\.hue must lie in \[0, 0\.5\], got 0\.6",
        ),
        (
            {"color_jitter": {"brightness": -0.1}},
            None,
            r"^augmentation\.color_jitter\.brightness must lie in \[0, 1\]",
        ),
        (
            {"color_jitter": {"probability": 2}},
            None,
            r"^augmentation\.color_jitter\.probability must lie in \[0, 1\]",
        ),
        (
            {"blur": {"probability": 1.5}},
            None,
            r"^augmentation\.blur\.probability must lie in \[0, 1\], got 1\.5",
        ),
        (
            {"blur": {"sigma": [0, 2]}},
            None,
            r"^augmentation\.blur\.sigma must be \[min, max\] with 0 < min <= max",
        ),
        ({"solarize": 1.5}, None, r"^augmentation\.solarize must lie in \[0, 1\], got 1\.5"),
        ({"second_view": 0.2}, None, r"^augmentation\.second_view must be a mapping of augmentation keys"),
        (
            {"second_view": {"preset": "byol"}},
            None,
            r"^augmentation\.second_view may not contain \['preset'\]",
        ),
        (
            {"second_view": {"second_view": {}}},
            None,
            r"^augmentation\.second_view may not contain \['second_view'\]",
        ),
        (
            {"second_view": {"blurr": {}}},
            None,
            r"^augmentation\.second_view: unknown key\(s\) \['blurr'\]; allowed: \['blur', ",
        ),
        (
            {"second_view": {"blur": {"p": 1}}},
            None,
            r"^augmentation\.second_view\.blur: unknown key\(s\) \['p'\]",
        ),
        (
            {"preset": "byol", "second_view": {"blur": {"probability": 2}}},
            None,
            r"^augmentation\.second_view\.blur\.probability must lie in \[0, 1\], got 2",
        ),
        ({"second_view": {"grayscale": 0.2}}, 1, r"^augmentation\.second_view\.grayscale: needs RGB"),
    ],
)
def test_check_names_the_key_at_fault(settings, channels, message):
    with pytest.raises(ValueError, match=message):
        augment_settings.check(settings, channels=channels)
