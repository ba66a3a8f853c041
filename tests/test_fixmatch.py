"""selfsup.fixmatch against NumPy re-statements of the references' code."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from selfsup import fixmatch
from selfsup.protocols import fixmatch as fixmatch_protocol

RNG = np.random.default_rng(0)


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def reference_unlabeled_loss(weak, strong, thresholds):
    """fixmatch.py's loss_xeu in NumPy: hard pseudo-labels, mask >= threshold, mean over all."""
    probabilities = softmax(weak)
    labels = probabilities.argmax(axis=1)
    mask = (probabilities.max(axis=1) >= thresholds[labels]).astype(np.float64)
    cross_entropy = -np.log(softmax(strong)[np.arange(len(labels)), labels])
    return (cross_entropy * mask).mean(), mask


def test_unlabeled_loss_matches_the_reference_and_stops_the_gradient_of_the_weak_view():
    weak = RNG.normal(0, 3, (56, 5)).astype(np.float32)
    strong = RNG.normal(0, 1, (56, 5)).astype(np.float32)
    expected, expected_mask = reference_unlabeled_loss(weak, strong, np.full(5, 0.6))
    assert 0 < expected_mask.mean() < 1  # some kept, some masked: the test can tell a masked mean
    weak_t, strong_t = tf.constant(weak), tf.constant(strong)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([weak_t, strong_t])
        loss, mask = fixmatch.unlabeled_loss(weak_t, strong_t, threshold=0.6)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(np.asarray(mask), expected_mask)
    assert tape.gradient(loss, weak_t) is None
    assert np.abs(np.asarray(tape.gradient(loss, strong_t))).sum() > 0


class ReferenceFlexMatch:
    """USB's FlexMatchThresholdingHook.masking and update, with Counter, as written there."""

    def __init__(self, pool_size, num_classes, p_cutoff):
        self.selected_label = np.full(pool_size, -1)
        self.classwise_acc = np.zeros(num_classes)
        self.ulb_dest_len, self.num_classes, self.p_cutoff = pool_size, num_classes, p_cutoff

    def update(self):
        pseudo_counter = Counter(self.selected_label.tolist())
        if max(pseudo_counter.values()) < self.ulb_dest_len:
            for i in range(self.num_classes):
                self.classwise_acc[i] = pseudo_counter[i] / max(pseudo_counter.values())

    def masking(self, probs, idx):
        max_probs, max_idx = probs.max(axis=-1), probs.argmax(axis=-1)
        acc = self.classwise_acc[max_idx]
        mask = (max_probs >= self.p_cutoff * (acc / (2.0 - acc))).astype(np.float64)
        select = max_probs >= self.p_cutoff
        self.selected_label[idx[select]] = max_idx[select]
        self.update()
        return mask


def test_flexmatch_thresholds_follow_usb_step_by_step():
    pool, classes = 60, 4
    ours = fixmatch.FlexMatchStatus(pool, classes, threshold=0.7)
    reference = ReferenceFlexMatch(pool, classes, 0.7)
    statuses = []
    for step in range(12):
        indices = RNG.choice(pool, 16, replace=False)
        weak = RNG.normal(0, 1 + step / 3, (16, classes)).astype(np.float32)
        strong = RNG.normal(0, 1, (16, classes)).astype(np.float32)
        thresholds = 0.7 * reference.classwise_acc / (2 - reference.classwise_acc)
        expected_loss, _ = reference_unlabeled_loss(weak, strong, thresholds)
        expected_mask = reference.masking(softmax(weak), indices)
        loss, mask = ours.mask(tf.constant(weak), tf.constant(strong), tf.constant(indices, tf.int32))
        np.testing.assert_array_equal(np.asarray(mask), expected_mask)
        assert float(loss) == pytest.approx(expected_loss, rel=1e-5)
        np.testing.assert_allclose(np.asarray(ours.status), reference.classwise_acc, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(ours.selected), reference.selected_label)
        statuses.append(reference.classwise_acc.copy())
    assert statuses[0].max() < 1  # warm-up: the unused slots count in the denominator
    assert statuses[-1].max() > 0  # and the classes learned something


