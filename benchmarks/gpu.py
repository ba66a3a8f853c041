"""What to measure whenever a GPU machine is at hand, on one GPU (--gpu, nvidia-smi's index).

1. Training throughput, each setting in a fresh process (images/s from the pipeline's
   progress lines, leaving out the first epoch, which traces and compiles):
   - rotation in study B's setting (MNIST training images 0-9,999 in all four rotations,
     rotnet_mnist, Adam 1e-3, batch 192) through `selfsup.pretext_stage.train_pretext`, and the
     notebook way (plain Keras fit on float32 arrays, as benchmarks/speed.py measures it);
   - SimCLR (small_cnn filters [16, 32] dense [64], batch 256, 10,000 Fashion-MNIST
     images, the head and augmentation of benchmarks/contrastive.py, Adam 1e-3) through
     `train_pretext`;
   each pipeline run in four settings: precision float32 / mixed_bfloat16 x
   jit_compile false / true.
2. Four small jobs sharing one GPU: study B with 4 seeds and few epochs, run twice through
   Snakemake with --cores 4 x the study's threads:
       SELFSUP_GPUS=0 SELFSUP_JOBS_PER_GPU=1 snakemake ... --resources gpu=1
       SELFSUP_GPUS=0 SELFSUP_JOBS_PER_GPU=4 snakemake ... --resources gpu=4
   wall times, the GPU slots the training jobs' logs name ("GPU: slot K of GPU G"), the
   summed job seconds, peak GPU memory and mean utilization (nvidia-smi every second).
3. Study A's full protocol on one GPU:
       snakemake --cores all --resources gpu=1 --configfile <study A, data_dir set>
   wall time, peak GPU memory and its accuracy table (skip with --skip-study-a).
Study A runs last: it takes longest, and the report is rewritten after every part, so a
run cut short still leaves the cheaper parts' numbers.

Writes benchmarks/results/gpu.md (+ gpu.csv): the GPU (nvidia-smi) and CPU
(benchmarks/machine.py), the commands, the tables, and a reading generated from the
numbers. Working folders go under benchmarks/out/gpu/.

Without a GPU (`nvidia-smi -L` missing, failing or listing none) it stops with exit
status 2, unless --allow-cpu: a smoke run of every part at a tiny size, with its report
under benchmarks/out/gpu_smoke/ (never benchmarks/results/), to check the script itself.

    .venv/bin/python benchmarks/gpu.py                    # all parts
    .venv/bin/python benchmarks/gpu.py --skip-study-a     # parts 1 and 2 only
    .venv/bin/python benchmarks/gpu.py --allow-cpu        # smoke run on a CPU machine

Rough duration, estimated, not yet measured: parts 1 and 2 about 10-20 min on one GPU
(mostly starting TensorFlow in 9 workers and about 40 training jobs), study A another
10-30 min depending on the GPU; the smoke run some 10-20 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import machine
import pandas as pd
import yaml
from contrastive import AUGMENTATION, HEADS
from speed import SHARED, _rate, notebook_pretext

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RESULTS = ROOT / "benchmarks" / "results"
PRECISIONS = ("float32", "mixed_bfloat16")
TASKS = ("rotation", "simclr")
# Sizes of the smoke run (--allow-cpu): enough to pass through every code path.
SMOKE = {"epochs": 2, "images": 1024, "study_a_epochs": 1}
# Ratios closer to 1 than this are called "no clear difference": every number is one run.
SAME = 0.05

# The pipeline's progress line: "epoch 3/6  loss 0.1  accuracy 0.9  0.8 s (51234 samples/s, ...)".
# Seconds are printed to 0.1 s, too coarse for GPU epochs of about a second; samples/s are
# computed from the unrounded time, so the epoch's time is taken from them.
PROGRESS = re.compile(r"  ([0-9.]+) s \(([0-9]+) samples/s")
SAMPLES = re.compile(r"^pretext \w+: (\d+) samples", re.M)
# What selfsup/devices.py prints into a training job's log.
SLOT = re.compile(r"^GPU: slot (\d+) of GPU (\S+) ", re.M)
WAITING = re.compile(r"^GPU: all \d+ slots taken", re.M)
UNCLAIMED = re.compile(r"^GPU: CUDA_VISIBLE_DEVICES=.*no slot claimed", re.M)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--allow-cpu",
        action="store_true",
        help="smoke run without a GPU: every part tiny, report under benchmarks/out/gpu_smoke/",
    )
    parser.add_argument("--skip-study-a", action="store_true", help="leave out study A (the longest part)")
    parser.add_argument("--skip-throughput", action="store_true", help="leave out the throughput part")
    parser.add_argument("--skip-sharing", action="store_true", help="leave out the shared-GPU part")
    parser.add_argument(
        "--study-a-epochs", type=int, help="study A's pretext epochs (default: the study's 10; smoke: 1)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs of each throughput run (the first is left out) and of every training job "
        f"of the shared-GPU study (default 6; smoke: {SMOKE['epochs']})",
    )
    parser.add_argument(
        "--images",
        type=int,
        help="pool images of each throughput run; rotation takes at most 10,000 (study B's pool) "
        f"(default 10,000; smoke: {SMOKE['images']})",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="TensorFlow threads per training job (the study default: 2)"
    )
    parser.add_argument("--gpu", default="0", help="nvidia-smi index of the GPU to measure (default 0)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=SHARED / "fashion-mnist",
        help="Fashion-MNIST IDX files (read with verify_checksums false)",
    )
    parser.add_argument("--mnist-dir", type=Path, default=SHARED / "mnist", help="MNIST IDX files")
    parser.add_argument(
        "--out",
        type=Path,
        help="working folder (default benchmarks/out/gpu; smoke: benchmarks/out/gpu_smoke)",
    )
    parser.add_argument(
        "--report", type=Path, help="report path (default benchmarks/results/gpu.md; smoke: <out>/gpu.md)"
    )
    # Internal: one measurement in a fresh process.
    parser.add_argument("--worker", choices=["probe", "notebook", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=TASKS, default="rotation", help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--jit-compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    smoke = args.allow_cpu
    if args.epochs is None:
        args.epochs = SMOKE["epochs"] if smoke else 6
    if args.images is None:
        args.images = SMOKE["images"] if smoke else 10000
    if args.study_a_epochs is None and smoke:
        args.study_a_epochs = SMOKE["study_a_epochs"]
    if args.out is None:
        args.out = ROOT / "benchmarks" / "out" / ("gpu_smoke" if smoke else "gpu")
    if args.report is None:
        args.report = args.out / "gpu.md" if smoke else RESULTS / "gpu.md"
    args.out, args.report = args.out.resolve(), args.report.resolve()
    return args


def refuse(message: str) -> None:
    print(f"benchmarks/gpu.py: {message}", file=sys.stderr)
    sys.exit(2)


def show(path) -> str:
    """A path as the report prints it: relative to the repository where it lies inside.
    Not resolved: .venv/bin/python is a link to the system's Python."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def show_command(command: list[str]) -> list[str]:
    return [show(part) if part.startswith(str(ROOT)) else part for part in command]


