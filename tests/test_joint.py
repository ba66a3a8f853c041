"""selfsup.joint: study F's one-step model, a classifier and an autoencoder on one encoder."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from selfsup import downstream, joint
from selfsup.data.dataset import NO_LABEL
from selfsup.encoders import build_encoder

# Network 1 written literally from the protocol text has 148,740 parameters
# (tests/test_encoders.py builds it and checks the encoder's classifier against it).
NETWORK_1_PARAMS = 148_740
# Its mirror decoder from conv4: ConvT 128 > Up > ConvT 64 > Up > ConvT 32 > ConvT 3.
MIRROR_PARAMS = (9 * 128 * 128 + 128) + (9 * 128 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * 3 + 3)
# small_cnn (conv 4, 4, pool1, conv 8, 8, pool2, dense 16) on 16x16x1 images, decoded from pool2.
TINY = {"code_layer": "pool2"}


def tiny_joint(num_classes=4, seed=0, **options):
    keras.utils.set_random_seed(seed)
    encoder = build_encoder("small_cnn", (16, 16, 1), filters=[4, 8], dense=[16])
    return joint.build_joint(encoder, num_classes, {**TINY, **options})


def tiny_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 16, 16, 1)).astype(np.float32), rng.integers(0, 4, n)


def compiled(model, learning_rate=0.01):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def evaluate(model, x, y):
    return model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)


def test_joint_model_is_network_1_plus_its_mirror_decoder():
    encoder = build_encoder("cifar100_semisupervised", (32, 32, 3))
    model = joint.build_joint(encoder, 100, {"code_layer": "conv4", "decoder": "mirror"})
    assert model.classifier.count_params() == NETWORK_1_PARAMS
    assert model.decoder.count_params() == MIRROR_PARAMS
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.decoder.layers)
    # The decoder reads the classifier's own encoder: shared weights are counted once.
    assert model.count_params() == NETWORK_1_PARAMS + MIRROR_PARAMS
    assert downstream.count_params(model)["params"] == NETWORK_1_PARAMS + MIRROR_PARAMS
    assert model.classifier.layers[1] is encoder
    x = np.zeros((2, 32, 32, 3), np.float32)
    assert model.predict(x, verbose=0).shape == (2, 100)
    assert model.reconstruct(x).shape == (2, 32, 32, 3)


def test_the_mirror_decoder_needs_a_feature_map_code():
    # The default decoder works from any encoder's flat output; the mirror cannot invert one.
    encoder = build_encoder("cifar100_semisupervised", (32, 32, 3))
    assert joint.build_joint(encoder, 100, {}).reconstruct(np.zeros((1, 32, 32, 3))).shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="set code_layer to one of the encoder's conv or pooling layers"):
        joint.build_joint(encoder, 100, {"decoder": "mirror"})


@pytest.mark.parametrize("reduction", joint.CLASS_LOSS_REDUCTIONS)
def test_losses_match_numpy_and_ignore_unlabeled_images(reduction):
    model = compiled(tiny_joint(reconstruction_weight=0.5, class_loss_reduction=reduction))
    x, _ = tiny_data(8)
    y = np.array([0, 1, -1, 2, -1, 3, -1, -1])
    labeled = y >= 0
    logs = evaluate(model, x, y)

    probabilities = model.predict(x, verbose=0)
    eps = keras.config.epsilon()
    summed = -np.log(np.clip(probabilities[labeled, y[labeled]], eps, 1 - eps)).sum()
    class_loss = summed / (labeled.sum() if reduction == "labeled" else len(y))
    rebuilt = np.clip(np.asarray(model.reconstruct(x)), eps, 1 - eps)
    reconstruction_loss = -(x * np.log(rebuilt) + (1 - x) * np.log(1 - rebuilt)).mean()
    accuracy = (probabilities[labeled].argmax(axis=1) == y[labeled]).mean()
    assert logs["class_loss"] == pytest.approx(class_loss, rel=1e-5)
    assert logs["reconstruction_loss"] == pytest.approx(reconstruction_loss, rel=1e-5)
    assert logs["loss"] == pytest.approx(class_loss + 0.5 * reconstruction_loss, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(accuracy)


def test_the_default_class_loss_is_keras_sample_weight_reduction():
    """The reference masks unlabeled images with Keras' sample_weight, whose default
    reduction divides by the batch size, not by the labeled count: the default here
    equals Keras' own loss object on the same batch."""
    model = tiny_joint()
    x, _ = tiny_data(8)
    y = np.array([0, 1, -1, 2, -1, 3, -1, -1])
    _, class_loss, *_ = model.step_losses(x, y, training=False)
    probabilities = model.predict(x, verbose=0)
    keras_loss = keras.losses.SparseCategoricalCrossentropy()(
        np.where(y < 0, 0, y), probabilities, sample_weight=(y >= 0).astype(np.float32)
    )
    assert float(class_loss) == pytest.approx(float(keras_loss), rel=1e-5)


