"""Before and after the fidelity fixes, measured side by side in one process.

Three parts, each a small, seeded experiment on the real Fashion-MNIST (and MNIST as the
foreign source), through the library's own classes:

1. The outlier filter (one-class network): the reference notebook starts the radius r at
   1.0; the pipeline used to start it at the scores' initial (1 - nu) quantile. Trained on
   Fashion-MNIST training images, it scores a pool of Fashion-MNIST images with 10% MNIST
   digits mixed in: AUROC (a genuine image scores above a foreign one), the share of the
   pool removed, and the foreign and genuine shares removed.
2. BYOL's target network: the reference runs it in training mode (BatchNorm on the batch's
   statistics) and moves only its parameters by EMA; the pipeline used to freeze it
   (`trainable = False`, so Keras' BatchNorm used its moving statistics, themselves an EMA
   of the online network's). kNN accuracy of the encoder per epoch, both ways, plus the
   mean pairwise cosine of the target's projections at initialisation.
3. SimSiam's optimizer: study E's old SGD (lr 0.05, decoupled weight decay 5e-4, the
   predictor on the schedule) against SimSiam's CIFAR recipe (lr 0.03, weight decay 5e-4
   added to the gradient as PyTorch's SGD, the predictor at a fixed rate). kNN per epoch.

Accuracy figures only: no timing is reported, so the load of the machine does not enter.

    .venv/bin/python benchmarks/fidelity.py [--parts filter byol simsiam] [--fashion-dir ...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fashion-dir", type=Path, default=SHARED / "fashion-mnist")
    parser.add_argument("--mnist-dir", type=Path, default=SHARED / "mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--filter-train", type=int, default=2000, help="labeled images the filter trains on")
    parser.add_argument("--filter-pool", type=int, default=1000, help="pool images, 10%% of them MNIST")
    parser.add_argument("--two-view-images", type=int, default=10000)
    parser.add_argument("--two-view-epochs", type=int, default=8)
    parser.add_argument("--two-view-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--parts", nargs="+", default=["filter", "byol", "simsiam"])
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "fidelity.md")
    return parser.parse_args(argv)


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    wanted = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))]
    return (
        f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"flags {' '.join(wanted) or 'none of avx/amx/fma/sse4'}; Python {platform.python_version()}"
    )


# --- part 1: the filter ------------------------------------------------------------------


def filter_part(args):
    import keras
    import numpy as np

    from selfsup import training
    from selfsup.data.sources import load_dataset
    from selfsup.encoders import build_encoder
    from selfsup.outliers import one_class_network as ocn
    from selfsup.stages.outliers import rank_auroc

    fashion = load_dataset("fashion_mnist", args.fashion_dir, verify_checksums=False)
    mnist = load_dataset("mnist", args.mnist_dir, verify_checksums=False)
    train = fashion.x_train[: args.filter_train].astype("float32") / 255
    n_foreign = args.filter_pool // 10
    genuine = fashion.x_train[args.filter_train : args.filter_train + args.filter_pool - n_foreign]
    pool = np.concatenate([genuine, mnist.x_train[:n_foreign]]).astype("float32") / 255
    foreign = np.arange(len(pool)) >= len(genuine)

    import tensorflow as tf

    def batches(x, shuffle_seed=None):
        data = tf.data.Dataset.from_tensor_slices(x)
        if shuffle_seed is not None:
            data = data.shuffle(len(x), seed=shuffle_seed)
        return data.batch(128)

    class QuantileStart(ocn.RadiusUpdate):
        """The pipeline's old start: r at the initial quantile of the training scores."""

        def on_train_begin(self, logs=None):
            self.model.radius.assign(self.current_radius())
            self.model.settled_epochs.assign(0)

    rows = []
    for start in ("reference: r = 1.0", "old: initial quantile"):
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            encoder = build_encoder("small_cnn", train.shape[1:], filters=[16, 32], dense=[64])
            original = ocn.RadiusUpdate
            if start.startswith("old"):
                ocn.RadiusUpdate = QuantileStart
            try:
                result = ocn.OneClassNetwork().fit_score(
                    encoder,
                    batches(train, shuffle_seed=seed),
                    batches(train),
                    batches(pool),
                    {},
                    epochs=30,
                    optimizer=training.make_optimizer({"name": "adam", "learning_rate": 0.001}),
                    samples_per_epoch=len(train),
                    stream=io.StringIO(),
                )
            finally:
                ocn.RadiusUpdate = original
            removed = result.scores < result.threshold
            rows.append(
                {
                    "start": start,
                    "seed": seed,
                    "epochs": len(result.history),
                    "AUROC": rank_auroc(result.scores[~foreign], result.scores[foreign]),
                    "removed share": removed.mean(),
                    "foreign removed share": removed[foreign].mean(),
                    "genuine removed share": removed[~foreign].mean(),
                    "score std x 1e4": 1e4 * float(np.std(result.scores)),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


# --- parts 2 and 3: BYOL's target, SimSiam's optimizer ------------------------------------


def two_view_curves(args, method_name: str, variants: dict) -> list[dict]:
    """kNN accuracy per epoch of `method_name` trained on the same images and views under
    each variant: {label: (optimizer settings, a function applied to the built model or
    None)}."""
    import keras
    import numpy as np
    import tensorflow as tf

    from selfsup import augment, training
    from selfsup.data.sources import load_dataset
    from selfsup.encoders import build_encoder
    from selfsup.monitor import encoder_features, knn_accuracy
    from selfsup.pretext import get_method

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from contrastive import AUGMENTATION, HEADS

    fashion = load_dataset("fashion_mnist", args.fashion_dir, verify_checksums=False)
    monitor_x = fashion.x_train[:1000].astype("float32") / 255
    monitor_y = fashion.y_train[:1000]
    images = fashion.x_train[10000 : 10000 + args.two_view_images].astype("float32") / 255
    method = get_method(method_name)
    options = {**method.OPTIONS, **HEADS[method_name]}
    steps = len(images) // 256

    def mean_pairwise_cosine(z):
        z = np.asarray(z, np.float64)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        n = len(z)
        return float(((z @ z.T).sum() - n) / (n * (n - 1)))

    rows = []
    for variant, (optimizer, tweak) in variants.items():
        for seed in args.two_view_seeds:
            keras.utils.set_random_seed(seed)
            encoder = build_encoder("small_cnn", images.shape[1:], filters=[16, 32], dense=[64])
            augmentation = augment.build(AUGMENTATION, seed=seed)
            model = method.build(
                encoder, options, augmentation=augmentation, total_steps=steps * args.two_view_epochs
            )
            if tweak is not None:
                tweak(model)
            settings = {"optimizer": optimizer, "epochs": args.two_view_epochs, "lr_schedule": SCHEDULE}
            rate = training.learning_rate(settings, steps)
            model.compile(optimizer=training.make_optimizer(optimizer, learning_rate=rate))
            row = {"variant": variant, "seed": seed}
            if hasattr(model, "target"):
                row["target cosine at init"] = mean_pairwise_cosine(
                    model.target(tf.constant(images[:256]), True)
                )
            data = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed)
            data = data.batch(256, drop_remainder=True).prefetch(2)
            curve = [knn_accuracy(encoder_features(encoder, monitor_x), monitor_y, 200, 0.1)]
            for _ in range(args.two_view_epochs):
                history = model.fit(data, epochs=1, verbose=0)
                curve.append(knn_accuracy(encoder_features(encoder, monitor_x), monitor_y, 200, 0.1))
            row |= {f"epoch {e}": value for e, value in enumerate(curve)}
            row["embedding_std, last epoch"] = float(history.history["embedding_std"][-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# The contrastive benchmark's schedule: one warmup epoch, then cosine decay to 0.
SCHEDULE = {"name": "warmup_cosine", "warmup_epochs": 1, "min_factor": 0.0}


def byol_variants() -> dict:
    import tensorflow as tf

    from selfsup.pretext.byol import target_momentum

    def freeze_target(model):
        """The old behaviour: a frozen target (BatchNorm on moving statistics) whose every
        weight, moving statistics included, follows the online network by EMA."""
        model.target_encoder.trainable = False
        model.target_projector.trainable = False

        def after_step():
            tau = target_momentum(model.optimizer.iterations, model.total_steps, model.base_momentum)
            for online, target in model.online_target_pairs():
                target.assign(tau * target + (1.0 - tau) * tf.cast(online, target.dtype))

        model.after_step = after_step

    adamw = {"name": "adamw", "learning_rate": 0.002, "weight_decay": 1e-4}
    return {"reference: training-mode target": (adamw, None), "old: frozen target": (adamw, freeze_target)}


def simsiam_variants() -> dict:
    sgd = {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
    return {
        "reference: lr 0.03, coupled decay, fixed predictor rate": (
            {**sgd, "learning_rate": 0.03, "weight_decay_mode": "coupled", "fixed_lr_for": ["predictor"]},
            None,
        ),
        "old study E: lr 0.05, decoupled decay": ({**sgd, "learning_rate": 0.05}, None),
    }


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from selfsup import training

    training.configure(2, 1)
    import pandas as pd

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections = [
        "# Benchmark: fidelity fixes, before and after\n",
        f"Run {started} with `.venv/bin/python benchmarks/fidelity.py {' '.join(sys.argv[1:])}".rstrip()
        + "`"
        + f" on {machine()}. Accuracy only; no timings.\n",
    ]
    if "filter" in args.parts:
        rows = pd.DataFrame(filter_part(args))
        summary = rows.groupby("start", sort=False).mean(numeric_only=True).drop(columns="seed")
        sections += [
            "## 1. The outlier filter's starting radius\n",
            f"small_cnn [16, 32]/[64] + Dense(1, sigmoid), the reference recipe (nu 0.9, l2 0.01, "
            f"tolerance 0.025, patience 3, at most 30 epochs, Adam 1e-3, batch 128), trained on "
            f"Fashion-MNIST training images 0-{args.filter_train - 1}; pool: the next "
            f"{args.filter_pool - args.filter_pool // 10} Fashion-MNIST images and the first "
            f"{args.filter_pool // 10} MNIST training digits (10%). Seeds {args.seeds}.\n",
            rows.to_markdown(index=False, floatfmt=".3f") + "\n",
            "Mean over seeds:\n",
            summary.to_markdown(floatfmt=".3f") + "\n",
        ]
    setting = (
        f"small_cnn [16, 32]/[64], the contrastive benchmark's heads, simclr_grayscale views, "
        f"batch 256, one warmup epoch then cosine decay, on Fashion-MNIST training images "
        f"10,000-{10000 + args.two_view_images - 1}, {args.two_view_epochs} epochs, seeds "
        f"{args.two_view_seeds}. kNN accuracy (k 200, T 0.1, leave-one-out) of the encoder on "
        "training images 0-999 after each epoch (epoch 0: at initialisation)."
    )
    if "byol" in args.parts:
        table = pd.DataFrame(two_view_curves(args, "byol", byol_variants()))
        sections += [
            "## 2. BYOL's target network\n",
            f"BYOL (base momentum 0.99, AdamW 2e-3, weight decay 1e-4), {setting} 'target cosine "
            "at init': mean pairwise cosine of the target's projections of 256 images in "
            "training mode before any step (a near-constant target reads near 1).\n",
            table.to_markdown(index=False, floatfmt=".3f") + "\n",
        ]
    if "simsiam" in args.parts:
        table = pd.DataFrame(two_view_curves(args, "simsiam", simsiam_variants()))
        sections += [
            "## 3. SimSiam's optimizer\n",
            f"SimSiam with SGD (momentum 0.9, weight decay 5e-4) as the study E preset had it "
            f"and as SimSiam's CIFAR recipe has it, {setting}\n",
            table.to_markdown(index=False, floatfmt=".3f") + "\n",
        ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(sections))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
