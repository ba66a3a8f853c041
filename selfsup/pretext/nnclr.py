"""NNCLR: the positive of a view is its nearest neighbour in a queue of past projections.

Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.queue import Queue
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


class NNCLRModel(TwoViewModel):
    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = options["temperature"]
        # The support set: normalized projections of past batches, first in first out. It
        # starts random (as in the paper's code), so early neighbours are noise.
        self.queue = Queue(options["queue_size"], options["projector"][-1], seed=0, name="support_set")
        self.latest = None

    def view_loss(self, x1, x2, training):
        z1, p1 = self.predict_projection(x1, training)
        z2, p2 = self.predict_projection(x2, training)
        if training:
            self.latest = z1
        return losses.nnclr(z1, z2, self.queue.vectors, self.temperature, p1=p1, p2=p2), z1

    def after_step(self) -> None:
        # Enqueue this batch's view-1 projections where the oldest entries are.
        self.queue.enqueue(self.latest)


class NNCLR(TwoViewMethod):
    MODEL = NNCLRModel
    WIDTHS = ("projector", "predictor")
    PREDICTOR = "predictor"
    # solo-learn's projector (solo/methods/nnclr.py) ends in a BatchNorm1d with scale and
    # shift: it centres each dimension before the L2 normalisation that the neighbour
    # search and the queue use.
    PROJECTOR_OUTPUT_BATCH_NORM = "affine"
    OPTIONS = {
        # solo-learn's three-layer 2048-2048-256 projector and 4096-256 predictor,
        # narrowed for small images.
        "projector": [512, 512, 128],
        "predictor": [512, 128],
        # Support set size (98,304 in the paper for ImageNet); at least one batch.
        "queue_size": 4096,
        "temperature": 0.1,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        if not options["temperature"] > 0:
            raise ValueError(f"temperature must be > 0, got {options['temperature']}")
        batch_size = (settings or {}).get("batch_size", 0)
        if options["queue_size"] < max(batch_size, 1):
            raise ValueError(
                f"queue_size ({options['queue_size']}) must be at least the batch size ({batch_size}): "
                "each step enqueues a whole batch"
            )
