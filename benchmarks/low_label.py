"""Does unlabeled data help at 40 and 100 labels? FixMatch and FlexMatch against
supervised training on Fashion-MNIST, through the real workflow.

Two stages, because steps on two CPU cores are expensive and the length must be chosen
from a measurement:

1. `--curve` (first): one seed, one budget (40 labels), FixMatch from scratch next to
   supervised training, the weight average's test accuracy every `--eval-every` steps.
   Writes benchmarks/results/low_label_curve.md: accuracy against steps, images/s, and
   the job's wall time, from which the full study's length is chosen.
2. the full study (no `--curve`): budgets 40 and 100, `--seeds` x `--draws`, supervised,
   pixels_linear, SimCLR + finetune, self-training, FixMatch and FlexMatch from scratch,
   FixMatch from the SimCLR encoder; paired intervals as the tables compute them. Writes
   benchmarks/results/low_label.md.

Labeled images are drawn class-stratified from training images 0-9,999; the pool is
images 10,000-59,999 (50,000); the whole test set. The encoder is ssl_scale's small_cnn.

    .venv/bin/python benchmarks/low_label.py --curve --steps 4096 --eval-every 256
    .venv/bin/python benchmarks/low_label.py --steps ... --seeds 1 2 3 --draws 2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import machine
import pandas as pd
import yaml
from contrastive import AUGMENTATION, HEADS
from workflow import run_study

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--curve", action="store_true", help="stage 1: accuracy against steps, one seed")
    parser.add_argument("--steps", type=int, default=4096, help="FixMatch and FlexMatch optimizer steps")
    parser.add_argument("--eval-every", type=int, default=256)
    parser.add_argument(
        "--batch-size", type=int, default=64, help="labeled images a step (mu x as many unlabeled)"
    )
    parser.add_argument("--unlabeled-ratio", type=int, default=7)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--budgets", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--pretext-epochs", type=int, default=25)
    parser.add_argument("--downstream-epochs", type=int, default=50)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--note", default="", help="how this result was produced, when not in one plain run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "low_label")
    parser.add_argument("--report", type=Path, default=None)
    return parser.parse_args(argv)


def fixmatch_section(args, from_pretext: bool = False) -> dict:
    """The references' settings but the length (and, when asked, the batch)."""
    return {
        "steps": args.steps,
        "eval_every": args.eval_every,
        "median_of": min(20, args.steps // args.eval_every),
        "batch_size": args.batch_size,
        "unlabeled_ratio": args.unlabeled_ratio,
        "from_pretext": from_pretext,
    }


def derive_study(args) -> dict:
    if not args.data_dir.is_dir():
        sys.exit(f"no Fashion-MNIST IDX files: {args.data_dir} does not exist; pass --data-dir")
    labeled = 10000
    study = {
        "study": "low_label_curve" if args.curve else "low_label",
        # The shared Fashion-MNIST training images are not the official bytes (MD5 differs).
        "dataset": {
            "name": "fashion_mnist",
            "data_dir": str(args.data_dir.resolve()),
            "verify_checksums": False,
        },
        "split": {"labeled": [0, labeled], "unlabeled": [labeled, 60000], "test": None},
        "seeds": args.seeds[:1] if args.curve else list(args.seeds),
        "budgets": args.budgets[:1] if args.curve else list(args.budgets),
        "draws": 1 if args.curve else args.draws,
        "encoder": {"name": "small_cnn", "options": {"filters": [16, 32], "dense": [64]}},
        "pretext": {},
        "downstream": {
            "protocols": ["supervised", "fixmatch"],
            "epochs": args.downstream_epochs,
            "batch_size": 32,
            "optimizer": {"name": "adam", "learning_rate": 0.001},
        },
        "fixmatch": fixmatch_section(args),
    }
    if not args.curve:
        study["pretext"] = {
            "simclr": {
                "epochs": args.pretext_epochs,
                "batch_size": 256,
                "optimizer": {"name": "adamw", "learning_rate": 0.002, "weight_decay": 1.0e-4},
                "lr_schedule": {"name": "warmup_cosine", "warmup_epochs": 1, "min_factor": 0.0},
                "options": HEADS["simclr"],
                "augmentation": AUGMENTATION,
            }
        }
        study["downstream"]["protocols"] = [
            "supervised",
            "pixels_linear",
            "finetune",
            "self_training",
            "fixmatch",
            "flexmatch",
        ]
        study["fixmatch"] = fixmatch_section(args, from_pretext=True)
        study["flexmatch"] = fixmatch_section(args)
    return study


def curve(results: Path) -> tuple[pd.DataFrame, dict]:
    """The FixMatch run's history (one row per evaluation) and its job's figures."""
    run = next((results / "runs" / "all" / "none" / "fixmatch").glob("n*/seed*"))
    history = pd.read_csv(run / "history.csv")
    seconds = pd.read_csv(
        next((results / "benchmarks" / "runs" / "all" / "none" / "fixmatch").rglob("*.tsv")), sep="\t"
    )
    metrics = json.loads((run / "metrics.json").read_text())
    return history, {"job_seconds": float(seconds["s"].iloc[0]), **metrics}


def write_report(study, seconds, command, args) -> None:
    results = args.out / "results" / study["study"]
    report = args.report or ROOT / "benchmarks" / "results" / f"{study['study']}.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmark: "
        + (
            "FixMatch's accuracy against steps at 40 Fashion-MNIST labels (stage 1)"
            if args.curve
            else "does unlabeled data help at 40 and 100 labels?"
        ),
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`{shlex.join(['.venv/bin/python', 'benchmarks/low_label.py', *sys.argv[1:]])}` on "
        f"{machine.describe()}; 1-minute load average at the end {os.getloadavg()[0]:.2f}.",
        "",
        f"Wall time of the study: **{seconds / 60:.1f} min**.",
        "",
    ]
    if args.curve:
        history, figures = curve(results)
        step = args.eval_every * (history["epoch"] + 1)
        images = args.steps * args.batch_size * (1 + args.unlabeled_ratio)
        table = pd.DataFrame(
            {
                "step": step,
                "EMA test accuracy (%)": 100 * history["ema_test_accuracy"],
                "mask rate": history["mask_rate"],
                "pseudo-label accuracy": history["pseudo_label_accuracy"],
                "labeled loss": history["labeled_loss"],
                "unlabeled loss": history["unlabeled_loss"],
            }
        )
        supervised = pd.read_json(
            next((results / "runs" / "none" / "none" / "supervised").glob("n*/seed*/metrics.json")),
            typ="series",
        )
        lines += [
            f"FixMatch job: {figures['job_seconds'] / 60:.1f} min for {args.steps} steps of "
            f"{args.batch_size} labeled and {args.batch_size * args.unlabeled_ratio} unlabeled images: "
            f"**{images / figures['job_seconds']:.0f} images/s**, {args.steps / figures['job_seconds']:.2f} "
            "steps/s (job wall time, start-up and evaluations included).",
            "",
            f"Final weight-average test accuracy {100 * figures['test_accuracy']:.2f}%, median of the last "
            f"{figures['median_of']} evaluations {100 * figures['test_accuracy_median']:.2f}%; supervised "
            f"training on the same 40 labels ({args.downstream_epochs} epochs): "
            f"{100 * supervised['test_accuracy']:.2f}%. One seed, one draw: no interval over seeds; "
            "the table's paired interval is over the test images.",
            "",
            table.to_markdown(index=False, floatfmt=".4f"),
            "",
        ]
    lines += [
        "## As the workflow writes it",
        "",
        (results / "tables" / "accuracy.md").read_text().strip(),
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
    report.write_text("\n".join(lines))
    print(f"wrote {report}")


def main(argv=None):
    args = parse_args(argv)
    study = derive_study(args)
    out = args.out / ("curve" if args.curve else "study")
    args.out = out
    # The curve times one job at a time: each gets the study's 2 threads to itself.
    extra = ["--set-threads", f"pretext={args.cores}", f"downstream={args.cores}"] if args.curve else []
    seconds, command = run_study(study, out, args.cores, extra)
    write_report(study, seconds, command, args)


if __name__ == "__main__":
    main()
