"""MoCo v2+: a query is told apart from a queue of past keys by its key, the other view as
seen by a momentum (EMA) copy of the network; symmetrized over the two views.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020;
Chen et al., "Improved Baselines with Momentum Contrastive Learning" (MoCo v2), 2020;
the symmetric loss ("MoCo v2+") as Chen & He, "Exploring Simple Siamese Representation
Learning", CVPR 2021 (Table 4, MoCo v2 with symmetrized loss) and solo-learn.

References: facebookresearch/moco moco/builder.py (the key encoder, queue and InfoNCE),
main_moco.py and README.md (MoCo v2 is `--mlp --moco-t 0.2 --aug-plus --cos`: K 65,536,
m 0.999, T 0.2, a 2-layer MLP head); solo-learn solo/methods/mocov2plus.py,
solo/losses/mocov2plus.py, solo/utils/momentum.py and scripts/pretrain/cifar/mocov2plus.yaml
(the small-image recipe: head 2048-256, queue 32,768, T 0.2, tau 0.99 -> 0.999).

Why the config name is "mocov2plus", solo-learn's symmetric variant, and not the original
asymmetric MoCo v2: the other two-view methods here follow solo-learn's small-image
recipes, and the symmetric loss learns from both views' queries at every step (the
original contrasts only view 1's queries), which matters on the short runs and small
pools these studies train on. Each view has its own queue of keys, as solo-learn's
`queue[0]`, `queue[1]`: view 1's queries meet view 2's keys and past view-2 keys.

The query network is the encoder and projector; the key network is a momentum copy of
both (selfsup.pretext.momentum), running in training mode, its parameters an EMA of the
query network's with tau raised from `momentum` to `final_momentum` by a cosine.

Deviations from the references, and why:
- No shuffling BN. MoCo's code shuffles the key batch across GPUs so that BatchNorm
  statistics cannot tell the positive key (this batch) from the negatives (past
  batches); on one device there is nothing to shuffle across, and solo-learn does not
  shuffle either (its CIFAR recipe synchronizes BatchNorm across GPUs instead). The MLP head has no
  BatchNorm, so only a BatchNorm encoder (the ResNet) shares batch statistics, as in
  solo-learn on one GPU.
- Queue 4,096 by default, not 65,536 (MoCo) or 32,768 (solo-learn's CIFAR): a queue
  larger than the pool holds several stale keys of every image, the query's own among
  the negatives. The studies' pools are from a few thousand images; set it near the
  pool size for larger ones.
- Head 512-128, narrowed from solo-learn's 2048-256 (MoCo's is 2048-128 after a
  ResNet-50) for small images and encoders, as the other two-view methods.
- Momentum 0.99 raised to 0.999 by a cosine (solo-learn's CIFAR recipe), not MoCo's
  constant 0.999 (set both options to 0.999 for it): tau near 1 barely moves the key
  network in a short run (see BYOL's OPTIONS). The key network is updated after the
  optimizer step (solo-learn), not before the keys are computed (MoCo): the same sequence
  of updates, shifted by one step.
- The queue wraps around the end instead of requiring its size to be a multiple of the
  batch size (selfsup.pretext.queue), and starts as random unit vectors as in MoCo
  (its seed fixed).
- The learning-rate schedule (MoCo v2's cosine, `--cos`), optimizer and augmentation are
  the study's training settings, not options of the method.
"""

from __future__ import annotations

from selfsup.pretext import losses
from selfsup.pretext.momentum import MomentumTargetMixin
from selfsup.pretext.queue import Queue
from selfsup.pretext.two_view import TwoViewMethod, TwoViewModel


class MoCoV2PlusModel(MomentumTargetMixin, TwoViewModel):
    """Query network (encoder, projector) trained by gradients; key network
    (target_encoder, target_projector) by EMA; one queue of past keys per view."""

    def __init__(self, options, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = options["temperature"]
        self.init_targets(options["momentum"], total_steps, options["final_momentum"])
        size, width = options["queue_size"], options["projector"][-1]
        self.queue1 = Queue(size, width, seed=0, name="key_queue1")
        self.queue2 = Queue(size, width, seed=1, name="key_queue2")
        self.latest = None

    def view_loss(self, x1, x2, training):
        q1, q2 = self.project(x1, training), self.project(x2, training)
        k1, k2 = self.target(x1, training), self.target(x2, training)
        if training:
            self.latest = (k1, k2)
        t = self.temperature
        loss = (losses.moco(q1, k2, self.queue2.vectors, t) + losses.moco(q2, k1, self.queue1.vectors, t)) / 2
        return loss, q1

    def after_step(self) -> None:
        self.update_targets()
        k1, k2 = self.latest
        self.queue1.enqueue(k1)
        self.queue2.enqueue(k2)


class MoCoV2Plus(TwoViewMethod):
    MODEL = MoCoV2PlusModel
    # MoCo v2's head (moco/builder.py with --mlp; solo-learn's mocov2plus.py):
    # Linear-ReLU-Linear, no BatchNorm.
    PROJECTOR_HIDDEN_BATCH_NORM = False
    OPTIONS = {
        # solo-learn's CIFAR 2048-256 head (MoCo's 2048-128), narrowed for small images.
        "projector": [512, 128],
        # Negative keys per view (65,536 in MoCo, 32,768 in solo-learn's CIFAR recipe);
        # at most about the pool size, at least one batch (see the module's deviations).
        "queue_size": 4096,
        # MoCo v2's T (README: --moco-t 0.2), solo-learn's CIFAR recipe too.
        "temperature": 0.2,
        # Key network momentum tau, raised from `momentum` to `final_momentum` by a cosine
        # (solo-learn's CIFAR recipe: base_tau 0.99, final_tau 0.999; MoCo: 0.999 fixed).
        # Unlike BYOL's, do not lower it for short runs: keys that follow the queries too
        # fast break MoCo (its paper's momentum ablation: training fails at 0, is worse at
        # 0.9); on tests/test_pretext_contract.py's task, 0.9 -> 0.99 collapsed every
        # projection to one point where the defaults raised kNN accuracy from 0.69 to 0.86.
        "momentum": 0.99,
        "final_momentum": 0.999,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        super().check(options, settings)
        if not options["temperature"] > 0:
            raise ValueError(f"temperature must be > 0, got {options['temperature']}")
        if not 0 <= options["momentum"] < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {options['momentum']}")
        if not options["momentum"] <= options["final_momentum"] <= 1:
            raise ValueError(
                f"final_momentum must lie in [momentum, 1] = [{options['momentum']}, 1], "
                f"got {options['final_momentum']}"
            )
        batch_size = (settings or {}).get("batch_size", 0)
        if options["queue_size"] < max(batch_size, 1):
            raise ValueError(
                f"queue_size ({options['queue_size']}) must be at least the batch size ({batch_size}): "
                "each step enqueues a whole batch of keys"
            )
