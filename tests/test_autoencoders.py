"""The autoencoder family: decoders, corruptions, losses, validation, training and transfer."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

from selfsup import artifacts, downstream, encoders  # noqa: E402
from selfsup.config import StudyError  # noqa: E402
from selfsup.encoders import build_encoder  # noqa: E402
from selfsup.inputs import batches  # noqa: E402
from selfsup.pretext import get_method, reconstruction  # noqa: E402
from selfsup.study import check_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENCODER = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16]}}

# (run name, method, options): every decoder and corruption at least once.
RUNS = [
    ("ae_conv", "autoencoder", {"decoder": "conv_transpose", "decoder_filters": [8, 4]}),
    ("ae_upsampling", "autoencoder", {"decoder": "upsampling", "decoder_filters": [8]}),
    ("ae_mlp", "autoencoder", {"decoder": "mlp", "decoder_units": [32]}),
    ("dae_gaussian", "denoising_autoencoder", {"noise": "gaussian", "noise_level": 0.2}),
    ("dae_masking", "denoising_autoencoder", {"noise": "masking", "noise_level": 0.3}),
    ("inpaint_rect", "inpainting", {"region": "rectangle", "mask_fraction": 0.25}),
    ("inpaint_patches", "inpainting", {"region": "patches", "patch_size": 4, "region_weight": 3.0}),
    ("ae_linear_mse", "autoencoder", {"output_activation": "linear", "loss": "mse", "decoder_filters": [4]}),
    ("dae_mirror", "denoising_autoencoder", {"decoder": "mirror", "code_layer": "conv4"}),
]


def options_of(method: str, options: dict) -> dict:
    module = get_method(method)
    merged = {**module.OPTIONS, **options}
    module.check(merged)
    return merged


def tiny_encoder(input_shape=(16, 16, 1)):
    keras.utils.set_random_seed(0)
    return build_encoder(ENCODER["name"], input_shape, **ENCODER["options"])


def images(n=8, shape=(16, 16, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def method_batches(method, options, x, batch_size, seed):
    """The pretext job's batches of uint8 images `x`: shuffled, scaled, then the method's transform."""
    return batches(
        x,
        np.arange(len(x)),
        batch_size=batch_size,
        shuffle_seed=seed,
        transform=partial(method.transform, options=options),
        transform_seed=seed,
    )


def load_study(path: Path, edit=None) -> dict:
    """A study file as the workflow sees it: schema defaults filled, then check_study."""
    from snakemake.utils import validate

    config = yaml.safe_load(path.read_text())
    if edit:
        edit(config)
    validate(config, str(ROOT / "schemas" / "study.schema.yaml"))
    return check_study(config)


# --- decoders -------------------------------------------------------------------------


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (16, 16, 1)])
@pytest.mark.parametrize("decoder", ["conv_transpose", "upsampling", "mlp"])
@pytest.mark.parametrize("filters", [[8, 4], [8, 4, 4]])
def test_decoder_returns_the_exact_input_shape(image_shape, decoder, filters):
    # Three x2 stages overshoot 28 (4 -> 32): the crop must trim it back.
    options = {**reconstruction.OPTIONS, "decoder": decoder, "decoder_filters": filters, "decoder_units": [8]}
    model = reconstruction.decoder_from_shapes((16,), image_shape, options)
    assert model.output_shape[1:] == image_shape
    assert model.predict(np.zeros((2, 16), np.float32), verbose=0).shape == (2, *image_shape)


def test_decoder_accepts_spatial_features():
    # An encoder cut at a conv layer hands over feature maps, not a vector.
    options = {**reconstruction.OPTIONS, "decoder_filters": [4]}
    model = reconstruction.decoder_from_shapes((7, 7, 8), (28, 28, 1), options)
    assert model.output_shape == (None, 28, 28, 1)


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_autoencoder_output_matches_input_shape(image_shape):
    method = get_method("autoencoder")
    model = method.build(tiny_encoder(image_shape), options_of("autoencoder", {}))
    assert model.output_shape[1:] == image_shape


def test_decoder_output_activation_follows_the_options():
    for activation, loss in reconstruction.OUTPUT_LOSSES.items():
        options = {**reconstruction.OPTIONS, "output_activation": activation, "loss": loss}
        pixels = reconstruction.decoder_from_shapes((4,), (8, 8, 1), options).get_layer("pixels")
        assert pixels.get_config()["activation"] == activation


def test_autoencoder_rejects_a_code_as_wide_as_the_image():
    encoder = build_encoder("mlp", (4, 4, 1), dense=[16])
    with pytest.raises(ValueError, match="undercomplete"):
        get_method("autoencoder").build(encoder, options_of("autoencoder", {}))


def test_autoencoder_measures_the_bottleneck_at_the_code_layer():
    # conv1's 16x16x4 map is wider than the 16x16x1 image, though the encoder's output is not.
    with pytest.raises(ValueError, match="the code \\(output of conv1\\) has 1024 values for 256 pixels"):
        get_method("autoencoder").build(tiny_encoder(), options_of("autoencoder", {"code_layer": "conv1"}))


def network_1_encoder():
    return build_encoder("cifar100_semisupervised", (32, 32, 3))


def describe_decoder(decoder):
    """(kind, filters or size, padding, activation, output side) of each layer after the input."""
    rows = []
    for layer in decoder.layers[1:]:
        side = layer.output.shape[1]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            assert layer.kernel_size == (3, 3) and layer.strides == (1, 1)
            rows.append(("convT", layer.filters, layer.padding, layer.activation.__name__, side))
        else:
            rows.append((type(layer).__name__, layer.size[0], side))
    return rows


@pytest.mark.parametrize("activation", ["sigmoid", "linear"])
def test_mirror_decoder_of_network_1_is_the_reference_decoder(activation):
    # Study F's two-step autoencoder: network 1 cut at conv4, a fully convolutional decoder.
    options = options_of(
        "autoencoder",
        {
            "decoder": "mirror",
            "code_layer": "conv4",
            "output_activation": activation,
            "loss": reconstruction.OUTPUT_LOSSES[activation],
        },
    )
    encoder = network_1_encoder()
    decoder = reconstruction.build_decoder(encoder, options)
    assert not any(isinstance(layer, keras.layers.Dense) for layer in decoder.layers)
    assert decoder.input_shape == (None, 4, 4, 128)
    assert decoder.output_shape == (None, 32, 32, 3)
    assert describe_decoder(decoder) == [
        ("convT", 128, "valid", "relu", 6),
        ("UpSampling2D", 2, 12),
        ("convT", 64, "valid", "relu", 14),
        ("UpSampling2D", 2, 28),
        ("convT", 32, "valid", "relu", 30),
        ("convT", 3, "valid", activation, 32),
    ]
    assert decoder.layers[-1].name == "pixels"

    model = get_method("autoencoder").build(encoder, options)
    assert model.output_shape == (None, 32, 32, 3)
    # Only conv1..conv4 are under the code; pool3 and flatten hold no weights anyway.
    under_code = sum(encoder.get_layer(f"conv{i}").count_params() for i in range(1, 5))
    assert model.count_params() == under_code + decoder.count_params() == encoder.count_params() + 240_707


def test_code_layer_must_be_a_layer_of_the_encoder():
    options = options_of("autoencoder", {"decoder": "mirror", "code_layer": "conv5"})
    with pytest.raises(ValueError) as err:
        get_method("autoencoder").build(network_1_encoder(), options)
    assert str(err.value) == (
        "code_layer 'conv5' is not a layer of the encoder; choose one of "
        "conv1, conv2, pool1, conv3, pool2, conv4, pool3, flatten"
    )


@pytest.mark.parametrize("code_layer", [None, "flatten"])
def test_mirror_decoder_rejects_a_flat_code(code_layer):
    options = options_of("denoising_autoencoder", {"decoder": "mirror", "code_layer": code_layer})
    with pytest.raises(ValueError) as err:
        get_method("denoising_autoencoder").build(network_1_encoder(), options)
    message = str(err.value)
    assert "needs a feature map as its code, but the code (flatten) is flat, of shape (512,)" in message
    assert message.endswith(
        "set code_layer to one of the encoder's conv or pooling layers: "
        "conv1, conv2, pool1, conv3, pool2, conv4, pool3"
    )


def test_mirror_decoder_names_the_pooling_that_loses_rows():
    # 25 -> 23 -> 21 -> pool1 -> 10: upsampling gives back 20, not 21.
    encoder = build_encoder("cifar100_semisupervised", (25, 25, 1))
    options = options_of("inpainting", {"decoder": "mirror", "code_layer": "conv4"})
    with pytest.raises(
        ValueError,
        match=r"the mirror of pool1 turns \(10, 10\) back into \(20, 20\), not its input size \(21, 21\)",
    ):
        get_method("inpainting").build(encoder, options)


def test_mirror_decoder_trains_a_tiny_autoencoder():
    # small_cnn's same-padded convs, cut at pool2 (4x4x8 for 16x16x1 images).
    method = get_method("autoencoder")
    options = options_of("autoencoder", {"decoder": "mirror", "code_layer": "pool2"})
    encoder = tiny_encoder()
    model = method.build(encoder, options)
    decoder = model.get_layer("decoder")
    assert [layer.name for layer in decoder.layers[1:]] == [
        "mirror_pool2",
        "mirror_conv4",
        "mirror_conv3",
        "mirror_pool1",
        "mirror_conv2",
        "pixels",
    ]
    assert decoder.get_layer("mirror_conv4").padding == "same"
    model.compile(optimizer=keras.optimizers.Adam(0.01), **method.compile_args(options))
    x = images(8)
    losses = [model.train_on_batch(x, x, return_dict=True)["loss"] for _ in range(5)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # dense1, after the code, is left alone; the convs under it learn.
    assert model.count_params() == encoder.count_params() - encoder.get_layer("dense1").count_params() + (
        decoder.count_params()
    )


def test_spatial_decoders_take_a_code_layer():
    # conv_transpose flattens the feature map before its Dense layer.
    options = options_of("autoencoder", {"code_layer": "pool2", "decoder_filters": [4]})
    decoder = reconstruction.build_decoder(tiny_encoder(), options)
    assert decoder.input_shape == (None, 4, 4, 8)
    assert decoder.output_shape == (None, 16, 16, 1)
    with pytest.raises(ValueError, match="build it with build_decoder"):
        reconstruction.decoder_from_shapes((4, 4, 8), (16, 16, 1), {**options, "decoder": "mirror"})


# --- corruptions ----------------------------------------------------------------------


SEED = tf.constant([3, 1], tf.int64)


def test_gaussian_noise_stays_in_range_with_the_asked_strength():
    x = np.full((4, 16, 16, 1), 0.5, np.float32)
    noisy = reconstruction.gaussian_noise(x, 0.1, SEED).numpy()
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert np.std(noisy - x) == pytest.approx(0.1, rel=0.15)


def test_masking_noise_zeroes_about_the_asked_fraction_and_keeps_the_rest():
    x = images(8, (16, 16, 1)) + 0.1
    masked = reconstruction.masking_noise(x, 0.3, SEED).numpy()
    zeroed = masked == 0
    assert zeroed.mean() == pytest.approx(0.3, abs=0.05)
    np.testing.assert_array_equal(masked[~zeroed], x[~zeroed])


def test_rectangle_mask_is_one_rectangle_of_the_asked_area():
    mask = reconstruction.rectangle_mask(np.zeros((6, 16, 16, 1), np.float32), 0.25, SEED).numpy()
    assert mask.shape == (6, 16, 16, 1)
    for m in mask[..., 0]:
        rows, cols = np.nonzero(m)
        assert m.sum() == 8 * 8  # side sqrt(0.25) * 16
        assert m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


def test_patch_mask_follows_the_patch_grid():
    mask = reconstruction.patch_mask(np.zeros((4, 14, 14, 1), np.float32), 4, 0.5, SEED).numpy()[..., 0]
    assert mask.shape == (4, 14, 14)
    # Constant inside each 4x4 cell (the last, partial cells included).
    for r in range(0, 14, 4):
        for c in range(0, 14, 4):
            cell = mask[:, r : r + 4, c : c + 4]
            assert (cell == cell[:, :1, :1]).all()
    assert 0 < mask.mean() < 1


@pytest.mark.parametrize("region", ["rectangle", "patches"])
def test_inpainting_fills_only_the_removed_region(region):
    options = options_of("inpainting", {"region": region, "fill": 0.5})
    x = images(4) * 0.4  # below the fill value, so the filled pixels are recognizable
    corrupted, weights = get_method("inpainting").corrupt(tf.constant(x), options, SEED)
    changed = corrupted.numpy() != x
    assert weights is None
    assert changed.any()
    np.testing.assert_allclose(corrupted.numpy()[changed], 0.5)


def test_corruptions_are_seeded():
    x = tf.constant(images(4))
    a = reconstruction.masking_noise(x, 0.5, SEED).numpy()
    b = reconstruction.masking_noise(x, 0.5, SEED).numpy()
    c = reconstruction.masking_noise(x, 0.5, tf.constant([4, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_batches_draw_new_noise_every_epoch_and_repeat_with_the_seed():
    method = get_method("denoising_autoencoder")
    options = options_of("denoising_autoencoder", {"noise": "masking", "noise_level": 0.5})
    x = np.full((4, 8, 8, 1), 255, np.uint8)  # every image alike, so only the noise differs

    def epochs(seed):
        data = method_batches(method, options, x, 4, seed)
        noise = []
        for epoch in range(2):
            data.epoch_counter.assign(epoch)  # as training.fit does: noise is a function of seed and epoch
            noise.append(next(iter(data))[0].numpy())
        return noise

    first, second = epochs(1)
    assert (first != second).any()
    np.testing.assert_array_equal(epochs(1)[0], first)
    assert (epochs(2)[0] != first).any()
    # The target is the clean image, scaled to [0, 1].
    np.testing.assert_array_equal(next(iter(method_batches(method, options, x, 4, 1)))[1], np.ones(x.shape))


@pytest.mark.parametrize("run, method_name, options", RUNS, ids=[r[0] for r in RUNS])
def test_transform_targets_the_clean_batch(run, method_name, options):
    method = get_method(method_name)
    options = options_of(method_name, options)
    x = tf.constant(images(4))
    batch = method.transform(x, tf.zeros(4, tf.int32), SEED, options)
    np.testing.assert_array_equal(batch[1].numpy(), x.numpy())
    if method_name == "autoencoder":
        assert len(batch) == 2
        np.testing.assert_array_equal(batch[0].numpy(), x.numpy())
    else:
        assert (batch[0].numpy() != x.numpy()).any()
    if len(batch) == 3:  # pixel weights of the removed region
        assert batch[2].shape == (4, 16, 16)
    assert method.PIXEL_TARGETS is True


# --- losses ---------------------------------------------------------------------------


def test_region_weights_favor_the_removed_region_with_mean_one():
    mask = np.zeros((2, 4, 4, 1), np.float32)
    mask[:, :2, :2] = 1  # a quarter of each image
    weights = reconstruction.region_weights(tf.constant(mask), 4.0).numpy()
    assert weights.shape == (2, 4, 4)
    np.testing.assert_allclose(weights.mean(axis=(1, 2)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights[:, 0, 0] / weights[:, 3, 3], 4.0, rtol=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", "linear"])
def test_weighted_reconstruction_loss_matches_numpy(activation):
    # The loss fit() computes from (corrupted, target, weights) batches, against a hand-written one.
    rng = np.random.default_rng(0)
    target = rng.random((3, 6, 6, 2)).astype(np.float32)
    output = rng.uniform(0.05, 0.95, (3, 6, 6, 2)).astype(np.float32)
    mask = np.zeros((3, 6, 6, 1), np.float32)
    mask[:, 1:4, 2:5] = 1
    weights = reconstruction.region_weights(tf.constant(mask), 5.0).numpy()
    loss_name = reconstruction.OUTPUT_LOSSES[activation]
    # An identity model compiled like the pretext models: its loss on `output` is fit()'s loss.
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Identity()])
    model.compile(**reconstruction.compile_args({"loss": loss_name}))
    got = model.evaluate(output, target, sample_weight=weights, batch_size=3, verbose=0, return_dict=True)[
        "loss"
    ]

    if loss_name == "binary_crossentropy":
        eps = keras.config.epsilon()
        p = np.clip(output, eps, 1 - eps)
        per_pixel = -(target * np.log(p) + (1 - target) * np.log(1 - p)).mean(axis=-1)
    else:
        per_pixel = ((target - output) ** 2).mean(axis=-1)
    expected = (weights * per_pixel).mean()
    assert got == pytest.approx(expected, rel=1e-5)
    # Weighting toward the removed region changes the loss: the weights are really used.
    assert got != pytest.approx(per_pixel.mean(), rel=1e-3)


# --- validation, before any job runs ---------------------------------------------------


def _with_pretext(method, options):
    def edit(config):
        config["pretext"] = {"recon": {"method": method, "options": options}}

    return edit


TINY = ROOT / "tests" / "data" / "tiny_autoencoders.yaml"


@pytest.mark.parametrize("method", ["autoencoder", "denoising_autoencoder", "inpainting"])
@pytest.mark.parametrize(
    "options, reason",
    [
        ({"output_activation": "relu", "loss": "mse"}, "relu.*is not allowed.*zero gradient"),
        ({"output_activation": "relu"}, "relu.*is not allowed"),
        ({"output_activation": "sigmoid", "loss": "mse"}, "'sigmoid' goes with loss 'binary_crossentropy'"),
        (
            {"output_activation": "linear", "loss": "binary_crossentropy"},
            "'linear' goes with loss 'mse'.*needs outputs in \\(0, 1\\)",
        ),
        ({"output_activation": "tanh", "loss": "mse"}, "output_activation must be sigmoid or linear"),
        ({"decoder": "dense"}, "decoder must be one of conv_transpose, upsampling, mlp"),
    ],
)
def test_check_study_rejects_unsound_decoder_options(method, options, reason):
    with pytest.raises(StudyError, match=f"^pretext.recon.options: .*{reason}"):
        load_study(TINY, _with_pretext(method, options))


@pytest.mark.parametrize(
    "method, options, reason",
    [
        ("denoising_autoencoder", {"noise": "salt"}, "noise must be gaussian or masking"),
        ("denoising_autoencoder", {"noise": "masking", "noise_level": 1.5}, "fraction of pixels masked"),
        ("denoising_autoencoder", {"noise": "gaussian", "noise_level": 0.0}, "standard deviation"),
        ("inpainting", {"region": "circle"}, "region must be rectangle or patches"),
        ("inpainting", {"mask_fraction": 1.0}, "mask_fraction"),
        ("inpainting", {"region_weight": 0.0}, "region_weight"),
        ("inpainting", {"noise_level": 0.3}, "unknown option"),
    ],
)
def test_check_study_rejects_bad_corruption_options(method, options, reason):
    with pytest.raises(StudyError, match=reason):
        load_study(TINY, _with_pretext(method, options))


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"code_layer": "conv9"}, "code_layer 'conv9' is not a layer of the encoder; choose one of conv1, "),
        ({"decoder": "mirror"}, "decoder mirror needs a feature map as its code.*pool2$"),
        ({"code_layer": ""}, "code_layer must be the name of an encoder layer"),
        ({"code_layer": 4}, "code_layer must be the name of an encoder layer, or null, got 4"),
    ],
)
def test_check_study_rejects_a_code_layer_that_does_not_fit_the_encoder(options, reason):
    with pytest.raises(StudyError, match=f"^pretext.recon.options: {reason}"):
        load_study(TINY, _with_pretext("autoencoder", options))


def test_check_study_accepts_a_mirror_decoder_on_a_feature_map():
    study = load_study(TINY, _with_pretext("autoencoder", {"decoder": "mirror", "code_layer": "pool2"}))
    assert study["pretext"]["recon"]["options"]["code_layer"] == "pool2"


def test_check_study_rejects_a_code_as_wide_as_the_image():
    # Only the built model knows the code size, so validation builds it.
    def edit(config):
        _with_pretext("autoencoder", {})(config)
        config["encoder"] = {"name": "mlp", "options": {"dense": [1024]}}

    with pytest.raises(StudyError, match="^pretext.recon.options: autoencoder: .*undercomplete"):
        load_study(TINY, edit)


def test_both_sound_pairs_pass_validation():
    for activation, loss in reconstruction.OUTPUT_LOSSES.items():
        study = load_study(
            TINY, _with_pretext("autoencoder", {"output_activation": activation, "loss": loss})
        )
        assert study["pretext"]["recon"]["options"]["loss"] == loss


@pytest.mark.parametrize("path", [ROOT / "studies" / "autoencoders.yaml", TINY])
def test_study_presets_are_valid_and_share_one_encoder(path):
    study = load_study(path)
    methods = {entry["method"] for entry in study["pretext"].values()}
    assert {"autoencoder", "denoising_autoencoder", "inpainting"} <= methods
    assert {"supervised", "frozen", "finetune"} <= set(study["downstream"]["protocols"])
    assert any(p.startswith("partial_") for p in study["downstream"]["protocols"])
    # Encoders are configured once per study, never per method.
    assert all("encoder" not in entry for entry in study["pretext"].values())


def test_reference_study_c_preset():
    study = load_study(ROOT / "studies" / "autoencoders.yaml")
    assert study["dataset"]["name"] == "fashion_mnist"
    assert study["budgets"] == [100, 1000, "all"]
    assert len(study["seeds"]) == 3
    assert "rotation" in {entry["method"] for entry in study["pretext"].values()}
    decoders = {
        entry["options"]["decoder"] for entry in study["pretext"].values() if entry["method"] == "autoencoder"
    }
    assert "mlp" in decoders and decoders & {"conv_transpose", "upsampling"}


# --- training and transfer --------------------------------------------------------------


@pytest.mark.parametrize("run, method_name, options", RUNS, ids=[r[0] for r in RUNS])
def test_method_trains_one_step_and_its_encoder_transfers(run, method_name, options, tmp_path):
    method = get_method(method_name)
    options = options_of(method_name, options)
    encoder = tiny_encoder()
    model = method.build(encoder, options)
    model.compile(optimizer=keras.optimizers.Adam(0.01), **method.compile_args(options))
    stored = np.rint(images(8) * 255).astype(np.uint8)
    x = stored / np.float32(255)
    batch = next(iter(method_batches(method, options, stored, 8, seed=1)))
    assert batch[0].shape == batch[1].shape == x.shape
    # One batch of all 8 images, shuffled: the targets are the clean images, scaled.
    targets = batch[1].numpy()
    np.testing.assert_allclose(
        np.sort(targets.reshape(8, -1), axis=0), np.sort(x.reshape(8, -1), axis=0), rtol=1e-6
    )
    before = [w.copy() for w in encoder.get_weights()]
    logs = model.train_on_batch(*batch, return_dict=True) if len(batch) == 2 else None
    if logs is None:
        logs = model.train_on_batch(batch[0], batch[1], sample_weight=batch[2], return_dict=True)
    assert np.isfinite(logs["loss"])
    # The pretext model trains the very encoder object the pipeline saves.
    assert any((a != b).any() for a, b in zip(before, encoder.get_weights(), strict=True))

    shown = method.examples(model, x[:3], options, seed=1)
    expected = ["input", "output"] if method_name == "autoencoder" else ["input", "corrupted", "output"]
    assert list(shown) == expected
    assert all(v.shape == (3, 16, 16, 1) for v in shown.values())
    if "corrupted" in shown:
        assert (shown["corrupted"] != shown["input"]).any()

    path = tmp_path / "encoder.h5"
    spec = {"name": ENCODER["name"], "input_shape": [16, 16, 1], "options": ENCODER["options"]}
    artifacts.write_encoder(path, encoder, spec, {"method": method_name, "pretext": run})
    loaded, _ = encoders.read_encoder(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), encoder.predict(x, verbose=0), rtol=1e-6)
    classifier = downstream.build_classifier(loaded, 4, "frozen")
    assert classifier.predict(x, verbose=0).shape == (8, 4)


def test_compared_classifiers_have_equal_parameter_counts():
    # Study C's table compares these; only what trains differs, never the architecture.
    study = load_study(TINY)
    protocols = study["downstream"]["protocols"]
    method = get_method("autoencoder")
    options = options_of("autoencoder", {})
    pretrained = tiny_encoder()
    method.build(pretrained, options)  # the pretext model wraps it; the classifier only needs the encoder
    counts = {}
    for protocol in protocols:
        encoder = tiny_encoder() if protocol == "supervised" else pretrained
        counts[protocol] = downstream.count_params(downstream.build_classifier(encoder, 4, protocol))
    assert len({c["params"] for c in counts.values()}) == 1
    trainable = {p: c["trainable_params"] for p, c in counts.items()}
    assert trainable["frozen"] < trainable["partial_2"] < trainable["finetune"] == trainable["supervised"]


def test_partial_k_trains_the_head_and_the_last_k_encoder_layers():
    encoder = tiny_encoder()  # conv1..conv4, dense1 carry weights
    classifier = downstream.build_classifier(encoder, 4, "partial_2")
    trainable = {layer.name for layer in encoder.layers if layer.trainable and layer.weights}
    assert trainable == {"conv4", "dense1"}
    head = classifier.get_layer("classes")
    assert head.trainable
    expected = sum(
        int(np.prod(w.shape)) for name in ("conv4", "dense1") for w in encoder.get_layer(name).weights
    )
    expected += sum(int(np.prod(w.shape)) for w in head.weights)
    assert downstream.count_params(classifier)["trainable_params"] == expected
