"""Optimizers the Keras library lacks or gets slightly wrong for self-supervised recipes:
LARS, and weight decay that spares biases and normalization parameters.

Weight decay of Keras 3's own optimizers (their `weight_decay` argument) is decoupled from
the gradient (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019): before
each update step, `keras/src/optimizers/base_optimizer.py::_apply_weight_decay` (and its
TensorFlow twin in `keras/src/backend/tensorflow/optimizer.py`) does

    w <- w - lr_t * weight_decay * w

for every variable not excluded, with lr_t the learning rate in force at that step (a
schedule's value included), then the optimizer's own update from the raw gradient. The decay
never enters the gradient, so Adam's moments and any momentum never see it. Unlike the paper,
which scales the decay by the schedule multiplier only, Keras (like PyTorch's AdamW) scales it
by the whole learning rate, so `weight_decay` is per unit of learning rate.

SimCLR and BYOL decay only weight matrices and kernels, not biases or the scales and
offsets of normalization layers. Those are exactly the 1-D (and 0-D) variables, whatever
their names, so the classes here select by rank, when the optimizer is built and its
variables are known, rather than by name patterns ("bias", "gamma", "beta") that depend on
how each layer names its weights.
"""

from __future__ import annotations

import keras
from keras import ops


def is_vector(variable) -> bool:
    """Whether a variable is a bias or a normalization scale or offset: rank 0 or 1."""
    return len(variable.shape) <= 1


class _DecayMatricesOnly:
    """Mixin for a Keras optimizer: its decoupled weight decay skips 1-D variables.

    It calls Keras' public `exclude_from_weight_decay(var_list=...)` with the 1-D variables
    when the optimizer is built (on the first step, or by `model.compile`/`fit`), which
    replaces any exclusion set earlier on the instance.
    """

    def build(self, var_list):
        self.exclude_from_weight_decay(var_list=[v for v in var_list if is_vector(v)])
        super().build(var_list)


@keras.saving.register_keras_serializable(package="selfsup")
class SGD(_DecayMatricesOnly, keras.optimizers.SGD):
    """keras.optimizers.SGD whose weight decay leaves biases and normalization alone."""


@keras.saving.register_keras_serializable(package="selfsup")
class AdamW(_DecayMatricesOnly, keras.optimizers.AdamW):
    """keras.optimizers.AdamW whose weight decay leaves biases and normalization alone."""


@keras.saving.register_keras_serializable(package="selfsup")
class RMSprop(_DecayMatricesOnly, keras.optimizers.RMSprop):
    """keras.optimizers.RMSprop whose weight decay leaves biases and normalization alone."""


@keras.saving.register_keras_serializable(package="selfsup")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg 2017, "Large Batch Training
    of Convolutional Networks"), as SimCLR and BYOL use it.

    The formulation is SimCLR's `LARSOptimizer` with classic momentum and no Nesterov
    (google-research/simclr, lars_optimizer.py). For each variable w with gradient g:

        g     <- g + weight_decay * w                  (L2 decay inside the gradient)
        trust <- trust_coefficient * ||w|| / ||g||     (1 when ||w|| or ||g|| is 0)
        v     <- momentum * v + lr * trust * g
        w     <- w - v

    With `exclude_bias_and_norm` (the default), 1-D variables (biases, BatchNorm gamma and
    beta) get neither the decay nor the adaptation: trust is 1 and g stays the raw gradient,
    so they follow plain SGD with momentum. Its weight decay is its own, and Keras' decoupled
    one (the base class's `weight_decay`) stays off.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        exclude_bias_and_norm=True,
        name="lars",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"LARS: momentum must be in [0, 1], got {momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"LARS: weight_decay must be >= 0, got {weight_decay!r}")
        if not trust_coefficient > 0:
            raise ValueError(f"LARS: trust_coefficient must be > 0, got {trust_coefficient!r}")
        self.momentum = momentum
        # Not `self.weight_decay`: the base class would apply that one a second time, decoupled.
        self.lars_weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.exclude_bias_and_norm = exclude_bias_and_norm

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.velocities = [self.add_variable_from_reference(v, name="velocity") for v in var_list]

    def _adapts(self, variable) -> bool:
        return not (self.exclude_bias_and_norm and is_vector(variable))

    def update_step(self, gradient, variable, learning_rate):
        # On the TensorFlow backend `variable` is the backing tf.Variable; its index (and
        # so its velocity) is found all the same.
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        trust = ops.cast(1.0, dtype)
        if self._adapts(variable):
            if self.lars_weight_decay:
                g = g + ops.cast(self.lars_weight_decay, dtype) * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            both = ops.logical_and(w_norm > 0, g_norm > 0)
            ratio = ops.cast(self.trust_coefficient, dtype) * w_norm / ops.where(both, g_norm, 1.0)
            trust = ops.where(both, ratio, ops.cast(1.0, dtype))
        step = ops.cast(self.momentum, dtype) * velocity + lr * trust * g
        self.assign(velocity, step)
        self.assign_sub(variable, step)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "exclude_bias_and_norm": self.exclude_bias_and_norm,
            }
        )
        return config
