"""SimSiam: predict one view's projection from the other's, with a stop-gradient and no negatives.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


class SimSiamModel(TwoViewModel):
    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)

    def view_loss(self, x1, x2, training):
        z1, p1 = self.predict_projection(x1, training)
        z2, p2 = self.predict_projection(x2, training)
        return losses.simsiam(p1, p2, z1, z2), z1


class SimSiam(TwoViewMethod):
    MODEL = SimSiamModel
    WIDTHS = ("projector", "predictor")
    PREDICTOR = "predictor"
    PROJECTOR_OUTPUT_BATCH_NORM = "plain"  # simsiam/builder.py: BatchNorm1d(affine=False)
    OPTIONS = {
        # The paper's CIFAR head (2048 wide, BatchNorm on the output), narrowed.
        "projector": [512, 512],
        # Bottleneck predictor: hidden width a quarter of the output, as the paper's 512 for 2048.
        "predictor": [128, 512],
    }
