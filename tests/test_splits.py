"""selfsup.data.splits: pools as index ranges and nested, class-stratified budgets."""

from __future__ import annotations

import numpy as np
import pytest

from selfsup.data.splits import (
    budget_name,
    drawn_budget,
    fraction_split,
    index_range,
    make_split,
    parse_budget,
    stratified_order,
)


def test_index_range():
    np.testing.assert_array_equal(index_range([2, 5], 10, "labeled"), [2, 3, 4])
    np.testing.assert_array_equal(index_range(None, 4, "test"), [0, 1, 2, 3])
    assert index_range([0, 10], 10, "labeled").dtype == np.int64


@pytest.mark.parametrize("bounds", [[5, 5], [6, 5], [-1, 3], [0, 11]])
def test_index_range_errors_name_the_key(bounds):
    with pytest.raises(
        ValueError, match=rf"split.unlabeled = \[{bounds[0]}, {bounds[1]}\) must lie within \[0, 10\)"
    ):
        index_range(bounds, 10, "unlabeled")


def imbalanced_labels(seed=0, n=1000):
    """Labels with class shares 0.5, 0.3, 0.15, 0.05, shuffled."""
    labels = np.repeat([0, 1, 2, 3], [n // 2, 3 * n // 10, 15 * n // 100, n // 20])
    return np.random.default_rng(seed).permutation(labels)


def test_stratified_order_is_a_permutation():
    labels = imbalanced_labels()
    order = stratified_order(labels, seed=1)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(len(labels)))


def test_every_prefix_is_stratified_within_one():
    labels = imbalanced_labels()
    share = np.bincount(labels) / len(labels)
    counts = np.cumsum(np.eye(4, dtype=int)[labels[stratified_order(labels, seed=1)]], axis=0)
    n = np.arange(1, len(labels) + 1)[:, None]
    # |count_c(prefix n) - n p_c| <= 1 for every prefix n and class c.
    assert np.abs(counts - n * share).max() <= 1.0 + 1e-9
    # A prefix of 20 of these shares holds exactly 10, 6, 3, 1.
    np.testing.assert_array_equal(counts[19], [10, 6, 3, 1])


def test_stratified_order_deterministic_per_seed_and_differs_across_seeds():
    labels = imbalanced_labels()
    a = stratified_order(labels, seed=7)
    np.testing.assert_array_equal(a, stratified_order(labels, seed=7))
    b = stratified_order(labels, seed=8)
    assert not np.array_equal(a[:100], b[:100])
    # Different seeds pick different examples, not just a different order of them.
    assert len(set(a[:100]) & set(b[:100])) < 60


def test_stratified_order_of_a_single_class():
    order = stratified_order(np.zeros(5, dtype=np.int64), seed=0)
    np.testing.assert_array_equal(np.sort(order), np.arange(5))


def test_make_split_pools_and_nested_budgets():
    y_train = imbalanced_labels(n=2000)
    split = make_split(
        y_train, n_test=300, labeled=[1000, 2000], unlabeled=[0, 1000], test=[100, 300], seed=1
    )
    np.testing.assert_array_equal(split.labeled, np.arange(1000, 2000))
    np.testing.assert_array_equal(split.unlabeled, np.arange(1000))
    np.testing.assert_array_equal(split.test, np.arange(100, 300))
    # The budget order indexes the dataset, inside the labeled pool, each index once.
    np.testing.assert_array_equal(np.sort(split.budget_order), split.labeled)

    small, large = split.budget(100), split.budget(1000)
    assert len(small) == 100 and len(large) == 1000
    assert set(small) <= set(large)
    np.testing.assert_array_equal(split.budget("all"), split.budget_order)
    # The budget of 100 follows the class shares of the labeled pool.
    share = np.bincount(y_train[split.labeled], minlength=4) / 1000
    assert np.abs(np.bincount(y_train[small], minlength=4) - 100 * share).max() <= 1


def test_make_split_whole_ranges_and_seeds():
    y_train = imbalanced_labels(n=200)
    a = make_split(y_train, n_test=50, labeled=None, unlabeled=None, test=None, seed=1)
    assert len(a.labeled) == len(a.unlabeled) == 200 and len(a.test) == 50
    b = make_split(y_train, n_test=50, labeled=None, unlabeled=None, test=None, seed=2)
    assert not np.array_equal(a.budget(20), b.budget(20))


def test_budget_errors():
    split = make_split(imbalanced_labels(n=200), 10, [0, 100], None, None, seed=0)
    with pytest.raises(ValueError, match="budget 101 exceeds the labeled pool of 100"):
        split.budget(101)
    assert len(split.budget("100")) == 100


def test_make_split_bad_test_range():
    with pytest.raises(ValueError, match=r"split.test = \[0, 60\) must lie within \[0, 50\)"):
        make_split(imbalanced_labels(n=200), 50, None, None, [0, 60], seed=0)


# --- labeled fractions ------------------------------------------------------------------


def test_fraction_split_is_the_reference_cifar100_draw():
    labeled, unlabeled = fraction_split(50000, 0.2, 125)
    assert (len(labeled), len(unlabeled)) == (10080, 39920)
    # The reference study's own lines, on the legacy global generator (state restored after).
    state = np.random.get_state()
    try:
        np.random.seed(125)
        p = np.random.rand(50000)
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(labeled, np.flatnonzero(p <= 0.2))
    np.testing.assert_array_equal(unlabeled, np.flatnonzero(p > 0.2))
    assert labeled.dtype == unlabeled.dtype == np.int64


def test_fraction_split_partitions_the_images():
    labeled, unlabeled = fraction_split(1000, 0.3, 7)
    np.testing.assert_array_equal(np.sort(np.concatenate([labeled, unlabeled])), np.arange(1000))
    assert 200 < len(labeled) < 400
    np.testing.assert_array_equal(fraction_split(1000, 0.3, 7)[0], labeled)
    assert not np.array_equal(fraction_split(1000, 0.3, 8)[0], labeled)


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5])
def test_fraction_outside_the_open_interval(fraction):
    with pytest.raises(ValueError, match=r"split.labeled_fraction.fraction must lie in \(0, 1\)"):
        fraction_split(100, fraction, 0)
    with pytest.raises(ValueError, match="split.labeled_fraction.fraction"):
        make_split(imbalanced_labels(n=100), 10, seed=1, labeled_fraction={"fraction": fraction, "seed": 0})


