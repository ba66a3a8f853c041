"""One-class network: the encoder with a single sigmoid output, trained to score the
labeled images above a radius r that follows their (1 - nu) quantile.

The reference protocol: "A one-class network with the supervised network's architecture
except a single sigmoid output, L2 0.01 on every layer, trained on the labeled images with
loss (1/nu) * mean(max(0, r - f(x))); after each epoch r becomes the (1 - nu) quantile of f
on the training images; stop once r moved less than 0.025 for 3 epochs in a row; nu = 0.9.
Unlabeled images scoring below r are atypical and removed."

r is not trained. It starts at `initial_radius`, 1.0 as in the reference notebook
(`r = tf.Variable(1.0)`), and becomes the quantile of the training images' scores (in
order, without augmentation) after each epoch (RadiusUpdate). The start matters: with
sigmoid scores near 0.5 at initialisation, r = 1.0 makes the first epoch's hinge about 0.5
for every image and pushes all scores up, so the network learns what the labeled images
look like; starting r at the initial quantile instead makes the hinge 0 from the first
step, leaves only the L2 term, and the score collapses to a constant (AUROC 0.5, nothing
removed).

What to read from the result: removing about (1 - nu) of the labeled images' score mass is
by construction (r is their (1 - nu) quantile), so the share removed from the pool says
little. Whether the filter detects anything shows in the AUROC and in the share of
foreign images removed against the share of genuine ones, which a contaminated dataset
(dataset.contamination) lets the pipeline measure. r and
the count of epochs in a row it has settled are model variables, so the resume state
of selfsup.training.fit brings both back, and a filter stopped by the rule stays stopped.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import tensorflow as tf

from selfsup import training
from selfsup.outliers.base import OutlierResult, OutlierScorer


def one_class_loss(scores, radius, nu):
    """(1/nu) * mean(max(0, r - f(x))): only images scoring below the radius cost."""
    scores = keras.ops.reshape(keras.ops.cast(scores, "float32"), (-1,))
    return keras.ops.mean(keras.ops.maximum(0.0, radius - scores)) / nu


def l2_penalty(kernels, weight):
    """weight * sum of the squared kernel entries. Added to the loss by hand because the
    encoder is built elsewhere without regularizers, and Keras 3 cannot add them later."""
    if not kernels or not weight:
        return keras.ops.zeros((), "float32")
    return weight * keras.ops.sum(
        keras.ops.stack([keras.ops.sum(keras.ops.square(keras.ops.cast(k, "float32"))) for k in kernels])
    )


def quantile_radius(scores, nu) -> float:
    """The (1 - nu) quantile of the scores (linear interpolation, NumPy's default)."""
    return float(np.quantile(np.asarray(scores, np.float64).reshape(-1), 1 - nu))


class OneClassModel(keras.Model):
    """Encoder, Flatten and Dense(1, sigmoid); `radius` and `settled_epochs` are
    non-trainable variables that RadiusUpdate sets between epochs."""

    def __init__(self, encoder, nu: float, l2: float, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        # float32 output: the scores and the quantile stay exact under mixed precision.
        self.head = keras.Sequential(
            [
                keras.layers.Flatten(name="one_class_flatten"),
                keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="one_class_score"),
            ],
            name="one_class_head",
        )
        self.nu, self.l2 = float(nu), float(l2)
        self.radius = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False, name="radius"
        )
        self.settled_epochs = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="settled_epochs"
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.one_class_tracker = keras.metrics.Mean(name="one_class_loss")
        self.l2_tracker = keras.metrics.Mean(name="l2_loss")

    def build(self, input_shape) -> None:
        """Create every variable now, so the optimizer and the weight files see them all."""
        self.head(self.encoder(keras.ops.zeros((2, *input_shape[1:])), training=False))
        self.built = True

    def call(self, images, training=False):
        return self.head(self.encoder(images, training=training), training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.one_class_tracker, self.l2_tracker]

    def kernels(self) -> list:
        """The trainable weight matrices and conv kernels: biases and normalization
        parameters (1-D) are not penalized."""
        return [w for w in self.trainable_weights if len(w.shape) > 1]

    def losses_on(self, data, training):
        images = data[0] if isinstance(data, tuple | list) else data
        scores = self(images, training=training)
        hinge = one_class_loss(scores, self.radius, self.nu)
        penalty = l2_penalty(self.kernels(), self.l2)
        total = hinge + penalty
        if self.losses:  # regularizers the encoder was built with (the ResNet's L2)
            total = total + tf.add_n([tf.cast(loss, "float32") for loss in self.losses])
        return total, hinge, penalty

    def train_step(self, data):
        with tf.GradientTape() as tape:
            total, hinge, penalty = self.losses_on(data, training=True)
            # Under mixed_float16 the optimizer scales the loss (and unscales the gradients).
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self.report(total, hinge, penalty)

    def test_step(self, data):
        return self.report(*self.losses_on(data, training=False))

    def report(self, total, hinge, penalty):
        self.loss_tracker.update_state(total)
        self.one_class_tracker.update_state(hinge)
        self.l2_tracker.update_state(penalty)
        return {metric.name: metric.result() for metric in self.metrics}


