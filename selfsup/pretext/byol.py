"""BYOL: an online network predicts a slowly moving (EMA) target network's projection of the other view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from selfsup.pretext import losses
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


def target_momentum(step, total_steps: int, base: float):
    """The paper's schedule: tau = 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, from base to 1."""
    progress = tf.minimum(tf.cast(step, tf.float32) / float(max(total_steps, 1)), 1.0)
    return 1.0 - (1.0 - base) * (tf.cos(math.pi * progress) + 1.0) / 2.0


class BYOLModel(TwoViewModel):
    """The online network (encoder, projector, predictor) trained by gradients, and a target
    (encoder, projector) whose parameters are an EMA of the online ones.

    The target runs in training mode, as in BYOL's code (deepmind-research
    byol/byol_experiment.py applies the target network with is_training=True), solo-learn
    (solo/methods/byol.py: the momentum backbone and projector run in train mode) and
    lightly: its BatchNorm layers normalise with the statistics of the batch. Only its
    parameters (kernels, biases, BatchNorm scales and offsets) follow the online network by
    EMA (solo/utils/momentum.py `MomentumUpdater.update` walks `parameters()`, not
    buffers); its moving statistics are its own and unused in training.

    Keras 3's BatchNormalization uses batch statistics only `if training and
    self.trainable`, so the target layers stay trainable (setting `trainable = False`
    would silently switch them to their moving statistics: a near-constant target). They
    are kept out of the optimizer by `trainable_weights` below instead, and so out of the
    regularization losses too.
    """

    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.base_momentum = options["momentum"]
        self.total_steps = int(total_steps or 1)
        # The target starts as a copy of the online network.
        self.target_encoder = keras.models.clone_model(self.encoder)
        self.target_projector = keras.models.clone_model(self.projector)

    def target_weights(self) -> list:
        return self.target_encoder.weights + self.target_projector.weights

    @property
    def trainable_weights(self):
        # What the optimizer trains and what regularizers cover: the online network only.
        target = {id(v) for v in self.target_weights()}
        return [v for v in super().trainable_weights if id(v) not in target]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        target = {id(v) for v in self.target_weights()}
        return [v for v in self.weights if not v.trainable or id(v) in target]

    def build(self, input_shape) -> None:
        self.target(keras.ops.zeros((2, *input_shape[1:])), training=False)
        super().build(input_shape)
        for online, target in self.online_target_pairs():
            target.assign(online)

    def online_target_pairs(self, parameters_only: bool = False):
        """(online, target) variable pairs: every weight, or only the parameters (what the
        EMA moves; BatchNorm's moving statistics are left out)."""
        online = self.encoder.weights + self.projector.weights
        target = self.target_weights()
        pairs = zip(online, target, strict=True)
        return [(o, t) for o, t in pairs if o.trainable] if parameters_only else list(pairs)

    def target(self, images, training):
        return self.target_projector(self.target_encoder(images, training=training), training=training)

    def view_loss(self, x1, x2, training):
        z1, p1 = self.predict_projection(x1, training)
        _, p2 = self.predict_projection(x2, training)
        t1, t2 = self.target(x1, training), self.target(x2, training)
        return losses.byol(p1, p2, t1, t2), z1

    def after_step(self) -> None:
        tau = target_momentum(self.optimizer.iterations, self.total_steps, self.base_momentum)
        for online, target in self.online_target_pairs(parameters_only=True):
            target.assign(tau * target + (1.0 - tau) * tf.cast(online, target.dtype))


class BYOL(TwoViewMethod):
    MODEL = BYOLModel
    WIDTHS = ("projector", "predictor")
    PREDICTOR = "predictor"
    OPTIONS = {
        # The paper's 4096-256 projector and predictor, narrowed for small images.
        "projector": [512, 128],
        "predictor": [512, 128],
        # Base target momentum tau, raised to 1 by a cosine over training. BYOL's own presets
        # (deepmind-research byol/configs/byol.py `_EMA_PRESETS`) lower it for shorter runs:
        # 0.97 for 40 epochs, 0.99 for 100 and 300, 0.996 for 1000. solo-learn's CIFAR recipe
        # (scripts/pretrain/cifar/byol.yaml) uses 0.99 for 1000 epochs. A run of tens of
        # epochs should use 0.97-0.99: with tau near 1 the target barely moves in a short run.
        "momentum": 0.99,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        if not 0 <= options["momentum"] < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {options['momentum']}")