def _mb(value) -> str:
    return "?" if value is None else f"{value:.0f} MB"


# --- the device ---------------------------------------------------------------------------


def list_gpus() -> tuple[list[str], str]:
    """The GPUs `nvidia-smi -L` lists, and, where none, why."""
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return [], "`nvidia-smi` is not installed (no NVIDIA driver on this machine)"
    except subprocess.TimeoutExpired:
        return [], "`nvidia-smi -L` did not answer within 60 s"
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        return [], f"`nvidia-smi -L` failed (exit status {result.returncode}): {said[-1] if said else ''}"
    # MIG instances are listed indented under their GPU; the slots count whole GPUs.
    gpus = [line.strip() for line in result.stdout.splitlines() if line.startswith("GPU ")]
    return gpus, "" if gpus else "`nvidia-smi -L` lists no GPU"


def query_gpus() -> list[dict]:
    """Index, name, memory and driver of every GPU, from nvidia-smi."""
    fields = ["index", "name", "memory.total", "driver_version"]
    try:
        result = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in result.stdout.splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) == len(fields):
            rows.append(dict(zip(fields, values, strict=True)))
    return rows


class GpuMonitor:
    """Peak memory used and mean utilization of one GPU while a run lasts: nvidia-smi polled
    every second in a thread (a query costs a few tens of milliseconds of one core, which
    the runs measured here can spare). Reports nothing where nvidia-smi answers nothing."""

    def __init__(self, gpu: str, enabled: bool = True):
        self.gpu, self.enabled, self.samples, self.baseline = gpu, enabled, [], None

    def _sample(self) -> tuple[float | None, float | None] | None:
        if not self.enabled:
            return None
        command = ["nvidia-smi", "-i", self.gpu, "--query-gpu=memory.used,utilization.gpu"]
        try:
            result = subprocess.run(
                [*command, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10
            )
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            return None
        values = []
        for text in lines[0].split(","):
            try:
                values.append(float(text))
            except ValueError:  # "[N/A]", e.g. utilization of a MIG instance
                values.append(None)
        return tuple(values) if len(values) == 2 else None

    def _poll(self) -> None:
        while self.enabled and not self._stop.wait(1.0):
            sample = self._sample()
            if sample:
                self.samples.append(sample)

    def __enter__(self):
        self.baseline = self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=20)

    def summary(self) -> dict:
        used = [m for m, _ in self.samples if m is not None]
        busy = [u for _, u in self.samples if u is not None]
        return {
            "gpu_memory_before_mb": self.baseline[0] if self.baseline else None,
            "peak_gpu_memory_mb": max(used) if used else None,
            "mean_gpu_utilization_pct": round(sum(busy) / len(busy), 1) if busy else None,
        }


