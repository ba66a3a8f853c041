"""What the two-view (contrastive and non-contrastive joint-embedding) methods share.

Each method of the family trains on two augmented views of every image: its model is a
keras.Model subclass that owns the augmentation layers, the projector (and predictor),
`train_step`, `test_step` and its metrics, as the keras.io SimCLR example's
ContrastiveModel does. A method file subclasses `TwoViewModel` (its `view_loss`) and
`TwoViewMethod` (its options and heads); its loss is a pure function in
selfsup.pretext.losses.

Every model reports `loss` and `embedding_std`, the standard deviation of the
L2-normalized projections over the batch (about 1/sqrt(dim) when spread, 0 when the
encoder has collapsed to one point), as solo-learn and lightly log it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from selfsup import augment
from selfsup.pretext import losses
from selfsup.pretext.base import PretextMethod

# The heads' BatchNorm as the references' PyTorch BatchNorm1d (eps 1e-5, momentum 0.1 for
# the new batch, i.e. Keras momentum 0.9), not Keras' defaults (epsilon 1e-3, momentum
# 0.99). The epsilon matters: at initialisation a projector's pre-BatchNorm variance is
# about 1e-4, so with Keras' 1e-3 its BatchNorm would only partly standardise.
HEAD_BATCH_NORM = {"epsilon": 1e-5, "momentum": 0.9}
OUTPUT_BATCH_NORMS = (None, "plain", "affine")


def mlp(
    units: list[int], name: str, output_batch_norm: str | None = None, hidden_batch_norm: bool = True
) -> keras.Sequential:
    """Dense-BatchNorm-ReLU per hidden width (Dense-ReLU, the Dense with a bias, without
    `hidden_batch_norm`), then a linear Dense of the last width, followed by a BatchNorm
    when `output_batch_norm` is "plain" (no scale or shift: SimSiam's projector) or
    "affine" (with both: NNCLR's projector in solo-learn). BatchNorm takes HEAD_BATCH_NORM."""
    if output_batch_norm not in OUTPUT_BATCH_NORMS:
        raise ValueError(f"output_batch_norm must be one of {OUTPUT_BATCH_NORMS}, got {output_batch_norm!r}")
    stack: list = [keras.layers.Flatten(name=f"{name}_flatten")]
    for i, width in enumerate(units[:-1], start=1):
        stack.append(keras.layers.Dense(width, use_bias=not hidden_batch_norm, name=f"{name}_dense{i}"))
        if hidden_batch_norm:
            stack.append(keras.layers.BatchNormalization(**HEAD_BATCH_NORM, name=f"{name}_bn{i}"))
        stack.append(keras.layers.ReLU(name=f"{name}_relu{i}"))
    stack.append(keras.layers.Dense(units[-1], name=f"{name}_out"))
    if output_batch_norm is not None:
        affine = output_batch_norm == "affine"
        stack.append(
            keras.layers.BatchNormalization(
                center=affine, scale=affine, **HEAD_BATCH_NORM, name=f"{name}_out_bn"
            )
        )
    return keras.Sequential(stack, name=name)


class TwoViewModel(keras.Model):
    """Encoder, projector, optional predictor and augmentation, trained on view pairs.

    `train_step` takes a batch of images and augments it twice; a batch that is already
    a pair (view1, view2) is used as it is (the throughput benchmark feeds pre-made views).
    Subclasses implement `view_loss(x1, x2, training) -> (loss, projections of view 1)`
    and may override `after_step()` (BYOL's target update, NNCLR's queue).

    `augmentation` makes view 1, and view 2 too unless `second_augmentation` (an
    asymmetric recipe, selfsup.augment.build_views) makes view 2.
    """

    # View 2's own augmentation layers; None: view 1's. Set on the instance only when they
    # differ, so that a symmetric model tracks (and saves) the very attributes it did.
    second_augmentation = None

    def __init__(
        self, encoder, projector, augmentation=None, predictor=None, second_augmentation=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projector = projector
        self.predictor = predictor
        self.augmentation = augmentation
        if second_augmentation is not None and second_augmentation is not augmentation:
            self.second_augmentation = second_augmentation
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.std_tracker = keras.metrics.Mean(name="embedding_std")

    def build(self, input_shape) -> None:
        """Create every variable now (heads, augmentation state), so the optimizer and the
        weight files see them all."""
        images = keras.ops.zeros((2, *input_shape[1:]))
        self.predict_projection(images, training=False)
        for layers in self.view_augmentations:
            if layers is not None:
                layers(images, training=False)
        self.built = True

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    def project(self, images, training):
        return self.projector(self.encoder(images, training=training), training=training)

    def predict_projection(self, images, training):
        """(projection z, prediction p); p is z when the method has no predictor."""
        z = self.project(images, training)
        p = z if self.predictor is None else self.predictor(z, training=training)
        return z, p

    @property
    def view_augmentations(self) -> tuple:
        """(view 1's, view 2's) augmentation layers: one object twice unless asymmetric."""
        second = self.augmentation if self.second_augmentation is None else self.second_augmentation
        return self.augmentation, second

    @property
    def metrics(self):
        return [self.loss_tracker, self.std_tracker]

    def views(self, data):
        """Two augmented views of the batch. From the input pipeline a batch comes with its
        stateless key (TwoViewMethod.transform), a function of the run's seed, the epoch
        and the batch, so the views are too, and a resumed job draws the very views an
        uninterrupted one does; a batch of images alone draws from the layers' seed
        generators. View v is made by its own layers (view_augmentations) with key
        fold_in(key, v)."""
        if isinstance(data, tuple | list) and len(data) == 2 and len(data[1].shape) == 4:
            return data[0], data[1]
        images = data[0] if isinstance(data, tuple | list) else data
        layers = self.view_augmentations
        if isinstance(data, tuple | list) and len(data) == 2 and len(data[1].shape) == 1:
            fold_in = tf.random.experimental.stateless_fold_in
            return tuple(
                images if aug is None else augment.apply(aug, images, fold_in(data[1], view))
                for view, aug in zip((1, 2), layers, strict=True)
            )
        return tuple(images if aug is None else aug(images, training=True) for aug in layers)

    def view_loss(self, x1, x2, training):
        raise NotImplementedError

    def after_step(self) -> None:
        """Work after each optimizer step (target networks, queues)."""

    def train_step(self, data):
        x1, x2 = self.views(data)
        with tf.GradientTape() as tape:
            loss, z1 = self.view_loss(x1, x2, training=True)
            # Kernel regularizers of the encoder (e.g. the ResNet's L2) count too.
            total = loss + tf.add_n(self.losses) if self.losses else loss
            # Under mixed_float16 the optimizer scales the loss (and unscales the gradients).
            total = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.after_step()
        return self.report(loss, z1)

    def test_step(self, data):
        x1, x2 = self.views(data)
        loss, z1 = self.view_loss(x1, x2, training=False)
        return self.report(loss, z1)

    def report(self, loss, z1):
        self.loss_tracker.update_state(loss)
        self.std_tracker.update_state(losses.embedding_std(tf.cast(z1, tf.float32)))
        return {metric.name: metric.result() for metric in self.metrics}


class TwoViewMethod(PretextMethod):
    """A two-view method: its model class, options and heads; the rest is shared."""

    OWNS_AUGMENTATION = True
    MODEL: type[TwoViewModel]
    # Option keys that are layer widths (lists of positive integers).
    WIDTHS: tuple[str, ...] = ("projector",)
    PREDICTOR: str | None = None  # the option holding the predictor's widths, if any
    FULL_BATCHES_ONLY = True
    # How the projector ends and whether its hidden layers have BatchNorm, as the method's
    # reference builds it (see mlp).
    PROJECTOR_OUTPUT_BATCH_NORM: str | None = None
    PROJECTOR_HIDDEN_BATCH_NORM = True

    def check(self, options: dict, settings: dict | None = None) -> None:
        for key in self.WIDTHS:
            widths = options[key]
            if not widths or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in widths
            ):
                raise ValueError(f"{key} must be a non-empty list of positive layer widths, got {widths!r}")
        if self.PREDICTOR and options[self.PREDICTOR][-1] != options["projector"][-1]:
            raise ValueError(
                f"{self.PREDICTOR} must end in the projector's output width {options['projector'][-1]} "
                f"(the prediction is compared with a projection), got {options[self.PREDICTOR]!r}"
            )
        if settings is not None and not _augments(settings.get("augmentation")):
            raise ValueError(
                "augmentation: a two-view method needs augmentations, or both views are the same "
                "image and the task is trivial; set augmentation, e.g. {preset: simclr_small}"
            )

    def heads(self, options: dict) -> dict:
        heads = {
            "projector": mlp(
                options["projector"],
                "projector",
                self.PROJECTOR_OUTPUT_BATCH_NORM,
                self.PROJECTOR_HIDDEN_BATCH_NORM,
            )
        }
        if self.PREDICTOR:
            heads["predictor"] = mlp(options[self.PREDICTOR], "predictor")
        return heads

    def build(self, encoder, options: dict, augmentation=None, total_steps=None, second_augmentation=None):
        """`augmentation` makes both views, or view 1 only when `second_augmentation` (view
        2's layers, selfsup.augment.build_views) differs."""
        model = self.MODEL(
            encoder=encoder,
            augmentation=augmentation,
            second_augmentation=second_augmentation,
            options=options,
            total_steps=total_steps,
            name=type(self).__name__.lower(),
            **self.heads(options),
        )
        model.build(encoder.input_shape)
        return model

    def metric_names(self, options: dict) -> list[str]:
        return ["loss", "embedding_std"]

    def transform(self, images, labels, seed, options: dict):
        """The batch and its stateless key, from which the model draws its two views."""
        return images, seed

    def examples(self, model, images: np.ndarray, options: dict, seed: int) -> dict:
        """Two augmented views of each image: what the method learns to match."""
        images = np.asarray(images, dtype=np.float32)
        first, second = model.view_augmentations
        if first is None and second is None:
            return {"input": images}
        keras.utils.set_random_seed(seed)
        views = [images if aug is None else np.asarray(aug(images, training=True)) for aug in (first, second)]
        return {"input": images, "view 1": views[0], "view 2": views[1]}


def _augments(settings: dict | None) -> bool:
    """Whether augmentation settings turn anything on (False for absent and all-off)."""
    return any(value not in (None, False, 0, 0.0, {}) for value in (settings or {}).values())