def test_make_split_with_a_labeled_fraction():
    y_train = imbalanced_labels(n=2000)
    split = make_split(y_train, 50, seed=3, labeled_fraction={"fraction": 0.25, "seed": 11})
    labeled, unlabeled = fraction_split(2000, 0.25, 11)
    np.testing.assert_array_equal(split.labeled, labeled)
    np.testing.assert_array_equal(split.unlabeled, unlabeled)
    assert split.unlabeled_part == "train"
    np.testing.assert_array_equal(split.test, np.arange(50))
    np.testing.assert_array_equal(np.sort(split.budget_order), labeled)
    small, large = split.budget(40), split.budget(200)
    assert set(small) <= set(large) <= set(labeled)
    share = np.bincount(y_train[labeled], minlength=4) / len(labeled)
    for budget in (small, large):
        assert np.abs(np.bincount(y_train[budget], minlength=4) - len(budget) * share).max() <= 1
    # The replicate seed reorders the budgets, never the pools.
    other = make_split(y_train, 50, seed=4, labeled_fraction={"fraction": 0.25, "seed": 11})
    np.testing.assert_array_equal(other.labeled, split.labeled)
    assert not np.array_equal(other.budget(40), split.budget(40))


# --- folds and own unlabeled images ------------------------------------------------------


def stl10_like(seed=0):
    """5,000 labels of 10 classes (500 each) and ten folds of 1,000 training indices."""
    rng = np.random.default_rng(seed)
    y_train = rng.permutation(np.repeat(np.arange(10), 500))
    folds = [np.sort(rng.choice(5000, 1000, replace=False)) for _ in range(10)]
    return y_train, folds


@pytest.mark.parametrize("seed", [1, 4, 10])
def test_folds_seed_picks_the_fold_with_nested_stratified_budgets(seed):
    y_train, folds = stl10_like()
    split = make_split(y_train, 8000, seed=seed, folds=True, predefined_folds=folds)
    fold = folds[seed - 1]  # fold numbers are 1-based
    np.testing.assert_array_equal(split.labeled, np.arange(5000))  # every labeled image
    np.testing.assert_array_equal(np.sort(split.budget(1000)), fold)  # the fold's size: the fold
    np.testing.assert_array_equal(split.unlabeled, np.arange(5000))  # no range: all training images
    share = np.bincount(y_train[fold], minlength=10) / len(fold)
    previous = set()
    for n in (10, 100, 250, 1000):
        budget = split.budget(n)
        assert previous <= set(budget) <= set(fold)
        assert np.abs(np.bincount(y_train[budget], minlength=10) - n * share).max() <= 1
        previous = set(budget)
    assert set(split.budget(1001)) > set(fold)  # beyond the fold: fold plus others
    assert len(split.budget("all")) == 5000
    with pytest.raises(ValueError, match="budget 5001 exceeds the labeled pool of 5000"):
        split.budget(5001)