# --- workers: one measurement each, in a fresh process -----------------------------------


def probe() -> dict:
    """What TensorFlow itself sees: nvidia-smi may list a GPU that a TensorFlow without its
    CUDA libraries (no `make venv GPU=1`) silently ignores, running everything on the CPU."""
    import keras
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(
            {
                "name": details.get("device_name", device.name),
                "compute_capability": list(details.get("compute_capability") or []),
            }
        )
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "gpus": gpus,
    }


def task_study(args) -> dict:
    """The study a throughput run's settings come from, defaults to be filled in."""
    if args.task == "rotation":
        study = yaml.safe_load((ROOT / "studies" / "rotnet_mnist.yaml").read_text())
        study["dataset"]["data_dir"] = str(args.mnist_dir)
        # Study B's pool is training images 0-9,999; its labeled pool starts at 10,000.
        study["split"]["unlabeled"] = [0, min(args.images, 10000)]
        study["seeds"] = [1]
    else:
        study = {
            "study": "gpu_simclr",
            # The shared Fashion-MNIST images are not the official bytes (MD5 differs).
            "dataset": {"name": "fashion_mnist", "data_dir": str(args.data_dir), "verify_checksums": False},
            "split": {"labeled": [0, 10000], "unlabeled": [10000, 10000 + args.images], "test": [0, 1000]},
            "seeds": [1],
            "budgets": ["all"],
            "encoder": {"name": "small_cnn", "options": {"filters": [16, 32], "dense": [64]}},
            "pretext": {
                "simclr": {
                    "batch_size": 256,
                    "optimizer": {"name": "adam", "learning_rate": 0.001},
                    "options": dict(HEADS["simclr"]),
                    "augmentation": dict(AUGMENTATION),
                }
            },
            "downstream": {"protocols": ["linear"]},
        }
    study["threads"] = args.threads
    entry = study["pretext"][args.task]
    entry.update(epochs=args.epochs, precision=args.precision, jit_compile=args.jit_compile)
    return study


def pipeline_rate(args) -> dict:
    """Images/s of `selfsup.pretext_stage.train_pretext` on prepared files, as a pretext job
    trains (speed.py's pipeline_pretext, for any method and with the precise rate)."""
    import io

    from selfsup import artifacts
    from selfsup.config import load_schema
    from selfsup.pretext import get_method
    from selfsup.stages import pretext as pretext_stage
    from selfsup.stages.prepare import prepare
    from selfsup.stages.split import split_dataset
    from selfsup.study import study_from_config

    study = task_study(args)
    schema = load_schema(ROOT / "schemas" / "study.schema.yaml")
    study = study_from_config(study, schema)
    workdir = args.out / "throughput" / args.task
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data.h5"
    if not data.exists():  # the settings of one task share the prepared images
        partial = workdir / "data.partial.h5"  # renamed once whole: a crash leaves no half file
        dataset = study["dataset"]
        prepare(
            dataset["name"],
            dataset["data_dir"],
            dataset["options"],
            partial,
            {},
            verify_checksums=dataset["verify_checksums"],
        )
        os.replace(partial, data)
    split = split_dataset(data, {**study["split"], "normalization": study["dataset"]["normalization"]}, 1)
    split_path = workdir / "split.h5"
    artifacts.write_split(split_path, split, {})
    settings = study["pretext"][args.task]
    pool = workdir / "pool.h5"
    artifacts.write_pool(pool, split.unlabeled, split.unlabeled_part, {})
    method = get_method(settings["method"])
    pseudo = None
    if method.has_pseudo_labels():
        positions, labels = method.pseudo_labels(len(split.unlabeled), settings["options"], 1)
        pseudo = workdir / "pseudo.h5"
        artifacts.write_pseudo_labels(pseudo, split.unlabeled[positions], labels, {})
    log = io.StringIO()
    history = pretext_stage.train_pretext(
        data_path=data,
        split_path=split_path,
        pool_path=pool,
        pseudo_path=pseudo,
        settings=settings,
        encoder_spec=study["encoder"],
        seed=1,
        meta={},
        encoder_path=workdir / "encoder.h5",
        history_path=workdir / "history.csv",
        examples_path=workdir / "examples.h5",
        stream=log,
    )
    text = log.getvalue()
    (workdir / f"progress_{args.precision}_jit{int(args.jit_compile)}.log").write_text(text)
    samples = int(SAMPLES.search(text).group(1))
    seconds = [samples / max(int(rate), 1) for _, rate in PROGRESS.findall(text)]
    final = {
        k: round(float(v), 4) for k, v in history.iloc[-1].items() if k not in ("epoch", "learning_rate")
    }
    return {"images_per_s": _rate(seconds, samples), "epoch_seconds": seconds, "final": final}


