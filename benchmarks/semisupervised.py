"""Self-training and outlier filtering on Fashion-MNIST with MNIST digits in the pool, at a
CPU scale: does self-training beat supervised training at 100 and 1,000 labels, and does
filtering the contaminated pool first change that?

One study through the real workflow (Snakemake) in benchmarks/out/semisupervised:

- data: Fashion-MNIST (IDX files from ../shared/data/fashion-mnist); the unlabeled pool is
  a range of training images plus MNIST training digits making up 10% of it
  (dataset.contamination), so the foreign images are known;
- the filter (pool "inliers"): a one-class network (the study's small_cnn with one sigmoid
  output, nu 0.9, tolerance 0.025, patience 3, L2 0.01, radius starting at 1.0 as the
  reference's) trained on every image of the labeled range, scoring the pool; images
  below its radius leave;
- classifiers: the same small_cnn trained from scratch on 100 and 1,000 labels
  (supervised); self-training from scratch (three teacher rounds accepting predictions
  of top probability >= 0.8, weighted by it, then a student), reported twice: the last
  round's teacher (labels + the earlier rounds: the model the reference reports) and the
  student (labels + every round); and the joint model (the same small_cnn + softmax with
  a conv_transpose decoder, trained on the labels and the pool at once, the masked class
  loss divided by the batch size as the reference's Keras sample_weight); each
  semi-supervised one on the pool "all" and on the pool "inliers"; three seeds.

It measures the accuracy of each (test and train, mean ± std over seeds), the filter's
AUROC (genuine vs foreign scores) and what it removed, the pseudo-labels of every round
(accepted, right, foreign, remaining) and the time of every job, sets the numbers beside
those of the run before the fidelity fixes (benchmarks/results/
semisupervised_before_fidelity.md and .csv, copies of the previous committed result),
and writes benchmarks/results/semisupervised.md (+ semisupervised.csv: the accuracy
table, semisupervised_rounds.csv: one row per round).

    .venv/bin/python benchmarks/semisupervised.py                # over an hour on 2 cores
    .venv/bin/python benchmarks/semisupervised.py --skip-run     # re-read the out folder, rewrite the report
    .venv/bin/python benchmarks/semisupervised.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from workflow import run_study

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STUDY_NAME = "semisupervised_benchmark"
POOLS = ["all", "inliers"]
METHOD = "none"  # self-training from scratch: no pretext encoder
RECORD = "benchmark_run.json"  # in --out: wall time and command of the last run, for --skip-run
# The previous committed result, before the fidelity fixes (the filter's radius starting at
# 1.0, the last teacher reported, the joint model's class loss over the batch size).
BEFORE = ROOT / "benchmarks" / "results" / "semisupervised_before_fidelity"
# Its classifier names -> this report's (its self-training row was the student).
BEFORE_NAMES = {
    "supervised": "supervised",
    "self-training, pool all": "self-training, student, pool all",
    "self-training, pool inliers": "self-training, student, pool inliers",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DATA / "fashion-mnist", help="Fashion-MNIST IDX files"
    )
    parser.add_argument(
        "--foreign-dir", type=Path, default=DATA / "mnist", help="MNIST IDX files (the foreign images)"
    )
    parser.add_argument("--fraction", type=float, default=0.1, help="share of foreign images in the pool")
    parser.add_argument(
        "--labeled",
        type=int,
        default=10000,
        help="labeled range: training images [0, N); the budgets come from it, the one-class net trains on all of it",
    )
    parser.add_argument(
        "--unlabeled",
        type=int,
        default=5000,
        help="genuine unlabeled images: training images [labeled, labeled + N), foreign ones added",
    )
    parser.add_argument("--test-images", type=int, default=10000, help="test images evaluated (the first N)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--epochs",
        type=int,
        default=20,
        help="epochs of every classifier: supervised, teacher, student, joint",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam, every classifier")
    parser.add_argument("--rounds", type=int, default=3, help="self-training teacher rounds")
    parser.add_argument("--threshold", type=float, default=0.8, help="top probability a pseudo-label needs")
    parser.add_argument(
        "--outlier-epochs",
        type=int,
        default=30,
        help="upper bound of the one-class net (its radius rule stops it)",
    )
    parser.add_argument("--outlier-batch-size", type=int, default=128)
    parser.add_argument("--filters", type=int, nargs="+", default=[32, 64], help="small_cnn conv widths")
    parser.add_argument("--dense", type=int, nargs="+", default=[128], help="small_cnn dense layers")
    parser.add_argument(
        "--reconstruction-weight",
        type=float,
        default=1.0,
        help="joint model: weight of the reconstruction loss against the class loss",
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "semisupervised")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "semisupervised.md")
    parser.add_argument(
        "--before",
        type=Path,
        default=BEFORE,
        help="the result before the fidelity fixes: <BEFORE>.md and <BEFORE>.csv (the report's section 4)",
    )
    parser.add_argument(
        "--snakemake-args",
        default="",
        help='extra Snakemake arguments, e.g. "--rerun-triggers mtime" to keep results a library edit made stale',
    )
    parser.add_argument(
        "--skip-run",
        action="store_true",
        help="do not run Snakemake: re-read the study and results in --out and rewrite the report",
    )
    return parser.parse_args(argv)


# --- the study ---------------------------------------------------------------------------


def derive_study(args) -> dict:
    for what, folder in (("Fashion-MNIST", args.data_dir), ("MNIST", args.foreign_dir)):
        if not folder.is_dir():
            sys.exit(f"no {what} IDX files: {folder} does not exist; pass --data-dir / --foreign-dir")
    return {
        "study": STUDY_NAME,
        "description": (
            f"Supervised vs self-training on Fashion-MNIST with {args.fraction:.0%} MNIST digits in the "
            f"unlabeled pool ({args.unlabeled} genuine images), and the joint model (classifier + "
            f"autoencoder), on the whole pool and on the images a one-class network keeps; budgets "
            f"{args.budgets}, seeds {args.seeds}."
        ),
        "dataset": {
            "name": "fashion_mnist",
            "data_dir": str(args.data_dir.resolve()),
            # The shared Fashion-MNIST images are not the official bytes (MD5 differs).
            "verify_checksums": False,
            "contamination": {
                "source": "mnist",
                "fraction": args.fraction,
                "data_dir": str(args.foreign_dir.resolve()),
            },
        },
        "split": {
            "labeled": [0, args.labeled],
            "unlabeled": [args.labeled, args.labeled + args.unlabeled],
            "test": None if args.test_images >= 10000 else [0, args.test_images],
        },
        "seeds": list(args.seeds),
        "budgets": list(args.budgets),
        "pools": POOLS,
        "encoder": {"name": "small_cnn", "options": {"filters": args.filters, "dense": args.dense}},
        "outliers": {
            "method": "one_class_network",
            # initial_radius: r before the first epoch, the reference notebook's tf.Variable(1.0).
            "options": {"nu": 0.9, "tolerance": 0.025, "patience": 3, "l2": 0.01, "initial_radius": 1.0},
            "epochs": args.outlier_epochs,
            "batch_size": args.outlier_batch_size,
            "optimizer": {"name": "adam", "learning_rate": 0.001},
        },
        "self_training": {"rounds": args.rounds, "threshold": args.threshold, "from_pretext": False},
        # small_cnn's code is its dense output: the conv_transpose decoder starts from it
        # (the mirror decoder would need a feature-map code_layer).
        "joint": {
            "reconstruction_weight": args.reconstruction_weight,
            "class_loss_reduction": "batch",
            "decoder": "conv_transpose",
        },
        "pretext": {},
        "downstream": {
            "protocols": ["supervised", "self_training", "joint"],
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": {"name": "adam", "learning_rate": args.learning_rate},
            "validation_split": 0.0,
            "early_stopping": None,
        },
    }


def run_workflow(study: dict, args) -> dict:
    """Run the study; record the wall time, command and machine load in --out."""
    # Snakemake keeps the last --set-threads it is given, so this repeats run_study's and
    # adds the rules of this study: the one-class net trains alone before its pool's runs
    # (every core), teachers, students and joint models (rule downstream) run side by side
    # (one thread each).
    threads = [
        "--set-threads",
        f"pretext={args.cores}",
        "downstream=1",
        f"outliers={args.cores}",
        "self_training_round=1",
        "self_training=1",
    ]
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    seconds, command = run_study(study, args.out, args.cores, [*threads, *shlex.split(args.snakemake_args)])
    record = {
        "seconds": seconds,
        "command": command,
        "invocation": [".venv/bin/python", "benchmarks/semisupervised.py", *sys.argv[1:]],
        "started_utc": f"{started:%Y-%m-%d %H:%M}",
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "cores": args.cores,
    }
    (args.out / RECORD).write_text(json.dumps(record, indent=2))
    return record


def machine() -> str:
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


# --- reading the results -----------------------------------------------------------------


# How each protocol of the study's tables is named here; the self-training run gives two rows
# (selfsup.report.tables.collect): its last teacher, the model the reference reports, and
# its student.
NAMES = {
    "self_training_last_teacher": "self-training, last teacher (the reference's)",
    "self_training": "self-training, student",
    "joint": "joint (classifier + autoencoder)",
}
ORDER = ["supervised"] + [f"{name}, pool {pool}" for name in NAMES.values() for pool in POOLS]


def classifier(row) -> str:
    if row.protocol == "supervised":
        return "supervised"
    return f"{NAMES.get(row.protocol, row.protocol)}, pool {row.pool}"


def ordered(index) -> list[str]:
    """ORDER first, then any other classifier (a protocol this script does not name)."""
    return [c for c in ORDER if c in index] + sorted(c for c in index if c not in ORDER)


def accuracy(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary with a `classifier` column, runs) from the study's own tables."""
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    runs = pd.read_csv(results / "tables" / "runs.csv")
    for frame in (summary, runs):
        frame.insert(0, "classifier", [classifier(row) for row in frame.itertuples()])
    return summary, runs


