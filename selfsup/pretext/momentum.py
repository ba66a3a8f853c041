"""A momentum (EMA) target network, shared by the methods that have one (BYOL, MoCo).

The counterpart of solo-learn's solo/utils/momentum.py (`initialize_momentum_params`,
`MomentumUpdater`): `MomentumTargetMixin` gives a keras.Model a copy of some of its online
modules (`MOMENTUM_MODULES`, e.g. encoder and projector) as `target_<name>`, keeps the
copies out of the optimizer, and after each step moves their parameters towards the
online ones by an exponential moving average whose momentum tau rises by a cosine:

    tau = final - (final - base) * (cos(pi * step / total_steps) + 1) / 2
    target = tau * target + (1 - tau) * online

(BYOL's schedule, final 1; solo-learn's `MomentumUpdater.update_tau`, any final.)

The target runs in training mode, as in BYOL's code (deepmind-research
byol/byol_experiment.py applies the target network with is_training=True), MoCo's
(facebookresearch/moco moco/builder.py: the key encoder is a submodule of the model in
train mode), solo-learn (solo/methods/base.py: the momentum backbone and projector run in
train mode) and lightly: its BatchNorm layers normalise with the statistics of the batch.
Only its parameters (kernels, biases, BatchNorm scales and offsets) follow the online
network by EMA (solo/utils/momentum.py `MomentumUpdater.update` and moco/builder.py
`_momentum_update_key_encoder` walk `parameters()`, not buffers); its moving statistics
are its own and unused in training.

Keras 3's BatchNormalization uses batch statistics only `if training and
self.trainable`, so the target layers stay trainable (setting `trainable = False` would
silently switch them to their moving statistics: a near-constant target). They are kept
out of the optimizer by `trainable_weights` below instead, and so out of the
regularization losses too.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def target_momentum(step, total_steps: int, base: float, final: float = 1.0):
    """tau = final - (final - base) * (cos(pi * step / total) + 1) / 2, from base at step 0
    to final at `total_steps` and after (BYOL's schedule with final 1; solo-learn
    solo/utils/momentum.py `MomentumUpdater.update_tau`)."""
    progress = tf.minimum(tf.cast(step, tf.float32) / float(max(total_steps, 1)), 1.0)
    return final - (final - base) * (tf.cos(math.pi * progress) + 1.0) / 2.0


class MomentumTargetMixin:
    """Mix into a keras.Model (before its base class) whose online modules are attributes
    named in MOMENTUM_MODULES; call `init_targets` in `__init__` after those exist and
    `update_targets` after each optimizer step. `build` creates the targets' variables and
    copies the online weights into them (moving statistics included: the start is an exact
    copy)."""

    # Online modules, applied in this order, that the target copies (as target_<name>).
    MOMENTUM_MODULES: tuple[str, ...] = ("encoder", "projector")

    def init_targets(self, base_momentum: float, total_steps=None, final_momentum: float = 1.0) -> None:
        self.base_momentum = base_momentum
        self.final_momentum = final_momentum
        self.total_steps = int(total_steps or 1)
        # The target starts as a copy of the online network (its weights are copied in build).
        for name in self.MOMENTUM_MODULES:
            setattr(self, f"target_{name}", keras.models.clone_model(getattr(self, name)))

    def target_weights(self) -> list:
        return [w for name in self.MOMENTUM_MODULES for w in getattr(self, f"target_{name}").weights]

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
        online = [w for name in self.MOMENTUM_MODULES for w in getattr(self, name).weights]
        pairs = zip(online, self.target_weights(), strict=True)
        return [(o, t) for o, t in pairs if o.trainable] if parameters_only else list(pairs)

    def target(self, images, training):
        """The target network's output (its modules chained) for a batch of images."""
        x = images
        for name in self.MOMENTUM_MODULES:
            x = getattr(self, f"target_{name}")(x, training=training)
        return x

    def momentum(self):
        """This step's tau, from the optimizer's step count."""
        return target_momentum(
            self.optimizer.iterations, self.total_steps, self.base_momentum, self.final_momentum
        )

    def update_targets(self) -> None:
        """The EMA step of the target's parameters (not its BatchNorm statistics)."""
        tau = self.momentum()
        for online, target in self.online_target_pairs(parameters_only=True):
            target.assign(tau * target + (1.0 - tau) * tf.cast(online, target.dtype))