def worker(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.worker == "probe":
        return probe()
    import tensorflow as tf

    if args.worker == "notebook":
        # The notebook way: TensorFlow's defaults (no deterministic ops, no memory growth:
        # it maps nearly all GPU memory), the same threads.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        import keras
        import numpy as np

        from selfsup.data.sources import load_dataset
        from selfsup.pretext.rotation import rotate

        keras.utils.set_random_seed(1)
        x = load_dataset("mnist", args.mnist_dir).x_train[: min(args.images, 10000)]
        turns = np.tile(np.arange(4), len(x))
        x = rotate(np.repeat(x, 4, axis=0), turns).astype("float32") / 255.0
        result = notebook_pretext(x, turns, "rotnet_mnist", keras.optimizers.Adam(1e-3), 192, args.epochs)
        result["final"] = {"accuracy": round(result.pop("final_accuracy"), 4)}
    else:
        from selfsup import training

        training.configure(args.threads, 1)  # what every pipeline job does first
        result = pipeline_rate(args)
    result["gpus_seen"] = len(tf.config.list_logical_devices("GPU"))
    return result


def worker_command(args, kind: str, task: str = "rotation", precision: str = "float32", jit=False):
    command = [sys.executable, __file__, "--worker", kind, "--task", task, "--precision", precision]
    command += ["--epochs", str(args.epochs), "--images", str(args.images), "--threads", str(args.threads)]
    command += ["--data-dir", str(args.data_dir), "--mnist-dir", str(args.mnist_dir), "--out", str(args.out)]
    return command + (["--jit-compile"] if jit else [])


def worker_env(args) -> dict:
    env = dict(os.environ)
    env.pop("SELFSUP_GPU_MEMORY_MB", None)  # memory growth, the pipeline's default
    if args.gpus:
        env["CUDA_VISIBLE_DEVICES"] = args.gpu  # the measured GPU alone, as a claimed slot gives
    return env


def run_worker(args, name: str, command: list[str]) -> dict:
    """One worker process; its JSON answer, or {"error": ...} with its log's last line, so
    that one failing setting (an op XLA cannot compile) leaves the others measured."""
    log = args.out / "workers" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"measuring {name} ...", flush=True)
    with open(log, "w") as stderr, GpuMonitor(args.gpu, bool(args.gpus)) as monitor:
        start = time.perf_counter()
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=worker_env(args)
        )
        wall = time.perf_counter() - start
    answer = {"process_s": round(wall, 1), "log": show(log), **monitor.summary()}
    lines = result.stdout.strip().splitlines()
    if result.returncode == 0 and lines:
        try:
            return {**answer, **json.loads(lines[-1])}
        except json.JSONDecodeError:
            pass
    said = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    answer["error"] = f"exit status {result.returncode}: {said[-1][:300] if said else 'no output'}"
    print(f"  {name} failed: {answer['error']} (log {show(log)})", flush=True)
    return answer


def throughput(args) -> list[dict]:
    shutil.rmtree(args.out / "throughput", ignore_errors=True)  # prepared images from this run only
    rows = []
    settings = [(task, p, jit) for task in TASKS for p in PRECISIONS for jit in (False, True)]
    jobs = [("notebook", "rotation", "float32", None)] + [("pipeline", *s) for s in settings]
    for way, task, precision, jit in jobs:
        name = f"{way}_{task}" + ("" if jit is None else f"_{precision}_jit{int(jit)}")
        command = worker_command(args, way, task, precision, bool(jit))
        answer = run_worker(args, name, command)
        row = {
            "part": "throughput",
            "task": task,
            "way": way,
            "precision": precision,
            # Keras' default, which the notebook way keeps: XLA where every layer supports
            # it and op determinism is off (as it is there).
            "jit_compile": "auto" if jit is None else jit,
            "command": shlex.join(show_command(command)),
            **answer,
        }
        if "images_per_s" in row:
            row["images_per_s"] = round(row["images_per_s"], 1)
            row["epoch_seconds"] = " ".join(f"{s:.2f}" for s in row["epoch_seconds"])
        rows.append(row)
        print(
            {k: row.get(k) for k in ("task", "way", "precision", "jit_compile", "images_per_s")}, flush=True
        )
    return rows


# --- Snakemake runs -------------------------------------------------------------------


