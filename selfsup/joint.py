"""One-step semi-supervised learning: a classifier and an autoencoder trained together.

Study F's one-step protocol: one model with two outputs, the class probabilities and
the reconstruction of the image, sharing one encoder. The class loss is masked out for
unlabeled images (label -1), so every image teaches the encoder through the
reconstruction and the labeled ones through the class too. Encoder + classifier is
exactly the supervised network (downstream.build_classifier with protocol
supervised), so the one-step model is compared with the supervised baseline at equal
classifier size; the decoder starts from the output of the encoder's `code_layer`.

`JointModel` follows the keras.io SimCLR example's ContrastiveModel pattern, as
selfsup.pretext.two_view.TwoViewModel does: the subclass owns its metrics,
`train_step` and `test_step`, and is compiled with an optimizer only. Calling it (and
so `predict` and downstream.accuracy) gives the class probabilities.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from selfsup import downstream, encoders
from selfsup.data.dataset import NO_LABEL
from selfsup.pretext import reconstruction

OPTIONS = {
    # Weight of the reconstruction loss against the class loss (1: equal terms).
    "reconstruction_weight": 1.0,
    # What the masked class loss is divided by. "batch": the batch's size, as the reference
    # notebook's Keras `sample_weight` mask does (Keras' default reduction,
    # sum_over_batch_size, divides the weighted sum by the number of images, weight 0
    # included); with 20% of the images labeled the class term then weighs a fifth of a
    # fully labeled batch's. "labeled": the number of labeled images in the batch, a mean
    # over them (5x heavier at 20% labeled).
    "class_loss_reduction": "batch",
    # The decoder's options, as in selfsup.pretext.reconstruction.OPTIONS. The mirror
    # decoder needs a feature-map code: set code_layer to a conv or pooling layer of the
    # encoder (conv4 for study F's network 1).
    "code_layer": None,
    "decoder": "conv_transpose",  # works on any encoder; "mirror" needs a feature-map code_layer
    "decoder_filters": [64, 32],
    "decoder_units": [256],
    "output_activation": "sigmoid",
    "loss": "binary_crossentropy",
}

CLASS_LOSS_REDUCTIONS = ("batch", "labeled")


def check(options: dict) -> None:
    """Reject unknown keys, a non-positive reconstruction_weight and unsound decoder options."""
    for key in options:
        if key not in OPTIONS:
            raise ValueError(f"{key} is not an option of the joint model; choose from {', '.join(OPTIONS)}")
    options = {**OPTIONS, **options}
    if options["class_loss_reduction"] not in CLASS_LOSS_REDUCTIONS:
        raise ValueError(
            f"class_loss_reduction must be one of {', '.join(CLASS_LOSS_REDUCTIONS)}, "
            f"got {options['class_loss_reduction']!r}"
        )
    reconstruction.check({key: options[key] for key in reconstruction.OPTIONS})
    weight = options["reconstruction_weight"]
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not (weight > 0 and math.isfinite(weight))
    ):
        raise ValueError(f"reconstruction_weight must be a number > 0, got {weight!r}")


def build_joint(
    encoder: keras.Model, num_classes: int, options: dict, head: dict | None = None
) -> JointModel:
    """The one-step model on `encoder`: its classifier is build_classifier(encoder,
    num_classes, "supervised", **head), its decoder reconstructs from the same encoder's
    `code_layer` output (shared weights). Compile it with an optimizer only."""
    options = {**OPTIONS, **options}
    check(options)
    classifier = downstream.build_classifier(encoder, num_classes, "supervised", **(head or {}))
    decoder = reconstruction.build_decoder(encoder, options)
    model = JointModel(
        encoder,
        classifier,
        decoder,
        code_layer=options["code_layer"],
        reconstruction_weight=float(options["reconstruction_weight"]),
        reconstruction_loss=options["loss"],
        class_loss_reduction=options["class_loss_reduction"],
        name="joint",
    )
    model.build(encoder.input_shape)
    return model


class JointModel(keras.Model):
    """Classifier and decoder on one encoder, trained on (images, labels) with label -1
    for unlabeled images.

    loss = class_loss + reconstruction_weight * reconstruction_loss + regularization,
    where class_loss is the cross-entropy summed over the batch's labeled images and divided
    by the batch's size ("batch", the reference's) or by its labeled images ("labeled"),
    and reconstruction_loss the mean pixel loss over all its images.
    """

    def __init__(
        self,
        encoder: keras.Model,
        classifier: keras.Model,
        decoder: keras.Model,
        code_layer: str | None = None,
        reconstruction_weight: float = 1.0,
        reconstruction_loss: str = "binary_crossentropy",
        class_loss_reduction: str = "batch",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.classifier = classifier
        self.decoder = decoder
        self.reconstruction_weight = reconstruction_weight
        self.class_loss_reduction = class_loss_reduction
        self.reconstruction_loss_fn = keras.losses.get(reconstruction_loss)
        # One graph with both outputs, sharing every layer with `classifier` and `decoder`:
        # a training step runs the encoder once, so BatchNorm statistics and dropout see
        # each image once, and it costs one encoder pass instead of two.
        trunk = classifier.layers[1]  # the encoder as the classifier sees it (cut at its feature_layer)
        if not isinstance(trunk, keras.Model):
            raise ValueError(
                "JointModel: the classifier must be downstream.build_classifier's (image, encoder, head)"
            )
        x = trunk.output
        for layer in classifier.layers[2:]:  # the head: flatten, dense and dropout layers, classes
            x = layer(x)
        code = encoders.cut(encoder, code_layer, "code_layer").output
        self.network = keras.Model(encoder.input, [x, decoder(code)], name="network")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.class_loss_tracker = keras.metrics.Mean(name="class_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def build(self, input_shape) -> None:
        # Every layer is already built (functional models); nothing is left to create.
        self.built = True

    def call(self, images, training=False):
        return self.classifier(images, training=training)

    def reconstruct(self, images, training=False):
        return self.network(images, training=training)[1]

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.class_loss_tracker,
            self.reconstruction_loss_tracker,
            self.accuracy_tracker,
        ]

    def step_losses(self, images, labels, training):
        """(total, class, reconstruction loss, labels with -1 replaced, labeled mask, probabilities)."""
        images = tf.cast(images, tf.float32)
        probabilities, rebuilt = self.network(images, training=training)
        # Under mixed precision the outputs are float16; the losses are computed in float32.
        probabilities = tf.cast(probabilities, tf.float32)
        rebuilt = tf.cast(rebuilt, tf.float32)
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        labeled = tf.cast(labels != NO_LABEL, tf.float32)
        # Unlabeled rows get class 0 so the cross-entropy is defined; their weight is 0.
        labels = tf.where(labels == NO_LABEL, 0, labels)
        per_image = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        count = labeled if self.class_loss_reduction == "labeled" else tf.ones_like(labeled)
        class_loss = tf.reduce_sum(per_image * labeled) / tf.maximum(tf.reduce_sum(count), 1.0)
        # The targets are the input pixels in [0, 1].
        reconstruction_loss = tf.reduce_mean(self.reconstruction_loss_fn(images, rebuilt))
        total = class_loss + self.reconstruction_weight * reconstruction_loss
        # Kernel regularizers of the encoder (e.g. the ResNet's L2) count too.
        if self.losses:
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])
        return total, class_loss, reconstruction_loss, labels, labeled, probabilities

    def train_step(self, data):
        images, labels = _images_and_labels(data)
        with tf.GradientTape() as tape:
            total, *rest = self.step_losses(images, labels, training=True)
            # Under mixed_float16 the optimizer scales the loss (and unscales the gradients).
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self.report(total, *rest)

    def test_step(self, data):
        images, labels = _images_and_labels(data)
        return self.report(*self.step_losses(images, labels, training=False))

    def report(self, total, class_loss, reconstruction_loss, labels, labeled, probabilities):
        self.loss_tracker.update_state(total)
        # The epoch's class_loss is the mean of the batches' class losses as training
        # minimizes them; with "labeled", weighted by the batch's labeled images, so that
        # batches without labels do not pull the mean over labeled images toward 0.
        weight = tf.reduce_sum(labeled) if self.class_loss_reduction == "labeled" else 1.0
        self.class_loss_tracker.update_state(class_loss, sample_weight=weight)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.accuracy_tracker.update_state(labels, probabilities, sample_weight=labeled)
        return {metric.name: metric.result() for metric in self.metrics}


def _images_and_labels(data):
    images, labels, weights = keras.utils.unpack_x_y_sample_weight(data)
    if labels is None or weights is not None:
        raise ValueError(
            f"JointModel trains on (images, labels) batches without sample weights, with label "
            f"{NO_LABEL} for unlabeled images"
        )
    return images, labels
