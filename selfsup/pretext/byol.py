"""BYOL: an online network predicts a slowly moving (EMA) target network's projection of the other view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from selfsup.pretext import losses
from selfsup.pretext.contrastive import TwoViewMethod, TwoViewModel


def target_momentum(step, total_steps: int, base: float):
    """The paper's schedule: tau = 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, from base to 1."""
    progress = tf.minimum(tf.cast(step, tf.float32) / float(max(total_steps, 1)), 1.0)
    return 1.0 - (1.0 - base) * (tf.cos(math.pi * progress) + 1.0) / 2.0


class BYOLModel(TwoViewModel):
    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.base_momentum = options["momentum"]
        self.total_steps = int(total_steps or 1)
        # The target starts as a copy of the online network and is never trained by gradients.
        self.target_encoder = keras.models.clone_model(self.encoder)
        self.target_projector = keras.models.clone_model(self.projector)
        self.target_encoder.trainable = False
        self.target_projector.trainable = False

    def build(self, input_shape) -> None:
        self.target(keras.ops.zeros((2, *input_shape[1:])), training=False)
        super().build(input_shape)
        for online, target in self.online_target_pairs():
            target.assign(online)

    def online_target_pairs(self):
        online = self.encoder.weights + self.projector.weights
        target = self.target_encoder.weights + self.target_projector.weights
        return zip(online, target, strict=True)

    def target(self, images, training):
        return self.target_projector(self.target_encoder(images, training=training), training=training)

    def view_loss(self, x1, x2, training):
        z1, p1 = self.predict_projection(x1, training)
        _, p2 = self.predict_projection(x2, training)
        t1, t2 = self.target(x1, training), self.target(x2, training)
        return losses.byol(p1, p2, t1, t2), z1

    def after_step(self) -> None:
        tau = target_momentum(self.optimizer.iterations, self.total_steps, self.base_momentum)
        for online, target in self.online_target_pairs():
            # BatchNorm statistics are copied the same way as weights, as in the paper's code.
            target.assign(tau * target + (1.0 - tau) * tf.cast(online, target.dtype))


class BYOL(TwoViewMethod):
    MODEL = BYOLModel
    WIDTHS = ("projector", "predictor")
    PREDICTOR = "predictor"
    OPTIONS = {
        # The paper's 4096-256 projector and predictor, narrowed for small images.
        "projector": [512, 128],
        "predictor": [512, 128],
        # Base target momentum, raised to 1 by a cosine over training (0.996 in the paper for
        # ImageNet's long runs; 0.99 as solo-learn's small-image recipes).
        "momentum": 0.99,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        if not 0 <= options["momentum"] < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {options['momentum']}")
