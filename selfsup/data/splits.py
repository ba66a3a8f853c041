"""Pools of a study and nested, class-stratified label budgets."""

from __future__ import annotations

import numpy as np

from selfsup.artifacts import Split


def index_range(bounds: list[int] | None, size: int, what: str) -> np.ndarray:
    """Indices [start, stop) of `bounds`; the whole range when `bounds` is None."""
    start, stop = (0, size) if bounds is None else bounds
    if not 0 <= start < stop <= size:
        raise ValueError(f"split.{what} = [{start}, {stop}) must lie within [0, {size})")
    return np.arange(start, stop, dtype=np.int64)


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Positions 0..len(labels)-1 ordered so that every prefix is class-stratified.

    Each step takes the next (seed-shuffled) example of the class furthest below its
    share of the prefix, so a prefix of n holds round(n * p_c) +- 1 examples of class c
    (p_c the class frequency), and a smaller budget always lies inside a larger one.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum()
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    taken = np.zeros(len(classes), dtype=np.int64)
    order = np.empty(len(labels), dtype=np.int64)
    for step in range(len(labels)):
        deficit = share * (step + 1) - taken
        deficit[taken == counts] = -np.inf
        c = int(np.argmax(deficit))  # ties go to the lowest class index: deterministic
        order[step] = queues[c][taken[c]]
        taken[c] += 1
    return order


def make_split(
    y_train: np.ndarray,
    n_test: int,
    labeled: list[int] | None,
    unlabeled: list[int] | None,
    test: list[int] | None,
    seed: int,
) -> Split:
    """Pools given as [start, stop) index ranges, and the budget order for `seed`."""
    labeled_idx = index_range(labeled, len(y_train), "labeled")
    return Split(
        labeled=labeled_idx,
        unlabeled=index_range(unlabeled, len(y_train), "unlabeled"),
        test=index_range(test, n_test, "test"),
        budget_order=labeled_idx[stratified_order(y_train[labeled_idx], seed)],
    )
