"""selfsup.encoders: the registry, layer names, defaults and the reference networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from selfsup import downstream
from selfsup.downstream import apply_protocol
from selfsup.encoders import (
    ENCODERS,
    build_encoder,
    conv_layers,
    encoder_options,
    get_builder,
    weighted_layers,
)

# Encoders whose layers are numbered in one sequence (conv1, conv2, ...); resnet names
# its layers by stage and block instead, and needs larger images at its defaults.
SEQUENTIAL = sorted(set(ENCODERS) - {"resnet"})


def test_unknown_encoder_lists_choices():
    with pytest.raises(KeyError) as err:
        get_builder("resnet50")
    message = err.value.args[0]
    assert "unknown encoder 'resnet50'" in message
    for name in ENCODERS:
        assert name in message


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_every_encoder_builds_with_numbered_layer_names(name):
    encoder = build_encoder(name, (28, 28, 1))
    assert encoder.name == "encoder"
    assert encoder.input_shape == (None, 28, 28, 1)
    assert len(encoder.output_shape) == 2  # flat features
    kinds = {"conv": keras.layers.Conv2D, "pool": keras.layers.MaxPooling2D, "dense": keras.layers.Dense}
    for prefix, kind in kinds.items():
        names = [layer.name for layer in encoder.layers if isinstance(layer, kind)]
        assert names == [f"{prefix}{i}" for i in range(1, len(names) + 1)]
    features = encoder(np.zeros((2, 28, 28, 1), dtype=np.float32))
    assert features.shape == (2, encoder.output_shape[-1])


def test_encoder_options_are_the_defaults():
    assert encoder_options("small_cnn") == {"filters": [32, 64], "dense": [128], "dropout": 0.0}
    assert encoder_options("rotnet_mnist") == {}
    assert encoder_options("rotnet_fashion_mnist") == {}
    # Defaults come back as lists (YAML's type), and a fresh copy each time.
    options = encoder_options("small_cnn")
    options["filters"].append(1)
    assert encoder_options("small_cnn")["filters"] == [32, 64]


def test_small_cnn_options(tiny_encoder):
    encoder = tiny_encoder((16, 16, 1))
    assert [layer.filters for layer in conv_layers(encoder)] == [4, 4, 8, 8]
    assert [layer.name for layer in weighted_layers(encoder)] == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "dense1",
    ]
    assert encoder.output_shape == (None, 16)
    # conv 1->4, 4->4, 4->8, 8->8 (3x3 kernels, biases), then 4*4*8 -> 16 dense.
    assert encoder.count_params() == (9 * 4 + 4) + (9 * 16 + 4) + (9 * 32 + 8) + (9 * 64 + 8) + (
        128 * 16 + 16
    )
    with_dropout = tiny_encoder((16, 16, 1), dropout=0.25)
    assert with_dropout.get_layer("dropout1").rate == 0.25


def describe(encoder):
    """(type, filters/units/rate, kernel, stride) of each layer after the input."""
    rows = []
    for layer in encoder.layers[1:]:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.padding == "same" and layer.activation.__name__ == "relu"
            rows.append(("conv", layer.filters, layer.kernel_size[0], layer.strides[0]))
        elif isinstance(layer, keras.layers.MaxPooling2D):
            rows.append(("pool", layer.pool_size[0]))
        elif isinstance(layer, keras.layers.Dense):
            assert layer.activation.__name__ == "relu"
            rows.append(("dense", layer.units))
        elif isinstance(layer, keras.layers.Dropout):
            rows.append(("dropout", layer.rate))
        else:
            rows.append((type(layer).__name__,))
    return rows


def test_rotnet_fashion_mnist_is_study_a_network():
    encoder = build_encoder("rotnet_fashion_mnist", (28, 28, 1))
    assert describe(encoder) == [
        ("conv", 64, 7, 1),
        ("pool", 2),
        ("conv", 128, 3, 1),
        ("conv", 128, 3, 1),
        ("pool", 2),
        ("conv", 256, 3, 1),
        ("conv", 256, 3, 1),
        ("pool", 2),
        ("Flatten",),
        ("dense", 128),
        ("dropout", 0.5),
        ("dense", 64),
        ("dropout", 0.5),
    ]
    # 28 -> 14 -> 7 -> 3 after three poolings.
    assert encoder.get_layer("flatten").output.shape == (None, 3 * 3 * 256)
    assert encoder.output_shape == (None, 64)


def test_rotnet_mnist_is_study_b_network():
    encoder = build_encoder("rotnet_mnist", (28, 28, 1))
    assert describe(encoder) == [
        ("conv", 64, 3, 2),
        ("pool", 2),
        ("conv", 32, 3, 1),
        ("pool", 2),
        ("conv", 16, 3, 2),
        ("Flatten",),
    ]
    # 28 -stride 2-> 14 -pool-> 7 -> 7 -pool-> 3 -stride 2 (same)-> 2.
    assert encoder.get_layer("pool2").output.shape == (None, 3, 3, 32)
    assert encoder.output_shape == (None, 2 * 2 * 16)
    assert encoder.count_params() == (9 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * 16 + 16)


def conv_params(kernel, inputs, filters):
    return kernel * kernel * inputs * filters + filters


def test_resnet20_matches_the_keras_cifar10_example():
    encoder = build_encoder("resnet", (32, 32, 3))
    assert encoder_options("resnet") == {"n": 3, "filters": 16, "l2": 1e-4, "pool_size": 8}
    assert encoder.name == "encoder"
    # 32 -> 32 -> 16 -> 8, average-pooled over 8x8: one 64-channel vector.
    assert encoder.get_layer("stage3_block3_relu").output.shape == (None, 8, 8, 64)
    assert encoder.output_shape == (None, 64)
    # 19 3x3 convs and 2 projection shortcuts, each with an L2 penalty.
    assert len(conv_layers(encoder)) == 6 * 3 + 1 + 2
    assert len(encoder.losses) == 21
    for layer in conv_layers(encoder):
        assert layer.padding == "same"
        assert layer.kernel_regularizer.l2 == pytest.approx(1e-4)
    bn = 4 * 16  # gamma, beta, moving mean and variance per channel
    stem = conv_params(3, 3, 16) + bn
    stage1 = 3 * 2 * (conv_params(3, 16, 16) + bn)
    stage2 = (
        conv_params(3, 16, 32) + conv_params(1, 16, 32) + (2 * 3 - 1) * conv_params(3, 32, 32) + 6 * 2 * bn
    )
    stage3 = (
        conv_params(3, 32, 64) + conv_params(1, 32, 64) + (2 * 3 - 1) * conv_params(3, 64, 64) + 6 * 4 * bn
    )
    assert encoder.count_params() == stem + stage1 + stage2 + stage3 == 273_792
    # With the example's Dense(10) head: 274,442 parameters, the figure it publishes.
    inputs = keras.Input((32, 32, 3))
    head = keras.layers.Dense(10, activation="softmax", kernel_initializer="he_normal")
    assert keras.Model(inputs, head(encoder(inputs))).count_params() == 274_442 == 273_792 + 64 * 10 + 10


def test_resnet_layer_names_and_blocks():
    encoder = build_encoder("resnet", (16, 16, 3), n=1, filters=4, pool_size=4)
    names = [layer.name for layer in encoder.layers]
    assert names[:4] == ["image", "conv1", "bn1", "relu1"]
    assert names[-2:] == ["pool", "flatten"]
    for stage in (1, 2, 3):
        for part in ("conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu"):
            assert f"stage{stage}_block1_{part}" in names
    # Only the blocks that halve the resolution project their shortcut, with no BN after it.
    assert [name for name in names if name.endswith("shortcut")] == [
        "stage2_block1_shortcut",
        "stage3_block1_shortcut",
    ]
    shortcut = encoder.get_layer("stage3_block1_shortcut")
    assert shortcut.kernel_size == (1, 1) and shortcut.strides == (2, 2)
    assert [layer.filters for layer in conv_layers(encoder)] == [4, 4, 4, 8, 8, 8, 16, 16, 16]
    # 16 -> 16 -> 8 -> 4, pooled over 4x4: the 16 channels of stage 3.
    assert encoder.get_layer("stage3_block1_relu").output.shape == (None, 4, 4, 16)
    assert encoder.output_shape == (None, 16)
    features = encoder(np.zeros((2, 16, 16, 3), dtype=np.float32))
    assert features.shape == (2, 16)


def test_resnet_rejects_images_too_small_for_its_pooling():
    with pytest.raises(ValueError) as err:
        build_encoder("resnet", (28, 28, 1))
    message = str(err.value)
    # 28 -> 14 -> 7 after the two strided stages.
    assert "7x7, smaller than pool_size 8" in message
    assert "pool_size to at most 7" in message and "at least 29x29" in message
    build_encoder("resnet", (28, 28, 1), n=1, filters=4, pool_size=7)
    build_encoder("resnet", (29, 29, 1), n=1, filters=4)


def test_resnet_without_weight_decay_has_no_losses():
    assert build_encoder("resnet", (16, 16, 1), n=1, filters=4, pool_size=4, l2=0).losses == []


def test_resnet_protocols():
    encoder = build_encoder("resnet", (16, 16, 3), n=1, filters=4, pool_size=4)
    apply_protocol(encoder, "freeze_1")
    frozen = [layer.name for layer in encoder.layers if not layer.trainable]
    assert frozen == ["image", "conv1"]
    apply_protocol(encoder, "partial_1")
    trainable = [layer.name for layer in encoder.layers if layer.trainable]
    # The last layer with weights is the last block's second BN; after it only weightless layers.
    assert trainable == ["stage3_block1_bn2", "stage3_block1_add", "stage3_block1_relu", "pool", "flatten"]


def network_1():
    """Study F's network 1, written literally from the protocol text."""
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="valid"),
            keras.layers.Conv2D(32, 3, activation="relu", padding="valid"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu", padding="valid"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(128, 3, activation="relu", padding="valid"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="softmax"),
        ]
    )


