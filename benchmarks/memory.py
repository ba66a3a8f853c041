"""Peak resident memory of a real pretext job against the size of its uint8 pool.

An STL-10-sized pool (100,000 unlabeled 96x96x3 images, written in STL-10's official
binary layout and prepared by the pipeline's own `prepare`) and study B's pool
(MNIST training images 0-9,999 in all four rotations), each trained with the rotation
pretext on the ResNet-20 encoder through the pipeline's input path
(`selfsup.stages.common.load_pool` + `selfsup.inputs.batches`, the job's code) for a fixed number of
batches. Each job runs in a fresh process; its resident memory is sampled every few
batches and its peak read from /proc (VmHWM). The STL-10 pool runs twice: streamed from
the HDF5 file (the default above `memory_limit_mb`) and loaded into memory. A job with
a 256-image pool of each image size gives TensorFlow's own footprint, the floor under
the figures of that size.
Writes benchmarks/results/memory.md and .csv.

    .venv/bin/python benchmarks/memory.py            # about 20 min on 2 cores, 6 GB of disk
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--unlabeled", type=int, default=100000, help="STL-10-sized pool (images)")
    parser.add_argument("--steps", type=int, default=60, help="training batches per job")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "memory")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "memory.md")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)  # data part indices memory_limit
    return parser.parse_args(argv)


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak (VmHWM) of this process, in MB.

    The peak comes from /proc, not getrusage: a child's ru_maxrss starts from its
    parent's peak at fork, which here is the process that prepared the 2.8 GB files.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(args) -> dict:
    """One pretext job: rotation on ResNet-20 over the pool, `args.steps` batches."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from selfsup import training

    training.configure(args.threads, 1)
    import keras
    import numpy as np

    from selfsup import artifacts
    from selfsup.encoders import build_encoder
    from selfsup.inputs import batches
    from selfsup.pretext import get_method
    from selfsup.stages.common import load_pool

    rotation = get_method("rotation")

    data, part, indices_file, limit = args.worker
    pool = np.load(indices_file)
    # A small pool is cycled, so every job trains all its batches (the floor jobs too).
    indices = np.resize(pool, max(len(pool), args.steps * args.batch_size))
    turns = np.random.default_rng(1).integers(0, 4, len(indices))
    start_rss = rss_mb()
    images, positions = load_pool(data, part, indices, float(limit))
    shape = artifacts.read_labels(data)["image_shape"]
    pool_mb = len(np.unique(indices)) * int(np.prod(shape)) / 2**20
    encoder = build_encoder("resnet", shape, n=3, pool_size=8 if shape[0] >= 32 else 7)
    model = rotation.build(encoder, {"rotations": "random"})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **rotation.compile_args({}))
    data_batches = batches(
        images,
        positions,
        turns,
        batch_size=args.batch_size,
        shuffle_seed=1,
        transform=lambda x, y, seed: rotation.transform(x, y, seed, {}),
    )
    samples = []

    class Sample(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch % 10 == 0:
                samples.append(round(rss_mb(), 1))

    begin = time.perf_counter()
    model.fit(data_batches, epochs=1, steps_per_epoch=args.steps, callbacks=[Sample()], verbose=0)
    seconds = time.perf_counter() - begin
    peak = rss_mb("VmHWM")
    return {
        "pool_images": int(len(np.unique(indices))),
        "pool_uint8_mb": round(pool_mb, 1),
        "mode": "in memory" if isinstance(images, np.ndarray) else "streamed",
        "peak_rss_mb": round(peak, 1),
        "rss_before_pool_mb": round(start_rss, 1),
        "rss_samples_mb": samples,
        "images_per_s": round(args.steps * args.batch_size / seconds, 1),
    }


def run_job(args, data: Path, part: str, indices, limit_mb: float, name: str) -> dict:
    import numpy as np

    indices_file = args.out / f"{name}.npy"
    np.save(indices_file, np.asarray(indices, np.int64))
    command = [sys.executable, __file__, "--out", str(args.out), "--steps", str(args.steps)]
    command += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    command += ["--worker", str(data), part, str(indices_file), str(limit_mb)]
    print(f"job {name} ...", flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    row = {"job": name, **json.loads(result.stdout.strip().splitlines()[-1])}
    row["peak_over_pool"] = round(row["peak_rss_mb"] / row["pool_uint8_mb"], 3)
    print(row, flush=True)
    return row


def stl10_sized(args) -> Path:
    """STL-10's official layout with `args.unlabeled` generated unlabeled images, prepared."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))  # the official-layout writers are test fixtures
    from data_writers import write_stl10

    from selfsup.data import formats, sources
    from selfsup.stages.prepare import prepare

    data = args.out / "stl10.h5"
    if data.exists():
        return data
    rng = np.random.default_rng(0)
    folder = args.out / "files" / formats.STL10["folder"]

    def chunks():
        for start in range(0, args.unlabeled, 1000):
            yield rng.integers(0, 256, (min(1000, args.unlabeled - start), 96, 96, 3), dtype=np.uint8)

    y_train, y_test = np.arange(500) % 10, np.arange(100) % 10
    print("writing STL-10-format files ...", flush=True)
    write_stl10(
        folder,
        rng.integers(0, 256, (500, 96, 96, 3), dtype=np.uint8),
        y_train,
        rng.integers(0, 256, (100, 96, 96, 3), dtype=np.uint8),
        y_test,
        chunks(),
        [np.arange(i * 50, i * 50 + 50) for i in range(10)],
        sources.STL10_CLASSES,
    )
    print("preparing them ...", flush=True)
    prepare("stl10", folder.parent, {}, data, {"dataset": "stl10"})
    return data


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    import numpy as np

    from selfsup.stages.prepare import prepare

    args.out.mkdir(parents=True, exist_ok=True)
    stl = stl10_sized(args)
    mnist = args.out / "mnist.h5"
    if not mnist.exists():
        prepare("mnist", SHARED / "mnist", {}, mnist, {"dataset": "mnist"})
    study_b_pool = np.repeat(np.arange(10000), 4)  # every image in all four rotations
    rows = [
        run_job(args, stl, "unlabeled", np.arange(256), 2048, "floor: 256 STL-10-sized images"),
        run_job(args, stl, "unlabeled", np.arange(args.unlabeled), 2048, "STL-10-sized pool, streamed"),
        run_job(args, stl, "unlabeled", np.arange(args.unlabeled), 10**6, "STL-10-sized pool, in memory"),
        run_job(args, mnist, "train", np.arange(256), 2048, "floor: 256 MNIST images"),
        run_job(args, mnist, "train", study_b_pool, 2048, "study B pool"),
    ]
    write_report(args, rows)


def write_report(args, rows):
    import pandas as pd

    table = pd.DataFrame(rows)
    # Each pool against the floor of its own image size (activations scale with it).
    floors = [rows[0]["peak_rss_mb"]] * 3 + [rows[3]["peak_rss_mb"]] * 2
    table["peak_above_floor_mb"] = (table.peak_rss_mb - floors).round(1)
    table["above_floor_over_pool"] = (table.peak_above_floor_mb / table.pool_uint8_mb).round(3)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.report.with_suffix(".csv"), index=False)
    shown = table.drop(columns=["rss_samples_mb"])
    lines = [
        "# Peak memory of a pretext job against its uint8 pool",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} cores, by "
        f"`.venv/bin/python benchmarks/memory.py {' '.join(sys.argv[1:])}`: rotation pretext on ResNet-20, "
        f"batch {args.batch_size}, {args.steps} batches per job, each job a fresh process.",
        "peak_over_pool = peak RSS / uint8 pool size (the goal: <= 1.5). A floor job (256 images) is "
        "TensorFlow, the model, its optimizer and activations alone; above_floor_over_pool is what the "
        "pool adds.",
        "",
        shown.to_markdown(index=False),
        "",
        "Resident memory every 10 batches (MB), to show the steady state:",
        "",
    ]
    lines += [f"- {row['job']}: {row['rss_samples_mb']}" for row in rows]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
