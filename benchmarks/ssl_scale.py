"""Does self-supervision beat raw pixels and supervised training on Fashion-MNIST at a
scale two CPU cores reach in about an hour, and by how much?

One study through the real workflow (Snakemake) in benchmarks/out/ssl_scale/: SimCLR,
Barlow Twins and rotation pretrain a small_cnn on all 50,000 non-labeled Fashion-MNIST
training images (one run per seed); then, on 100 and 1,000 labels drawn class-stratified
from training images 0-9,999 (minus 1,000 held out for the kNN monitor), three seeds, the
full test set:
- linear: a logistic regression on the frozen encoder's standardized features, C chosen
  by 5-fold cross-validation on the budget; knn: weighted kNN (k=20, T=0.07);
- finetune: the pretext encoder trained end to end; supervised: the same network from
  scratch (both a fixed 50 epochs, no validation split);
- pixels_linear, pixels_knn, random_linear, random_knn: the same evaluations on the pixels
  and on the encoder at its random initialization.
The tables compare every classifier with supervised training and with the logistic
regression on pixels, paired by seed (95% paired t intervals). The pretext length is read
off the kNN curves (accuracy on the held-out slice after every epoch), shown in the report.

A second, small study trains the supervised network as the previous default did, stopping
early on a 20% validation split, to show what that costs at 100 labels.

Writes benchmarks/results/ssl_scale.md (+ .csv, ssl_scale_knn.png).

    .venv/bin/python benchmarks/ssl_scale.py          # about an hour on 2 cores
    .venv/bin/python benchmarks/ssl_scale.py --help
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import machine
import numpy as np
import pandas as pd
import yaml
from contrastive import AUGMENTATION, HEADS
from workflow import run_study

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfsup.report import comparisons, tables  # noqa: E402

METHODS = ["simclr", "barlow_twins", "rotation"]
PROTOCOLS = [
    "supervised",
    "finetune",
    "linear",
    "knn",
    "pixels_linear",
    "pixels_knn",
    "random_linear",
    "random_knn",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--pretext-epochs", type=int, default=25)
    parser.add_argument("--rotation-epochs", type=int, default=25)
    parser.add_argument("--downstream-epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--unlabeled", type=int, default=50000, help="unlabeled images (from image 10,000 on)"
    )
    parser.add_argument(
        "--monitor", type=int, default=1000, help="held-out labeled images for the kNN monitor"
    )
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--dense", type=int, nargs="+", default=[64])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--skip-early-stopping", action="store_true", help="skip the second study")
    parser.add_argument(
        "--snakemake-args",
        default="",
        help='extra Snakemake options for both studies, e.g. "--rerun-triggers mtime --forcerun downstream"',
    )
    parser.add_argument("--note", default="", help="how this result was produced, when not in one plain run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ssl_scale")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "ssl_scale.md")
    return parser.parse_args(argv)


def downstream_training(args) -> dict:
    return {
        "epochs": args.downstream_epochs,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.001},
    }


def derive_study(args) -> dict:
    if not args.data_dir.is_dir():
        sys.exit(f"no Fashion-MNIST IDX files: {args.data_dir} does not exist; pass --data-dir")
    labeled = 10000
    pretext_settings = {
        "epochs": args.pretext_epochs,
        "batch_size": 256,
        "optimizer": {"name": "adamw", "learning_rate": 0.002, "weight_decay": 1.0e-4},
        "lr_schedule": {"name": "warmup_cosine", "warmup_epochs": 1, "min_factor": 0.0},
    }
    pretext = {}
    for name in args.methods:
        if name == "rotation":  # one random quarter turn per image, no augmentation (studies A, B)
            pretext[name] = {
                **pretext_settings,
                "epochs": args.rotation_epochs,
                "options": {"rotations": "random"},
            }
        else:
            pretext[name] = {**pretext_settings, "options": HEADS[name], "augmentation": AUGMENTATION}
    return {
        "study": "ssl_scale",
        "description": (
            f"{', '.join(args.methods)} on {args.unlabeled:,} unlabeled Fashion-MNIST images; linear, "
            f"knn, finetune against supervised training and the pixels; budgets {args.budgets}, "
            f"seeds {args.seeds}."
        ),
        # The shared Fashion-MNIST training images are not the official bytes (MD5 differs).
        "dataset": {
            "name": "fashion_mnist",
            "data_dir": str(args.data_dir.resolve()),
            "verify_checksums": False,
        },
        "split": {
            "labeled": [0, labeled],
            "unlabeled": [labeled, labeled + args.unlabeled],
            "test": None,
            "monitor": args.monitor,
        },
        "seeds": list(args.seeds),
        "budgets": list(args.budgets),
        "encoder": {"name": "small_cnn", "options": {"filters": args.filters, "dense": args.dense}},
        "pretext": pretext,
        "downstream": {"protocols": PROTOCOLS, **downstream_training(args)},
    }


def early_stopping_study(study: dict) -> dict:
    """The supervised network as the default study trained it before: at most the same
    epochs, stopped on a 20% validation split (20 images at 100 labels), best weights kept."""
    variant = copy.deepcopy(study)
    variant.update(study="ssl_scale_early_stopping", pretext={})
    variant["downstream"].update(
        protocols=["supervised"],
        validation_split=0.2,
        early_stopping={"monitor": "val_loss", "patience": 10, "restore_best_weights": True},
    )
    return variant


def pretext_runs(results: Path) -> pd.DataFrame:
    """Per pretext run: job minutes, kNN accuracy first / best / last, and how much the last
    five epochs still added."""
    rows = []
    for tsv in sorted((results / "benchmarks" / "pretext" / "all").glob("*/seed*.tsv")):
        history = pd.read_csv(results / "encoders" / "all" / tsv.parent.name / tsv.stem / "history.csv")
        knn = history["knn_accuracy"].to_numpy()
        rows.append(
            {
                "pretext": tsv.parent.name,
                "seed": tsv.stem.removeprefix("seed"),
                "job_minutes": pd.read_csv(tsv, sep="\t")["s"].iloc[0] / 60,
                "epochs": len(history),
                "knn_epoch_1": knn[0],
                "knn_best": knn.max(),
                "best_epoch": int(np.argmax(knn)) + 1,
                "knn_last": knn[-1],
                "gain_last_5_epochs": knn[-1] - knn[max(0, len(knn) - 6)],
            }
        )
    return pd.DataFrame(rows)


def early_stopping_effect(fixed_runs: pd.DataFrame, stopped_runs: pd.DataFrame) -> pd.DataFrame:
    """Supervised with a fixed number of epochs minus supervised stopped early, paired by seed."""
    rows = []
    for n_labels in sorted(set(fixed_runs.n_labels)):
        fixed = fixed_runs[(fixed_runs.protocol == "supervised") & (fixed_runs.n_labels == n_labels)]
        stopped = stopped_runs[stopped_runs.n_labels == n_labels]
        both = fixed.merge(stopped, on="seed", suffixes=("_fixed", "_stopped"))
        mean, low, high = comparisons.paired_t_interval(both.test_accuracy_fixed - both.test_accuracy_stopped)
        rows.append(
            {
                "labels": n_labels,
                "fixed epochs (%)": 100 * both.test_accuracy_fixed.mean(),
                "early stopping (%)": 100 * both.test_accuracy_stopped.mean(),
                "epochs run when stopped": both.epochs_run_stopped.mean(),
                "fixed - stopped (points)": 100 * mean,
                "95% CI": f"[{100 * low:+.2f}, {100 * high:+.2f}]",
                "verdict": comparisons.verdict(low, high),
                "seeds": len(both),
            }
        )
    return pd.DataFrame(rows)


def write_report(study, seconds, command, effect, stopped_seconds, args) -> None:
    results = args.out / "results" / study["study"]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    summary.to_csv(args.report.with_suffix(".csv"), index=False)
    knn_png = args.report.with_name(f"{args.report.stem}_knn.png")
    shutil.copy(results / "figures" / "knn_accuracy.png", knn_png)
    runs = pretext_runs(results)
    lines = [
        "# Benchmark: self-supervision against pixels and supervised training, Fashion-MNIST at CPU scale",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`{shlex.join(['.venv/bin/python', 'benchmarks/ssl_scale.py', *sys.argv[1:]])}` on "
        f"{machine.describe()}; 1-minute load average at the end {os.getloadavg()[0]:.2f}.",
        "",
        f"Wall time of the study: **{seconds / 60:.1f} min**"
        + (f"; of the early-stopping study: {stopped_seconds / 60:.1f} min." if stopped_seconds else "."),
        "",
        "## Accuracy",
        "",
        "As the workflow writes it (`results/ssl_scale/tables/accuracy.md`): first the answer per budget "
        "against supervised training, then against the logistic regression on pixels.",
        "",
        (results / "tables" / "accuracy.md").read_text().strip(),
        "",
        "## Pretext runs: kNN accuracy against epoch",
        "",
        f"Weighted kNN (k=200, T=0.1, leave-one-out) on the {args.monitor:,} held-out labeled images after "
        "every epoch. `gain_last_5_epochs` is what the last five epochs added: near zero, longer training "
        "would add little at this learning-rate schedule.",
        "",
        runs.to_markdown(index=False, floatfmt=".4f"),
        "",
        f"![kNN accuracy per pretext epoch]({knn_png.name})",
        "",
    ]
    if effect is not None:
        lines += [
            "## Fixed epochs or early stopping on a small validation split",
            "",
            f"Supervised training as above ({args.downstream_epochs} epochs, every label trains) against the "
            "same network stopped early on a 20% validation split (patience 10, best weights restored), "
            "paired by seed (the same labeled images).",
            "",
            effect.to_markdown(index=False, floatfmt=".2f"),
            "",
        ]
    if args.note:
        lines += ["## How this result was produced", "", args.note, ""]
    lines += [
        "## Exact settings",
        "",
        "```",
        shlex.join(command),
        "```",
        "",
        "```yaml",
        yaml.safe_dump(study, sort_keys=False).strip(),
        "```",
        "",
    ]
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report}")


def main(argv=None):
    args = parse_args(argv)
    study = derive_study(args)
    extra = shlex.split(args.snakemake_args)
    seconds, command = run_study(study, args.out, args.cores, extra)
    effect, stopped_seconds = None, None
    if not args.skip_early_stopping:
        variant = early_stopping_study(study)
        stopped_seconds, _ = run_study(variant, args.out / "early_stopping", args.cores, extra)
        fixed = tables.collect(sorted((args.out / "results" / "ssl_scale" / "runs").rglob("metrics.json")))
        stopped = tables.collect(
            sorted(
                (args.out / "early_stopping" / "results" / variant["study"] / "runs").rglob("metrics.json")
            )
        )
        effect = early_stopping_effect(fixed, stopped)
    write_report(study, seconds, command, effect, stopped_seconds, args)


if __name__ == "__main__":
    main()