@pytest.mark.parametrize("folds", [False, True])
def test_monitor_slice_is_held_out_of_every_budget_and_keeps_the_budgets(folds):
    y_train, fold_list = stl10_like()
    kwargs = {"folds": True, "predefined_folds": fold_list} if folds else {"labeled": [0, 3000]}
    plain = make_split(y_train, 100, seed=3, **kwargs)
    held = make_split(y_train, 100, seed=3, monitor=500, **kwargs)
    assert len(held.monitor) == 500 and len(plain.monitor) == 0
    assert not set(held.monitor) & set(held.budget("all"))
    assert len(held.budget("all")) == len(plain.budget("all")) - 500
    # Class-balanced slice, and the smaller budgets are the same images as without it.
    assert np.bincount(y_train[held.monitor], minlength=10).min() >= 40
    np.testing.assert_array_equal(held.budget(1000), plain.budget(1000))
    if folds:
        assert not set(held.monitor) & set(fold_list[2])
    with pytest.raises(ValueError, match="split.monitor: 5000 images leave none"):
        make_split(y_train, 100, seed=3, monitor=5000, folds=True, predefined_folds=fold_list)


@pytest.mark.parametrize("seed", [0, 11])
def test_folds_seed_out_of_range(seed):
    y_train, folds = stl10_like()
    with pytest.raises(ValueError, match=rf"split.folds: seed {seed} names no fold; folds are 1..10"):
        make_split(y_train, 8000, seed=seed, folds=True, predefined_folds=folds)


def test_folds_on_a_dataset_without_folds():
    with pytest.raises(ValueError, match="split.folds: this dataset has no predefined folds"):
        make_split(imbalanced_labels(n=100), 10, seed=1, folds=True)


def test_own_unlabeled_images():
    y_train, folds = stl10_like()
    split = make_split(
        y_train, 8000, unlabeled="own", seed=2, folds=True, predefined_folds=folds, n_own_unlabeled=300
    )
    assert split.unlabeled_part == "unlabeled"
    np.testing.assert_array_equal(split.unlabeled, np.arange(300))
    assert split.unlabeled.dtype == np.int64
    np.testing.assert_array_equal(np.sort(split.budget(1000)), folds[1])
    # Without folds, the whole training set is labeled.
    split = make_split(y_train, 8000, unlabeled="own", seed=2, n_own_unlabeled=300)
    np.testing.assert_array_equal(split.labeled, np.arange(5000))
    assert split.unlabeled_part == "unlabeled"
    with pytest.raises(
        ValueError, match="split.unlabeled: 'own' needs a dataset that ships unlabeled images"
    ):
        make_split(y_train, 8000, unlabeled="own", seed=2)


def test_range_pools_index_the_training_images():
    split = make_split(imbalanced_labels(n=100), 10, [0, 50], [50, 100], None, seed=1)
    assert split.unlabeled_part == "train"
    assert split.normalization.kind == "none"


# --- many classes ----------------------------------------------------------------------


def test_budgets_nested_and_stratified_with_100_classes():
    """CIFAR-100-like: 500 images per class, the reference 20% labeled."""
    y_train = np.random.default_rng(0).permutation(np.repeat(np.arange(100), 500))
    split = make_split(y_train, 10000, seed=1, labeled_fraction={"fraction": 0.2, "seed": 125})
    assert len(split.labeled) == 10080
    counts = np.bincount(y_train[split.labeled], minlength=100)
    assert counts.min() > 50  # every class is in the pool, in unequal numbers
    share = counts / counts.sum()
    previous = set()
    for n in (100, 500, 1000, 2500, 5000, 10080):
        budget = split.budget(n)
        assert len(budget) == len(set(budget)) == n
        assert previous <= set(budget)
        per_class = np.bincount(y_train[budget], minlength=100)
        assert np.abs(per_class - n * share).max() <= 1
        previous = set(budget)
    # 100 labels: one per class.
    np.testing.assert_array_equal(np.bincount(y_train[split.budget(100)], minlength=100), np.ones(100))


def test_draws_of_a_budget_are_other_stratified_nested_subsets_of_the_labeled_pool():
    y = np.repeat(np.arange(4), 50)
    split = make_split(y, 10, [0, 200], [0, 200], None, seed=3)
    np.testing.assert_array_equal(drawn_budget(split, y, "40", 3), split.budget(40))
    second, third = drawn_budget(split, y, "40-draw2", 3), drawn_budget(split, y, "40-draw3", 3)
    assert len(set(second) ^ set(split.budget(40))) > 20 and set(second) != set(third)
    for draw in (second, third):
        assert set(draw) <= set(split.labeled)
        assert np.bincount(y[draw], minlength=4).tolist() == [10, 10, 10, 10]
    # Nested within a draw, and the same draw every time.
    assert set(drawn_budget(split, y, "20-draw2", 3)) <= set(second)
    np.testing.assert_array_equal(drawn_budget(split, y, "40-draw2", 3), second)
    assert parse_budget("40-draw2") == ("40", 2) and parse_budget("all") == ("all", 1)
    assert budget_name(40, 1) == "40" and budget_name(40, 2) == "40-draw2"
    with pytest.raises(ValueError, match="budget all is every labeled image in every draw"):
        drawn_budget(split, y, "all-draw2", 3)