def test_cifar100_semisupervised_is_study_f_network_1_without_its_dense_layer():
    encoder = build_encoder("cifar100_semisupervised", (32, 32, 3))
    assert encoder_options("cifar100_semisupervised") == {}
    names = [layer.name for layer in encoder.layers[1:]]
    assert names == ["conv1", "conv2", "pool1", "conv3", "pool2", "conv4", "pool3", "flatten"]
    for layer in conv_layers(encoder):
        assert layer.padding == "valid" and layer.kernel_size == (3, 3) and layer.strides == (1, 1)
        assert layer.activation.__name__ == "relu"
    assert [layer.filters for layer in conv_layers(encoder)] == [16, 32, 64, 128]
    # 32 -> 30 -> 28 -> 14 -> 12 -> 6 -> 4 -> 2.
    assert encoder.get_layer("conv4").output.shape == (None, 4, 4, 128)
    assert encoder.output_shape == (None, 2 * 2 * 128)

    classifier = downstream.build_classifier(encoder, 100, "supervised")
    reference = network_1()
    # The classifier nests the encoder: its layers' outputs, then the head's.
    shapes = [layer.output.shape for layer in encoder.layers[1:]]
    shapes += [layer.output.shape for layer in classifier.layers[2:]]
    assert shapes == [layer.output.shape for layer in reference.layers]
    assert classifier.count_params() == reference.count_params() == 148_740
    # Conv biases and kernels, then Dense(512 -> 100).
    assert reference.count_params() == (
        conv_params(3, 3, 16) + conv_params(3, 16, 32) + conv_params(3, 32, 64) + conv_params(3, 64, 128)
    ) + (512 * 100 + 100)


def test_cifar100_semisupervised_names_the_smallest_image_it_takes():
    # 24 -> 22 -> 20 -> 10 -> 8 -> 4 -> 2 -> 1; at 23 pool3 gets a 1x1 map and leaves nothing.
    with pytest.raises(ValueError, match="23x23 images are too small .* at least 24x24"):
        build_encoder("cifar100_semisupervised", (23, 23, 3))
    with pytest.raises(ValueError, match="at least 24x24"):
        build_encoder("cifar100_semisupervised", (32, 20, 3))
    assert build_encoder("cifar100_semisupervised", (24, 24, 1)).output_shape == (None, 128)
