"""Optimizers the Keras library lacks or gets slightly wrong for self-supervised recipes:
LARS (SimCLR's, and solo-learn's with clip_lr), weight decay that spares biases and
normalization parameters, PyTorch's coupled SGD weight decay, and per-variable learning
rates (a factor for biases and norms, a fixed rate for a head such as SimSiam's predictor).

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

PyTorch's SGD (torch/optim/sgd.py, `_single_tensor_sgd`), which SimSiam's and solo-learn's
recipes use, instead adds `weight_decay * w` to the gradient before the momentum buffer:
SGD's `weight_decay_mode="coupled"`. With momentum 0.9 the same number then decays about
1 / (1 - 0.9) = 10 times more than Keras' decoupled decay does.

SimCLR and BYOL decay only weight matrices and kernels, not biases or the scales and
offsets of normalization layers. Those are exactly the 1-D (and 0-D) variables, whatever
their names, so the classes here select by rank, when the optimizer is built and its
variables are known, rather than by name patterns ("bias", "gamma", "beta") that depend on
how each layer names its weights. (Coupled decay follows PyTorch instead: see SGD.)

Per-variable learning rates (every class here): `bias_lr_factor` multiplies the rate of the
1-D variables (Barlow Twins' main.py: 0.0048 for biases and BatchNorm against 0.2 for
weights), and the variables of the layers named in `fixed_lr_for` take
`fixed_learning_rate`, never the schedule's (solo-learn's `static_lr`, SimSiam's
`--fix-pred-lr`). Both act on the `learning_rate` that each variable's update step is
given, so they work with schedules, and they add no optimizer variable: saved and resumed
training states are those of the plain optimizer.
"""

from __future__ import annotations

import keras
from keras import ops

WEIGHT_DECAY_MODES = ("decoupled", "coupled")


def is_vector(variable) -> bool:
    """Whether a variable is a bias or a normalization scale or offset: rank 0 or 1."""
    return len(variable.shape) <= 1


def is_under(variable, layer_names) -> bool:
    """Whether `variable` belongs to a layer named one of `layer_names`: one of the parts of
    its path ("simsiam/predictor/predictor_dense1/kernel") before the weight's own name.
    Matching a part rather than a prefix finds a head however deep the model nests it
    (a subclassed model prefixes its own name to its heads' paths)."""
    return any(part in layer_names for part in variable.path.split("/")[:-1])


