"""selfsup.downstream: protocols, freezing, classifiers of equal size, validation cut."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from selfsup import encoders
from selfsup.data.splits import validation_cut
from selfsup.downstream import (
    accuracy,
    apply_protocol,
    build_classifier,
    count_params,
)
from selfsup.encoders import build_encoder
from selfsup.protocols import parse_protocol, uses_pretext

# small_cnn with filters [4, 8] and dense [16] on 16x16x1 images:
# conv1 1->4 (40), conv2 4->4 (148), conv3 4->8 (296), conv4 8->8 (584), dense1 128->16 (2064).
ENCODER_PARAMS = 40 + 148 + 296 + 584 + 2064
HEAD_PARAMS = 16 * 4 + 4  # Dense(4 classes) on 16 features
ALL_LAYERS = ["conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "flatten", "dense1"]


def trainable_names(encoder):
    return [layer.name for layer in encoder.layers[1:] if layer.trainable]


@pytest.mark.parametrize(
    "protocol, expected",
    [
        ("supervised", ("supervised", 0)),
        ("frozen", ("frozen", 0)),
        ("pixels_linear", ("pixels_linear", 0)),
        ("freeze_3", ("freeze", 3)),
        ("partial_12", ("partial", 12)),
    ],
)
def test_parse_protocol(protocol, expected):
    assert parse_protocol(protocol) == expected


@pytest.mark.parametrize("protocol", ["freeze_0", "freeze", "partial_x", "scratch", "Linear", "linear_1"])
def test_parse_protocol_error(protocol):
    with pytest.raises(
        ValueError,
        match=f"unknown protocol '{protocol}'; choose one of classifier: supervised, random, frozen, finetune",
    ):
        parse_protocol(protocol)


def test_uses_pretext():
    assert [
        uses_pretext(p)
        for p in ("supervised", "random", "frozen", "finetune", "freeze_1", "partial_2", "linear", "knn")
    ] == [
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
    ]


@pytest.mark.parametrize(
    "protocol, trainable",
    [
        ("supervised", ALL_LAYERS),
        ("finetune", ALL_LAYERS),
        ("random", []),
        ("frozen", []),
        ("freeze_1", ALL_LAYERS[1:]),
        ("freeze_2", ALL_LAYERS[2:]),  # conv1 and conv2 frozen; pool1 (no weights) trains
        ("freeze_4", ["pool2", "flatten", "dense1"]),
        ("partial_1", ["dense1"]),
        ("partial_2", ["conv4", "pool2", "flatten", "dense1"]),
        ("partial_5", ALL_LAYERS),
    ],
)
def test_apply_protocol_trainable_layers(tiny_encoder, protocol, trainable):
    encoder = tiny_encoder()
    apply_protocol(encoder, protocol)
    assert trainable_names(encoder) == trainable


def test_apply_protocol_resets_earlier_freezing(tiny_encoder):
    encoder = tiny_encoder()
    apply_protocol(encoder, "frozen")
    apply_protocol(encoder, "freeze_1")
    assert trainable_names(encoder) == ALL_LAYERS[1:]


def test_apply_protocol_k_too_large(tiny_encoder):
    with pytest.raises(ValueError, match="freeze_5: the encoder has only 4 conv layers"):
        apply_protocol(tiny_encoder(), "freeze_5")
    with pytest.raises(ValueError, match="partial_6: the encoder has only 5 layers with weights"):
        apply_protocol(tiny_encoder(), "partial_6")


def test_all_protocols_give_classifiers_of_the_same_size(tiny_encoder):
    """The comparison is fair only if every protocol trains the same architecture."""
    counts = {}
    for protocol in ("supervised", "random", "frozen", "finetune", "freeze_1", "partial_1"):
        classifier = build_classifier(tiny_encoder(), 4, protocol)
        counts[protocol] = count_params(classifier)
    assert {c["params"] for c in counts.values()} == {ENCODER_PARAMS + HEAD_PARAMS}
    trainable = {p: c["trainable_params"] for p, c in counts.items()}
    assert trainable == {
        "supervised": ENCODER_PARAMS + HEAD_PARAMS,
        "finetune": ENCODER_PARAMS + HEAD_PARAMS,
        "random": HEAD_PARAMS,
        "frozen": HEAD_PARAMS,
        "freeze_1": ENCODER_PARAMS - 40 + HEAD_PARAMS,
        "partial_1": 2064 + HEAD_PARAMS,
    }


def test_classifier_with_hidden_layers(tiny_encoder):
    classifier = build_classifier(tiny_encoder(), 3, "frozen", hidden=[8], dropout=0.5)
    assert [layer.name for layer in classifier.layers] == [
        "image",
        "encoder",
        "head_dense1",
        "head_dropout1",
        "classes",
    ]
    assert count_params(classifier) == {
        "params": ENCODER_PARAMS + (16 * 8 + 8) + (8 * 3 + 3),
        "trainable_params": (16 * 8 + 8) + (8 * 3 + 3),
    }
    assert classifier.name == "classifier_frozen"
    assert classifier.output_shape == (None, 3)


def test_feature_layer_pool2_on_rotnet_mnist():
    encoder = build_encoder("rotnet_mnist", (28, 28, 1))
    classifier = build_classifier(encoder, 10, "frozen", feature_layer="pool2")
    assert [type(layer).__name__ for layer in classifier.layers] == [
        "InputLayer",
        "Functional",
        "Flatten",
        "Dense",
    ]
    truncated = classifier.get_layer("encoder")
    assert [layer.name for layer in truncated.layers] == ["image", "conv1", "pool1", "conv2", "pool2"]
    assert classifier.get_layer("head_flatten").output.shape == (None, 3 * 3 * 32)
    assert count_params(classifier) == {
        "params": (64 * 3 * 3 * 1 + 64) + (32 * 3 * 3 * 64 + 32) + (3 * 3 * 32 * 10 + 10),
        "trainable_params": 3 * 3 * 32 * 10 + 10,
    }
    # The cut encoder shares the pretrained layers: same pool2 features.
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
    full_pool2 = keras.Model(encoder.input, encoder.get_layer("pool2").output)
    np.testing.assert_allclose(truncated.predict(x, verbose=0), full_pool2.predict(x, verbose=0), rtol=1e-6)


def test_bad_feature_layer_lists_names(tiny_encoder):
    with pytest.raises(ValueError) as err:
        build_classifier(tiny_encoder(), 4, "frozen", feature_layer="pool9")
    message = str(err.value)
    assert "feature_layer 'pool9' is not a layer of the encoder" in message
    assert ", ".join(ALL_LAYERS) in message


def test_cut_at_none_is_the_encoder(tiny_encoder):
    encoder = tiny_encoder()
    assert encoders.cut(encoder, None, "feature_layer") is encoder


def test_frozen_layers_do_not_change_in_training(tiny_encoder, synthetic):
    encoder = tiny_encoder()
    classifier = build_classifier(encoder, 4, "freeze_1")
    before = {name: encoder.get_layer(name).get_weights()[0].copy() for name in ("conv1", "conv2", "dense1")}
    classifier.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    classifier.fit(synthetic.x_train[:32] / 255, synthetic.y_train[:32], batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(encoder.get_layer("conv1").get_weights()[0], before["conv1"])
    assert not np.allclose(encoder.get_layer("conv2").get_weights()[0], before["conv2"])
    assert not np.allclose(encoder.get_layer("dense1").get_weights()[0], before["dense1"])


def test_validation_cut():
    train, val = validation_cut(10, 0.2, seed=1)
    assert len(train) == 8 and len(val) == 2
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(10))
    assert list(train) == sorted(train) and list(val) == sorted(val)
    again = validation_cut(10, 0.2, seed=1)
    np.testing.assert_array_equal(again[1], val)
    held_out = {tuple(validation_cut(100, 0.1, seed=s)[1]) for s in range(5)}
    assert len(held_out) == 5
    # Not Keras' tail split: the validation set is spread over the positions.
    assert validation_cut(100, 0.1, seed=0)[1].min() < 90


def test_validation_cut_without_validation():
    train, val = validation_cut(7, 0.0, seed=0)
    np.testing.assert_array_equal(train, np.arange(7))
    assert len(val) == 0


@pytest.mark.parametrize(
    ("fraction", "empty"), [(0.01, "holds out no validation example"), (0.99, "leaves no training example")]
)
def test_validation_cut_empty_set_error(fraction, empty):
    with pytest.raises(ValueError, match=f"validation_split {fraction} of 10 examples {empty}"):
        validation_cut(10, fraction, seed=0)


def test_accuracy_counts_argmax_hits():
    # A fixed "classifier": the class is the argmax of the inputs themselves.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    x = np.array([[3, 1, 0], [0, 2, 1], [0, 0, 5], [4, 0, 0]], dtype=np.float32)
    assert accuracy(model, x, np.array([0, 1, 1, 2])) == 0.5


def test_accuracy_from_unshuffled_batches_equals_from_the_array():
    from selfsup.inputs import batches

    inputs = keras.Input((2, 2, 1))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (11, 2, 2, 1), dtype=np.uint8)
    y = rng.integers(0, 4, 11)
    expected = float(np.mean(np.argmax(images.reshape(11, 4), axis=1) == y))
    assert 0 < expected < 1
    assert accuracy(model, images.astype(np.float32) / 255, y) == expected
    assert accuracy(model, batches(images, np.arange(11), y, batch_size=4), y) == expected
    # Positions pick and repeat examples; the labels follow them.
    positions = np.array([3, 3, 0, 10, 7])
    picked = float(np.mean(np.argmax(images[positions].reshape(5, 4), axis=1) == y[positions]))
    assert accuracy(model, batches(images, positions, y[positions], batch_size=2), y[positions]) == picked
