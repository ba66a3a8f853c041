"""VICReg: invariance between the views, variance kept above 1 per dimension, covariance to zero.

Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning", ICLR 2022.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


class VICRegModel(TwoViewModel):
    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.weights_ = (options["sim_weight"], options["var_weight"], options["cov_weight"])

    def view_loss(self, x1, x2, training):
        z1, z2 = self.project(x1, training), self.project(x2, training)
        return losses.vicreg(z1, z2, *self.weights_), z1


class VICReg(TwoViewMethod):
    MODEL = VICRegModel
    OPTIONS = {
        # The paper's three-layer 8192-8192-8192 expander (main_vicreg.py; solo-learn's
        # 2048 x 3), narrowed for small images: three Dense layers, the last one linear.
        "projector": [1024, 1024, 1024],
        # The paper's weights: invariance 25, variance 25, covariance 1.
        "sim_weight": 25.0,
        "var_weight": 25.0,
        "cov_weight": 1.0,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        for key in ("sim_weight", "var_weight", "cov_weight"):
            if not options[key] >= 0:
                raise ValueError(f"{key} must be >= 0, got {options[key]}")
