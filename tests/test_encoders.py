"""selfsup.encoders: the registry, layer names, defaults and the reference networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from selfsup.encoders import (
    ENCODERS,
    build_encoder,
    conv_layers,
    encoder_options,
    get_builder,
    weighted_layers,
)


def test_unknown_encoder_lists_choices():
    with pytest.raises(KeyError) as err:
        get_builder("resnet")
    message = err.value.args[0]
    assert "unknown encoder 'resnet'" in message
    for name in ENCODERS:
        assert name in message


@pytest.mark.parametrize("name", sorted(ENCODERS))
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
