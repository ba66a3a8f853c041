"""The contrastive family at a CPU scale on real images: does any two-view method beat
rotation and training from scratch on Fashion-MNIST?

Part 1 (throughput): pretext images/s of every two-view method's training step with its
augmentations inside the model, against the same step on views made beforehand, so the
cost of augmenting is visible (each in a fresh process, steady-state epochs only).

Part 2 (accuracy): one study through the real workflow (Snakemake) in benchmarks/out/:
SimCLR, NNCLR, SimSiam, Barlow Twins, BYOL, VICReg and rotation pretrain one small_cnn
on unlabeled Fashion-MNIST training images; linear and fine-tune classifiers and the
same network from scratch train on 100 and 1,000 labels, three seeds, full test set;
every pretext run reports its kNN accuracy on 1,000 held-out labeled images per epoch.

Writes benchmarks/results/contrastive.md (+ .csv, + contrastive_knn.png).

    .venv/bin/python benchmarks/contrastive.py            # about an hour on 2 cores
    .venv/bin/python benchmarks/contrastive.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml
from workflow import run_study

ROOT = Path(__file__).resolve().parents[1]
TWO_VIEW = ["simclr", "nnclr", "simsiam", "barlow_twins", "byol", "vicreg"]
# Heads narrowed with the encoder (its code has 64 values).
HEADS = {
    "simclr": {"projector": [128, 64], "temperature": 0.2},
    "nnclr": {"projector": [128, 64], "predictor": [128, 64], "queue_size": 4096, "temperature": 0.1},
    "simsiam": {"projector": [128, 128], "predictor": [32, 128]},
    "barlow_twins": {"projector": [256, 256], "lambda_offdiag": 0.0051},
    "byol": {"projector": [128, 64], "predictor": [128, 64], "momentum": 0.99},
    "vicreg": {"projector": [256, 256]},
}
# Fashion-MNIST is grayscale and its garments have a left-right symmetry.
AUGMENTATION = {"preset": "simclr_grayscale"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--unlabeled", type=int, default=10000, help="unlabeled images for the pretext runs")
    parser.add_argument("--pretext-epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--downstream-epochs", type=int, default=30, help="upper bound; early stopping")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--monitor", type=int, default=1000, help="held-out labeled images for the kNN monitor"
    )
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--dense", type=int, nargs="+", default=[64])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-workflow", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "contrastive")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "contrastive.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one throughput measurement
    return parser.parse_args(argv)


# --- part 1: throughput ------------------------------------------------------------------


def throughput_worker(args) -> dict:
    """Images/s of one method's training step: augmenting inside the model, and on pre-made views."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    method_name, mode = args.worker.split(":")
    from selfsup import augment, training

    training.configure(args.cores, 1)
    import numpy as np
    import tensorflow as tf

    from selfsup.data.sources import load_dataset
    from selfsup.encoders import build_encoder
    from selfsup.pretext import get_method

    data = load_dataset("fashion_mnist", args.data_dir)
    images = data.x_train[:2048].astype(np.float32) / 255.0
    method = get_method(method_name)
    options = {**method.OPTIONS, **HEADS[method_name]}
    encoder = build_encoder("small_cnn", images.shape[1:], filters=args.filters, dense=args.dense)
    augmentation = augment.build(AUGMENTATION, seed=1)
    steps = len(images) // args.batch_size
    model = method.build(encoder, options, augmentation=augmentation, total_steps=steps * 4)
    model.compile(optimizer=training.make_optimizer({"name": "adam", "learning_rate": 1e-3}))
    if mode == "augmenting":
        data_set = tf.data.Dataset.from_tensor_slices(images)
    else:
        first = np.concatenate([augmentation(b, training=True) for b in np.split(images, 8)])
        second = np.concatenate([augmentation(b, training=True) for b in np.split(images, 8)])
        data_set = tf.data.Dataset.from_tensor_slices((first, second))
    data_set = data_set.batch(args.batch_size, drop_remainder=True).prefetch(2)
    seconds = []

    class Clock(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.fit(data_set, epochs=4, verbose=0, callbacks=[Clock()])
    steady = seconds[1:]  # the first epoch traces the graph
    return {
        "method": method_name,
        "mode": mode,
        "images_per_s": steps * args.batch_size * len(steady) / sum(steady),
    }


def throughput(args) -> pd.DataFrame:
    rows = []
    for name in TWO_VIEW:
        for mode in ("augmenting", "pre-made views"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                f"{name}:{mode}",
                "--data-dir",
                str(args.data_dir),
            ]
            command += ["--batch-size", str(args.batch_size), "--cores", str(args.cores)]
            command += ["--filters", *map(str, args.filters), "--dense", *map(str, args.dense)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"throughput worker {name}:{mode} failed:\n{result.stderr[-3000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).pivot(index="method", columns="mode", values="images_per_s").loc[TWO_VIEW]
    table["augmentation cost"] = 1 - table["augmenting"] / table["pre-made views"]
    return table.reset_index()


# --- part 2: the study through the workflow ----------------------------------------------


def derive_study(args) -> dict:
    if not args.data_dir.is_dir():
        sys.exit(f"no Fashion-MNIST IDX files: {args.data_dir} does not exist; pass --data-dir")
    labeled = 10000  # labeled pool: training images 0-9,999 (budgets and the monitor slice)
    pretext_settings = {
        "epochs": args.pretext_epochs,
        "batch_size": args.batch_size,
        "optimizer": {"name": "adamw", "learning_rate": 0.002, "weight_decay": 1.0e-4},
        "lr_schedule": {"name": "warmup_cosine", "warmup_epochs": 1, "min_factor": 0.0},
    }
    pretext = {
        name: {**pretext_settings, "options": HEADS[name], "augmentation": AUGMENTATION} for name in TWO_VIEW
    }
    # Rotation as in study A/B: one random quarter turn per image, no augmentation.
    pretext["rotation"] = {**pretext_settings, "options": {"rotations": "random"}}
    return {
        "study": "contrastive_benchmark",
        "description": (
            f"Two-view methods and rotation on {args.unlabeled} unlabeled Fashion-MNIST images, "
            f"{args.pretext_epochs} pretext epochs; budgets {args.budgets}, seeds {args.seeds}."
        ),
        "dataset": {"name": "fashion_mnist", "data_dir": str(args.data_dir.resolve())},
        "split": {
            "labeled": [0, labeled],
            "unlabeled": [labeled, labeled + args.unlabeled],
            "test": None,  # all 10,000 test images
            "monitor": args.monitor,
        },
        "seeds": list(args.seeds),
        "budgets": list(args.budgets),
        "encoder": {"name": "small_cnn", "options": {"filters": args.filters, "dense": args.dense}},
        "pretext": pretext,
        "downstream": {
            "protocols": ["supervised", "linear", "finetune"],
            "epochs": args.downstream_epochs,
            "batch_size": 32,
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "validation_split": 0.2,
            "early_stopping": {"monitor": "val_loss", "patience": 5},
        },
    }


def run_workflow(study: dict, args) -> tuple[float, list[str]]:
    return run_study(study, args.out, args.cores, [])


def pretext_runs(results: Path) -> pd.DataFrame:
    """Per pretext run: job seconds, final loss, embedding std and kNN accuracy."""
    rows = []
    for tsv in sorted((results / "benchmarks" / "pretext").glob("*/seed*.tsv")):
        history = pd.read_csv(results / "encoders" / tsv.parent.name / tsv.stem / "history.csv")
        rows.append(
            {
                "pretext": tsv.parent.name,
                "seed": tsv.stem.removeprefix("seed"),
                "job_seconds": pd.read_csv(tsv, sep="\t")["s"].iloc[0],
                "final_loss": history["loss"].iloc[-1],
                "embedding_std": history["embedding_std"].iloc[-1] if "embedding_std" in history else None,
                "knn_first_epoch": history["knn_accuracy"].iloc[0],
                "knn_last_epoch": history["knn_accuracy"].iloc[-1],
            }
        )
    return pd.DataFrame(rows)


def write_report(study, seconds, command, speed, args) -> None:
    lines = [
        "# Benchmark: the contrastive family on Fashion-MNIST at CPU scale",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`{shlex.join(['.venv/bin/python', 'benchmarks/contrastive.py', *sys.argv[1:]])}` on "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}).",
        "",
    ]
    if speed is not None:
        lines += [
            "## Pretext throughput: augmenting inside the model against pre-made views",
            "",
            f"Images/s of the training step (small_cnn {args.filters}/{args.dense}, batch {args.batch_size}, "
            f"augmentation {AUGMENTATION}), epochs 2-4 of 4 on 2,048 images; 'augmentation cost' is the share "
            "of the step's time the two augmentations take.",
            "",
            speed.to_markdown(index=False, floatfmt=".2f"),
            "",
        ]
    if study is not None:
        results = args.out / "results" / study["study"]
        summary = pd.read_csv(results / "tables" / "accuracy.csv")
        summary.to_csv(args.report.with_suffix(".csv"), index=False)
        shutil.copy(results / "figures" / "knn_accuracy.png", args.report.with_name("contrastive_knn.png"))
        runs = pretext_runs(results)
        lines += [
            "## Accuracy",
            "",
            f"Wall time of the whole workflow: **{seconds / 60:.1f} min**.",
            "",
            (results / "tables" / "accuracy.md").read_text().strip(),
            "",
            "`none + supervised`: the same small_cnn and head trained from scratch on the labels; `linear`: "
            "a Dense head on the frozen pretext encoder; `finetune`: everything trained.",
            "",
            "## Pretext runs",
            "",
            "kNN accuracy: k=200, temperature 0.1, on the 1,000 held-out labeled images "
            "(figure: `contrastive_knn.png`).",
            "",
            runs.to_markdown(index=False, floatfmt=".4f"),
            "",
            "![kNN accuracy per pretext epoch](contrastive_knn.png)",
            "",
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
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report}")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(throughput_worker(args)))
        return
    speed = None if args.skip_throughput else throughput(args)
    study, seconds, command = None, None, None
    if not args.skip_workflow:
        study = derive_study(args)
        seconds, command = run_workflow(study, args)
    write_report(study, seconds, command, speed, args)


if __name__ == "__main__":
    main()
