"""SimCLR: pull two augmented views of an image together, push other images away (NT-Xent).

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


class SimCLRModel(TwoViewModel):
    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = options["temperature"]

    def view_loss(self, x1, x2, training):
        z1, z2 = self.project(x1, training), self.project(x2, training)
        return losses.nt_xent(z1, z2, self.temperature), z1


class SimCLR(TwoViewMethod):
    MODEL = SimCLRModel
    # solo-learn's head (solo/methods/simclr.py): Linear-ReLU-Linear, no BatchNorm; the
    # recipe study E copies was tuned with it. (google-research/simclr tf2/model.py puts a
    # BatchNorm after every layer of its head instead.)
    PROJECTOR_HIDDEN_BATCH_NORM = False
    OPTIONS = {
        # The paper's 2048-2048-128 head, narrowed for small images and encoders.
        "projector": [512, 128],
        # 0.5 in the paper's CIFAR-10 runs; 0.2 as solo-learn's small-image recipes.
        "temperature": 0.2,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        if not options["temperature"] > 0:
            raise ValueError(f"temperature must be > 0, got {options['temperature']}")