def test_flexmatch_lets_every_image_pass_at_the_start():
    status = fixmatch.FlexMatchStatus(10, 3)
    _, mask = status.mask(tf.zeros([4, 3]), tf.zeros([4, 3]), tf.range(4))
    assert np.asarray(mask).tolist() == [1, 1, 1, 1]  # thresholds 0: uniform predictions pass


def test_weight_average_follows_its_recursion_and_swaps_back():
    weight = tf.Variable([1.0, -2.0])
    average = fixmatch.WeightAverage([weight], decay=0.9)
    weight.assign([3.0, 0.0])
    for _ in range(5):
        average.update()
    # shadow = w1 + (w0 - w1) * decay^n, from the initial weights
    expected = np.array([3.0, 0.0]) + (np.array([1.0, -2.0]) - np.array([3.0, 0.0])) * 0.9**5
    np.testing.assert_allclose(np.asarray(average.shadows[0]), expected, rtol=1e-6)
    average.swap()
    np.testing.assert_allclose(np.asarray(weight), expected, rtol=1e-6)
    average.swap()
    np.testing.assert_array_equal(np.asarray(weight), [3.0, 0.0])
    with pytest.raises(ValueError, match="decay: 1.0"):
        fixmatch.WeightAverage([weight], decay=1.0)


def test_learning_rate_is_fixmatchs_cosine():
    assert float(fixmatch.learning_rate(0, 100)) == pytest.approx(0.03)
    assert float(fixmatch.learning_rate(100, 100)) == pytest.approx(0.03 * math.cos(7 * math.pi / 16))
    assert float(fixmatch.learning_rate(50, 100)) == pytest.approx(0.03 * math.cos(7 * math.pi / 32))


def test_weak_augment_flips_half_and_shifts_within_the_reflect_padding():
    images = RNG.random((64, 16, 16, 1)).astype(np.float32)
    out = np.asarray(fixmatch.weak_augment(images, [1, 2], flip=True, shift=0.125))
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")  # tf.pad's REFLECT
    flipped = 0
    for image, view in zip(padded, out, strict=True):
        crops = {
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal((image[:, ::-1] if flip else image)[dy : dy + 16, dx : dx + 16], view)
        }
        assert crops, "each weak view is a crop of the (flipped) padded image"
        flipped += all(flip for flip, _, _ in crops)
    assert 16 < flipped < 48
    unflipped = np.asarray(fixmatch.weak_augment(images, [1, 2], flip=False, shift=0.0))
    np.testing.assert_array_equal(unflipped, images)


