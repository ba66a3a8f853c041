"""The pipeline against a peer library, lightly 1.6.0 on PyTorch (CPU), on one machine.

What it measures, per pretext method, both ways with the same images, network, heads,
loss, optimizer, batch size, augmentations and threads:
- images/s of pretext training over the steady-state epochs (every epoch after the
  first, which traces graphs and warms caches), in one fresh process per measurement,
  the two sides of a method alternating in order from repeat to repeat; medians and
  ranges over the repeats, and the ratio ours / peer;
- the weighted kNN accuracy (the pipeline's kNN monitor, selfsup.monitor.knn_accuracy:
  k=200, temperature 0.1, leave-one-out) of the encoder each side trained, on labeled
  training images outside the pretext pool, features in inference mode.

The two-view methods (SimCLR, BYOL, SimSiam, Barlow Twins, VICReg) run in the pipeline
as a pretext job does (selfsup.pretext_stage.train_pretext: prepared uint8 files, the
selfsup.inputs tf.data batches, the method's Keras model with the augmentations
inside, selfsup.training.fit, threads and deterministic ops from
selfsup.training.configure) and with lightly the way its examples do (benchmarks/
peer_torch.py: a per-image torchvision transform making two views, a DataLoader with
num_workers=0, lightly's heads and losses, a plain training loop). Rotation, which lightly
does not have, runs in the pipeline (rotations "all") against plain Keras `model.fit` on
float32 NumPy arrays of the four rotations, as benchmarks/speed.py's "notebook way".

The peer side lives in its own virtual environment, benchmarks/out/peer/venv, made on the
first run (or by --setup) with `python3 -m venv` and pip; PyTorch and lightly are never
dependencies of the project.

Writes benchmarks/results/peer.md and peer.csv (with --quick: benchmarks/out/peer/quick/).
Run it on an otherwise idle machine: any other load skews the two sides unequally (the
report gives the load average at its start and end).

    .venv/bin/python benchmarks/peer.py --setup      # the peer venv only (a few minutes)
    .venv/bin/python benchmarks/peer.py              # 10,000 images, 5 epochs, 3 repeats: about 25 min on 2 idle cores
    .venv/bin/python benchmarks/peer.py --quick      # a smoke run: 512 images, 2 epochs, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "peer"
PEER_SCRIPT = ROOT / "benchmarks" / "peer_torch.py"
TWO_VIEW = ["simclr", "byol", "simsiam", "barlow_twins", "vicreg"]
METHODS = [*TWO_VIEW, "rotation"]
# What the peer venv gets: the CPU build of torch from the wheel on disk (pip's find-links),
# the torchvision release made for torch 2.13, lightly.
PEER_REQUIREMENTS = ["torch==2.13.0+cpu", "torchvision==0.28.0", "lightly==1.6.0"]
PEER_NAMES = {m: "lightly 1.6.0 (PyTorch)" for m in TWO_VIEW} | {"rotation": "Keras fit on NumPy arrays"}
GOAL = 1.5  # two-view images/s, ours / peer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=10000, help="pretext pool: training images 0..N-1")
    parser.add_argument("--epochs", type=int, default=5, help="per run; images/s leave out the first")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per method and side")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's, constant, both sides")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow and torch threads")
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--dense", type=int, nargs="+", default=[64])
    parser.add_argument("--knn-start", type=int, default=50000, help="first labeled kNN image")
    parser.add_argument("--knn-images", type=int, default=2000, help="labeled images of the kNN accuracy")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--quick", action="store_true", help="smoke run: 512 images, 2 epochs, 1 repeat")
    parser.add_argument("--setup", action="store_true", help="make the peer venv, print its versions, exit")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", type=Path, default=None, help="default benchmarks/results/peer.md")
    parser.add_argument(
        "--worker", nargs="+", help=argparse.SUPPRESS
    )  # internal: prepare | ours M | notebook M
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)  # the worker's
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.repeats, args.knn_images = 512, 2, 1, 500
    if args.report is None:
        quick = args.out / "quick" / "peer.md"
        args.report = quick if args.quick else ROOT / "benchmarks" / "results" / "peer.md"
    if args.images > args.knn_start:
        parser.error(f"--images {args.images} would reach the kNN images from {args.knn_start}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is left out of images/s")
    return args


# --- the peer environment -----------------------------------------------------------------


def peer_python(out: Path) -> Path:
    return out / "venv" / "bin" / "python"


def ensure_peer_venv(out: Path) -> dict:
    """The peer venv's Python (made with its packages when missing) and its versions."""
    python = peer_python(out)
    if not python.exists():
        print(f"making the peer venv in {python.parents[1]} ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(python.parents[1])], check=True)
        subprocess.run([str(python), "-m", "pip", "install", *PEER_REQUIREMENTS], check=True)
    result = subprocess.run([str(python), str(PEER_SCRIPT), "--versions"], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the peer venv {python.parents[1]} does not work:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the shared data: the pipeline's prepared files, and the same images for the peer -------


def prepared(args) -> Path:
    return args.out / f"prepared_n{args.images}_knn{args.knn_start}+{args.knn_images}"


def derive_study(args) -> dict:
    """A study as the workflow would check it: the pretext pool, the kNN images as the
    labeled pool, one pretext entry per method."""
    common = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": {"name": "adam", "learning_rate": args.learning_rate},
    }
    from contrastive import AUGMENTATION, HEADS

    pretext = {m: {**common, "options": HEADS[m], "augmentation": AUGMENTATION} for m in TWO_VIEW}
    # Every image in all four rotations, as the notebook way's arrays; no augmentation.
    pretext["rotation"] = {**common, "options": {"rotations": "all"}}
    return {
        "study": "peer_benchmark",
        # The shared Fashion-MNIST files are reassembled, not the official bytes (MD5 differs).
        "dataset": {
            "name": "fashion_mnist",
            "data_dir": str(args.data_dir.resolve()),
            "verify_checksums": False,
        },
        "split": {
            "labeled": [args.knn_start, args.knn_start + args.knn_images],
            "unlabeled": [0, args.images],
            "test": [0, 100],
            "monitor": 0,  # the kNN accuracy is taken after training, outside the timed epochs
        },
        "seeds": [1],
        "budgets": [100],
        "threads": args.threads,
        "encoder": {"name": "small_cnn", "options": {"filters": args.filters, "dense": args.dense}},
        "pretext": pretext,
        "downstream": {"protocols": ["linear"], "epochs": 1, "batch_size": 32},
    }


def prepare_worker(args) -> dict:
    """The prepared dataset, split, pool and rotation pseudo-labels, as the workflow's
    prepare, split and pseudo_labels jobs make them; the pool's and the kNN images as
    .npy for the peer; the checked study."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from selfsup import artifacts
    from selfsup.config import load_schema
    from selfsup.pretext import get_method
    from selfsup.stages.prepare import prepare
    from selfsup.stages.split import split_dataset
    from selfsup.study import study_from_config

    config = derive_study(args)
    schema = load_schema(ROOT / "schemas" / "study.schema.yaml")
    study = study_from_config(config, schema)
    folder = prepared(args)
    folder.mkdir(parents=True, exist_ok=True)
    data = args.out / "fashion_mnist.h5"
    if not data.exists():
        dataset = study["dataset"]
        prepare(
            dataset["name"],
            dataset["data_dir"],
            dataset["options"],
            data,
            {},
            verify_checksums=dataset["verify_checksums"],
        )
    split = split_dataset(data, {**study["split"], "normalization": study["dataset"]["normalization"]}, 1)
    artifacts.write_split(folder / "split.h5", split, {})
    artifacts.write_pool(folder / "pool.h5", split.unlabeled, split.unlabeled_part, {})
    rotation = study["pretext"]["rotation"]
    positions, labels = get_method("rotation").pseudo_labels(len(split.unlabeled), rotation["options"], 1)
    artifacts.write_pseudo_labels(folder / "pseudo_rotation.h5", split.unlabeled[positions], labels, {})
    np.save(folder / "pool.npy", artifacts.read_images(data, split.unlabeled_part, split.unlabeled))
    knn = np.arange(args.knn_start, args.knn_start + args.knn_images)
    np.save(folder / "knn_images.npy", artifacts.read_images(data, "train", knn))
    np.save(folder / "knn_labels.npy", artifacts.read_labels(data)["y_train"][knn])
    (folder / "study.json").write_text(json.dumps(study, indent=1))
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


# --- one measurement per process ----------------------------------------------------------


def ours_worker(args, method: str) -> dict:
    """One pretext job of the pipeline, as scripts/pretext.py runs it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder = prepared(args)
    study = json.loads((folder / "study.json").read_text())
    settings = {**study["pretext"][method], "epochs": args.epochs}
    from selfsup import training

    training.configure(args.threads, args.seed, settings["deterministic"])  # before any TF op
    import io

    from selfsup import artifacts, encoders, monitor
    from selfsup.stages import pretext as pretext_stage

    run = args.out / "runs" / f"ours_{method}_seed{args.seed}"
    run.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    history = pretext_stage.train_pretext(
        data_path=args.out / "fashion_mnist.h5",
        split_path=folder / "split.h5",
        pool_path=folder / "pool.h5",
        pseudo_path=folder / "pseudo_rotation.h5" if method == "rotation" else None,
        settings=settings,
        encoder_spec=study["encoder"],
        seed=args.seed,
        meta={},
        encoder_path=run / "encoder.h5",
        history_path=run / "history.csv",
        examples_path=run / "examples.h5",
        stream=log,
    )
    (run / "log.txt").write_text(log.getvalue())
    # The per-epoch seconds of the pipeline's own progress lines (selfsup.training.fit).
    seconds = [float(s) for s in re.findall(r"  ([0-9.]+) s \(", log.getvalue())]
    if len(seconds) != len(history):
        raise RuntimeError(
            f"found {len(seconds)} epoch times for {len(history)} epochs in:\n{log.getvalue()}"
        )
    if method == "rotation":
        images = len(artifacts.read_pseudo_labels(folder / "pseudo_rotation.h5")[1])
    else:  # full batches only
        images = args.images // args.batch_size * args.batch_size
    encoder, _ = encoders.read_encoder(run / "encoder.h5")
    knn = np.load(folder / "knn_images.npy").astype(np.float32) / 255.0  # normalization: none
    np.save(run / "features.npy", monitor.encoder_features(encoder, knn))
    return {
        "epoch_seconds": seconds,
        "images_per_epoch": images,
        "losses": [float(v) for v in history["loss"]],
        "features": str(run / "features.npy"),
        **training.thread_settings(),
    }


def notebook_worker(args, method: str) -> dict:
    """Rotation the notebook way (benchmarks/speed.py's notebook_pretext): every image in
    its four rotations as one float32 array, plain Keras fit, TensorFlow's default ops
    (not deterministic) on the same threads."""
    if method != "rotation":
        raise ValueError("the notebook way is for rotation only")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    from selfsup import monitor
    from selfsup.encoders import build_encoder
    from selfsup.pretext.rotation import rotate

    keras.utils.set_random_seed(args.seed)
    folder = prepared(args)
    pool = np.load(folder / "pool.npy")
    turns = np.tile(np.arange(4), len(pool))
    x = rotate(np.repeat(pool, 4, axis=0), turns).astype("float32") / 255.0
    encoder = build_encoder("small_cnn", x.shape[1:], filters=args.filters, dense=args.dense)
    inputs = keras.Input(x.shape[1:])
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(encoder(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    seconds, losses = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        history = model.fit(x, turns, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
        seconds.append(time.perf_counter() - start)
        losses.append(float(history.history["loss"][-1]))
    run = args.out / "runs" / f"notebook_{method}_seed{args.seed}"
    run.mkdir(parents=True, exist_ok=True)
    knn = np.load(folder / "knn_images.npy").astype(np.float32) / 255.0
    np.save(run / "features.npy", monitor.encoder_features(encoder, knn))
    return {
        "epoch_seconds": seconds,
        "images_per_epoch": len(x),
        "losses": losses,
        "features": str(run / "features.npy"),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "deterministic_ops": False,
    }


def _json_line(result: subprocess.CompletedProcess, what: str) -> dict:
    if result.returncode:
        sys.exit(f"{what} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _common_options(args) -> list[str]:
    options = ["--out", str(args.out), "--images", str(args.images), "--epochs", str(args.epochs)]
    options += ["--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate)]
    options += ["--threads", str(args.threads), "--knn-start", str(args.knn_start)]
    options += ["--knn-images", str(args.knn_images), "--data-dir", str(args.data_dir)]
    return options + ["--filters", *map(str, args.filters), "--dense", *map(str, args.dense)]


def measure(args, side: str, method: str, seed: int, study: dict, knn: dict) -> dict:
    """One measurement in a fresh process: images/s over the epochs after the first, and
    the kNN accuracy of the features it saved (scored here, the same way for both)."""
    from selfsup.monitor import knn_accuracy

    if side == "ours":
        command = [sys.executable, __file__, "--worker", "ours", method, "--seed", str(seed)]
        command += _common_options(args)
    elif method == "rotation":
        command = [sys.executable, __file__, "--worker", "notebook", method, "--seed", str(seed)]
        command += _common_options(args)
    else:
        folder = prepared(args)
        features = args.out / "runs" / f"peer_{method}_seed{seed}" / "features.npy"
        features.parent.mkdir(parents=True, exist_ok=True)
        command = [str(peer_python(args.out)), str(PEER_SCRIPT), "--method", method]
        command += ["--options", json.dumps(study["pretext"][method]["options"])]
        command += ["--pool", str(folder / "pool.npy"), "--knn-images", str(folder / "knn_images.npy")]
        command += ["--features", str(features), "--epochs", str(args.epochs), "--seed", str(seed)]
        command += ["--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate)]
        command += ["--threads", str(args.threads)]
        command += ["--filters", *map(str, args.filters), "--dense", *map(str, args.dense)]
    start = time.perf_counter()
    out = _json_line(subprocess.run(command, capture_output=True, text=True), f"{side} {method}")
    wall = time.perf_counter() - start
    features = out.get("features") or str(command[command.index("--features") + 1])
    labels = np.load(prepared(args) / "knn_labels.npy")
    steady = out["epoch_seconds"][1:]
    if "torch_threads" in out:
        threads = f"torch {out['torch_threads']}/{out['torch_interop_threads']}"
    else:
        deterministic = "deterministic" if out["deterministic_ops"] else "default ops"
        threads = f"TF {out['intra_op_threads']}/{out['inter_op_threads']}, {deterministic}"
    return {
        "method": method,
        "side": side,
        "implementation": "pipeline" if side == "ours" else PEER_NAMES[method],
        "seed": seed,
        "images_per_s": out["images_per_epoch"] * len(steady) / sum(steady),
        "images_per_epoch": out["images_per_epoch"],
        "epoch_seconds": " ".join(f"{s:.2f}" for s in out["epoch_seconds"]),
        "final_loss": out["losses"][-1],
        "knn_accuracy": knn_accuracy(np.load(features), labels, knn["k"], knn["temperature"]),
        "process_seconds": wall,
        "threads (intra/inter)": threads,
        "command": shlex.join(command),
    }


# --- the report ---------------------------------------------------------------------------


def _range(values) -> str:
    return f"{min(values):.0f}-{max(values):.0f}" if len(values) > 1 else "-"


def summarize(runs, methods):
    import pandas as pd

    rows = []
    for method in methods:
        ours = runs[(runs.method == method) & (runs.side == "ours")].sort_values("seed")
        peer = runs[(runs.method == method) & (runs.side == "peer")].sort_values("seed")
        paired = ours.images_per_s.to_numpy() / peer.images_per_s.to_numpy()
        rows.append(
            {
                "method": method,
                "peer": PEER_NAMES[method],
                "ours img/s": ours.images_per_s.median(),
                "ours range": _range(ours.images_per_s),
                "peer img/s": peer.images_per_s.median(),
                "peer range": _range(peer.images_per_s),
                "ratio ours/peer": ours.images_per_s.median() / peer.images_per_s.median(),
                "ratio range (per repeat)": f"{paired.min():.2f}-{paired.max():.2f}"
                if len(paired) > 1
                else "-",
                "ours kNN": ours.knn_accuracy.median(),
                "ours kNN range": f"{ours.knn_accuracy.min():.3f}-{ours.knn_accuracy.max():.3f}",
                "peer kNN": peer.knn_accuracy.median(),
                "peer kNN range": f"{peer.knn_accuracy.min():.3f}-{peer.knn_accuracy.max():.3f}",
            }
        )
    return pd.DataFrame(rows)


def reading(table, args, loads) -> list[str]:
    """Sentences computed from the table: what it shows, whatever it shows."""
    lines = []
    if max(loads) > args.threads + 0.5:
        lines.append(
            f"- The load average reached {max(loads):.1f} on {os.cpu_count()} cores: other processes "
            "competed for the cores during the run, so the timings are not clean (in trial runs torch's OpenMP "
            "threads suffer more from it than TensorFlow's); run it again on an idle machine."
        )
    two_view = table[table.method.isin(TWO_VIEW)]
    if len(two_view):
        met = two_view[two_view["ratio ours/peer"] >= GOAL]
        short = two_view[two_view["ratio ours/peer"] < GOAL]
        lines.append(
            f"- Speed: {len(met)} of {len(two_view)} two-view methods reach {GOAL}x lightly's images/s"
            + (f" ({', '.join(met.method)})" if len(met) else "")
            + (
                "; below it: "
                + ", ".join(f"{r.method} {r['ratio ours/peer']:.2f}x" for _, r in short.iterrows())
                if len(short)
                else ""
            )
            + "."
        )
        slower = two_view[two_view["ratio ours/peer"] < 1]
        if len(slower):
            lines.append(f"- The pipeline is slower than lightly for: {', '.join(slower.method)}.")
    for _, row in table.iterrows():
        gap = row["ours kNN"] - row["peer kNN"]
        overlap = _overlap(row["ours kNN range"], row["peer kNN range"])
        if gap >= 0:
            verdict = "at least as well"
        elif args.repeats == 1:
            verdict = "less well on this one seed (no spread to judge the gap by)"
        elif overlap:
            verdict = "a little less well, within the seeds' spread"
        else:
            verdict = "worse, beyond the seeds' spread"
        lines.append(
            f"- {row.method}: kNN {row['ours kNN']:.3f} ours vs {row['peer kNN']:.3f} {row.peer} "
            f"({gap:+.3f}; ranges {row['ours kNN range']} and {row['peer kNN range']} over "
            f"{args.repeats} seed(s)): after {args.epochs} epochs the pipeline learns {verdict}."
        )
    if args.repeats < 3 or args.images < 10000:
        lines.append(
            f"- Few or small runs ({args.repeats} repeat(s), {args.images} images): read the ratios "
            "as rough, and the kNN differences as noise unless they exceed the seed ranges."
        )
    return lines


def _overlap(a: str, b: str) -> bool:
    (a0, a1), (b0, b1) = (map(float, r.split("-")) for r in (a, b))
    return a0 <= b1 and b0 <= a1


DEVIATIONS = """\
- **Encoder initialisation**: the torch twin of small_cnn and lightly's heads are
  re-initialised as Keras does (Glorot-uniform kernels, zero biases), not with torch's
  defaults; the layers themselves are the same (3x3 convs with padding 1 and ReLU, 2x2
  max-pooling, flatten, Dense-ReLU; no BatchNorm or dropout in the encoder). Flatten
  order differs (NHWC vs NCHW), which changes nothing but the layout of one weight matrix.
- **Heads**: lightly's classes with the pipeline's widths (SimCLRProjectionHead without
  BatchNorm, BYOLProjection/PredictionHead, SimSiamPredictionHead, BarlowTwinsProjectionHead,
  VICRegProjectionHead); SimSiam's two-layer projector (lightly's SimSiamProjectionHead
  has three) is built from lightly's ProjectionHead base class. lightly leaves out the bias
  of the Linear layer before SimSiam's affine-free output BatchNorm; the pipeline keeps it,
  where the BatchNorm cancels it.
- **Losses**: lightly's NTXentLoss, NegativeCosineSimilarity, BarlowTwinsLoss and VICRegLoss,
  which compute what selfsup.pretext.losses does; BYOL's is written as the pipeline's value
  4 + 2 (cos-loss(p0, t1) + cos-loss(p1, t0)) where lightly's example takes 0.5 (...), a
  constant factor Adam all but cancels.
- **BYOL's target momentum**: both go from 0.99 to 1 by a cosine over the run's steps and move
  parameters only, after each optimizer step; lightly's cosine_schedule divides by
  (steps - 1) where the pipeline divides by steps.
- **Optimizer**: Adam, learning rate 1e-3, constant, no weight decay, both sides (the
  throughput part of benchmarks/contrastive.py trains with it); torch's Adam gets Keras'
  epsilon 1e-7, which Keras adds to sqrt(v) before the bias correction and torch after it.
- **Augmentations** (selfsup.augment's `simclr_grayscale`, per image in both): random resized
  crop, area 0.2-1 of the image, aspect 3/4-4/3, bilinear; horizontal flip with p 0.5; with
  p 0.8 brightness +-0.4 then contrast x[0.6, 1.4] about the image's mean, each clipped to
  [0, 1]. The peer uses torchvision.transforms.v2 (ToDtype, RandomResizedCrop,
  RandomHorizontalFlip, RandomApply, ColorJitter(contrast=0.4)) and a small additive
  brightness transform, since torchvision's brightness multiplies by [0.6, 1.4] instead of
  adding +-0.4. Left different: torchvision's crop draws up to 10 boxes and keeps the
  first that fits in the image (else a central crop), and cuts whole pixels, while the
  pipeline's clips an oversized side to the image and crops at sub-pixel positions
  (crop_and_resize); torchvision resizes with antialiasing (a no-op here, crops only
  grow).
- **Where augmentations run**: the pipeline augments each batch twice inside the model's
  train step (batched TensorFlow ops); the peer transforms each image in Python in the
  DataLoader, as lightly's examples do.
- **Input pipeline**: the pipeline's tf.data batches (uint8 gathered per batch, scaled in
  TensorFlow, prefetched); the peer's DataLoader with num_workers=0: worker processes would
  compete with the 2 torch threads for the 2 cores, while tf.data runs inside TensorFlow's
  own threads. Both shuffle every epoch and drop the last partial batch.
- **Threads and determinism**: the pipeline calls selfsup.training.configure(threads, seed)
  (intra- and inter-op threads, deterministic ops, its default); the peer sets
  torch.set_num_threads and set_num_interop_threads and keeps torch's default
  (non-deterministic algorithms allowed). Seeds are the same numbers, not the same draws.
- **Rotation's peer** is not lightly (which has no rotation pretext) but plain Keras fit on
  float32 arrays of every image in its four rotations, with TensorFlow's default ops, as
  benchmarks/speed.py's notebook way; the pipeline runs rotations "all", so both see the
  same 4N examples an epoch, and both count rotated images in images/s.
- **torchvision build**: the package index has only the CUDA build of torchvision 0.28.0,
  whose C extension (detection operators) cannot load beside torch 2.13.0+cpu; peer_torch.py
  declares the two operators torchvision's import registers without checking, and uses
  only Python transforms.
- **Timing**: the pipeline's epoch seconds come from its progress lines (0.1 s
  resolution, Keras' epoch from begin to end callbacks); the peer's from perf_counter
  around each epoch's loop (DataLoader included)."""


def write_report(args, runs, table, versions, started, finished, loads) -> None:
    from machine import describe

    args.report.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.report.with_suffix(".csv"), index=False)
    command = shlex.join([".venv/bin/python", "benchmarks/peer.py", *sys.argv[1:]])
    ours_versions = ", ".join(f"{k} {v}" for k, v in versions["ours"].items())
    peer_versions = ", ".join(f"{k} {v}" for k, v in versions["peer"].items())
    steps = args.images // args.batch_size
    lines = [
        "# Benchmark: the pipeline against lightly (PyTorch, CPU)",
        "",
        f"Run {started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC with `{command}`.",
        "",
        f"- Machine: {describe()}; load average {loads[0]:.2f} at the start, {loads[1]:.2f} at the end.",
        f"- Ours: selfsup (this repository), {ours_versions}.",
        f"- Peer: {peer_versions} (venv {args.out / 'venv'}; `{' '.join(PEER_REQUIREMENTS)}`).",
        "",
        "## Settings (both sides)",
        "",
        f"- Images: Fashion-MNIST training images 0-{args.images - 1} as the pretext pool "
        f"({steps} full batches of {args.batch_size} an epoch for the two-view methods, "
        f"{4 * args.images} rotated images for rotation); pixels scaled to [0, 1], no normalization.",
        f"- Encoder: small_cnn, filters {args.filters}, dense {args.dense} (64 features).",
        "- Heads and method options: benchmarks/contrastive.py's HEADS over each method's defaults: "
        + "; ".join(f"{m} {json.dumps(versions['options'][m])}" for m in args.methods if m in TWO_VIEW)
        + ".",
        f"- Optimizer: Adam, learning rate {args.learning_rate}, constant; batch {args.batch_size}; "
        f"{args.epochs} epochs per run.",
        "- Augmentations: the pipeline's `simclr_grayscale` preset; reproduced in torchvision (below).",
        f"- Threads: {args.threads} (TensorFlow intra- and inter-op; torch intra- and inter-op), "
        "one process at a time.",
        f"- Images/s: images trained per epoch x epochs 2-{args.epochs} / their seconds; one fresh "
        f"process per measurement; {args.repeats} repeat(s) with seeds 1-{args.repeats}, the two "
        "sides of a method alternating which goes first from repeat to repeat (and from method to "
        "method); medians, ranges over the repeats, ratio = median ours / median peer.",
        f"- kNN accuracy: the pipeline's monitor definition (selfsup.monitor.knn_accuracy: cosine "
        f"similarity of L2-normalized features, k={versions['knn']['k']} neighbours voting with "
        f"weight exp(similarity / {versions['knn']['temperature']}), leave-one-out) on labeled "
        f"training images {args.knn_start}-{args.knn_start + args.knn_images - 1}, outside the "
        "pretext pool, with the encoder's 64 features in inference mode after the last epoch, "
        "scored by this script for both sides. Chance is 0.100.",
        "",
        "## Results",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        f"Goal: every two-view method at >= {GOAL}x lightly's images/s, learning at least as well.",
        "",
        "## Reading",
        "",
        *reading(table, args, loads),
        "",
        "## Differences between the two sides",
        "",
        DEVIATIONS,
        "",
        "## Every measurement",
        "",
        runs.drop(columns="command").to_markdown(index=False, floatfmt=".3f"),
        "",
        "Each measurement's process (seed 1; the others differ in --seed):",
        "",
        "```",
        *runs[runs.seed == 1].command,
        "```",
        "",
    ]
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report} and {args.report.with_suffix('.csv')}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        workers = {"prepare": prepare_worker, "ours": ours_worker, "notebook": notebook_worker}
        print(json.dumps(workers[kind](args, *rest)), flush=True)
        return
    import pandas as pd

    peer_versions = ensure_peer_venv(args.out)
    print(f"peer venv: {peer_versions}", flush=True)
    if args.setup:
        return
    started, load_start = datetime.now(UTC), os.getloadavg()[0]
    command = [sys.executable, __file__, "--worker", "prepare", *_common_options(args)]
    ours_versions = _json_line(subprocess.run(command, capture_output=True, text=True), "prepare")
    ours_versions = {"python": platform.python_version(), **ours_versions}
    study = json.loads((prepared(args) / "study.json").read_text())
    knn = study["pretext"][TWO_VIEW[0]]["knn_monitor"]
    rows = []
    for repeat in range(args.repeats):
        for index, method in enumerate(args.methods):
            sides = ["ours", "peer"] if (repeat + index) % 2 == 0 else ["peer", "ours"]
            for side in sides:
                rows.append(measure(args, side, method, repeat + 1, study, knn))
                row = rows[-1]
                print(
                    f"repeat {repeat + 1}/{args.repeats} {method:12s} {side:4s} "
                    f"{row['images_per_s']:7.1f} img/s  kNN {row['knn_accuracy']:.3f}  "
                    f"epochs {row['epoch_seconds']} s",
                    flush=True,
                )
    runs = pd.DataFrame(rows)
    table = summarize(runs, args.methods)
    versions = {
        "ours": ours_versions,
        "peer": peer_versions,
        "options": {m: study["pretext"][m]["options"] for m in args.methods},
        "knn": knn,
    }
    loads = (load_start, os.getloadavg()[0])
    write_report(args, runs, table, versions, started, datetime.now(UTC), loads)
    print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
