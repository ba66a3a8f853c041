"""Figures of a study: accuracy versus labels, example class probabilities, rotations."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # jobs run without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from selfsup.report.tables import label  # noqa: E402


def _save(fig, *paths) -> None:
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def accuracy_vs_labels(summary: pd.DataFrame, title: str, *paths, paired: pd.DataFrame | None = None) -> None:
    """Test accuracy against the number of labels, one line per classifier, std as error
    bars; with `paired` (selfsup.report.comparisons.against), a second panel: each
    classifier's difference to the baseline with its 95% paired interval."""
    with_paired = paired is not None and not paired.empty
    fig, axes = plt.subplots(
        1, 2 if with_paired else 1, figsize=(12.8 if with_paired else 6.4, 4.4), squeeze=False
    )
    ax = axes[0, 0]
    for (method, protocol, pool), rows in summary.groupby(["method", "protocol", "pool"], sort=True):
        rows = rows.sort_values("n_labels")
        baseline = method == "none"
        ax.errorbar(
            rows.n_labels,
            100 * rows.test_mean,
            yerr=100 * rows.test_std,
            marker="s" if baseline else "o",
            linestyle="--" if baseline else "-",
            capsize=3,
            label=label(method, protocol, pool),
        )
    ax.set_xscale("log")
    budgets = sorted(summary.n_labels.unique())
    ax.set_xticks(budgets, [f"{n:,}" for n in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labeled training images")
    ax.set_ylabel("test accuracy (%)")
    seeds = int(summary.seeds.max())
    ax.set_title(f"{title}: mean ± std over {seeds} seed(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if with_paired:
        _paired_panel(axes[0, 1], paired, budgets)
    _save(fig, *paths)


def _paired_panel(ax, paired: pd.DataFrame, budgets) -> None:
    """Differences to the baseline, points, with 95% paired t intervals (none for one seed),
    classifiers side by side at each budget."""
    keys = list(paired.groupby(["method", "protocol", "pool"], sort=True).groups)
    width = 0.8 / max(1, len(keys))
    for i, (method, protocol, pool) in enumerate(keys):
        rows = paired[(paired.method == method) & (paired.protocol == protocol) & (paired.pool == pool)]
        x = np.array([budgets.index(n) for n in rows.n_labels]) + (i - (len(keys) - 1) / 2) * width
        low = (rows.difference - rows.ci_low).fillna(0)
        high = (rows.ci_high - rows.difference).fillna(0)
        ax.errorbar(
            x,
            100 * rows.difference,
            yerr=[100 * low, 100 * high],
            fmt="o",
            capsize=3,
            label=label(method, protocol, pool),
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(budgets)), [f"{n:,}" for n in budgets])
    ax.set_xlabel("labeled training images")
    ax.set_ylabel(f"test accuracy minus {paired.baseline.iloc[0]}'s (points)")
    ax.set_title("paired by seed: mean and 95% t interval")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")


def class_probabilities(image: np.ndarray, true_class: str, runs: pd.DataFrame, class_names, path) -> None:
    """The example test image and each classifier's predicted class probabilities for it."""
    fig, (ax_image, ax_bars) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 4]})
    ax_image.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax_image.set_title(f"true: {true_class}")
    ax_image.axis("off")
    positions = np.arange(len(class_names))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs.itertuples()):
        ax_bars.bar(
            positions + (i - (len(runs) - 1) / 2) * width,
            run.probabilities,
            width,
            label=f"{label(run.method, run.protocol, run.pool)} ({run.n_labels} labels)",
        )
    ax_bars.set_xticks(positions, class_names, rotation=30, ha="right")
    ax_bars.set_ylabel("predicted probability")
    ax_bars.set_ylim(0, 1)
    ax_bars.legend(fontsize="small")
    _save(fig, path)


def pretext_examples(examples: dict[str, np.ndarray], title: str, path) -> None:
    """One row per named image batch (input, corrupted, output, ...), one column per image."""
    names = list(examples)
    n_images = len(examples[names[0]])
    fig, axes = plt.subplots(
        len(names), n_images, figsize=(1.2 * n_images + 1.5, 1.3 * len(names)), squeeze=False
    )
    for row, name in enumerate(names):
        for col in range(n_images):
            image = np.clip(examples[name][col], 0, 1)
            ax = axes[row, col]
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    _save(fig, path)


