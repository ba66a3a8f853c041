"""GPU slots for local runs: each training job on one GPU, N GPUs sharing the jobs.

By their defaults, Snakemake and TensorFlow would fail on a GPU workstation: locally,
`resources: gpu=1` limits nothing unless `--resources gpu=N` is given; every process
sees every GPU and puts its work on GPU 0; and TensorFlow maps nearly all the memory of
every GPU it sees, so a second job on the same GPU fails to allocate. So every training
job, before it imports TensorFlow, claims a slot (`claim_gpu_slot`): slot k of GPU g is
an exclusive lock on a file, held until the process ends (the kernel drops it when the
process dies, however it dies), and the job sees GPU g alone (`CUDA_VISIBLE_DEVICES`).
`SELFSUP_JOBS_PER_GPU` slots per GPU let several small jobs share one; then
`training.configure` makes TensorFlow take GPU memory as it needs it (memory growth), or
a fixed share (`SELFSUP_GPU_MEMORY_MB`).

    # 2 GPUs, 2 jobs on each: at most 4 training jobs at a time
    SELFSUP_JOBS_PER_GPU=2 snakemake --cores all --resources gpu=4

Where a scheduler already chose the GPUs (SLURM sets `CUDA_VISIBLE_DEVICES` for a job
that asked for `--gpus`), or the user did, nothing is claimed. On a machine without
GPUs (no `nvidia-smi`) neither. Nothing here imports TensorFlow: a slot must be chosen
before TensorFlow first looks at the devices.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Which GPUs the jobs share ("0,1"); default: every GPU nvidia-smi lists.
GPUS_VARIABLE = "SELFSUP_GPUS"
JOBS_PER_GPU_VARIABLE = "SELFSUP_JOBS_PER_GPU"
# A job's share of its GPU's memory in MB; default: memory growth (as much as it needs).
MEMORY_VARIABLE = "SELFSUP_GPU_MEMORY_MB"
# Where the slot locks live; one folder per user and machine, so that runs in different
# working directories share the same GPUs fairly.
LOCK_DIR_VARIABLE = "SELFSUP_GPU_LOCK_DIR"
WAIT_MESSAGE_EVERY_S = 60

# The claimed slot's open lock file: the lock lives as long as this process.
_held = None


def visible_gpus(environ=os.environ) -> list[str]:
    """The GPUs this machine's jobs share: `SELFSUP_GPUS`, else nvidia-smi's indices."""
    listed = environ.get(GPUS_VARIABLE)
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def jobs_per_gpu(environ=os.environ) -> int:
    text = environ.get(JOBS_PER_GPU_VARIABLE, "1")
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{JOBS_PER_GPU_VARIABLE} must be a whole number of at least 1, got {text!r}")
    return count


def gpu_memory_mb(environ=os.environ) -> int | None:
    text = environ.get(MEMORY_VARIABLE)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MEMORY_VARIABLE} must be a whole number of megabytes, got {text!r}")
    return value


def slot_order(gpus: list[str], per_gpu: int) -> list[tuple[str, int]]:
    """(gpu, slot) pairs in the order jobs take them: one job on every GPU before a second
    job on any, so that N GPUs share the jobs evenly."""
    return [(gpu, slot) for slot in range(per_gpu) for gpu in gpus]


def lock_dir(environ=os.environ) -> Path:
    default = Path(tempfile.gettempdir()) / f"selfsup-gpu-slots-{os.getuid()}"
    return Path(environ.get(LOCK_DIR_VARIABLE) or default)


def claim_gpu_slot(environ=os.environ, stream=None, poll_s: float = 1.0) -> str | None:
    """Claim a free GPU slot and make it the only GPU this process sees.

    Returns the GPU's index, or None where nothing was claimed (no GPUs; GPUs already
    chosen by the scheduler or the user). Waits while every slot is taken (a run started
    without `--resources gpu=N`), saying so every minute. Call it before importing
    TensorFlow.
    """
    global _held
    stream = stream or sys.stderr
    if _held is not None:
        return environ.get("CUDA_VISIBLE_DEVICES")
    if "CUDA_VISIBLE_DEVICES" in environ:
        print(
            f"GPU: CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r} was set for this job; "
            "no slot claimed",
            file=stream,
            flush=True,
        )
        return None
    gpus = visible_gpus(environ)
    if not gpus:
        return None
    per_gpu = jobs_per_gpu(environ)
    gpu_memory_mb(environ)  # a malformed value fails here, before any training
    folder = lock_dir(environ)
    folder.mkdir(parents=True, exist_ok=True)
    waited, last_message = 0.0, -WAIT_MESSAGE_EVERY_S
    while True:
        for gpu, slot in slot_order(gpus, per_gpu):
            handle = open(folder / f"gpu{gpu}-slot{slot}.lock", "a")  # noqa: SIM115 - held for the job's life
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held = handle
            # nvidia-smi numbers GPUs by PCI bus; CUDA, by default, fastest first. Make
            # CUDA count as nvidia-smi does, so that GPU g is the GPU nvidia-smi calls g.
            environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            environ["CUDA_VISIBLE_DEVICES"] = gpu
            print(
                f"GPU: slot {slot} of GPU {gpu} ({len(gpus)} GPUs x {per_gpu} jobs each, locks in {folder})",
                file=stream,
                flush=True,
            )
            return gpu
        if waited - last_message >= WAIT_MESSAGE_EVERY_S:
            print(
                f"GPU: all {len(gpus) * per_gpu} slots taken ({len(gpus)} GPUs x {per_gpu}); waiting. "
                f"Start snakemake with --resources gpu={len(gpus) * per_gpu} to run no more "
                "training jobs than slots.",
                file=stream,
                flush=True,
            )
            last_message = waited
        time.sleep(poll_s)
        waited += poll_s


def configure_tensorflow_gpus(environ=os.environ, tf=None) -> list[str]:
    """Memory growth on every GPU TensorFlow sees, or a fixed share of `SELFSUP_GPU_MEMORY_MB`,
    so that jobs sharing a GPU do not each map all of its memory. Must run before
    TensorFlow initializes its GPUs (before the first operation). Returns what it did."""
    if tf is None:
        import tensorflow as tf
    limit = gpu_memory_mb(environ)
    done = []
    for gpu in tf.config.list_physical_devices("GPU"):
        if limit is None:
            tf.config.experimental.set_memory_growth(gpu, True)
            done.append(f"{gpu.name}: memory growth")
        else:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
            )
            done.append(f"{gpu.name}: {limit} MB")
    return done