class _Rates:
    """Mixin for an optimizer: per-variable learning rates, and the decoupled decay of the
    Keras base class (`weight_decay`) kept off biases and normalization parameters.

    Keyword arguments, all optional:
    - bias_lr_factor: multiplies the learning rate of 1-D variables (biases, BatchNorm gamma
      and beta), as facebookresearch/barlowtwins main.py does (lines 33-36: 0.2 for weights,
      0.0048 for biases and batch norm, both times the same schedule, lines 167-168; the
      groups are split by `param.ndim == 1`, lines 90-97).
    - fixed_lr_for: names of layers whose variables take `fixed_learning_rate` instead of
      the (scheduled, or plateau-reduced) learning rate, as solo-learn's `static_lr`
      parameter groups (solo/methods/simsiam.py lines 95-98 for the predictor;
      solo/methods/base.py lines 345-346 and 389-401 replace the scheduler's rate of those
      groups by the base rate `self.lr` at every step, warmup included) and SimSiam's
      `--fix-pred-lr` (facebookresearch/simsiam main_simsiam.py lines 193-195, 359-366).
    - fixed_learning_rate: that rate, required with fixed_lr_for.

    A variable under fixed_lr_for that Keras' decoupled decay would shrink is left out of
    it and decayed by this class instead, at its own (fixed) rate, just before its update:
    the same w <- w - lr * weight_decay * w, with the rate it is trained at. Building fails
    when a name in fixed_lr_for matches no variable, which would otherwise pass silently.
    """

    def __init__(self, *args, bias_lr_factor=1.0, fixed_lr_for=(), fixed_learning_rate=None, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(fixed_lr_for, str):
            raise ValueError(f"fixed_lr_for must be a list of layer names, got {fixed_lr_for!r}")
        if isinstance(bias_lr_factor, bool) or not bias_lr_factor > 0:
            raise ValueError(f"bias_lr_factor must be > 0, got {bias_lr_factor!r}")
        self.bias_lr_factor = float(bias_lr_factor)
        self.fixed_lr_for = tuple(fixed_lr_for)
        if self.fixed_lr_for and fixed_learning_rate is None:
            raise ValueError("fixed_lr_for needs fixed_learning_rate, the rate of those variables")
        if fixed_learning_rate is not None and not fixed_learning_rate > 0:
            raise ValueError(f"fixed_learning_rate must be > 0, got {fixed_learning_rate!r}")
        self.fixed_learning_rate = None if fixed_learning_rate is None else float(fixed_learning_rate)

    def build(self, var_list):
        if self.built:
            return
        # Indexed as the base class indexes the variables (_get_variable_index).
        self._fixed = [bool(self.fixed_lr_for) and is_under(v, self.fixed_lr_for) for v in var_list]
        self._vector = [is_vector(v) for v in var_list]
        for name in self.fixed_lr_for:
            if not any(is_under(v, (name,)) for v in var_list):
                raise ValueError(
                    f"fixed_lr_for: no trainable variable belongs to a layer named {name!r}; "
                    f"the variables are under {sorted({v.path.split('/')[0] for v in var_list})}"
                )
        # Keras' call replaces any exclusion set earlier on the instance.
        skipped = zip(var_list, self._vector, self._fixed, strict=True)
        self.exclude_from_weight_decay(var_list=[v for v, vector, fixed in skipped if vector or fixed])
        super().build(var_list)

    def _variable_rate(self, variable, learning_rate):
        """The learning rate of `variable` at this step: `learning_rate` itself (the very
        same tensor, so default settings compute exactly what the base class would), the
        fixed rate, and/or times bias_lr_factor."""
        i = self._get_variable_index(variable)
        rate = learning_rate
        if self._fixed[i]:
            rate = ops.cast(self.fixed_learning_rate, variable.dtype)
        if self._vector[i] and self.bias_lr_factor != 1.0:
            rate = ops.multiply(ops.cast(rate, variable.dtype), ops.cast(self.bias_lr_factor, variable.dtype))
        return rate

    def update_step(self, gradient, variable, learning_rate):
        rate = self._variable_rate(variable, learning_rate)
        i = self._get_variable_index(variable)
        if self._fixed[i] and not self._vector[i] and self.weight_decay:
            # Excluded from Keras' decoupled decay in build: decayed here at its own rate.
            decay = ops.multiply(ops.cast(self.weight_decay, variable.dtype), ops.cast(rate, variable.dtype))
            self.assign_sub(variable, ops.multiply(variable, decay))
        super().update_step(gradient, variable, rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bias_lr_factor": self.bias_lr_factor,
                "fixed_lr_for": list(self.fixed_lr_for),
                "fixed_learning_rate": self.fixed_learning_rate,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="selfsup")
class SGD(_Rates, keras.optimizers.SGD):
    """keras.optimizers.SGD whose weight decay leaves biases and normalization alone, or,
    with `weight_decay_mode="coupled"`, PyTorch's SGD with weight decay.

    Coupled follows `torch.optim.SGD.step` (torch/optim/sgd.py, `_single_tensor_sgd`, no
    dampening, no Nesterov) exactly, for each variable w with gradient g and rate lr:

        g <- g + weight_decay * w          (L2 penalty inside the gradient)
        v <- momentum * v + g              (v starts at 0: torch's first buffer is g)
        w <- w - lr * v

    The rate multiplies the buffer, not each gradient as Keras' SGD does (its
    m <- momentum * m - lr * g; w <- w + m), which differs only while the rate changes.
    Every variable is decayed, biases and normalization parameters included, as PyTorch's
    SGD does for its parameter group and as the references use it: SimSiam's
    main_simsiam.py (lines 193-201: every parameter in groups with the weight decay) and
    solo-learn, whose `exclude_bias_n_norm_wd` is off unless a config sets it
    (solo/methods/base.py lines 280-282, 341-343; scripts/pretrain/cifar/simsiam.yaml sets
    none). The momentum buffer is Keras' `momentums` variable, saved and restored as usual.
    """

    def __init__(self, *args, weight_decay=None, weight_decay_mode="decoupled", **kwargs):
        if weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(
                f"weight_decay_mode must be one of {', '.join(WEIGHT_DECAY_MODES)}, got {weight_decay_mode!r}"
            )
        coupled = weight_decay_mode == "coupled"
        # Coupled: Keras' decoupled decay stays off (None); update_step adds its own.
        super().__init__(*args, weight_decay=None if coupled else weight_decay, **kwargs)
        if coupled and self.nesterov:
            raise ValueError("weight_decay_mode coupled follows PyTorch's SGD without Nesterov momentum")
        if coupled and (weight_decay or 0) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay_mode = weight_decay_mode
        self.coupled_weight_decay = float(weight_decay or 0.0) if coupled else 0.0

    def update_step(self, gradient, variable, learning_rate):
        if self.weight_decay_mode != "coupled":
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr = ops.cast(self._variable_rate(variable, learning_rate), dtype)
        g = ops.cast(gradient, dtype)
        if self.coupled_weight_decay:
            g = ops.add(g, ops.multiply(ops.cast(self.coupled_weight_decay, dtype), variable))
        if self.momentum != 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            g = ops.add(ops.multiply(buffer, ops.cast(self.momentum, dtype)), g)
            self.assign(buffer, g)
        self.assign_sub(variable, ops.multiply(g, lr))

    def get_config(self):
        config = super().get_config()
        config["weight_decay_mode"] = self.weight_decay_mode
        if self.weight_decay_mode == "coupled":
            config["weight_decay"] = self.coupled_weight_decay
        return config


@keras.saving.register_keras_serializable(package="selfsup")
class Adam(_Rates, keras.optimizers.Adam):
    """keras.optimizers.Adam with per-variable learning rates (it takes no weight decay)."""


@keras.saving.register_keras_serializable(package="selfsup")
class AdamW(_Rates, keras.optimizers.AdamW):
    """keras.optimizers.AdamW whose weight decay leaves biases and normalization alone."""


@keras.saving.register_keras_serializable(package="selfsup")
class RMSprop(_Rates, keras.optimizers.RMSprop):
    """keras.optimizers.RMSprop whose weight decay leaves biases and normalization alone."""


@keras.saving.register_keras_serializable(package="selfsup")
class LARS(_Rates, keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg 2017, "Large Batch Training
    of Convolutional Networks"), as SimCLR and BYOL use it, or as solo-learn with clip_lr.

    By default (clip_lr False) the formulation is SimCLR's `LARSOptimizer` with classic
    momentum and no Nesterov (google-research/simclr, lars_optimizer.py). For each variable
    w with gradient g and learning rate lr:

        g     <- g + weight_decay * w                  (L2 decay inside the gradient)
        trust <- trust_coefficient * ||w|| / ||g||     (1 when ||w|| or ||g|| is 0)
        v     <- momentum * v + lr * trust * g
        w     <- w - v

    With `clip_lr` it is solo-learn's LARS instead (vturrisi/solo-learn solo/utils/lars.py,
    itself from Lightning Bolts), the one its BYOL, Barlow Twins and VICReg recipes use with
    `eta: 0.02, clip_lr: True, exclude_bias_n_norm: True`
    (scripts/pretrain/cifar/{byol,barlow,vicreg}.yaml). Its step (lars.py lines 135-165):

        if ||w|| > 0 and ||g|| > 0:                                 (lines 141-150)
            trust <- trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + epsilon)
            trust <- min(trust / lr, 1)                             (clip_lr, line 147)
            g     <- trust * (g + weight_decay * w)
        v <- momentum * v + g                                       (torch SGD, lines 153-163)
        w <- w - lr * v                                             (line 165)

    ||g|| is the norm of the raw gradient (line 137), the decay enters only after the trust
    ratio, and a variable with a zero norm takes its raw gradient, undecayed. With the clip
    the step per unit gradient is min(trust_coefficient * ||w|| / (...), lr): the adaptive
    rate, capped at the learning rate, no longer multiplied by it. epsilon (lars.py's `eps`,
    1e-8) only guards the division and is not a study setting.

    With `exclude_bias_and_norm` (the default; solo-learn's `exclude_bias_n_norm`, line
    140), 1-D variables (biases, BatchNorm gamma and beta) get neither the decay nor the
    adaptation: trust is 1 and g stays the raw gradient, so they follow plain SGD with
    momentum. Its weight decay is its own, and Keras' decoupled one (the base class's
    `weight_decay`) stays off. `bias_lr_factor` and `fixed_lr_for` (see _Rates) set the lr
    of a variable in both formulations, in solo-learn's clip too, as a parameter group's
    `lr` does there.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        exclude_bias_and_norm=True,
        clip_lr=False,
        epsilon=1e-8,
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
        if not epsilon >= 0:
            raise ValueError(f"LARS: epsilon must be >= 0, got {epsilon!r}")
        self.momentum = momentum
        # Not `self.weight_decay`: the base class would apply that one a second time, decoupled.
        self.lars_weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.exclude_bias_and_norm = exclude_bias_and_norm
        self.clip_lr = bool(clip_lr)
        self.epsilon = epsilon

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
        lr = ops.cast(self._variable_rate(variable, learning_rate), dtype)
        g = ops.cast(gradient, dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        if self.clip_lr:
            self._solo_learn_step(g, variable, lr, velocity)
            return
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

    def _solo_learn_step(self, g, variable, lr, velocity):
        """solo-learn's LARS.step for one parameter (solo/utils/lars.py lines 135-165)."""
        dtype = variable.dtype
        if self._adapts(variable):
            decay = ops.cast(self.lars_weight_decay, dtype)
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            both = ops.logical_and(w_norm > 0, g_norm > 0)
            trust = w_norm / (g_norm + w_norm * decay + ops.cast(self.epsilon, dtype))
            trust = trust * ops.cast(self.trust_coefficient, dtype)
            # min(trust / lr, 1): a zero rate (a warmup's first step) gives inf, so 1, as in torch.
            trust = ops.minimum(trust / lr, ops.cast(1.0, dtype))
            g = ops.where(both, (g + decay * variable) * trust, g)
        step = ops.cast(self.momentum, dtype) * velocity + g
        self.assign(velocity, step)
        self.assign_sub(variable, lr * step)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "exclude_bias_and_norm": self.exclude_bias_and_norm,
                "clip_lr": self.clip_lr,
                "epsilon": self.epsilon,
            }
        )
        return config
