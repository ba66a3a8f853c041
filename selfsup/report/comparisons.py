"""Paired comparisons: each classifier against a baseline, replicate by replicate.

Every budget x seed x draw gives the same labeled images to every classifier of a study
(the split is the seed's, the draw its budget's), so two classifiers' test accuracies at
one budget are paired by replicate (seed, draw). The comparison is the mean over
replicates of their difference, with a 95% paired t interval (Student's t with
replicates - 1 degrees of freedom on the per-replicate differences), and
a verdict: better where the whole interval is above zero, worse where it is below, not
distinguishable otherwise.

With one seed (or where the two ran one seed in common), the interval is the test set's:
each run keeps which test images it got right (`test_correct`), so two classifiers are
paired image by image, and the difference in accuracy gets Agresti and Min's (2005)
interval for paired proportions (a Wald interval with 0.5 added to each cell of the
2x2 table of right and wrong). That interval covers the test images only: not the draw
of the labels, nor training noise. A run's own accuracy gets Wilson's interval.

The intervals are each 95% and unadjusted for the several classifiers compared at a
budget (the answers say so). Where every seed trains on the same labeled images (budget
`all`), an interval over seeds measures training noise only, not the draw of labels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
BETTER, WORSE, TIED, NO_VERDICT = "better", "worse", "not distinguishable", "one seed: no interval"
# What an interval is over: seeds (paired t), or one seed's test images (paired proportions).
OVER_SEEDS, OVER_TEST_IMAGES = "seeds", "test images"


def encode_correct(correct) -> str:
    """Which test images a run got right, as hex of the packed bits (a run's metrics.json
    keeps it: 2,500 characters for 10,000 images)."""
    return np.packbits(np.asarray(correct, bool)).tobytes().hex()


def decode_correct(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), np.uint8))[:n].astype(bool)


def wilson_interval(right: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval of an accuracy of `right` of `n` test images."""
    from scipy import stats

    z = stats.norm.ppf(0.5 + confidence / 2)
    share = right / n
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def paired_test_interval(
    base_correct, other_correct, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(difference, low, high) of two classifiers' accuracies on the same test images:
    the difference itself, and Agresti and Min's interval (each of the 2x2 cells + 0.5)."""
    from scipy import stats

    base, other = np.asarray(base_correct, bool), np.asarray(other_correct, bool)
    if base.shape != other.shape:
        raise ValueError(f"paired test images differ: {base.shape} and {other.shape}")
    n = len(base)
    difference = float(other.mean() - base.mean())
    # Discordant pairs: only the base right, only the other right.
    only_base, only_other = float(np.sum(base & ~other)) + 0.5, float(np.sum(~base & other)) + 0.5
    total = n + 2.0
    adjusted = (only_other - only_base) / total
    z = stats.norm.ppf(0.5 + confidence / 2)
    half = z * math.sqrt(only_base + only_other - (only_other - only_base) ** 2 / total) / total
    return difference, adjusted - half, adjusted + half


KEYS = ["pool", "method", "protocol"]


def paired_t_interval(differences, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences; low and high NaN for fewer than 2."""
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def seeds_needed(mean: float, spread: float, confidence: float = CONFIDENCE, most: int = 1000) -> int | None:
    """The fewest seeds whose paired t interval would exclude 0 for a mean difference of
    `mean` with per-seed differences spread as `spread` (their sample standard deviation);
    None where no number up to `most` would (a mean of 0, or a spread too wide)."""
    from scipy import stats

    if mean == 0 or math.isnan(spread):
        return None
    for seeds in range(2, most + 1):
        if stats.t.ppf(0.5 + confidence / 2, seeds - 1) * spread / math.sqrt(seeds) < abs(mean):
            return seeds
    return None


def verdict(low: float, high: float) -> str:
    if math.isnan(low):
        return NO_VERDICT
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return TIED


def against(runs: pd.DataFrame, baseline: tuple[str, str, str]) -> pd.DataFrame:
    """Each other classifier of `runs` (selfsup.report.tables.collect) minus `baseline`
    (pool, method, protocol), per budget, paired by seed: the seeds both have, the mean
    difference in test accuracy, its interval and the verdict. Empty where the baseline
    did not run."""
    pool, method, protocol = baseline
    runs = runs.assign(
        replicate=list(zip(runs["seed"], runs.get("draw", pd.Series(1, runs.index)), strict=True))
    )
    is_base = (runs["pool"] == pool) & (runs["method"] == method) & (runs["protocol"] == protocol)
    base = runs[is_base].set_index(["n_labels", "replicate"])["test_accuracy"]
    base_correct = runs[is_base].set_index(["n_labels", "replicate"]).get("test_correct")
    rows = []
    if base.empty:
        return pd.DataFrame(rows)
    for values, group in runs[~is_base].groupby([*KEYS, "n_labels"], sort=False):
        *key, n_labels = values
        paired = group.set_index("replicate")["test_accuracy"]
        seeds = sorted(set(paired.index) & {r for n, r in base.index if n == n_labels})
        if not seeds:
            continue
        differences = [paired[s] - base[(n_labels, s)] for s in seeds]
        mean, low, high = paired_t_interval(differences)
        over = OVER_SEEDS
        if len(seeds) == 1 and base_correct is not None and "test_correct" in group:
            # One seed: the test images are the pairs.
            ours = group.set_index("replicate")["test_correct"][seeds[0]]
            theirs = base_correct[(n_labels, seeds[0])]
            if isinstance(ours, np.ndarray) and isinstance(theirs, np.ndarray):
                mean, low, high = paired_test_interval(theirs, ours)
                over = OVER_TEST_IMAGES
        rows.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                "n_labels": n_labels,
                # Budget all: every seed's classifiers train on the same labeled images.
                "same_labels": str(group["budget"].iloc[0]) == "all",
                "baseline": baseline[2] if baseline[1] == "none" else f"{baseline[1]} + {baseline[2]}",
                "seeds": len(seeds),  # replicates: (seed, draw) pairs
                "draws": len({draw for _, draw in seeds}),
                "difference": mean,
                "ci_low": low,
                "ci_high": high,
                "spread": float(np.std(differences, ddof=1)) if len(differences) > 1 else math.nan,
                "over": over,
                "verdict": verdict(low, high),
            }
        )
    return pd.DataFrame(rows)