def run_snakemake(args, workdir: Path, study: dict, cores, jobs_per_gpu: int) -> dict:
    """Run `study` afresh in `workdir` with `jobs_per_gpu` slots on the measured GPU and
    --resources gpu=<slots>; its wall time, GPU use and what the training jobs' logs say."""
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run: Snakemake would skip finished jobs
    workdir.mkdir(parents=True)
    configfile = workdir / "study.yaml"
    configfile.write_text(yaml.safe_dump(study, sort_keys=False))
    env = dict(os.environ)
    # A CUDA_VISIBLE_DEVICES inherited from this shell would make every job skip its slot
    # (devices.py leaves a scheduler's choice alone); a memory share would replace the
    # memory growth the pipeline uses by default.
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("SELFSUP_GPU_MEMORY_MB", None)
    # Set even on a machine without GPUs (smoke run): the jobs then claim the slots all the
    # same, so the slot lines are checked; CUDA_VISIBLE_DEVICES=0 there changes nothing.
    # A lock folder of this run's own, so that the slot numbers are this run's alone.
    gpu_env = {
        "SELFSUP_GPUS": args.gpu,
        "SELFSUP_JOBS_PER_GPU": str(jobs_per_gpu),
        "SELFSUP_GPU_LOCK_DIR": str(workdir / ".gpu-slots"),
    }
    env.update(gpu_env)
    command = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(configfile), "--cores", str(cores), "--resources", f"gpu={jobs_per_gpu}"]
    shown = [f"{k}={show(v) if k.endswith('DIR') else v}" for k, v in gpu_env.items()]
    shown += show_command(command)
    print("running:", " ".join(shown), flush=True)
    log = workdir / "snakemake.log"
    with open(log, "w") as out, GpuMonitor(args.gpu, bool(args.gpus)) as monitor:
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
    row = {
        "wall_s": round(seconds, 1),
        "command": shlex.join(shown),
        "snakemake_log": show(log),
        **monitor.summary(),
        **job_logs(workdir, study["study"]),
    }
    if result.returncode:
        row["error"] = f"snakemake exit status {result.returncode}; see {show(log)}"
        print(f"  failed: {row['error']}", flush=True)
    return row


def job_logs(workdir: Path, study: str) -> dict:
    """From the training jobs' logs, the GPU slots they claimed; from Snakemake's benchmark
    files (training rules only have them), their summed and mean wall seconds."""
    slots, waits, unclaimed, jobs = Counter(), 0, 0, 0
    for log in sorted((workdir / "logs").rglob("*.log")):
        text = log.read_text(errors="replace")
        claimed = SLOT.findall(text)
        jobs += bool(claimed)
        slots.update((gpu, int(slot)) for slot, gpu in claimed)
        waits += len(WAITING.findall(text))
        unclaimed += len(UNCLAIMED.findall(text))
    seconds = []
    for tsv in (workdir / "results" / study / "benchmarks").rglob("*.tsv"):
        seconds.append(float(pd.read_csv(tsv, sep="\t")["s"].iloc[0]))
    # Jobs try slot 0 first, so a job that got slot k found slots 0..k-1 held: k + 1 jobs
    # were on that GPU at that moment.
    most = max((slot + 1 for _, slot in slots), default=0)
    return {
        "training_jobs": len(seconds),
        "jobs_with_slot": jobs,
        "slots_used": ", ".join(f"GPU {g} slot {s}: {n}" for (g, s), n in sorted(slots.items())) or "none",
        "most_jobs_on_gpu_at_once": most,
        "slot_waits": waits,
        "jobs_without_slot": unclaimed,
        "job_s_sum": round(sum(seconds), 1),
        "job_s_mean": round(sum(seconds) / len(seconds), 1) if seconds else None,
    }


def sharing_study(args) -> dict:
    """Study B with 4 seeds and few epochs: four pretext jobs at once, then twelve short
    classifier jobs, each small enough that one job leaves most of the GPU idle."""
    study = yaml.safe_load((ROOT / "studies" / "rotnet_mnist.yaml").read_text())
    study.update(study="gpu_sharing", seeds=[1, 2, 3, 4], threads=args.threads)
    study["dataset"]["data_dir"] = str(args.mnist_dir.resolve())
    study["pretext"]["rotation"]["epochs"] = args.epochs
    study["downstream"]["epochs"] = args.epochs
    # The three trained classifiers of the reference; the pixel baselines train nothing.
    study["downstream"]["protocols"] = ["frozen", "supervised", "random"]
    if args.allow_cpu:
        study["split"].update(unlabeled=[0, 512], labeled=[10000, 10200], test=[300, 400])
    return study


def sharing(args) -> list[dict]:
    study = sharing_study(args)
    rows = []
    for per_gpu in (1, 4):
        workdir = args.out / f"sharing_{per_gpu}_per_gpu"
        # The same cores in both runs, enough for four jobs of the study's threads: only the
        # number of GPU slots differs.
        row = run_snakemake(args, workdir, study, 4 * args.threads, per_gpu)
        rows.append({"part": "sharing", "jobs_per_gpu": per_gpu, **row})
        print({k: rows[-1].get(k) for k in ("jobs_per_gpu", "wall_s", "slots_used", "error")}, flush=True)
    return rows


