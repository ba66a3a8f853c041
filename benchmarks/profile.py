"""Where the time of study B's rotation pretext goes, one factor at a time.

Each line is one epoch-rate measurement in a fresh process (40,000 samples of MNIST
training images 0-9,999 in four rotations, rotnet_mnist + Dense(4), Adam, batch 192,
images/s over epochs 2-3), changing one thing against the line before it; plus the
fixed costs of a workflow run: Snakemake's parse of study B and a TensorFlow import.
Writes benchmarks/results/profile.md.

    .venv/bin/python benchmarks/profile.py     # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 5  # the first traces and warms up; the rate is over the others
SHARED = ROOT.parent / "shared" / "data"
VARIANTS = {
    "train_on_batch": "the model's step alone: train_on_batch on one float batch, repeated",
    "fit_arrays": "Keras fit on float32 NumPy arrays (the notebook way)",
    "fit_arrays_deterministic": "the same with TF_DETERMINISTIC_OPS=1 (what pipeline jobs set)",
    "fit_cached_float": "fit on a tf.data pipeline of float batches already in memory",
    "input_only": "the pipeline's batches alone, iterated without a model (the input path's ceiling)",
    "pipeline_no_guard": "the pipeline's batches (uint8 gather, scale, rotate per batch), no callbacks",
    "pipeline": "the pipeline's batches and its callbacks (NaN guard, progress, rate log)",
    "pipeline_nondeterministic": "the same with deterministic ops off (the study's `deterministic: false`)",
    "pipeline_steps_per_execution": "the pipeline with its callbacks, 8 steps per execution",
    "pipeline_turned_once": "the same with the pool turned once for the run, not per batch (how jobs now train)",
    "pipeline_turned_once_bfloat16": "the same in precision mixed_bfloat16",
    "pipeline_turned_once_xla": "the same (float32) compiled with XLA (jit_compile: true)",
}


def measure(variant: str, threads: int) -> float:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if variant == "fit_arrays_deterministic" or variant.startswith(("pipeline", "input")):
        if variant != "pipeline_nondeterministic":
            os.environ["TF_DETERMINISTIC_OPS"] = "1"
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(1)
    from functools import partial

    from selfsup import training
    from selfsup.data.sources import load_dataset
    from selfsup.encoders import build_encoder
    from selfsup.inputs import batches
    from selfsup.pretext import get_method

    rotation = get_method("rotation")

    images = load_dataset("mnist", SHARED / "mnist").x_train[:10000]
    turns = np.tile(np.arange(4), len(images))
    positions = np.repeat(np.arange(len(images)), 4)
    if variant.endswith("bfloat16"):
        training.set_precision("mixed_bfloat16")
    model = rotation.build(build_encoder("rotnet_mnist", (28, 28, 1)), {})
    once = "turned_once" in variant
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        steps_per_execution=8 if variant.endswith("steps_per_execution") or once else 1,
        jit_compile=variant.endswith("xla"),
        **rotation.compile_args({}),
    )
    n, epochs = len(positions), EPOCHS
    if variant == "train_on_batch":
        x = rotation.rotate(images[:192], turns[:192]).astype("float32") / 255
        model.train_on_batch(x, turns[:192])
        start = time.perf_counter()
        steps = n // 192
        for _ in range(steps):
            model.train_on_batch(x, turns[:192])
        return steps * 192 / (time.perf_counter() - start)
    if variant.startswith("fit_arrays") or variant == "fit_cached_float":
        x = rotation.rotate(images[positions], turns).astype("float32") / 255
        if variant == "fit_cached_float":
            data = tf.data.Dataset.from_tensor_slices((x, turns)).shuffle(n, seed=1).batch(192).prefetch(2)
            args = {"x": data}
        else:
            args = {"x": x, "y": turns, "batch_size": 192, "shuffle": True}
        callbacks = []
    else:
        if once:
            turned, _ = rotation.precompute(images[positions], turns, {})
            data = batches(turned, np.arange(n), turns, batch_size=192, shuffle_seed=1)
        else:
            data = batches(
                images,
                positions,
                turns,
                batch_size=192,
                shuffle_seed=1,
                transform=partial(rotation.transform, options={}),
            )
        if variant == "input_only":
            for _ in data:  # warm-up epoch
                pass
            start = time.perf_counter()
            for _ in range(epochs - 1):
                for _ in data:
                    pass
            return n * (epochs - 1) / (time.perf_counter() - start)
        args = {"x": data}
        callbacks = []
        if variant.startswith("pipeline") and variant != "pipeline_no_guard":
            NanGuard, RateLog, ProgressLine = training.NanGuard, training.RateLog, training.ProgressLine
            callbacks = [NanGuard(), RateLog(), ProgressLine(epochs, n, open(os.devnull, "w"))]
    model.fit(epochs=1, verbose=0, callbacks=callbacks, **args)  # tracing and warm-up
    start = time.perf_counter()
    model.fit(epochs=epochs - 1, verbose=0, callbacks=callbacks, **args)
    return n * (epochs - 1) / (time.perf_counter() - start)


ARMS = {
    "per_batch": "turned per batch (the input path before)",
    "once": "turned once for the run (the input path now)",
}


def alternating(threads: int, rounds: int) -> dict:
    """One process, one model, deterministic ops, 8 steps per execution: an epoch of each
    input path in turn, `rounds` times, so that load changes hit every arm alike."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from functools import partial

    import keras
    import numpy as np

    from selfsup import training
    from selfsup.data.sources import load_dataset
    from selfsup.encoders import build_encoder
    from selfsup.inputs import batches
    from selfsup.pretext import get_method

    training.configure(threads, 1)
    rotation = get_method("rotation")
    images = load_dataset("mnist", SHARED / "mnist").x_train[:10000]
    turns = np.tile(np.arange(4), len(images))
    positions = np.repeat(np.arange(len(images)), 4)
    turned, _ = rotation.precompute(images[positions], turns, {})
    n = len(positions)
    data = {
        "per_batch": batches(
            images,
            positions,
            turns,
            batch_size=192,
            shuffle_seed=1,
            transform=partial(rotation.transform, options={}),
        ),
        "once": batches(turned, np.arange(n), turns, batch_size=192, shuffle_seed=1),
    }
    model = rotation.build(build_encoder("rotnet_mnist", (28, 28, 1)), {})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=8, **rotation.compile_args({}))
    seconds = {arm: [] for arm in data}
    for round_ in range(rounds + 1):
        for arm, dataset in data.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            if round_:  # the first round traces each input path
                seconds[arm].append(time.perf_counter() - start)
    return {arm: [n / s for s in values] for arm, values in seconds.items()}