def accuracy_markdown(summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Test and train accuracy (%) mean ± std per classifier and budget, then per seed."""
    cells = summary.assign(
        test=[
            f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(summary.test_mean, summary.test_std, strict=True)
        ],
        train=[
            f"{100 * m:.2f} ± {100 * s:.2f}"
            for m, s in zip(summary.train_mean, summary.train_std, strict=True)
        ],
    )
    wide = cells.pivot(index="classifier", columns="n_labels", values=["test", "train"])
    wide.columns = [f"{part}, {n} labels" for part, n in wide.columns]
    wide = wide.reindex(ordered(wide.index))
    per_seed = runs.assign(cell=[f"{100 * a:.2f}" for a in runs.test_accuracy]).pivot_table(
        index="classifier", columns=["n_labels", "seed"], values="cell", aggfunc="first"
    )
    per_seed.columns = [f"{n} labels, seed {s}" for n, s in per_seed.columns]
    per_seed = per_seed.reindex(ordered(per_seed.index))
    seeds = "/".join(map(str, sorted(runs.seed.unique())))
    return "\n".join(
        [
            f"Accuracy (%), mean ± std over seeds {seeds}:",
            "",
            wide.reset_index().to_markdown(index=False),
            "",
            "Test accuracy (%) per seed:",
            "",
            per_seed.reset_index().to_markdown(index=False, disable_numparse=True),
        ]
    )


def filter_table(results: Path, seeds) -> pd.DataFrame:
    """The one-class filter per seed, from the attributes of its scores file."""
    from selfsup import artifacts

    rows = []
    for seed in seeds:
        path = results / "outliers" / f"seed{seed}" / "scores.h5"
        if not path.exists():
            continue
        out = artifacts.read_outliers(path)
        # Counted from the arrays; the attributes hold the filter's own summary (n_foreign, ...).
        pool, foreign_mask = len(out["indices"]), np.asarray(out["foreign"], bool)
        kept_mask = out["scores"] >= out["threshold"]
        foreign, kept = int(foreign_mask.sum()), int(kept_mask.sum())
        foreign_kept = int((foreign_mask & kept_mask).sum())
        rows.append(
            {
                "seed": seed,
                "pool": pool,
                "foreign": foreign,
                "foreign share": foreign / pool,
                "removed": pool - kept,
                "removed share": out.get("removed_share", (pool - kept) / pool),
                "AUROC": out.get("auroc", np.nan),
                "foreign removed share": out.get("foreign_removed_share", np.nan),
                "genuine removed share": out.get("genuine_removed_share", np.nan),
                "kept": kept,
                "foreign share of kept": foreign_kept / max(kept, 1),
                "epochs run": out.get("epochs_run"),
                "radius": out["threshold"],
            }
        )
    return pd.DataFrame(rows)


def rounds_table(results: Path, seeds, budgets, rounds: int) -> pd.DataFrame:
    """Every teacher round: accepted pseudo-labels, how many right, how many foreign."""
    from selfsup import artifacts

    rows = []
    for pool in POOLS:
        for budget in budgets:
            for seed in seeds:
                split = results / "split" / f"seed{seed}.h5"
                foreign = artifacts.read_split(split).foreign if split.exists() else np.zeros(0, np.int64)
                taken = 0
                for r in range(1, rounds + 1):
                    path = (
                        results
                        / "self_training"
                        / pool
                        / METHOD
                        / f"n{budget}"
                        / f"seed{seed}"
                        / f"round{r}.h5"
                    )
                    if not path.exists():
                        continue
                    labels = artifacts.read_teacher_labels(path)
                    accepted = int(labels["accepted"])
                    n_foreign = int(np.isin(labels["indices"], foreign).sum())
                    correct = labels.get("correct")
                    taken += accepted
                    rows.append(
                        {
                            "pool": pool,
                            "budget": budget,
                            "seed": seed,
                            "round": int(labels["round"]),
                            "teacher test accuracy": labels["teacher_test_accuracy"],
                            "accepted": accepted,
                            "correct": correct,
                            "share right": correct / accepted if accepted and correct is not None else np.nan,
                            "foreign accepted": n_foreign,
                            "share right of genuine": (
                                correct / (accepted - n_foreign)
                                if correct is not None and accepted > n_foreign
                                else np.nan
                            ),
                            "pseudo-labels so far": taken,
                            "remaining": int(labels["remaining"]),
                        }
                    )
    return pd.DataFrame(rows)


def rounds_summary(rounds: pd.DataFrame) -> pd.DataFrame:
    numeric = [
        "teacher test accuracy",
        "accepted",
        "correct",
        "share right",
        "foreign accepted",
        "share right of genuine",
        "pseudo-labels so far",
        "remaining",
    ]
    frame = rounds.astype({c: float for c in numeric})
    return frame.groupby(["pool", "budget", "round"], sort=True)[numeric].mean().reset_index()


def job_times(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seconds of every job from Snakemake's benchmark files: total per rule, and per stage
    of the self-training runs (pool x budget)."""
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        parts = tsv.relative_to(results / "benchmarks").with_suffix("").parts
        pool = budget = ""
        if parts[0] == "runs":  # runs/<pool>/<method>/<protocol>/n<budget>/seed<seed>
            rule = {"supervised": "downstream (supervised)", "self_training": "self_training (student)"}.get(
                parts[3], parts[3]
            )
            pool, budget = parts[1], parts[4].removeprefix("n")
        elif parts[0] == "self_training":  # self_training/<pool>/<method>/n<budget>/seed<seed>/round<r>
            rule = "self_training_round (teacher)"
            pool, budget = parts[1], parts[3].removeprefix("n")
        else:
            rule = parts[0]
        seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
        rows.append({"rule": rule, "pool": pool, "budget": budget, "seconds": seconds})
    jobs = pd.DataFrame(rows, columns=["rule", "pool", "budget", "seconds"])
    per_rule = (
        jobs.groupby("rule")["seconds"]
        .agg(jobs="count", total_s="sum", mean_s="mean", max_s="max")
        .reset_index()
        .sort_values("total_s", ascending=False)
    )
    per_rule.loc[len(per_rule)] = ["all benchmarked jobs", len(jobs), jobs.seconds.sum(), np.nan, np.nan]
    staged = jobs[jobs.pool != ""]
    per_stage = (
        staged.groupby(["rule", "pool", "budget"])["seconds"].agg(jobs="count", total_s="sum", mean_s="mean")
    ).reset_index()
    return per_rule, per_stage


# --- the report ----------------------------------------------------------------------------


def markdown(frame: pd.DataFrame) -> str:
    """A table with counts as integers, shares and accuracies to 3-4 places, other floats to 1."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_float_dtype(out[column]):
            continue
        name = str(column).lower()
        digits = 4 if name in ("auroc", "radius") else 3 if ("share" in name or "accuracy" in name) else 1
        out[column] = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in out[column]]
    return out.to_markdown(index=False, disable_numparse=True)


def pct(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{100 * x:.1f}%"


def what_it_shows(summary: pd.DataFrame, filters: pd.DataFrame, rounds: pd.DataFrame) -> list[str]:
    """Mechanical statements read off the tables (differences of means, ranges); no judgement."""
    lines = []
    for n in sorted(summary.n_labels.unique()):
        rows = summary[summary.n_labels == n].set_index("classifier")
        if "supervised" not in rows.index:
            continue
        base = rows.loc["supervised"]
        parts = [f"supervised {100 * base.test_mean:.2f} ± {100 * base.test_std:.2f}%"]
        for name in ordered(rows.index):
            if name == "supervised":
                continue
            row = rows.loc[name]
            parts.append(
                f"{name} {100 * row.test_mean:.2f} ± {100 * row.test_std:.2f}% "
                f"({100 * (row.test_mean - base.test_mean):+.2f} points)"
            )
        lines.append(f"- {n} labels, test accuracy: " + "; ".join(parts) + ".")
    if len(filters):
        lines.append(
            f"- The filter: AUROC genuine vs foreign {filters['AUROC'].min():.3f}–{filters['AUROC'].max():.3f} "
            f"over {len(filters)} seed(s); it removed {pct(filters['removed share'].mean())} of the pool on "
            f"average: {pct(filters['foreign removed share'].mean())} of the foreign images and "
            f"{pct(filters['genuine removed share'].mean())} of the genuine ones. The foreign share went "
            f"from {pct(filters['foreign share'].mean())} of the pool to "
            f"{pct(filters['foreign share of kept'].mean())} of the kept images."
        )
    if len(rounds):
        totals = (
            rounds.groupby(["pool", "budget", "seed"])
            .agg(
                accepted=("accepted", "sum"), correct=("correct", "sum"), foreign=("foreign accepted", "sum")
            )
            .groupby(["pool", "budget"])
            .mean()
        )
        for (pool, budget), row in totals.iterrows():
            lines.append(
                f"- Pool {pool}, {budget} labels: {row.accepted:.0f} pseudo-labels over all rounds "
                f"(mean over seeds), {pct(row.correct / row.accepted if row.accepted else np.nan)} right, "
                f"{row.foreign:.0f} of them on foreign images."
            )
    return lines


def markdown_tables(text: str, heading: str) -> list[pd.DataFrame]:
    """The pipe tables (as strings) of the markdown section whose heading starts with `heading`."""
    blocks, block, inside = [], [], False
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            inside = line.lstrip("#").strip().startswith(heading)
        if inside and line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    frames = []
    for block in blocks:
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block]
        header = rows[0]
        body = [r for r in rows[1:] if len(r) == len(header) and not set("".join(r)) <= set(":- ")]
        frames.append(pd.DataFrame(body, columns=header))
    return frames


def number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def before_accuracy(before: Path) -> dict:
    """{(classifier as named here, n_labels): (test mean, test std or nan)} of the run before
    the fidelity fixes: its csv, and its last teachers from its rounds table (mean over seeds,
    3 decimals, no std)."""
    found = {}
    csv = before.with_suffix(".csv")
    if csv.exists():
        try:
            frame = pd.read_csv(csv)
            for row in frame.itertuples():
                name = BEFORE_NAMES.get(row.classifier)
                if name:
                    found[name, int(row.n_labels)] = (number(row.test_mean), number(row.test_std))
        except Exception as err:  # a malformed file: the section says n/a
            print(f"warning: could not read {csv}: {err}", file=sys.stderr)
    md = before.with_suffix(".md")
    tables = markdown_tables(md.read_text(), "3.") if md.exists() else []
    if tables and {"pool", "budget", "round", "teacher test accuracy"} <= set(tables[0].columns):
        rounds = tables[0].assign(
            round=[number(x) for x in tables[0]["round"]],
            acc=[number(x) for x in tables[0]["teacher test accuracy"]],
        )
        for (pool, budget), group in rounds.groupby(["pool", "budget"]):
            last = group[group["round"] == group["round"].max()]
            if len(last) and not np.isnan(number(budget)):
                name = f"{NAMES['self_training_last_teacher']}, pool {pool}"
                found[name, int(number(budget))] = (last.acc.iloc[0], np.nan)
    return found


def before_filter(before: Path) -> dict:
    """Mean over seeds of the filter's columns in the previous report's section 2."""
    md = before.with_suffix(".md")
    tables = markdown_tables(md.read_text(), "2.") if md.exists() else []
    if not tables:
        return {}
    return {column: np.nanmean([number(v) for v in tables[0][column]]) for column in tables[0].columns}


def before_section(summary: pd.DataFrame, filters: pd.DataFrame, study: dict, before: Path) -> list[str]:
    """Test accuracy and the filter before the fidelity fixes (the previous committed result)
    and now, side by side; n/a where a value is missing."""
    md = before.with_suffix(".md")
    if not md.exists() and not before.with_suffix(".csv").exists():
        return [f"(no previous result: {before}.md / .csv not found)"]
    text = md.read_text() if md.exists() else ""
    lines = [
        f"The previous committed result (`{before.name}.md` / `.csv`), before the filter's radius "
        "started at 1.0, the last teacher was reported and the joint model was in the study."
    ]
    ran = re.search(r"^Run (\S+ \S+) UTC with `([^`]*)`", text, flags=re.MULTILINE)
    if ran:
        lines.append(f"It ran {ran.group(1)} UTC with `{ran.group(2)}`.")
    epochs = re.search(r"softmax, (\d+) epochs", text)
    if epochs and int(epochs.group(1)) != study["downstream"]["epochs"]:
        lines.append(
            f"**Settings differ:** it trained every classifier {epochs.group(1)} epochs, this run "
            f"{study['downstream']['epochs']}; the accuracies differ by that too."
        )
    lines.append("")
    found = before_accuracy(before)
    after = {(row.classifier, int(row.n_labels)): row for row in summary.itertuples()}
    budgets = sorted(summary.n_labels.unique())
    rows = []
    for name in ordered({c for c, _ in after} & {c for c, _ in found}):
        row = {"classifier": name}
        for n in budgets:
            old, new = found.get((name, n)), after.get((name, n))
            old_mean = old[0] if old else np.nan
            row[f"before, {n} labels"] = (
                "n/a"
                if np.isnan(old_mean)
                else f"{100 * old_mean:.2f}" + ("" if np.isnan(old[1]) else f" ± {100 * old[1]:.2f}")
            )
            row[f"after, {n} labels"] = (
                "n/a" if new is None else f"{100 * new.test_mean:.2f} ± {100 * new.test_std:.2f}"
            )
            row[f"change, {n} labels"] = (
                "n/a" if new is None or np.isnan(old_mean) else f"{100 * (new.test_mean - old_mean):+.2f}"
            )
        rows.append(row)
    lines += [
        "Test accuracy (%), mean ± std over seeds, before and after (change in points). The "
        "last teacher's 'before' is the last round's teacher test accuracy in the old rounds "
        "table (mean over seeds, 3 decimals, no std); the old self-training row was the student.",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(no rows in both)",
        "",
    ]
    old = before_filter(before)
    columns = ["AUROC", "foreign removed share", "removed share", "genuine removed share", "epochs run"]
    frows = []
    for column in columns:
        new = filters[column].astype(float).mean() if len(filters) and column in filters else np.nan
        digits = 4 if column == "AUROC" else 1 if column == "epochs run" else 3
        before_value = old.get(column, np.nan)
        frows.append(
            {
                "filter, mean over seeds": column,
                "before": "n/a" if np.isnan(before_value) else f"{before_value:.{digits}f}",
                "after": "n/a" if np.isnan(new) else f"{new:.{digits}f}",
            }
        )
    lines += [
        "The filter (section 2), mean over seeds:",
        "",
        pd.DataFrame(frows).to_markdown(index=False, disable_numparse=True),
    ]
    return lines


def joint_setup(study: dict) -> list[str]:
    if "joint" not in study["downstream"]["protocols"]:
        return []
    options = study.get("joint") or {}
    over = (
        "the batch size, as the reference's Keras sample_weight"
        if options.get("class_loss_reduction", "batch") == "batch"
        else "the batch's labeled images"
    )
    return [
        f"- Joint model: the same small_cnn + softmax and a {options.get('decoder', 'conv_transpose')} "
        "decoder from its code, trained on the labels and the pool at once (pool images labeled -1, "
        f"their class loss masked); loss = class loss (summed, divided by {over}) + "
        f"{options.get('reconstruction_weight', 1.0)} × the reconstruction loss; same epochs, batch "
        "and optimizer as the other classifiers (an epoch covers labels and pool).",
    ]


def write_report(study: dict, record: dict | None, args) -> None:
    results = args.out / "results" / study["study"]
    summary, runs = accuracy(results)
    filters = filter_table(results, study["seeds"])
    rounds = rounds_table(results, study["seeds"], study["budgets"], study["self_training"]["rounds"])
    per_rule, per_stage = job_times(results)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.report.with_suffix(".csv"), index=False)
    rounds.to_csv(args.report.with_name(f"{args.report.stem}_rounds.csv"), index=False)

    split, down, outl = study["split"], study["downstream"], study["outliers"]
    contamination = study["dataset"]["contamination"]
    if record:
        ran = (
            f"Run {record['started_utc']} UTC with `{shlex.join(record['invocation'])}` on "
            f"{record['machine']}; {record.get('cores', args.cores)} cores given to "
            f"Snakemake. Wall time of the whole workflow: **{record['seconds'] / 60:.1f} min**. Load average "
            f"(1/5/15 min) {record['load_before']} before, {record['load_after']} after."
        )
        command = shlex.join(record["command"])
    else:
        ran = "No run record in the out folder: wall time and command unknown."
        command = "(not recorded)"
    test = "all 10,000" if split["test"] is None else f"the first {split['test'][1]:,}"
    lines = [
        "# Benchmark: self-training and outlier filtering on Fashion-MNIST with MNIST digits in the pool",
        "",
        ran,
        f"Report written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "## Setup",
        "",
        f"- Labeled range: training images [{split['labeled'][0]}, {split['labeled'][1]}); the budgets "
        f"({', '.join(map(str, study['budgets']))} labels, class-stratified, nested, per seed) come from it, "
        "and the one-class network trains on all of it.",
        f"- Unlabeled pool `all`: training images [{split['unlabeled'][0]}, {split['unlabeled'][1]}) plus "
        f"MNIST training digits making up {contamination['fraction']:.0%} of it (the foreign images). "
        "Pool `inliers`: the images of `all` the one-class network keeps (per seed).",
        f"- Test: {test} test images. Seeds {', '.join(map(str, study['seeds']))}.",
        f"- Every classifier: small_cnn {study['encoder']['options']} + softmax, {down['epochs']} epochs, "
        f"batch {down['batch_size']}, {down['optimizer']}, no validation split, no early stopping. "
        f"Self-training: {study['self_training']['rounds']} teacher rounds, each trained on the labels "
        "plus the earlier rounds' pseudo-labels (weighted by their top probability), labeling the rest of "
        f"the pool where its top probability >= {study['self_training']['threshold']}; then a student on "
        "all of them. The tables show both: the last round's teacher (labels + the earlier rounds' "
        "pseudo-labels: the model the reference reports) and the student (labels + every round's).",
        *joint_setup(study),
        f"- Filter: {outl['method']} {outl['options']}, at most {outl['epochs']} epochs, batch "
        f"{outl['batch_size']}; its radius r starts at "
        f"{outl['options'].get('initial_radius', 1.0)} (the reference's) and becomes the (1 - nu) "
        "quantile of the labeled images' scores after each epoch; an image scoring below the final "
        "radius is removed.",
        "",
        "## 1. Accuracy",
        "",
        accuracy_markdown(summary, runs),
        "",
        "Train accuracy is on the labeled images of the budget the classifier trained on (not on "
        "the pseudo-labels).",
        "",
        "## 2. The filter (one-class network), per seed",
        "",
        "AUROC: probability that a genuine pool image scores above a foreign one. Shares are of the "
        "pool, of its foreign and of its genuine images.",
        "",
        markdown(filters) if len(filters) else "(no outlier scores)",
        "",
        "## 3. Pseudo-labels per round",
        "",
        "`correct` compares the pseudo-label with the hidden true label; a foreign image has none "
        "(label -1), so a pseudo-label on it always counts as wrong: `share right of genuine` leaves "
        "them out. `remaining`: pool images not yet pseudo-labeled after the round. "
        "`teacher test accuracy`: that round's teacher on the test images.",
        "",
        "Mean over seeds:",
        "",
        markdown(rounds_summary(rounds)) if len(rounds) else "(no rounds)",
        "",
        "Per seed (also in `semisupervised_rounds.csv`):",
        "",
        markdown(rounds) if len(rounds) else "(no rounds)",
        "",
        "## 4. Before the fidelity fixes",
        "",
        *before_section(summary, filters, study, args.before),
        "",
        "## 5. Job times",
        "",
        "From Snakemake's benchmark files (seconds per job, TensorFlow start-up included); jobs ran "
        f"side by side on {record.get('cores', args.cores) if record else args.cores} cores, so the total exceeds the wall time.",
        "",
        markdown(per_rule),
        "",
        "Per pool and budget:",
        "",
        markdown(per_stage),
        "",
        "## What it shows",
        "",
        *what_it_shows(summary, filters, rounds),
        "",
        "Reading: (written by hand after the run)",
        "",
        "## Exact settings",
        "",
        "Snakemake command (run in the out folder):",
        "",
        "```",
        command,
        "```",
        "",
        "Study file:",
        "",
        "```yaml",
        yaml.safe_dump(study, sort_keys=False).strip(),
        "```",
        "",
    ]
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report}, {args.report.with_suffix('.csv')} and {args.report.stem}_rounds.csv")


def main(argv=None):
    args = parse_args(argv)
    if args.skip_run:
        study_file = args.out / "study.yaml"
        if not study_file.exists():
            sys.exit(f"--skip-run: no {study_file}; run the benchmark first")
        study = yaml.safe_load(study_file.read_text())
        record_file = args.out / RECORD
        record = json.loads(record_file.read_text()) if record_file.exists() else None
    else:
        study = derive_study(args)
        record = run_workflow(study, args)
        print(f"workflow finished in {record['seconds'] / 60:.1f} min", flush=True)
    write_report(study, record, args)


if __name__ == "__main__":
    main()