def toy(n, seed):
    """8x8 images, class 0 brighter in the top half, class 1 in the bottom half (a
    horizontal flip keeps the class), in [0, 1] with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.uniform(0.0, 0.5, (n, 8, 8, 1)).astype(np.float32)
    for image, label in zip(images, labels, strict=True):
        image[4 * label : 4 * label + 4] += 0.4
    return images, labels


@pytest.mark.parametrize("flexmatch", [False, True], ids=["fixmatch", "flexmatch"])
def test_fixmatch_learns_from_four_labels_and_uses_right_pseudo_labels(flexmatch):
    import keras

    keras.utils.set_random_seed(0)
    images, classes = toy(40, 1)
    pick = np.concatenate([np.flatnonzero(classes == 0)[:2], np.flatnonzero(classes == 1)[:2]])
    labeled, labels = images[pick], classes[pick]  # two labels per class
    unlabeled, hidden = toy(448, 2)
    test_images, test_labels = toy(200, 3)
    classifier = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]
    )
    status = fixmatch.FlexMatchStatus(448, 2, threshold=0.8) if flexmatch else None
    model = fixmatch.FixMatchModel(
        classifier, threshold=0.8, weight_decay=5e-4, ema_decay=0.9, flexmatch=status, seed=0
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    start = float(np.mean(np.argmax(model.predict(test_images, verbose=0), 1) == test_labels))
    order = np.random.default_rng(4).permutation(448)
    lab = tf.data.Dataset.from_tensors((labeled, labels)).repeat()
    unl = tf.data.Dataset.from_tensor_slices((unlabeled[order], order, hidden[order])).batch(56).repeat()
    history = model.fit(tf.data.Dataset.zip(lab, unl), steps_per_epoch=8, epochs=4, verbose=0).history
    assert history["mask_rate"][-1] > 0.3  # pseudo-labels in use
    assert history["pseudo_label_accuracy"][-1] > 0.9
    model.average.swap()  # the weight average is the model evaluated
    end = float(np.mean(np.argmax(model.predict(test_images, verbose=0), 1) == test_labels))
    model.average.swap()
    assert end > max(start, 0.6) + 0.2, (start, end)


def test_check_fills_the_references_defaults():
    options = fixmatch_protocol.check_options({}, pool_size=50_000)
    assert options["batch_size"] == 64 and options["steps"] == 2**20 and options["median_of"] == 20
    assert options["unlabeled_ratio"] == 7 and options["threshold"] == 0.95
    assert options["unlabeled_weight"] == 1.0 and options["ema_decay"] == 0.999
    assert options["learning_rate"] == 0.03 and options["weight_decay"] == 5e-4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mu": 7}, r"unknown option\(s\) mu; allowed: steps, eval_every, median_of, batch_size, unlabeled_ratio"),
        ({"unlabeled_ratio": 0}, r"unlabeled_ratio: expected an integer >= 1 .* got 0"),
        ({"unlabeled_ratio": 7.0}, r"unlabeled_ratio: expected an integer >= 1 .* got 7\.0"),
        ({"threshold": 0.0}, r"threshold: 0\.0 must lie in \(0\.0, 1\.0\]"),
        ({"threshold": 1.5}, r"threshold: 1\.5 must lie in \(0\.0, 1\.0\]"),
        ({"unlabeled_weight": -1}, r"unlabeled_weight: -1 must lie in \[0\.0, inf\)"),
        ({"ema_decay": 1.0}, r"ema_decay: 1\.0 must lie in \[0\.0, 1\.0\)"),
        ({"threshold": True}, r"threshold: expected a number, got True"),
        ({"shift": 0.5}, r"shift: 0\.5 must lie in \[0\.0, 0\.5\)"),
        ({"horizontal_flip": "yes"}, r"horizontal_flip: expected true or false, got 'yes'"),
        ({"unlabeled_ratio": 8}, r"unlabeled_ratio: 8 x batch_size 64 = 512 unlabeled images a step, but the pool holds 500"),
        ({"steps": 1000, "eval_every": 300}, r"steps: 1000 is not a multiple of eval_every 300"),
        ({"steps": 1000, "eval_every": 100, "median_of": 11}, r"median_of: 11 evaluations, but steps / eval_every makes 10"),
        ({"from_pretext": 1}, r"from_pretext: expected true or false, got 1"),
        ({"batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
    ],
)  # fmt: skip
def test_check_names_the_key_and_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        fixmatch_protocol.check_options(options, pool_size=500 if "unlabeled_ratio" in options else 50_000)


def test_check_refuses_a_flip_where_it_changes_the_class():
    with pytest.raises(
        ValueError, match="horizontal_flip: a mirrored image of this dataset can be another class"
    ):
        fixmatch_protocol.check_options({"batch_size": 8}, pool_size=100, flip_changes_classes=True)
    options = fixmatch_protocol.check_options({"batch_size": 8, "horizontal_flip": False}, 100, True)
    assert options["horizontal_flip"] is False
