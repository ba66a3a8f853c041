"""BYOL: an online network predicts a slowly moving (EMA) target network's projection of the other view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.momentum import MomentumTargetMixin, target_momentum
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel

__all__ = ["BYOL", "BYOLModel", "target_momentum"]


class BYOLModel(MomentumTargetMixin, TwoViewModel):
    """The online network (encoder, projector, predictor) trained by gradients, and a target
    (encoder, projector) whose parameters are an EMA of the online ones, running in training
    mode (selfsup.pretext.momentum)."""

    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.init_targets(options["momentum"], total_steps)

    def view_loss(self, x1, x2, training):
        z1, p1 = self.predict_projection(x1, training)
        _, p2 = self.predict_projection(x2, training)
        t1, t2 = self.target(x1, training), self.target(x2, training)
        return losses.byol(p1, p2, t1, t2), z1

    def after_step(self) -> None:
        self.update_targets()


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
