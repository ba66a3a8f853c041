"""Registry of encoder architectures.

An encoder maps images to features and is the part every stage shares: pretext
methods put their own head on it, downstream protocols put a classifier head on it.
Layers are named (conv1, pool1, ..., flatten, dense1; resnet by stage and block, see
its docstring) so studies can point at them:
`downstream.feature_layer` cuts the encoder after a named layer, and the freeze_k /
partial_k protocols count conv and weighted layers.
"""

from __future__ import annotations

import inspect
import math

import keras
from keras import layers

from selfsup import artifacts


def _conv_stack(x, blocks, padding="same"):
    """Apply `blocks`: (filters, kernel, stride) tuples for ReLU convs of `padding`, "pool" for
    2x2 max-pooling."""
    n_conv = n_pool = 0
    for block in blocks:
        if block == "pool":
            n_pool += 1
            x = layers.MaxPooling2D(2, name=f"pool{n_pool}")(x)
        else:
            filters, kernel, stride = block
            n_conv += 1
            x = layers.Conv2D(
                filters, kernel, strides=stride, padding=padding, activation="relu", name=f"conv{n_conv}"
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


# Study F's network 1 is conv-only up to its Dense(100) layer, with valid padding.
CIFAR100_SEMISUPERVISED_BLOCKS = [(16, 3, 1), (32, 3, 1), "pool", (64, 3, 1), "pool", (128, 3, 1), "pool"]


def _valid_stack_size(size: int, blocks) -> int:
    """The side of `size` images after `blocks` of valid convs and 2x2 poolings (<= 0: nothing left)."""
    for block in blocks:
        if size <= 0:
            break
        if block == "pool":
            size //= 2
        else:
            _, kernel, stride = block
            size = (size - kernel) // stride + 1
    return size


def cifar100_semisupervised(input_shape):
    """Study F's network 1 without its Dense(100, softmax) layer.

    conv1 (16) > conv2 (32) > pool1 > conv3 (64) > pool2 > conv4 (128) > pool3 > flatten,
    all 3x3 ReLU convs with valid padding: 32x32 images give conv4 4x4x128 and 512
    features. The supervised classifier (downstream.build_classifier) adds the Dense
    back, so it is network 1 exactly.
    """
    blocks = CIFAR100_SEMISUPERVISED_BLOCKS
    if min(_valid_stack_size(int(side), blocks) for side in input_shape[:2]) < 1:
        smallest = next(size for size in range(1, 1000) if _valid_stack_size(size, blocks) >= 1)
        raise ValueError(
            f"cifar100_semisupervised: {input_shape[0]}x{input_shape[1]} images are too small for its "
            f"unpadded (valid) convs and poolings; it needs at least {smallest}x{smallest}"
        )
    inputs = keras.Input(input_shape, name="image")
    x = _conv_stack(inputs, blocks, padding="valid")
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


def _resnet_conv(x, filters, kernel, stride, l2, name):
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=name,
    )(x)


def resnet(input_shape, n: int = 3, filters: int = 16, l2: float = 1e-4, pool_size: int = 8):
    """ResNet v1 of depth 6n+2 (ResNet-20 at n=3), as resnet_v1 of the Keras CIFAR-10 example.

    A 3x3 conv + BN + ReLU stem, then three stages of n basic blocks with `filters`,
    2*`filters` and 4*`filters` filters; the first block of stages 2 and 3 halves the
    resolution and projects its shortcut with a strided 1x1 conv (without BN, as in the
    example). Then average pooling over `pool_size` and flatten: the encoder ends there.
    Every conv has an L2(`l2`) kernel penalty, which reaches training through
    `model.losses`.

    Layer names: conv1, bn1, relu1 (stem); then for stage s and block b,
    stage{s}_block{b}_conv1, _bn1, _relu1, _conv2, _bn2, _shortcut (projection blocks
    only), _add, _relu; then pool, flatten. So freeze_1 freezes the stem conv, and
    feature_layer: stage2_block3_relu cuts after the second stage.
    """
    n, filters, pool_size = int(n), int(filters), int(pool_size)
    if n < 1:
        raise ValueError(f"resnet: n must be at least 1 (depth 6n+2), got {n}")
    # Same-padded stride-2 convs round up: two of them take H to ceil(ceil(H/2)/2).
    height, width = (math.ceil(math.ceil(size / 2) / 2) for size in input_shape[:2])
    if min(height, width) < pool_size:
        smallest = 4 * (pool_size - 1) + 1
        raise ValueError(
            f"resnet: the last feature map of {input_shape[0]}x{input_shape[1]} images is "
            f"{height}x{width}, smaller than pool_size {pool_size}; set the encoder option "
            f"pool_size to at most {min(height, width)}, or use images of at least {smallest}x{smallest}"
        )
    inputs = keras.Input(input_shape, name="image")
    x = _resnet_conv(inputs, filters, 3, 1, l2, "conv1")
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    for stage in range(1, 4):
        stage_filters = filters * 2 ** (stage - 1)
        for block in range(1, n + 1):
            name = f"stage{stage}_block{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            y = _resnet_conv(x, stage_filters, 3, stride, l2, f"{name}_conv1")
            y = layers.BatchNormalization(name=f"{name}_bn1")(y)
            y = layers.Activation("relu", name=f"{name}_relu1")(y)
            y = _resnet_conv(y, stage_filters, 3, 1, l2, f"{name}_conv2")
            y = layers.BatchNormalization(name=f"{name}_bn2")(y)
            if stride > 1:
                x = _resnet_conv(x, stage_filters, 1, stride, l2, f"{name}_shortcut")
            x = layers.Add(name=f"{name}_add")([x, y])
            x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.AveragePooling2D(pool_size, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, x, name="encoder")


ENCODERS = {
    "cifar100_semisupervised": cifar100_semisupervised,
    "mlp": mlp,
    "resnet": resnet,
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


def cut(encoder: keras.Model, layer: str | None, option: str) -> keras.Model:
    """The encoder up to and including `layer` (the encoder itself when None): a model on
    the encoder's own layers, so training it trains the encoder. `option` is the study
    key that names the layer (feature_layer, code_layer), for the error."""
    if layer is None:
        return encoder
    try:
        output = encoder.get_layer(layer).output
    except ValueError:
        names = [each.name for each in encoder.layers[1:]]
        raise ValueError(
            f"{option} {layer!r} is not a layer of the encoder; choose one of {', '.join(names)}"
        ) from None
    return keras.Model(encoder.input, output, name="encoder")


def read_encoder(path):
    """Rebuild the encoder saved at `path` (selfsup.artifacts.write_encoder) and load its
    weights; returns (model, spec)."""
    spec, values = artifacts.read_encoder_weights(path)
    encoder = build_encoder(spec["name"], tuple(spec["input_shape"]), **spec.get("options", {}))
    if len(values) != len(encoder.weights):
        raise ValueError(
            f"{path} holds {len(values)} weight arrays but encoder {spec['name']!r} "
            f"has {len(encoder.weights)}; the file does not match its architecture"
        )
    encoder.set_weights(values)
    return encoder, spec
