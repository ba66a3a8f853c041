"""A study's split: labeled, unlabeled and test pools, nested class-stratified budgets.

Pools are indices. `labeled` and `test` index the training and test images; `unlabeled`
indexes the training images, or the dataset's own unlabeled images (STL-10) when
`unlabeled_part` is "unlabeled".

A contaminated dataset (dataset.contamination) holds foreign images after its own
training images. They only ever join the unlabeled pool, as the configured share of it,
and `Split.foreign` says which pool entries they are; ranges, budgets, the monitor slice,
the test set and normalization statistics see the genuine images only.
"""

from __future__ import annotations

import numpy as np

from selfsup.data.dataset import Split, foreign_count
from selfsup.data.normalization import Normalization

OWN_UNLABELED = "own"  # split.unlabeled value: the dataset's own unlabeled images


def index_range(bounds: list[int] | None, size: int, what: str) -> np.ndarray:
    """Indices [start, stop) of `bounds`; the whole range when `bounds` is None."""
    start, stop = (0, size) if bounds is None else bounds
    if not 0 <= start < stop <= size:
        raise ValueError(f"split.{what} = [{start}, {stop}) must lie within [0, {size})")
    return np.arange(start, stop, dtype=np.int64)


def contaminate(pool: np.ndarray, foreign: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Foreign images (sorted, from `foreign`) to add to unlabeled `pool` so that they make
    up `fraction` of it, drawn reproducibly per replicate `seed`."""
    wanted = foreign_count(fraction, len(pool))
    if wanted > len(foreign):
        raise ValueError(
            f"dataset.contamination: a pool of {len(pool)} images at fraction {fraction} needs "
            f"{wanted} foreign images; the prepared dataset holds {len(foreign)}"
        )
    if wanted == 0:
        raise ValueError(
            f"dataset.contamination: fraction {fraction} of a pool of {len(pool)} images is no "
            "foreign image; raise the fraction or the pool"
        )
    rng = np.random.default_rng([seed, 0x5E1F])  # not the stream stratified_order draws
    return np.sort(rng.choice(np.asarray(foreign, np.int64), wanted, replace=False))


def fraction_split(size: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labeled, unlabeled) indices: labeled where a uniform draw p <= `fraction`.

    Exactly the reference CIFAR-100 study's `np.random.seed(125); p = np.random.rand(50000)`
    (the legacy global generator), so the same images are labeled: 10,080 of 50,000.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"split.labeled_fraction.fraction must lie in (0, 1), got {fraction}")
    p = np.random.RandomState(seed).rand(size)
    return np.flatnonzero(p <= fraction).astype(np.int64), np.flatnonzero(p > fraction).astype(np.int64)


def stratified_order(labels: np.ndarray, seed: int | list[int]) -> np.ndarray:
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


# A budget's draws: the first is the seed's budget order (Split.budget); draw d > 1 orders
# the same labeled pool again, class-stratified, from (seed, d). A run's budget wildcard
# names both: "100" (draw 1, the paths of studies without draws) or "100-draw2".
DRAW_SEPARATOR = "-draw"


def budget_name(budget: int | str, draw: int) -> str:
    return str(budget) if draw == 1 else f"{budget}{DRAW_SEPARATOR}{draw}"


def parse_budget(name: str) -> tuple[str, int]:
    """("100", 2) for "100-draw2"; (name, 1) for a budget without a draw."""
    budget, _, draw = str(name).partition(DRAW_SEPARATOR)
    return budget, int(draw) if draw else 1


def drawn_budget(split: Split, y_train: np.ndarray, name: str, seed: int) -> np.ndarray:
    """The labeled images of budget `name` (budget_name) in replicate `seed`: draw 1 is
    split.budget; draw d > 1 is a prefix of the labeled pool ordered again, every prefix
    class-stratified, from (seed, d), so a draw's budgets are nested too."""
    budget, draw = parse_budget(name)
    if draw == 1:
        return split.budget(budget)
    if budget == "all":
        raise ValueError("budget all is every labeled image in every draw; it has one draw only")
    order = split.budget_order
    redrawn = order[stratified_order(y_train[order], [seed, draw])]
    if int(budget) > len(redrawn):
        raise ValueError(f"budget {budget} exceeds the labeled pool of {len(redrawn)}")
    return redrawn[: int(budget)]


def make_split(
    y_train: np.ndarray,
    n_test: int,
    labeled: list[int] | None = None,
    unlabeled: list[int] | str | None = None,
    test: list[int] | None = None,
    *,
    seed: int,
    labeled_fraction: dict | None = None,
    folds: bool = False,
    predefined_folds: list[np.ndarray] | None = None,
    n_own_unlabeled: int = 0,
    normalization: Normalization | None = None,
    monitor: int = 0,
    foreign: np.ndarray | None = None,
    foreign_fraction: float = 0.0,
) -> Split:
    """The pools of one replicate `seed`, and its budget order.

    labeled: an index range, or with `labeled_fraction` ({fraction, seed}) the images
    whose draw falls below the fraction (the others are then the unlabeled pool), or
    with `folds` the predefined fold numbered `seed` (1-based). unlabeled: a range of
    training images, or "own" for the dataset's own unlabeled images.

    With `folds`, every other training image joins the labeled pool after the fold:
    budgets up to the fold's size lie inside the fold, and "all" is every labeled
    image. `monitor` labeled images, the tail of the budget order, are held out from
    every budget for the pretext kNN monitor; budgets smaller than the rest stay the
    same images whatever `monitor` is.

    foreign: indices of the foreign training images of a contaminated dataset, which
    must follow all genuine ones (labels -1 in `y_train`); ranges index the genuine
    images only. With `foreign_fraction`, foreign images drawn per `seed` join the
    unlabeled pool as that share of it (`Split.foreign`); they join no other pool.
    """
    foreign = np.zeros(0, np.int64) if foreign is None else np.asarray(foreign, np.int64)
    n_train = len(y_train) - len(foreign)
    if not np.array_equal(foreign, np.arange(n_train, len(y_train))):
        raise ValueError("foreign training images must follow every genuine one")
    y_train = y_train[:n_train]
    part = "train"
    if labeled_fraction is not None:
        labeled_idx, unlabeled_idx = fraction_split(
            n_train, labeled_fraction["fraction"], labeled_fraction["seed"]
        )
    else:
        labeled_idx = index_range(labeled, n_train, "labeled")
        unlabeled_idx = None
    if folds:
        if not predefined_folds:
            raise ValueError("split.folds: this dataset has no predefined folds")
        if not 1 <= seed <= len(predefined_folds):
            raise ValueError(f"split.folds: seed {seed} names no fold; folds are 1..{len(predefined_folds)}")
        fold = np.asarray(predefined_folds[seed - 1], dtype=np.int64)
        rest = np.setdiff1d(labeled_idx, fold)
        order = np.concatenate(
            [fold[stratified_order(y_train[fold], seed)], rest[stratified_order(y_train[rest], seed)]]
        )
    else:
        order = labeled_idx[stratified_order(y_train[labeled_idx], seed)]
    if not 0 <= monitor < len(order):
        raise ValueError(
            f"split.monitor: {monitor} images leave none of the {len(order)} labeled ones for budgets"
        )
    held_out = order[len(order) - monitor :]
    order = order[: len(order) - monitor]
    if unlabeled == OWN_UNLABELED:
        if not n_own_unlabeled:
            raise ValueError("split.unlabeled: 'own' needs a dataset that ships unlabeled images")
        unlabeled_idx, part = np.arange(n_own_unlabeled, dtype=np.int64), "unlabeled"
    elif unlabeled_idx is None:
        unlabeled_idx = index_range(unlabeled, n_train, "unlabeled")
    mixed = np.zeros(0, np.int64)
    if foreign_fraction:
        if part != "train":
            raise ValueError(
                "contamination mixes foreign images into the training-image pool; "
                "remove split.unlabeled: own or contamination"
            )
        mixed = contaminate(unlabeled_idx, foreign, foreign_fraction, seed)
        unlabeled_idx = np.concatenate([unlabeled_idx, mixed])
    return Split(
        labeled=np.sort(order),
        unlabeled=unlabeled_idx,
        test=index_range(test, n_test, "test"),
        budget_order=order,
        unlabeled_part=part,
        normalization=normalization or Normalization(),
        monitor=np.sort(held_out),
        foreign=mixed,
    )


def validation_size(n: int, fraction: float) -> int:
    """Examples of n that a validation split of `fraction` holds out; ValueError when it
    leaves either side empty."""
    n_val = int(round(n * fraction))
    if fraction and n_val == 0:
        raise ValueError(f"validation_split {fraction} of {n} examples holds out no validation example")
    if fraction and n_val == n:
        raise ValueError(f"validation_split {fraction} of {n} examples leaves no training example")
    return n_val


def validation_cut(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, validation) positions of n examples; Keras' own split takes the tail."""
    n_val = validation_size(n, fraction)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
