"""Barlow Twins: make the cross-correlation of the two views' projections the identity.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


class BarlowTwinsModel(TwoViewModel):
    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.lambda_offdiag = options["lambda_offdiag"]
        self.scale_loss = options["scale_loss"]

    def view_loss(self, x1, x2, training):
        z1, z2 = self.project(x1, training), self.project(x2, training)
        return self.scale_loss * losses.barlow_twins(z1, z2, self.lambda_offdiag), z1


class BarlowTwins(TwoViewMethod):
    MODEL = BarlowTwinsModel
    OPTIONS = {
        # The paper's three-layer 8192-8192-8192 projector (main.py; solo-learn's 2048 x 3),
        # narrowed for small images: three Dense layers, the last one linear.
        "projector": [1024, 1024, 1024],
        # Weight of the off-diagonal (redundancy) terms: the paper's 0.0051.
        "lambda_offdiag": 0.0051,
        # A factor on the whole loss. 1 in the paper and its code (facebookresearch/barlowtwins
        # main.py); solo-learn's recipes (scripts/pretrain/cifar/barlow.yaml, `scale_loss`,
        # solo/losses/barlow.py) use 0.1, tuned with their LARS learning rate 0.3: follow the
        # recipe the study copies. Under LARS the trust ratio cancels most of the scale.
        "scale_loss": 1.0,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        if not options["lambda_offdiag"] > 0:
            raise ValueError(f"lambda_offdiag must be > 0, got {options['lambda_offdiag']}")
        if not options["scale_loss"] > 0:
            raise ValueError(f"scale_loss must be > 0, got {options['scale_loss']}")
