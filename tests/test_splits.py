"""selfsup.data.splits: pools as index ranges and nested, class-stratified budgets."""

from __future__ import annotations

import numpy as np
import pytest

from selfsup.data.splits import index_range, make_split, stratified_order


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
