"""Accuracy tables: every run as a row, then mean and std over seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from selfsup.report import comparisons

# The protocol name of a self-training run's last teacher in tables and figures.
LAST_TEACHER = "self_training_last_teacher"


def collect(metrics_paths) -> pd.DataFrame:
    """One row per downstream run, from its metrics.json; a self-training run gives two:
    its student (protocol self_training: labels plus every round's pseudo-labels) and its
    last teacher (protocol LAST_TEACHER: labels plus the rounds before it), the model the
    reference reports."""
    rows = []
    for path in metrics_paths:
        with open(path) as f:
            metrics = json.load(f)
        metrics["metrics_path"] = str(path)
        teacher = metrics.pop("last_teacher", None)
        rows.append(metrics)
        if teacher is not None:
            rows.append({**metrics, **teacher, "protocol": LAST_TEACHER})
    if not rows:
        raise ValueError("no downstream runs to tabulate")
    frame = pd.DataFrame(rows)
    frame["draw"] = frame["draw"].fillna(1).astype(int) if "draw" in frame else 1
    if "test_correct" in frame:
        # Which test images each run got right, as arrays (None where a run did not keep it).
        frame["test_correct"] = [
            comparisons.decode_correct(text, int(n)) if isinstance(text, str) else None
            for text, n in zip(frame["test_correct"], frame.get("n_test", frame["test_correct"]), strict=True)
        ]
    return frame.sort_values(["method", "protocol", "pool", "n_labels", "seed"]).reset_index(drop=True)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) std of test and train accuracy over seeds, per pool/method/protocol/budget."""
    grouped = runs.groupby(["pool", "method", "protocol", "budget", "n_labels"], sort=False)
    columns = {
        "test_mean": ("test_accuracy", "mean"),
        "test_std": ("test_accuracy", "std"),
        "train_mean": ("train_accuracy", "mean"),
        "train_std": ("train_accuracy", "std"),
        "seeds": ("seed", "count"),  # replicates: (seed, draw) pairs
        "draws": ("draw", "nunique"),
    }
    if "n_test" in runs:
        columns["n_test"] = ("n_test", "first")
    summary = grouped.agg(**columns).reset_index()
    if "n_test" not in summary:
        summary["n_test"] = np.nan
    # A run alone has no spread over seeds: its interval is its test set's (Wilson).
    lows, highs = [], []
    for mean, count, n_test in zip(summary.test_mean, summary.seeds, summary.n_test, strict=True):
        alone = count == 1 and not pd.isna(n_test)
        low, high = (
            comparisons.wilson_interval(round(mean * n_test), int(n_test)) if alone else (np.nan, np.nan)
        )
        lows.append(low)
        highs.append(high)
    summary["test_wilson_low"], summary["test_wilson_high"] = lows, highs
    # One seed has no spread; report 0 rather than NaN so tables and error bars stay readable.
    summary[["test_std", "train_std"]] = summary[["test_std", "train_std"]].fillna(0.0)
    return summary.sort_values(["n_labels", "method", "protocol", "pool"]).reset_index(drop=True)


def label(method: str, protocol: str, pool: str = "none") -> str:
    """How a compared classifier is named in tables and legends; the pool of unlabeled
    images is named when it is not the default one."""
    name = protocol if method == "none" else f"{method} + {protocol}"
    return name if pool in ("none", "all") else f"{name} ({pool})"


# The classifiers every other is compared with, seed by seed (selfsup.report.comparisons):
# the same network trained from scratch, and a logistic regression on the pixels.
SUPERVISED = ("none", "none", "supervised")
PIXELS = ("none", "none", "pixels_linear")
BASELINES = (SUPERVISED, PIXELS)


def answers(paired: pd.DataFrame) -> list[str]:
    """One answer per budget: the classifier furthest above the baseline among those whose
    interval says better (and any with a higher mean whose interval does not), or that none
    is distinguishable from it or better; then what limits the interval: how many
    classifiers it is one of (the intervals are unadjusted), two seeds, or the same
    labeled images in every seed."""
    sentences = []
    for n_labels, group in paired.groupby("n_labels", sort=True):
        ranked = group.sort_values("difference", ascending=False)
        top = ranked.iloc[0]
        better = ranked[ranked.verdict == comparisons.BETTER]
        best = better.iloc[0] if not better.empty else top
        name = label(best.method, best.protocol, best.pool)
        draws = int(getattr(best, "draws", 1))
        seeds = (
            f"{best.seeds} seed{'s' if best.seeds > 1 else ''}"
            if draws == 1
            else f"{best.seeds // draws} seed{'s' if best.seeds > draws else ''} x {draws} draws of labels"
        )
        if best.verdict == comparisons.NO_VERDICT:
            sentences.append(
                f"With {n_labels:,} labels, {name} is {100 * best.difference:+.1f} points against "
                f"{best.baseline} ({seeds}: no interval)."
            )
            continue
        unadjusted = f"; unadjusted, one of {len(group)} comparisons" if len(group) > 1 else ""
        over_images = getattr(best, "over", comparisons.OVER_SEEDS) == comparisons.OVER_TEST_IMAGES
        kind = "95% CI over the test images" if over_images else "95% CI"
        interval = f"{kind} [{100 * best.ci_low:.1f}, {100 * best.ci_high:.1f}], {seeds}{unadjusted}"
        if best.verdict == comparisons.BETTER:
            answer = (
                f"With {n_labels:,} labels, {name} beats {best.baseline} by "
                f"{100 * best.difference:.1f} points ({interval})."
            )
            if top.difference > best.difference:
                answer += (
                    f" {label(top.method, top.protocol, top.pool)} is further above on average, "
                    f"{100 * top.difference:+.1f} points, but its interval [{100 * top.ci_low:.1f}, "
                    f"{100 * top.ci_high:.1f}] includes 0."
                )
        else:
            closest = "the closest above is" if best.difference > 0 else "the best of the others is"
            answer = (
                f"With {n_labels:,} labels, no classifier is distinguishable from {best.baseline} or "
                f"better; {closest} {name}, {100 * best.difference:+.1f} points ({interval})."
            )
        sentences.append(answer + caveats(best))
    return sentences


def caveats(row) -> str:
    """What an answer's interval cannot say, as sentences (empty where nothing)."""
    text = ""
    if getattr(row, "over", comparisons.OVER_SEEDS) == comparisons.OVER_TEST_IMAGES:
        return (
            " With one seed, the interval is the test images' (paired image by image): it "
            "leaves out the draw of the labels and training noise, which only more seeds measure."
        )
    if row.same_labels:
        text += (
            " Every seed trains on the same labeled images at this budget, so the interval "
            "measures training noise only, not the draw of the labels."
        )
    if row.seeds == 2:
        needed = comparisons.seeds_needed(row.difference, row.spread)
        text += " Two replicates give an interval with one degree of freedom, which small changes flip"
        if needed is None:
            text += "; no number of seeds would separate a difference this size from 0 at this spread."
        elif needed > 2:
            text += f"; about {needed} seeds would separate a difference this size from 0 at this spread."
        else:
            text += "."
    return text


def paired_markdown(runs: pd.DataFrame, baseline=SUPERVISED) -> tuple[list[str], str]:
    """(answers, table) of the comparison of every classifier with `baseline`, seed by
    seed: one sentence per budget, and a table of mean differences (points) with their 95%
    paired t intervals and verdicts. Both empty where the study has no such baseline."""
    paired = comparisons.against(runs, baseline)
    if paired.empty:
        return [], ""
    cells = paired.assign(
        classifier=[label(*row) for row in zip(paired.method, paired.protocol, paired.pool, strict=True)],
        cell=[
            f"{100 * d:+.2f}" + ("" if np.isnan(lo) else f" [{100 * lo:+.2f}, {100 * hi:+.2f}]") + f" {v}"
            for d, lo, hi, v in zip(
                paired.difference, paired.ci_low, paired.ci_high, paired.verdict, strict=True
            )
        ],
    )
    wide = cells.pivot(index="classifier", columns="n_labels", values="cell")
    wide.columns = [f"{n} labels" for n in wide.columns]
    base = paired.baseline.iloc[0]
    table = (
        f"Test accuracy minus {base}'s, in points, mean over the seeds both ran (the same "
        "labeled images for both), with its 95% paired t interval (Student's t on the per-seed "
        "differences; where they share one seed, Agresti and Min's interval over the test "
        "images, paired image by image) and verdict: better or worse where the interval "
        "excludes 0. Each interval is 95% on its own, unadjusted for the others at its budget.\n\n"
        + wide.reset_index().to_markdown(index=False)
        + "\n"
    )
    return answers(paired), table


def to_markdown(summary: pd.DataFrame, runs: pd.DataFrame | None = None) -> str:
    """Test, then train accuracy (%) as mean ± std over seeds: classifiers as rows, label
    budgets as columns. Train accuracy is on the labeled images a classifier trained on,
    so the gap between the two shows overfitting. With `runs` (`collect`): per baseline
    of BASELINES among them, one sentence per budget first, and the paired comparison with
    it last (`paired_markdown`)."""
    seeds = sorted(set(summary.seeds))
    classifiers = [label(*row) for row in zip(summary.method, summary.protocol, summary.pool, strict=True)]
    blocks = []
    for part, title in (("test", "Test"), ("train", "Train")):
        cells = summary.assign(
            classifier=classifiers,
            cell=[
                f"{100 * m:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"
                if part == "test" and not np.isnan(lo)
                else f"{100 * m:.2f} ± {100 * s:.2f}"
                for m, s, lo, hi in zip(
                    summary[f"{part}_mean"],
                    summary[f"{part}_std"],
                    summary.test_wilson_low,
                    summary.test_wilson_high,
                    strict=True,
                )
            ],
        )
        wide = cells.pivot(index="classifier", columns="n_labels", values="cell")
        wide.columns = [f"{n} labels" for n in wide.columns]
        draws = int(summary.draws.max())
        note = f"{title} accuracy (%), mean ± std over {'/'.join(map(str, seeds))} " + (
            "seed(s)." if draws == 1 else f"replicates (seeds x {draws} draws of labels)."
        )
        if part == "test" and not summary.test_wilson_low.isna().all():
            note += " A classifier of one seed shows its 95% Wilson interval over the test images instead."
        blocks.append(note + "\n\n" + wide.reset_index().to_markdown(index=False) + "\n")
    if LAST_TEACHER in set(summary.protocol):
        blocks.append(
            f"{LAST_TEACHER}: the last round's teacher, trained on the labels plus the earlier "
            "rounds' pseudo-labels: the model the reference reports. self_training: the student "
            "trained on the labels plus every round's pseudo-labels.\n"
        )
    answers, tables = [], []
    for baseline in BASELINES if runs is not None else ():
        sentences, paired = paired_markdown(runs, baseline)
        if paired:
            answers.append(" ".join(sentences) + "\n")
            tables.append(paired)
    return "\n".join([*answers, *blocks, *tables])


def answers_rst(runs: pd.DataFrame, study: str, description: str) -> str:
    """The first page of `snakemake --report`: the study, then its answers, one sentence
    per budget against each baseline it ran (as accuracy.md opens)."""
    title = f"Study {study}"
    lines = [title, "=" * len(title), "", description.strip(), ""]
    found = False
    for baseline in BASELINES:
        sentences, _ = paired_markdown(runs, baseline)
        if sentences:
            found = True
            pool, method, protocol = baseline
            heading = f"Against {label(method, protocol, pool)}"
            lines += [heading, "-" * len(heading), "", *(f"- {s}" for s in sentences), ""]
    if not found:
        lines += ["The study ran neither supervised training nor pixels_linear: no comparison to answer.", ""]
    lines += [
        "Every budget and seed draws the same labeled images for every classifier, so the "
        "differences are paired by seed (Student's t interval). The tables and figures are "
        "under Accuracy; tables/accuracy.md holds every classifier's difference.",
        "",
    ]
    # Snakemake renders the page with Jinja: a brace in a study's description is text.
    return "{% raw %}\n" + "\n".join(lines) + "\n{% endraw %}\n"
