"""The contrastive family at a CPU scale on real images: does any two-view method beat
rotation and training from scratch on Fashion-MNIST?

Part 1 (throughput): pretext images/s of every two-view method's training step with its
augmentations inside the model, against the same step on views made beforehand, so the
cost of augmenting is visible (one fresh process per method, the two models trained in
alternating epochs, medians of the steady-state epochs).

Part 2 (accuracy): one study through the real workflow (Snakemake) in benchmarks/out/:
SimCLR, NNCLR, SimSiam, Barlow Twins, BYOL, VICReg and rotation pretrain one small_cnn
on unlabeled Fashion-MNIST training images; linear and fine-tune classifiers and the
same network from scratch train on 100 and 1,000 labels, three seeds, full test set;
every pretext run reports its kNN accuracy on 1,000 held-out labeled images per epoch.

Writes benchmarks/results/contrastive_throughput.md (+ .csv) and contrastive.md (+ .csv,
+ contrastive_knn.png); each part can be re-run alone (--skip-workflow, --skip-throughput).

    .venv/bin/python benchmarks/contrastive.py            # about an hour on 2 cores
    .venv/bin/python benchmarks/contrastive.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import machine
import pandas as pd
import yaml
from workflow import run_study

ROOT = Path(__file__).resolve().parents[1]
TWO_VIEW = ["simclr", "nnclr", "simsiam", "barlow_twins", "byol", "vicreg"]
# Heads narrowed with the encoder (its code has 64 values).
HEADS = {
    "simclr": {"projector": [128, 64], "temperature": 0.2},
    "nnclr": {"projector": [128, 128, 64], "predictor": [128, 64], "queue_size": 4096, "temperature": 0.1},
    "simsiam": {"projector": [128, 128], "predictor": [32, 128]},
    "barlow_twins": {"projector": [256, 256, 256], "lambda_offdiag": 0.0051},
    "byol": {"projector": [128, 64], "predictor": [128, 64], "momentum": 0.99},
    "vicreg": {"projector": [256, 256, 256]},
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
    parser.add_argument("--throughput-images", type=int, default=4096)
    parser.add_argument("--throughput-epochs", type=int, default=5, help="measured epochs per mode")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-workflow", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "contrastive")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "contrastive.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one throughput measurement
    return parser.parse_args(argv)


# --- part 1: throughput ------------------------------------------------------------------


def throughput_worker(args) -> list[dict]:
    """Images/s of one method's training step, augmenting inside the model and on views made
    beforehand: two models trained in alternating epochs in one process, so that a change in
    the machine's load hits both alike; the median over epochs after each one's first."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from selfsup import augment, training

    training.configure(args.cores, 1)
    import numpy as np
    import tensorflow as tf

    from selfsup.data.sources import load_dataset
    from selfsup.encoders import build_encoder
    from selfsup.pretext import get_method

    data = load_dataset("fashion_mnist", args.data_dir, verify_checksums=False)  # see study below
    images = data.x_train[: args.throughput_images].astype(np.float32) / 255.0
    method = get_method(args.worker)
    options = {**method.OPTIONS, **HEADS[args.worker]}
    steps = len(images) // args.batch_size
    augmentation = augment.build(AUGMENTATION, seed=1)
    chunks = np.array_split(images, max(1, len(images) // 512))
    views = [np.concatenate([augmentation(c, training=True) for c in chunks]) for _ in range(2)]
    feeds = {
        "augmenting": tf.data.Dataset.from_tensor_slices(images),
        "pre-made views": tf.data.Dataset.from_tensor_slices(tuple(views)),
    }
    models, rates = {}, {mode: [] for mode in feeds}
    for mode in feeds:
        encoder = build_encoder("small_cnn", images.shape[1:], filters=args.filters, dense=args.dense)
        in_model = augmentation if mode == "augmenting" else None
        models[mode] = method.build(encoder, options, augmentation=in_model, total_steps=steps * 10)
        models[mode].compile(optimizer=training.make_optimizer({"name": "adam", "learning_rate": 1e-3}))
        feeds[mode] = feeds[mode].batch(args.batch_size, drop_remainder=True).prefetch(2)
    for epoch in range(args.throughput_epochs + 1):
        for mode, model in models.items():
            start = time.perf_counter()
            model.fit(feeds[mode], epochs=1, verbose=0)
            if epoch:  # the first epoch traces the graph
                rates[mode].append(steps * args.batch_size / (time.perf_counter() - start))
    return [
        {"method": args.worker, "mode": mode, "images_per_s": float(np.median(values))}
        for mode, values in rates.items()
    ]


def throughput(args) -> pd.DataFrame:
    rows = []
    for name in TWO_VIEW:
        command = [sys.executable, __file__, "--worker", name, "--data-dir", str(args.data_dir)]
        command += ["--batch-size", str(args.batch_size), "--cores", str(args.cores)]
        command += ["--filters", *map(str, args.filters), "--dense", *map(str, args.dense)]
        command += ["--throughput-images", str(args.throughput_images)]
        command += ["--throughput-epochs", str(args.throughput_epochs)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"throughput worker {name} failed:\n{result.stderr[-3000:]}")
        rows += json.loads(result.stdout.strip().splitlines()[-1])
        print(rows[-2:], flush=True)
    table = pd.DataFrame(rows).pivot(index="method", columns="mode", values="images_per_s").loc[TWO_VIEW]
    table["augmentation share of the step"] = 1 - table["augmenting"] / table["pre-made views"]
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
        # The shared Fashion-MNIST images are not the official bytes (MD5 differs).
        "dataset": {
            "name": "fashion_mnist",
            "data_dir": str(args.data_dir.resolve()),
            "verify_checksums": False,
        },
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
            "protocols": ["supervised", "frozen", "finetune"],
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
    for tsv in sorted((results / "benchmarks" / "pretext" / "all").glob("*/seed*.tsv")):
        history = pd.read_csv(results / "encoders" / "all" / tsv.parent.name / tsv.stem / "history.csv")
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


def _header(title: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`{shlex.join(['.venv/bin/python', 'benchmarks/contrastive.py', *sys.argv[1:]])}` on "
        f"{machine.describe()}; 1-minute load average at the end {os.getloadavg()[0]:.2f} (on an idle "
        "machine, the jobs' own load: about the study's threads).",
        "",
    ]


def write_throughput(speed: pd.DataFrame, args) -> None:
    path = args.report.with_name(f"{args.report.stem}_throughput.md")
    speed.to_csv(path.with_suffix(".csv"), index=False)
    lines = [
        *_header("Benchmark: two-view pretext throughput, augmenting in the model vs pre-made views"),
        f"Images/s of the training step (small_cnn {args.filters}/{args.dense}, batch {args.batch_size}, "
        f"augmentation {AUGMENTATION}) on {args.throughput_images} Fashion-MNIST images: per method, one "
        "model augments each batch twice inside train_step, the other is fed two views made beforehand; "
        f"they train in alternating epochs in one process, and the table gives the median of "
        f"{args.throughput_epochs} epochs each after the first (graph tracing). 'augmentation share of "
        "the step' is 1 - augmenting / pre-made: the part of a step's time the augmentations take.",
        "",
        speed.to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def write_report(study, seconds, command, args) -> None:
    lines = _header("Benchmark: the contrastive family on Fashion-MNIST at CPU scale")
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
        "`none + supervised`: the same small_cnn and head trained from scratch on the labels; `frozen`: "
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
    # Each part writes its own result file, so either can be re-measured alone.
    if not args.skip_throughput:
        write_throughput(throughput(args), args)
    if not args.skip_workflow:
        study = derive_study(args)
        seconds, command = run_workflow(study, args)
        write_report(study, seconds, command, args)


if __name__ == "__main__":
    main()