def study_a(args) -> dict:
    study = yaml.safe_load((ROOT / "studies" / "rotnet_fashion_mnist.yaml").read_text())
    # The shared Fashion-MNIST images are not the official bytes (MD5 differs).
    study["dataset"].update(data_dir=str(args.data_dir.resolve()), verify_checksums=False)
    study["threads"] = args.threads
    if args.study_a_epochs:
        study["pretext"]["rotation"]["epochs"] = args.study_a_epochs
    if args.allow_cpu:
        study["split"].update(labeled=[0, 512], unlabeled=[10000, 11024], test=[0, 512])
        study["downstream"]["epochs"] = 1
    workdir = args.out / "study_a"
    row = run_snakemake(args, workdir, study, "all", 1)
    table = workdir / "results" / study["study"] / "tables" / "accuracy.md"
    return {
        "part": "study_a",
        "pretext_epochs": study["pretext"]["rotation"]["epochs"],
        "accuracy_table": show(table),
        "accuracy_markdown": table.read_text().strip() if table.exists() else None,
        **row,
    }


# --- the report -------------------------------------------------------------------------


def _label(row) -> str:
    if row["way"] == "notebook":
        return "the notebook way"
    return f"{row['precision']}{' with XLA' if row['jit_compile'] is True else ''}"


def _ratio(value, base) -> str:
    ratio = value / base
    verdict = "no clear difference" if abs(ratio - 1) < SAME else ("faster" if ratio > 1 else "slower")
    return f"{ratio:.2f}x ({verdict})"


def reading(args, device, throughput_rows, sharing_rows, study_a_row) -> list[str]:
    """Sentences made from the numbers alone; every number is one run."""
    lines = []
    if args.allow_cpu:
        lines.append(
            "- This is a smoke run (--allow-cpu): tiny sizes, and no GPU unless one was listed; "
            "the numbers check the script, not the hardware."
        )
    for gpu in device.get("tf", {}).get("gpus", []):
        capability = gpu.get("compute_capability") or []
        if capability and capability[0] < 8:
            lines.append(
                f"- {gpu['name']} has compute capability {'.'.join(map(str, capability))}, below 8.0 "
                "(Ampere): without bfloat16 tensor cores, mixed_bfloat16 has little to gain there."
            )
    for row in throughput_rows:
        if "images_per_s" in row and args.gpus and not row.get("gpus_seen"):
            lines.append(f"- {row['task']}, {_label(row)}: TensorFlow saw no GPU in that process.")
    for task in TASKS:
        rows = [r for r in throughput_rows if r["task"] == task]
        done = [r for r in rows if "images_per_s" in r and r["way"] == "pipeline"]
        for row in rows:
            if "error" in row:
                lines.append(f"- {task}, {_label(row)} failed: {row['error']}")
        base = next((r for r in done if r["precision"] == "float32" and r["jit_compile"] is False), None)
        if not done:
            continue
        best = max(done, key=lambda r: r["images_per_s"])
        text = f"- {task}: the pipeline's fastest setting was {_label(best)}, {best['images_per_s']:.0f} images/s"
        if base is None:
            lines.append(text + " (float32 without XLA gave no number to compare with).")
            continue
        if best is not base:
            text += f", {_ratio(best['images_per_s'], base['images_per_s'])} against float32 without XLA"
        others = [r for r in done if r is not base and r is not best]
        if others:
            text += "; " + "; ".join(
                f"{_label(r)} {_ratio(r['images_per_s'], base['images_per_s'])}" for r in others
            )
        lines.append(text + ".")
        notebook = next((r for r in rows if r["way"] == "notebook" and "images_per_s" in r), None)
        if notebook:
            lines.append(
                f"- {task}: the notebook way (Keras' defaults: jit_compile 'auto', XLA where every layer allows it) reached "
                f"{notebook['images_per_s']:.0f} images/s; the pipeline in float32 without XLA "
                f"{_ratio(base['images_per_s'], notebook['images_per_s'])}, its fastest setting "
                f"{_ratio(best['images_per_s'], notebook['images_per_s'])} against it."
            )
    one = next((r for r in sharing_rows if r["jobs_per_gpu"] == 1), None)
    four = next((r for r in sharing_rows if r["jobs_per_gpu"] == 4), None)
    for row in sharing_rows:
        if "error" in row:
            lines.append(f"- Shared GPU, {row['jobs_per_gpu']} job(s) per GPU: {row['error']}.")
    if one and four and "error" not in one and "error" not in four:
        lines.append(
            f"- Four jobs per GPU ran the small study in {four['wall_s']:.0f} s against {one['wall_s']:.0f} s "
            f"with one: sharing was {_ratio(one['wall_s'], four['wall_s'])} in wall time (one-slot wall "
            "time / four-slot wall time). A training job took "
            f"{four['job_s_mean']} s on average when sharing against {one['job_s_mean']} s alone "
            f"(summed: {four['job_s_sum']:.0f} s against {one['job_s_sum']:.0f} s)."
        )
        lines.append(
            f"- Slots: with 4 per GPU the jobs' logs name {four['slots_used']}, so up to "
            f"{four['most_jobs_on_gpu_at_once']} training jobs were on the GPU at once; with 1 per GPU "
            f"{one['slots_used']} (at most {one['most_jobs_on_gpu_at_once']} at once)."
        )
        if four["peak_gpu_memory_mb"] is not None and one["peak_gpu_memory_mb"] is not None:
            lines.append(
                f"- Peak GPU memory used: {_mb(four['peak_gpu_memory_mb'])} sharing against "
                f"{_mb(one['peak_gpu_memory_mb'])} alone (before the runs: "
                f"{_mb(four['gpu_memory_before_mb'])}); mean utilization "
                f"{four['mean_gpu_utilization_pct']} % against {one['mean_gpu_utilization_pct']} %."
            )
        waits = four["slot_waits"] + one["slot_waits"]
        missing = four["jobs_without_slot"] + one["jobs_without_slot"]
        if waits or missing:
            lines.append(
                f"- {waits} slot waits and {missing} jobs without a slot: with --resources equal to "
                "the slots, neither should happen."
            )
    if study_a_row:
        if "error" in study_a_row:
            lines.append(f"- Study A: {study_a_row['error']}.")
        else:
            lines.append(
                f"- Study A's protocol ({study_a_row['pretext_epochs']} pretext epochs, "
                f"{study_a_row['training_jobs']} training jobs) took {study_a_row['wall_s'] / 60:.1f} min "
                f"through Snakemake, of which the training jobs {study_a_row['job_s_sum'] / 60:.1f} min."
            )
    return lines or ["- No part finished with numbers."]


