"""The parts of FixMatch and FlexMatch that are theirs: the unlabeled loss, FlexMatch's
class-wise thresholds, the weight average that is evaluated, and the learning rate.

References, read before writing:
- FixMatch (Sohn et al. 2020), google-research/fixmatch: `FixMatch.model` in fixmatch.py
  (and ablation/ab_fixmatch_ra.py, the same loss with RandAugment, selfsup.randaugment).
- FlexMatch (Zhang et al. 2021) as USB trains it, microsoft/Semi-supervised-learning:
  semilearn/algorithms/flexmatch/flexmatch.py and `FlexMatchThresholdingHook` in
  semilearn/algorithms/flexmatch/utils.py; its EMA in semilearn/core/utils/misc.py (`EMA`).

The protocols' study keys, defaults and checks, and their job, are in
selfsup/protocols/fixmatch.py and flexmatch.py.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from selfsup.inputs import AUGMENT, batch_key
from selfsup.protocols.fixmatch import EMA_DECAY, LEARNING_RATE, THRESHOLD, UNLABELED_WEIGHT
from selfsup.randaugment import rand_augment


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
        # Keras variables: a model that holds them saves them with its weights (a resumed
        # job goes on with the status it had).
        self.selected = keras.Variable(
            np.full(pool_size, -1, np.int32), trainable=False, name="selected_label"
        )
        self.status = keras.Variable(np.zeros(num_classes, np.float32), trainable=False, name="classwise_acc")

    def class_thresholds(self):
        return self.threshold * self.status / (2.0 - self.status)

    def mask(self, logits_weak, logits_strong, indices):
        """(loss, mask) of `unlabeled_loss` with the current class thresholds; then the
        confident predictions of the images at `indices` (their slots) update the status."""
        loss, mask = unlabeled_loss(logits_weak, logits_strong, class_thresholds=self.class_thresholds())
        probabilities = tf.nn.softmax(tf.stop_gradient(logits_weak))
        confident = tf.reduce_max(probabilities, axis=1) >= self.threshold
        self.selected.assign(
            tf.tensor_scatter_nd_update(
                tf.convert_to_tensor(self.selected),
                tf.boolean_mask(indices, confident)[:, tf.newaxis],
                tf.boolean_mask(tf.argmax(probabilities, axis=1, output_type=tf.int32), confident),
            )
        )
        self.update()
        return loss, mask

    def update(self):
        """utils.py's update(): counts per class (slot -1 first), beta = count / max."""
        counts = tf.math.bincount(
            tf.convert_to_tensor(self.selected) + 1, minlength=self.num_classes + 1, dtype=tf.float32
        )
        used, classes = counts[0], counts[1:]
        largest = tf.maximum(tf.reduce_max(classes), used) if self.warmup else tf.reduce_max(classes)
        # As USB: only while no one slot value fills the pool (at first, every slot is -1).
        changes = tf.reduce_max(counts) < tf.cast(tf.size(tf.convert_to_tensor(self.selected)), tf.float32)
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
        # Keras variables, saved with a model that holds them (see FlexMatchStatus).
        self.shadows = [
            keras.Variable(tf.identity(v), trainable=False, name=f"average_{i}")
            for i, v in enumerate(self.weights)
        ]

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