def fixed_costs() -> dict:
    tf_import = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow, keras"], check=True, capture_output=True)
        tf_import.append(time.perf_counter() - start)
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        command = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile")]
        command += ["--directory", workdir, "--configfile", str(ROOT / "studies" / "rotnet_mnist.yaml"), "-n"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        parse = time.perf_counter() - start
    return {"tensorflow_import_s": round(min(tf_import), 2), "snakemake_dry_run_study_b_s": round(parse, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per variant (best kept)")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "profile.md")
    parser.add_argument("--rounds", type=int, default=6, help="epochs of each arm in the alternating part")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--alternating-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant, args.threads)))
        return
    if args.alternating_only:
        print(json.dumps(alternating(args.threads, args.rounds)))
        return
    rows = []
    for variant, what in VARIANTS.items():
        rates = []
        for _ in range(args.repeats):
            command = [sys.executable, __file__, "--variant", variant, "--threads", str(args.threads)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rates.append(json.loads(result.stdout.strip().splitlines()[-1]))
        rows.append((variant, what, max(rates), rates))
        print(rows[-1], flush=True)
    command = [sys.executable, __file__, "--alternating-only", "--threads", str(args.threads)]
    result = subprocess.run(
        [*command, "--rounds", str(args.rounds)], capture_output=True, text=True, check=True
    )
    arms = json.loads(result.stdout.strip().splitlines()[-1])
    costs = fixed_costs()
    lines = [
        "# Where study B's rotation pretext spends its time",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine.describe()}, {args.threads} TensorFlow "
        f"threads, by `.venv/bin/python benchmarks/profile.py {' '.join(sys.argv[1:])}`; best of "
        f"{args.repeats} fresh processes per line.",
        "",
        "| variant | what | images/s (best) | all runs |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {v} | {w} | {best:.0f} | {', '.join(f'{r:.0f}' for r in rates)} |" for v, w, best, rates in rows
    ]
    import statistics

    lines += [
        "",
        f"The input path alone, in one process: the same model (deterministic ops, 8 steps per "
        f"execution) trained an epoch on each input path in turn, {args.rounds} rounds after a "
        "tracing round, so that whatever else the machine does hits every arm alike:",
        "",
        "| input path | images/s (median) | every round |",
        "|---|---|---|",
    ]
    lines += [
        f"| {ARMS[arm]} | {statistics.median(rates):.0f} | {', '.join(f'{r:.0f}' for r in rates)} |"
        for arm, rates in arms.items()
    ]
    lines += [
        "",
        f"Fixed costs: importing TensorFlow and Keras takes {costs['tensorflow_import_s']} s in every job; "
        f"Snakemake's dry run of study B (parse, schema, study checks that build each pretext model) takes "
        f"{costs['snakemake_dry_run_study_b_s']} s.",
    ]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