def write_report(args, device, throughput_rows, sharing_rows, study_a_row) -> None:
    rows = [*throughput_rows, *sharing_rows, *([study_a_row] if study_a_row else [])]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "accuracy_markdown"} for r in rows])
    table.to_csv(args.report.with_suffix(".csv"), index=False)
    tf = device.get("tf", {})
    gpus = "; ".join(
        f"{g['name']}, {g['memory.total']}, driver {g['driver_version']}" for g in device["measured"]
    )
    lines = [
        "# Training on a GPU",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        f"`{shlex.join(['.venv/bin/python', 'benchmarks/gpu.py', *sys.argv[1:]])}`.",
        "",
        f"- GPU (nvidia-smi index {args.gpu}): {gpus or 'none: ' + device['why']}",
        f"- CPU: {machine.describe()}",
        f"- TensorFlow {tf.get('tensorflow', '?')} (CUDA {tf.get('cuda')}, cuDNN {tf.get('cudnn')}), "
        f"Keras {tf.get('keras', '?')}; GPUs TensorFlow sees: "
        f"{', '.join(g['name'] for g in tf.get('gpus', [])) or 'none'}",
        f"- {args.threads} TensorFlow threads per training job; every number is one run.",
        "",
    ]
    if throughput_rows:
        columns = ["task", "way", "precision", "jit_compile", "images_per_s", "epoch_seconds", "final"]
        columns += ["peak_gpu_memory_mb", "error"]
        shown = pd.DataFrame(throughput_rows).reindex(columns=columns)
        shown["final"] = shown["final"].map(
            lambda f: ", ".join(f"{k} {v}" for k, v in f.items()) if isinstance(f, dict) else f
        )
        lines += [
            "## Training throughput",
            "",
            f"Rotation: study B's setting on MNIST training images 0-{min(args.images, 10000) - 1:,} in all "
            "four rotations (each rotated copy counts as one image), rotnet_mnist, Adam 1e-3, batch 192. "
            f"SimCLR: {args.images:,} Fashion-MNIST training images from 10,000, small_cnn [16, 32] / [64], "
            f"batch 256, head {HEADS['simclr']}, augmentation {AUGMENTATION}, Adam 1e-3. {args.epochs} "
            "epochs each; images/s over the epochs after the first (which traces and compiles), from the "
            "pipeline's progress lines. `pipeline`: `selfsup.pretext_stage.train_pretext` in a fresh process "
            "after `training.configure` (deterministic ops, memory growth), as a pretext job runs; "
            "`notebook`: Keras fit on float32 arrays with TensorFlow's defaults (jit_compile 'auto', which "
            "is XLA here; nearly all GPU memory mapped, so its peak memory says nothing). Peak memory: "
            "nvidia-smi's memory.used on the GPU, polled every second.",
            "",
            shown.to_markdown(index=False),
            "",
            "Commands (one process each):",
            "",
            "```",
            *[r["command"] for r in throughput_rows],
            "```",
            "",
        ]
    if sharing_rows:
        columns = ["jobs_per_gpu", "wall_s", "training_jobs", "slots_used", "most_jobs_on_gpu_at_once"]
        columns += ["job_s_sum", "job_s_mean", "peak_gpu_memory_mb", "mean_gpu_utilization_pct"]
        columns += ["slot_waits", "jobs_without_slot", "error"]
        lines += [
            "## Four small jobs sharing one GPU",
            "",
            f"Study B with seeds 1-4, {args.epochs} epochs per training job, through Snakemake twice, "
            f"`--cores {4 * args.threads}` both times: one slot on the GPU, then four. slots_used: the "
            "'GPU: slot K of GPU G' lines of the training jobs' logs, with their counts; "
            "most_jobs_on_gpu_at_once: the highest slot + 1 (jobs try slot 0 first); job_s: Snakemake's "
            "benchmark files of the training jobs.",
            "",
            pd.DataFrame(sharing_rows).reindex(columns=columns).to_markdown(index=False),
            "",
            "```",
            *[r["command"] for r in sharing_rows],
            "```",
            "",
        ]
    if study_a_row:
        lines += [
            "## Study A's protocol on one GPU",
            "",
            f"`studies/rotnet_fashion_mnist.yaml` with data_dir set ({study_a_row['pretext_epochs']} pretext "
            f"epochs), wall time **{study_a_row['wall_s'] / 60:.1f} min**, peak GPU memory "
            f"{_mb(study_a_row['peak_gpu_memory_mb'])}, mean utilization "
            f"{study_a_row['mean_gpu_utilization_pct']} %.",
            "",
            "```",
            study_a_row["command"],
            "```",
            "",
            f"Accuracy table ({study_a_row['accuracy_table']}):",
            "",
            study_a_row["accuracy_markdown"] or f"(none: {study_a_row.get('error', 'not written')})",
            "",
        ]
    lines += ["## Reading", "", *reading(args, device, throughput_rows, sharing_rows, study_a_row), ""]
    args.report.write_text("\n".join(lines))
    print(f"wrote {show(args.report)}", flush=True)