class CosineRate(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate` as a Keras schedule of the optimizer's step."""

    def __init__(self, base: float, total_steps: int):
        self.base, self.total_steps = base, total_steps

    def __call__(self, step):
        return learning_rate(step, self.total_steps, self.base)

    def get_config(self):
        return {"base": self.base, "total_steps": self.total_steps}


def sgd(base: float, total_steps: int) -> keras.optimizers.SGD:
    """The references' optimizer: SGD with Nesterov momentum 0.9 on the cosine rate (weight
    decay is the model's coupled L2, not the optimizer's)."""
    return keras.optimizers.SGD(CosineRate(base, total_steps), momentum=0.9, nesterov=True)


class AverageEvaluation(keras.callbacks.Callback):
    """After each epoch (`eval_every` steps): `evaluate()` with the weight average swapped
    in, logged as ema_test_accuracy (history, progress line, TensorBoard)."""

    def __init__(self, model: FixMatchModel, evaluate):
        super().__init__()
        self.fixmatch, self.evaluate = model, evaluate

    def on_epoch_end(self, epoch, logs=None):
        self.fixmatch.average.swap()
        try:
            accuracy = self.evaluate()
        finally:
            self.fixmatch.average.swap()
        if logs is not None:
            logs["ema_test_accuracy"] = accuracy


def weak_augment(images, seed, flip: bool = True, shift: float = 0.125):
    """FixMatch's weak view (libml/augment.py: augment_mirror, then augment_shift): a
    horizontal flip of half the images where the dataset allows it, then a translation of
    up to `shift` of the side in each direction, the image reflect-padded (tf.pad's
    REFLECT, as the reference) and cropped back. Per image; `seed` a stateless seed."""
    images = tf.convert_to_tensor(images, tf.float32)
    flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    if flip:
        flipped = tf.random.stateless_uniform([batch], flip_seed) < 0.5
        images = tf.where(flipped[:, tf.newaxis, tf.newaxis, tf.newaxis], images[:, :, ::-1, :], images)
    pad = int(round(shift * width))
    if pad == 0:
        return images
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    offsets = tf.random.stateless_uniform([batch, 2], shift_seed, 0, 2 * pad + 1, tf.int32)
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis, :]
    cols = offsets[:, 1:] + tf.range(width)[tf.newaxis, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


class FixMatchModel(keras.Model):
    """FixMatch (or FlexMatch, given `flexmatch`) on a classifier that outputs class
    probabilities (downstream.build_classifier's), trained on
    ((labeled images, labels), (unlabeled images, their pool positions, their true labels
    or -1)), images in [0, 1]. As fixmatch.py: one forward pass over the labeled weak
    views, the unlabeled weak views and their strong views together (batch
    normalization sees all three), the labeled cross-entropy plus lambda_u times the
    unlabeled loss plus an L2 term of weight_decay / 2 x the squared kernels (coupled,
    through the gradient, as the reference's loss_wd; not Keras' decoupled
    weight_decay), then the weight average's update after the step.

    Deviation: Keras' SGD with Nesterov momentum folds the learning rate into its
    velocity; TF1's MomentumOptimizer (the reference's) applies it at the update. The two
    agree for a constant rate and differ slightly along the cosine schedule."""

    def __init__(
        self,
        classifier: keras.Model,
        normalize=None,
        flip: bool = True,
        shift: float = 0.125,
        threshold: float = THRESHOLD,
        unlabeled_weight: float = UNLABELED_WEIGHT,
        weight_decay: float = 5e-4,
        ema_decay: float = EMA_DECAY,
        flexmatch: FlexMatchStatus | None = None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.normalize = normalize or (lambda images: images)
        self.flip, self.shift = flip, shift
        self.threshold, self.unlabeled_weight, self.weight_decay = threshold, unlabeled_weight, weight_decay
        self.flexmatch = flexmatch
        self.average = WeightAverage(classifier.trainable_variables, ema_decay)
        # Tracked, so saved with the model's weights: the averages and FlexMatch's slots.
        self.average_weights = self.average.shadows
        self.flexmatch_state = [flexmatch.selected, flexmatch.status] if flexmatch is not None else []
        self.kernels = [v for v in classifier.trainable_variables if v.path.endswith("kernel")]
        self.seed = seed
        self.built = True  # the classifier is: a resumed job loads weights before any step
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "labeled_loss", "unlabeled_loss", "mask_rate", "pseudo_label_accuracy")
        }

    def build(self, input_shape) -> None:
        self.built = True

    def call(self, images, training=False):
        return self.classifier(self.normalize(images), training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        (labeled, labels), (unlabeled, positions, true_labels) = data
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        # The draws of a step are a function of the seed and the step (the optimizer's
        # count, saved with it): a resumed job draws what an uninterrupted one does.
        seeds = tf.random.experimental.stateless_split(
            batch_key(self.seed, AUGMENT, 0, self.optimizer.iterations), 4
        )
        weak_labeled = weak_augment(labeled, seeds[0], self.flip, self.shift)
        weak = weak_augment(unlabeled, seeds[1], self.flip, self.shift)
        # The strong view is RandAugment on a weak view of its own (libml/augment.py's pool).
        strong = rand_augment(weak_augment(unlabeled, seeds[2], self.flip, self.shift), seeds[3])
        n_labeled, n_unlabeled = tf.shape(labeled)[0], tf.shape(unlabeled)[0]
        with tf.GradientTape() as tape:
            probabilities = tf.cast(
                self(tf.concat([weak_labeled, weak, strong], 0), training=True), tf.float32
            )
            p_labeled, p_weak, p_strong = tf.split(probabilities, [n_labeled, n_unlabeled, n_unlabeled])
            labeled_loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, p_labeled))
            # log p are logits of p (softmax(log p) = p).
            logits_weak, logits_strong = (tf.math.log(tf.maximum(p, 1e-7)) for p in (p_weak, p_strong))
            if self.flexmatch is not None:
                unlabeled_loss_, mask = self.flexmatch.mask(logits_weak, logits_strong, positions)
            else:
                unlabeled_loss_, mask = unlabeled_loss(logits_weak, logits_strong, self.threshold)
            l2 = tf.add_n([tf.reduce_sum(tf.square(k)) for k in self.kernels]) / 2 if self.kernels else 0.0
            total = labeled_loss + self.unlabeled_weight * unlabeled_loss_ + self.weight_decay * l2
        # The model's own list (the classifier's, in the order a resumed job builds the
        # optimizer in: selfsup.training._Resume.restore).
        variables = self.trainable_variables
        gradients = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.average.update()
        pseudo = tf.argmax(p_weak, axis=1, output_type=tf.int32)
        known = tf.cast(tf.reshape(true_labels, [-1]) >= 0, tf.float32) * mask
        right = tf.cast(pseudo == tf.cast(tf.reshape(true_labels, [-1]), tf.int32), tf.float32)
        self.trackers["loss"].update_state(total)
        self.trackers["labeled_loss"].update_state(labeled_loss)
        self.trackers["unlabeled_loss"].update_state(unlabeled_loss_)
        self.trackers["mask_rate"].update_state(tf.reduce_mean(mask))
        # Of the pseudo-labels used (mask 1) whose true label is known: the share right.
        self.trackers["pseudo_label_accuracy"].update_state(right, sample_weight=known)
        return {name: tracker.result() for name, tracker in self.trackers.items()}