def self_training_rounds(runs: pd.DataFrame, title: str, *paths) -> None:
    """Per teacher round: pseudo-labels accepted, and the share of them that is right
    against the hidden true labels (diagnosis only: training never sees those labels).
    One line per self-training run kind (pool, start, budget), mean over seeds."""
    fig, (ax_count, ax_right) = plt.subplots(1, 2, figsize=(10, 4))
    for (pool, method, n_labels), group in runs.groupby(["pool", "method", "n_labels"], sort=True):
        rounds = pd.DataFrame([r for run_rounds in group.rounds for r in run_rounds])
        if rounds.empty:
            continue
        per_round = rounds.groupby("round").agg(accepted=("accepted", "mean"), correct=("correct", "mean"))
        name = f"{label(method, 'self_training', pool)}, {n_labels:,} labels"
        ax_count.plot(per_round.index, per_round.accepted, marker="o", label=name)
        if per_round.correct.notna().all():
            share = 100 * per_round.correct / per_round.accepted.clip(lower=1)
            ax_right.plot(per_round.index, share, marker="o", label=name)
    ax_count.set_xlabel("round")
    ax_count.set_ylabel("pseudo-labels accepted")
    ax_right.set_xlabel("round")
    ax_right.set_ylabel("accepted pseudo-labels that are right (%)")
    for ax in (ax_count, ax_right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    ax_count.legend(fontsize="small")
    fig.suptitle(f"{title}: self-training rounds (mean over seeds)")
    _save(fig, *paths)


def knn_curves(histories: dict[tuple[str, int], pd.DataFrame], title: str, path) -> None:
    """kNN accuracy against pretext epoch: one colour per pretext run, one line per seed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    methods = list(dict.fromkeys(method for method, _ in histories))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (method, seed), history in histories.items():
        rows = history.dropna(subset=["knn_accuracy"]) if "knn_accuracy" in history else history.iloc[:0]
        index = methods.index(method)
        first_seed = seed == min(s for m, s in histories if m == method)
        ax.plot(
            rows.epoch + 1,
            100 * rows.knn_accuracy,
            marker="o",
            markersize=3,
            color=colours[index % len(colours)],
            label=method if first_seed else None,
        )
    ax.set_xlabel("pretext epoch")
    ax.set_ylabel("kNN accuracy on held-out labels (%)")
    ax.set_title(f"{title}: kNN monitor")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)


def outlier_scores(
    scores: np.ndarray,
    threshold: float,
    typical: np.ndarray,
    typical_scores: np.ndarray,
    atypical: np.ndarray,
    atypical_scores: np.ndarray,
    title: str,
    *paths,
) -> None:
    """Histogram of the one-class scores of the pool with the threshold r, then a row of
    the most typical images (highest scores) and a row of the least typical (lowest).
    `typical`, `atypical`: float images in [0, 1] (N, H, W, C), C 1 or 3."""
    scores = np.asarray(scores, dtype=float)
    removed = int((scores < threshold).sum())
    columns = max(len(typical), len(atypical), 1)
    fig = plt.figure(figsize=(max(6.4, 1.2 * columns + 1.5), 7.0))
    # Room between the histogram's axis label and the score titles of the images.
    grid = fig.add_gridspec(3, columns, height_ratios=[2.2, 1, 1], hspace=0.6)
    ax = fig.add_subplot(grid[0, :])
    ax.hist(scores, bins=50, color="tab:blue", alpha=0.8)
    ax.axvline(
        threshold,
        color="tab:red",
        linestyle="--",
        label=(
            f"threshold r = {threshold:.3f}, {removed} of {len(scores)} removed "
            f"({100 * removed / max(len(scores), 1):.1f}%)"
        ),
    )
    ax.set_xlabel("one-class score (higher = more typical)")
    ax.set_ylabel("pool images")
    ax.set_title(title)
    ax.legend(fontsize="small")
    for row, (name, images, image_scores) in enumerate(
        [("most typical", typical, typical_scores), ("least typical", atypical, atypical_scores)], start=1
    ):
        for col in range(columns):
            ax = fig.add_subplot(grid[row, col])
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(images):
                image = np.clip(images[col], 0, 1)
                ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
                ax.set_title(f"{image_scores[col]:.3f}", fontsize="small")
            else:
                ax.axis("off")
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
    _save(fig, *paths)
