"""The parts of FixMatch and FlexMatch that are theirs: the unlabeled loss, FlexMatch's
class-wise thresholds, the weight average that is evaluated, and the learning rate.

References, read before writing:
- FixMatch (Sohn et al. 2020), google-research/fixmatch: `FixMatch.model` in fixmatch.py
  (and ablation/ab_fixmatch_ra.py, the same loss with RandAugment, selfsup.randaugment).
- FlexMatch (Zhang et al. 2021) as USB trains it, microsoft/Semi-supervised-learning:
  semilearn/algorithms/flexmatch/flexmatch.py and `FlexMatchThresholdingHook` in
  semilearn/algorithms/flexmatch/utils.py; its EMA in semilearn/core/utils/misc.py (`EMA`).

Not yet a downstream protocol: the training loop, its two input streams and the study
keys come with the protocol registry.
"""

from __future__ import annotations

import math

import tensorflow as tf

THRESHOLD = 0.95  # tau: `confidence` of fixmatch.py, `p_cutoff` of USB's configs
UNLABELED_WEIGHT = 1.0  # lambda_u: `wu`, USB's `ulb_loss_ratio`
UNLABELED_RATIO = 7  # mu: `uratio`
LEARNING_RATE = 0.03
EMA_DECAY = 0.999  # `ema` of fixmatch.py, `ema_m` of USB's configs


def unlabeled_loss(logits_weak, logits_strong, threshold: float = THRESHOLD, class_thresholds=None):
    """(loss, mask) of fixmatch.py: the weak view's prediction, with no gradient, is the
    hard pseudo-label of the strong view where its confidence is at least the threshold
    (`>=`); the cross-entropy is averaged over the whole unlabeled batch, the masked-out
    images counting 0 (`reduce_mean(loss_xeu * pseudo_mask)`, not a mean over the kept).
    `class_thresholds` (num_classes,): FlexMatch's, for the predicted class of each image."""
    probabilities = tf.stop_gradient(tf.nn.softmax(logits_weak))
    pseudo_labels = tf.argmax(probabilities, axis=1)
    confidence = tf.reduce_max(probabilities, axis=1)
    if class_thresholds is not None:
        threshold = tf.gather(class_thresholds, pseudo_labels)
    mask = tf.cast(confidence >= threshold, logits_strong.dtype)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pseudo_labels, logits=logits_strong)
    return tf.reduce_mean(cross_entropy * mask), mask


class FlexMatchStatus(tf.Module):
    """FlexMatch's learning status of each class, as USB's FlexMatchThresholdingHook with
    its defaults (convex mapping, threshold warm-up). Every unlabeled image has a slot,
    -1 until a prediction of it reaches the fixed threshold, then that prediction's class
    (overwritten by later confident ones, never reset). A class's status beta is its
    count of slots over the largest count, the unused (-1) slots included while warming up;
    its threshold is tau * beta / (2 - beta). At the start every beta is 0, so every image
    passes; a step masks with the thresholds of the step before, then updates them."""

    def __init__(self, pool_size: int, num_classes: int, threshold: float = THRESHOLD, warmup: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.threshold = threshold
        self.warmup = warmup
        self.selected = tf.Variable(tf.fill([pool_size], -1), trainable=False, name="selected_label")
        self.status = tf.Variable(tf.zeros([num_classes]), trainable=False, name="classwise_acc")

    def class_thresholds(self):
        return self.threshold * self.status / (2.0 - self.status)

    def mask(self, logits_weak, logits_strong, indices):
        """(loss, mask) of `unlabeled_loss` with the current class thresholds; then the
        confident predictions of the images at `indices` (their slots) update the status."""
        loss, mask = unlabeled_loss(logits_weak, logits_strong, class_thresholds=self.class_thresholds())
        probabilities = tf.nn.softmax(tf.stop_gradient(logits_weak))
        confident = tf.reduce_max(probabilities, axis=1) >= self.threshold
        self.selected.scatter_nd_update(
            tf.boolean_mask(indices, confident)[:, tf.newaxis],
            tf.boolean_mask(tf.argmax(probabilities, axis=1, output_type=tf.int32), confident),
        )
        self.update()
        return loss, mask

    def update(self):
        """utils.py's update(): counts per class (slot -1 first), beta = count / max."""
        counts = tf.math.bincount(self.selected + 1, minlength=self.num_classes + 1, dtype=tf.float32)
        used, classes = counts[0], counts[1:]
        largest = tf.maximum(tf.reduce_max(classes), used) if self.warmup else tf.reduce_max(classes)
        # As USB: only while no one slot value fills the pool (at first, every slot is -1).
        changes = tf.reduce_max(counts) < tf.cast(tf.size(self.selected), tf.float32)
        self.status.assign(tf.where(changes, classes / tf.maximum(largest, 1.0), self.status))


class WeightAverage(tf.Module):
    """The exponential moving average of the trainable weights that FixMatch evaluates
    (tf.train.ExponentialMovingAverage over model_vars() in fixmatch.py; USB's EMA):
    shadow = decay * shadow + (1 - decay) * weight after every optimizer step, starting
    from the initial weights. Batch-norm statistics are not averaged: the averaged model
    uses the trained model's own, as both references do."""

    def __init__(self, variables, decay: float = EMA_DECAY):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: {decay} must lie in [0, 1)")
        self.decay = decay
        self.weights = list(variables)
        self.shadows = [tf.Variable(tf.identity(v), trainable=False) for v in self.weights]

    def update(self):
        for shadow, variable in zip(self.shadows, self.weights, strict=True):
            shadow.assign(self.decay * shadow + (1.0 - self.decay) * variable)

    def swap(self):
        """Exchange the weights and their averages (call again to undo): evaluate between."""
        for shadow, variable in zip(self.shadows, self.weights, strict=True):
            kept = tf.identity(variable)
            variable.assign(shadow)
            shadow.assign(kept)


def learning_rate(step, total_steps: int, base: float = LEARNING_RATE):
    """fixmatch.py's schedule: base * cos(7 pi k / 16 K) at step k of K, no warm-up
    (USB's get_cosine_schedule_with_warmup with num_cycles 7/16 is the same)."""
    progress = tf.clip_by_value(tf.cast(step, tf.float32) / total_steps, 0.0, 1.0)
    return base * tf.cos(progress * 7.0 * math.pi / 16.0)