def test_an_unlabeled_batch_trains_the_autoencoder_only():
    model = compiled(tiny_joint())
    x, _ = tiny_data(8)
    y = np.full(8, NO_LABEL)
    logs = evaluate(model, x, y)
    assert logs["class_loss"] == 0.0 and logs["accuracy"] == 0.0
    assert np.isfinite(logs["loss"]) and logs["loss"] == pytest.approx(logs["reconstruction_loss"])

    head = [w.copy() for w in model.classifier.get_layer("classes").get_weights()]
    conv1 = model.classifier.layers[1].get_layer("conv1").get_weights()[0].copy()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["class_loss"] == 0.0
    # No class gradient reaches the head; the reconstruction moves the encoder.
    for before, after in zip(head, model.classifier.get_layer("classes").get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    assert (model.classifier.layers[1].get_layer("conv1").get_weights()[0] != conv1).any()
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_training_lowers_both_losses_and_accuracy_reads_the_classes():
    model = compiled(tiny_joint())
    x, y = tiny_data(16)
    y_masked = np.where(np.arange(16) < 8, y, NO_LABEL)
    before = evaluate(model, x, y_masked)
    history = model.fit(x, y_masked, batch_size=8, epochs=8, verbose=0, shuffle=False)
    assert list(history.history) == ["accuracy", "class_loss", "loss", "reconstruction_loss"]
    after = evaluate(model, x, y_masked)
    assert after["class_loss"] < before["class_loss"]
    assert after["reconstruction_loss"] < before["reconstruction_loss"]
    # Calling the model gives class probabilities, so downstream evaluation works unchanged.
    assert downstream.accuracy(model, x[:8], y[:8]) == pytest.approx(after["accuracy"])


def test_regularization_losses_count_once():
    # The ResNet's L2 penalties reach the loss through model.losses, once per conv.
    keras.utils.set_random_seed(0)
    encoder = build_encoder("resnet", (16, 16, 3), n=1, filters=4, pool_size=4)
    model = joint.build_joint(encoder, 4, {"code_layer": "stage3_block1_relu", "decoder": "conv_transpose"})
    assert len(model.losses) == len(encoder.losses) == 9
    compiled(model)
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    logs = evaluate(model, x, np.array([0, 1, -1, -1]))
    penalty = float(sum(np.asarray(loss) for loss in encoder.losses))
    assert logs["loss"] == pytest.approx(logs["class_loss"] + logs["reconstruction_loss"] + penalty, rel=1e-5)


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"reconstruction_weight": 0.0}, "^reconstruction_weight must be a number > 0, got 0.0"),
        ({"reconstruction_weight": -1}, "^reconstruction_weight must be a number > 0"),
        ({"reconstruction_weight": True}, "^reconstruction_weight must be a number > 0"),
        ({"reconstruction_weight": "1"}, "^reconstruction_weight must be a number > 0"),
        ({"decoder": "dense"}, "^decoder must be one of conv_transpose, upsampling, mlp, mirror"),
        ({"decoder_filters": [0]}, "^decoder_filters must be a list of positive integers"),
        ({"code_layer": 3}, "^code_layer must be the name of an encoder layer"),
        ({"loss": "mse"}, "^output_activation 'sigmoid' goes with loss 'binary_crossentropy'"),
        ({"output_activation": "relu"}, "^output_activation 'relu' is not allowed"),
        ({"noise": "gaussian"}, "^noise is not an option of the joint model"),
        ({"class_loss_reduction": "mean"}, "^class_loss_reduction must be one of batch, labeled, got 'mean'"),
    ],
)
def test_check_rejects_bad_options(options, reason):
    with pytest.raises(ValueError, match=reason):
        joint.check(options)
    with pytest.raises(ValueError, match=reason):
        tiny_joint(**options)


def test_check_accepts_the_defaults_and_the_study_f_options():
    joint.check(joint.OPTIONS)
    joint.check({"reconstruction_weight": 2, "code_layer": "conv4"})


def test_unknown_code_layer_lists_the_encoder_layers():
    with pytest.raises(
        ValueError, match="code_layer 'conv9' is not a layer of the encoder; choose one of conv1, "
    ):
        tiny_joint(code_layer="conv9")
