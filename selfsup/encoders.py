"""Registry of encoder architectures.

An encoder maps images to features and is the part every stage shares: pretext
methods put their own head on it, downstream protocols put a classifier head on it.
Layers are named (conv1, pool1, ..., flatten, dense1) so studies can point at them:
`downstream.feature_layer` cuts the encoder after a named layer, and the freeze_k /
partial_k protocols count conv and weighted layers.
"""

from __future__ import annotations

import inspect

import keras
from keras import layers


def _conv_stack(x, blocks):
    """Apply `blocks`: (filters, kernel, stride) tuples for convs, "pool" for 2x2 max-pooling."""
    n_conv = n_pool = 0
    for block in blocks:
        if block == "pool":
            n_pool += 1
            x = layers.MaxPooling2D(2, name=f"pool{n_pool}")(x)
        else:
            filters, kernel, stride = block
            n_conv += 1
            x = layers.Conv2D(
                filters, kernel, strides=stride, padding="same", activation="relu", name=f"conv{n_conv}"
            )(x)
    return x


def _dense_stack(x, units, dropout):
    for i, n in enumerate(units, start=1):
        x = layers.Dense(n, activation="relu", name=f"dense{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    return x


def rotnet_fashion_mnist(input_shape):
    """The reference network of the Fashion-MNIST rotation study, without its last layer."""
    inputs = keras.Input(input_shape, name="image")
    x = _conv_stack(
        inputs,
        [(64, 7, 1), "pool", (128, 3, 1), (128, 3, 1), "pool", (256, 3, 1), (256, 3, 1), "pool"],
    )
    x = layers.Flatten(name="flatten")(x)
    x = _dense_stack(x, [128, 64], dropout=0.5)
    return keras.Model(inputs, x, name="encoder")


def rotnet_mnist(input_shape):
    """The reference network of the MNIST rotation study, without its Dense layer."""
    inputs = keras.Input(input_shape, name="image")
    x = _conv_stack(inputs, [(64, 3, 2), "pool", (32, 3, 1), "pool", (16, 3, 2)])
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, x, name="encoder")


def small_cnn(input_shape, filters: list = (32, 64), dense: list = (128,), dropout: float = 0.0):
    """Conv-conv-pool blocks of `filters`, then dense layers: cheap enough for CPUs."""
    inputs = keras.Input(input_shape, name="image")
    blocks = []
    for f in filters:
        blocks += [(int(f), 3, 1), (int(f), 3, 1), "pool"]
    x = _conv_stack(inputs, blocks)
    x = layers.Flatten(name="flatten")(x)
    x = _dense_stack(x, [int(n) for n in dense], dropout)
    return keras.Model(inputs, x, name="encoder")


def mlp(input_shape, dense: list = (256, 128), dropout: float = 0.0):
    """Flatten, then dense ReLU layers: the encoder of a fully connected autoencoder."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = _dense_stack(x, [int(n) for n in dense], dropout)
    return keras.Model(inputs, x, name="encoder")


ENCODERS = {
    "mlp": mlp,
    "rotnet_fashion_mnist": rotnet_fashion_mnist,
    "rotnet_mnist": rotnet_mnist,
    "small_cnn": small_cnn,
}


def encoder_options(name: str) -> dict:
    """Default options of encoder `name` (its keyword arguments besides input_shape)."""
    builder = get_builder(name)
    return {
        p.name: list(p.default) if isinstance(p.default, tuple) else p.default
        for p in list(inspect.signature(builder).parameters.values())[1:]
    }


def get_builder(name: str):
    try:
        return ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; choose one of {', '.join(sorted(ENCODERS))}") from None


def build_encoder(name: str, input_shape, **options) -> keras.Model:
    """Build encoder `name` for images of `input_shape` (H, W, C); a model named "encoder"."""
    return get_builder(name)(tuple(input_shape), **options)


def conv_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]


def weighted_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if layer.weights]