class RadiusUpdate(keras.callbacks.Callback):
    """Set r to `initial_radius` before training and to the (1 - nu) quantile of f on
    `train_eval` after each epoch (logged as `radius`); stop once it moved less than
    `tolerance` for `patience` epochs in a row."""

    def __init__(self, train_eval, nu: float, tolerance: float, patience: int, initial_radius: float):
        super().__init__()
        self.train_eval, self.nu, self.tolerance, self.patience = train_eval, nu, tolerance, patience
        self.initial_radius = float(initial_radius)
        self.stopped_at: int | None = None  # the 1-based epoch the rule stopped training at

    def current_radius(self) -> float:
        return quantile_radius(self.model.predict(self.train_eval, verbose=0), self.nu)

    def on_train_begin(self, logs=None):
        # On resume, training.fit's resume state (after this callback) then restores the saved values.
        self.model.radius.assign(self.initial_radius)
        self.model.settled_epochs.assign(0)

    def on_epoch_end(self, epoch, logs=None):
        previous = float(self.model.radius.numpy())
        radius = self.current_radius()
        self.model.radius.assign(radius)
        settled = int(self.model.settled_epochs.numpy()) + 1 if abs(radius - previous) < self.tolerance else 0
        self.model.settled_epochs.assign(settled)
        if logs is not None:
            logs["radius"] = radius
        if settled >= self.patience:
            self.model.stop_training = True
            self.stopped_at = epoch + 1


class OneClassNetwork(OutlierScorer):
    # The reference notebook's values; initial_radius is its tf.Variable(1.0).
    OPTIONS = {"nu": 0.9, "tolerance": 0.025, "patience": 3, "l2": 0.01, "initial_radius": 1.0}

    def check(self, options: dict) -> None:
        options = {**self.OPTIONS, **options}
        nu, tolerance, patience, l2, initial_radius = (
            options[key] for key in ("nu", "tolerance", "patience", "l2", "initial_radius")
        )
        if not _is_number(nu) or not 0 < nu < 1:
            raise ValueError(f"nu: must lie in (0, 1), got {nu!r}")
        if not _is_number(tolerance) or not tolerance > 0:
            raise ValueError(f"tolerance: must be a number > 0, got {tolerance!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience: must be an integer of at least 1 (epochs), got {patience!r}")
        if not _is_number(l2) or not l2 >= 0:
            raise ValueError(f"l2: must be a number >= 0 (0 turns the penalty off), got {l2!r}")
        if not _is_number(initial_radius) or not 0 < initial_radius <= 1:
            raise ValueError(
                f"initial_radius: must lie in (0, 1] (scores are sigmoid outputs), got {initial_radius!r}"
            )

    def build(self, encoder, options: dict) -> OneClassModel:
        options = {**self.OPTIONS, **options}
        model = OneClassModel(encoder, nu=options["nu"], l2=options["l2"], name="one_class_network")
        model.build(encoder.input_shape)
        return model

    def fit_score(
        self,
        encoder,
        train,
        train_eval,
        pool,
        options: dict,
        *,
        epochs: int,
        optimizer,
        samples_per_epoch: int,
        resume_dir=None,
        stream=sys.stderr,
    ) -> OutlierResult:
        self.check(options)
        options = {**self.OPTIONS, **options}
        model = self.build(encoder, options)
        model.compile(optimizer=optimizer, jit_compile=False)
        radius = RadiusUpdate(
            train_eval, options["nu"], options["tolerance"], options["patience"], options["initial_radius"]
        )
        history = training.fit(
            model,
            train,
            epochs=epochs,
            samples_per_epoch=samples_per_epoch,
            extra_callbacks=[radius],
            resume_dir=resume_dir,
            stream=stream,
        )
        if radius.stopped_at is not None:
            print(
                f"one_class_network: stopped at epoch {radius.stopped_at} of {epochs}: the radius r "
                f"moved less than {options['tolerance']} for {options['patience']} epochs in a row",
                file=stream,
                flush=True,
            )
        else:
            print(
                f"one_class_network: r had not settled after {epochs} epochs (it moved less than "
                f"{options['tolerance']} for {int(model.settled_epochs.numpy())} epochs in a row, of "
                f"{options['patience']} that stop training); using it as the threshold anyway",
                file=stream,
                flush=True,
            )
        scores = np.asarray(model.predict(pool, verbose=0), np.float64).reshape(-1)
        return OutlierResult(scores=scores, threshold=float(model.radius.numpy()), history=history)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