# --- main -------------------------------------------------------------------------------


def check_machine(args) -> dict:
    """Refuse (exit 2) what would give no GPU numbers, or would put a smoke run's numbers
    among the results; the device as the report describes it."""
    listed, why = list_gpus()
    args.gpus = listed
    if args.allow_cpu:
        if args.report.is_relative_to(RESULTS):
            refuse(f"--allow-cpu writes a smoke report, never to {show(RESULTS)}/; pass another --report")
    elif not listed:
        refuse(
            f"no GPU visible: {why}. This script measures GPU training; run it where nvidia-smi lists "
            "a GPU, or pass --allow-cpu for a tiny smoke run that reports under benchmarks/out/."
        )
    for folder in (args.data_dir, args.mnist_dir):
        if not folder.is_dir():
            refuse(f"no dataset folder {folder}: pass --data-dir (Fashion-MNIST) and --mnist-dir (MNIST)")
    queried = query_gpus()
    measured = [g for g in queried if g["index"] == args.gpu]
    if listed and not measured:
        indices = ", ".join(g["index"] for g in queried) or "none"
        refuse(f"--gpu {args.gpu}: nvidia-smi has no GPU of that index (indices: {indices})")
    return {"listed": listed, "why": why, "measured": measured}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    device = check_machine(args)
    args.out.mkdir(parents=True, exist_ok=True)
    answer = run_worker(args, "probe", worker_command(args, "probe"))
    if "error" in answer:
        refuse(f"TensorFlow failed to start: {answer['error']}")
    device["tf"] = answer
    if args.gpus and not args.allow_cpu and not answer["gpus"]:
        refuse(
            f"nvidia-smi lists {args.gpus[0]}, but TensorFlow {answer['tensorflow']} sees no GPU "
            f"(built with CUDA {answer['cuda']}): install its CUDA libraries with `make venv GPU=1`"
        )
    throughput_rows, sharing_rows, study_a_row = [], [], None
    # Cheapest first, and the report rewritten after each part: a run cut short keeps the
    # parts it finished.
    if not args.skip_throughput:
        throughput_rows = throughput(args)
        write_report(args, device, throughput_rows, sharing_rows, study_a_row)
    if not args.skip_sharing:
        sharing_rows = sharing(args)
        write_report(args, device, throughput_rows, sharing_rows, study_a_row)
    if not args.skip_study_a:
        study_a_row = study_a(args)
    write_report(args, device, throughput_rows, sharing_rows, study_a_row)


if __name__ == "__main__":
    main()
