"""Which TensorFlow thread setting changes a training's result, and what fixing it costs.

Each line trains, in a fresh process with the given intra-op / inter-op thread counts
(deterministic ops on, as every job), study A's kind of work on 28x28 synthetic images:
a rotation pretext (small_cnn with filters 32-64 and dense 128, one random quarter turn
per image, Adam, batch 128) and a small_cnn classifier (batch 32), both through the
pipeline's own batches and `training.fit`. It reports a hash of each model's final
weights (equal hashes: bit-identical results) and the images/s of the epochs after the
first. Writes benchmarks/results/cores.md.

    .venv/bin/python benchmarks/cores.py                          # about 8 min on 2 cores
    .venv/bin/python benchmarks/cores.py --images 8000 --repeats 2  # steadier speeds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1), (8, 1)]


def weights_hash(model) -> str:
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def worker(intra: int, inter: int, images: int, epochs: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import io
    from functools import partial

    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    tf.config.experimental.enable_op_determinism()

    from selfsup import downstream, protocols, training
    from selfsup.data.generated import make_synthetic
    from selfsup.encoders import build_encoder
    from selfsup.inputs import batches
    from selfsup.pretext import get_method

    data = make_synthetic(n_train=images, n_test=10, image_size=28, num_classes=10, seed=0)
    x, y = data.x_train, data.y_train
    encoder_options = {"filters": [32, 64], "dense": [128]}
    result = {"intra": intra, "inter": inter}

    class Rate(keras.callbacks.Callback):
        """images/s over the epochs after the first (which pays for tracing)."""

        def __init__(self, samples):
            super().__init__()
            self.samples, self.times = samples, []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

        def rate(self):
            later = self.times[1:] or self.times
            return self.samples * len(later) / sum(later)

    # Rotation pretext.
    keras.utils.set_random_seed(1)
    rotation = get_method("rotation")
    turns = np.random.default_rng(1).integers(0, 4, len(x))
    model = rotation.build(build_encoder("small_cnn", (28, 28, 1), **encoder_options), {})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **rotation.compile_args({}))
    rate = Rate(len(x))
    train = batches(
        x,
        np.arange(len(x)),
        turns,
        batch_size=128,
        shuffle_seed=1,
        transform=partial(rotation.transform, options={}),
        transform_seed=1,
    )
    training.fit(
        model, train, epochs=epochs, samples_per_epoch=len(x), extra_callbacks=[rate], stream=io.StringIO()
    )
    result["pretext_hash"] = weights_hash(model)
    result["pretext_images_per_s"] = rate.rate()

    # Downstream classifier, trained from scratch.
    keras.utils.set_random_seed(1)
    labeled = len(x) // 2
    model = downstream.build_classifier(
        build_encoder("small_cnn", (28, 28, 1), **encoder_options),
        10,
        protocols.classifier_protocol("supervised", pretrained=False),
        feature_layer=None,
        hidden=[],
        dropout=0.0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    rate = Rate(labeled)
    train = batches(x, np.arange(labeled), y[:labeled], batch_size=32, shuffle_seed=1)
    training.fit(
        model, train, epochs=epochs, samples_per_epoch=labeled, extra_callbacks=[rate], stream=io.StringIO()
    )
    result["downstream_hash"] = weights_hash(model)
    result["downstream_images_per_s"] = rate.rate()
    return result


def run(intra: int, inter: int, images: int, epochs: int) -> dict:
    command = [sys.executable, __file__, "--worker", str(intra), str(inter), "--images", str(images)]
    command += ["--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", nargs=2, type=int, metavar=("INTRA", "INTER"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--images", type=int, default=2000, help="training images (pretext; half for downstream)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 images, 2 epochs: the hashes only")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting (speed: the best)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cores.md")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.images, args.epochs)))
        return
    if args.quick:
        args.images, args.epochs, args.repeats = 1000, 2, 1
    started = time.perf_counter()
    rows = []
    for intra, inter in SETTINGS:
        runs = [run(intra, inter, args.images, args.epochs) for _ in range(args.repeats)]
        hashes = {(r["pretext_hash"], r["downstream_hash"]) for r in runs}
        best = {
            **runs[0],
            "pretext_images_per_s": max(r["pretext_images_per_s"] for r in runs),
            "downstream_images_per_s": max(r["downstream_images_per_s"] for r in runs),
            "repeatable": ("yes" if len(hashes) == 1 else "no") if len(runs) > 1 else "-",
        }
        rows.append(best)
        print(json.dumps(best), flush=True)
    write(rows, args, time.perf_counter() - started)


def write(rows: list, args, seconds: float) -> None:
    lines = [
        "# Results and TensorFlow's thread counts (`benchmarks/cores.py`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU cores (shared with other "
        f"work, so speeds are rough), {args.images} synthetic 28x28 images, {args.epochs} epochs, "
        f"best of {args.repeats} runs per setting, {seconds:.0f} s in all. Command: "
        f"`{' '.join(['.venv/bin/python benchmarks/cores.py', *sys.argv[1:]])}`.",
        "",
        "Equal hashes mean bit-identical final weights. Deterministic ops on in every line.",
        "",
        "| intra-op | inter-op | pretext weights | pretext images/s | classifier weights | classifier images/s | repeatable |",
        "|---:|---:|---|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['intra']} | {r['inter']} | `{r['pretext_hash']}` | {r['pretext_images_per_s']:.0f} | "
            f"`{r['downstream_hash']}` | {r['downstream_images_per_s']:.0f} | {r['repeatable']} |"
        )
    lines += ["", *reading({(r["intra"], r["inter"]): r for r in rows})]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def reading(rows: dict) -> list[str]:
    """What the table says about the study's `threads` (default 2) against the old way, where
    jobs used `--cores` threads (intra = inter = the job's threads, at most --cores)."""
    lines = ["## Reading", ""]
    same_intra = all(
        rows[(i, 1)]["pretext_hash"] == rows[(i, 2)]["pretext_hash"]
        and rows[(i, 1)]["downstream_hash"] == rows[(i, 2)]["downstream_hash"]
        for i in (1, 2)
    )
    intras = sorted({intra for intra, _ in rows})
    distinct = len({rows[(i, 1)]["pretext_hash"] for i in intras})
    lines.append(
        f"- The inter-op count {'changed nothing' if same_intra else 'changed results too'}; "
        f"the {len(intras)} intra-op counts {intras} gave {distinct} different pretext encoders. So a job's "
        "results follow its intra-op threads, and the study fixes them (`threads`), not `--cores`."
    )
    # Lines with the same intra-op count do the same work (same results): the best of them
    # is the speed of that count, the spread between them the noise of the machine.
    for kind in ("pretext", "downstream"):
        key = f"{kind}_images_per_s"
        speed = {i: max(r[key] for (intra, _), r in rows.items() if intra == i) for i in intras}
        spread = max(
            1 - min(r[key] for (intra, _), r in rows.items() if intra == i) / speed[i] for i in intras
        )
        lines.append(
            f"- {kind}: best {speed[1]:.0f} images/s with 1 intra-op thread, {speed[2]:.0f} with 2 "
            f"(lines doing the same work differ by up to {spread:.0%}: the noise of a shared machine). "
            "`threads: 2`, the default, is the old `--cores 2` setting (no cost), and "
            f"{speed[2] / speed[1]:.2f}x the speed of the old `--cores 1`; fixing 1 thread for every job "
            f"instead would cost {1 - speed[1] / speed[2]:.0%}."
        )
    return lines


if __name__ == "__main__":
    main()
