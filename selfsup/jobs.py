"""Small helpers every workflow script uses."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

# Where a training job's TensorBoard event files go: start_training_job sets
# it to the job's log path with the suffix .tensorboard; each `fit` of the job (selfsup.training) is one run
# in it (fit1, fit2, ...: a self-training job fits several models). Unset: none written.
TENSORBOARD_VARIABLE = "SELFSUP_TENSORBOARD_DIR"


def log_to(path: str | os.PathLike) -> None:
    """Send this process's stdout and stderr, native libraries' included, to `path`."""
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
    for fd in (1, 2):
        os.dup2(stream.fileno(), fd)
    sys.stdout = sys.stderr = stream


def start_training_job(log_path: str | os.PathLike) -> None:
    """What a training job does first: its output to its log, its TensorBoard event files
    next to it (`<log>.tensorboard/`, selfsup.training), a GPU slot (selfsup.devices;
    nothing on a machine without GPUs), then TensorFlow, which reads the slot's GPU."""
    from selfsup.devices import claim_gpu_slot

    log_to(log_path)
    os.environ[TENSORBOARD_VARIABLE] = str(Path(log_path).with_suffix(".tensorboard"))
    claim_gpu_slot()
    import_tensorflow()


def import_tensorflow() -> None:
    """Import TensorFlow and Keras without scikit-learn. Keras imports scikit-learn at
    start for its scikit-learn wrappers (keras.wrappers), which no stage uses: about 1 s
    of every training job's start (benchmarks/README.md). Keras runs without it (its
    wrappers then say it is missing), and a stage that uses scikit-learn (the probes)
    imports it afterwards as usual: only this import is kept from finding it."""
    if "keras" in sys.modules or "sklearn" in sys.modules:
        return  # too late to keep it out, or nothing to keep out
    sys.modules["sklearn"] = None  # Python's way to make `import sklearn` fail
    try:
        import keras  # noqa: F401 - imports TensorFlow too
    finally:
        del sys.modules["sklearn"]


def arguments(snakemake) -> dict:
    """What a rule hands its script, as plain values: the keyword arguments of the stage's
    `job` (inputs, outputs, params and wildcards by name). The one place that reads
    Snakemake's object, so the stages never see it."""
    return {
        "inputs": dict(snakemake.input.items()),
        "outputs": dict(snakemake.output.items()),
        "params": dict(snakemake.params.items()),
        "wildcards": dict(snakemake.wildcards.items()),
    }


def input_files(inputs: dict) -> list[str]:
    """Every file of a job's `inputs`, lists of files (earlier rounds) flattened."""
    files = []
    for value in inputs.values():
        files += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    return files


def digest(value, length: int = 12, sort_keys: bool = True) -> str:
    """A short stable hash of a JSON-serializable value (the library's one value hash:
    resume folders, prepared-file names, the study cache, verified-file markers).
    `sort_keys` False where the order of keys is part of the value."""
    text = json.dumps(value, sort_keys=sort_keys, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def write_json(path: str | os.PathLike, value) -> None:
    """Write JSON through a temporary file, so a killed job leaves no half file."""
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(partial, path)


def resume_dir(output_dir: str | os.PathLike, settings, inputs) -> Path:
    """The folder where a training job keeps its state after each epoch.

    Its name is a hash of everything the run depends on: `settings` (the job's params,
    code fingerprint included) and its input files, known by size and modification
    time, which change whenever Snakemake rewrites them. So a killed job resumes only
    when nothing upstream changed; after a re-run pretext model or a new split it starts
    afresh. Folders under other names hold runs that can never resume and are removed.
    """
    output_dir = Path(output_dir)
    files = []
    for path in sorted(str(p) for p in inputs):
        stat = os.stat(path)
        files.append([path, stat.st_size, stat.st_mtime_ns])
    folder = output_dir / f".resume-{digest([settings, files])}"
    for stale in output_dir.glob(".resume-*"):
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    return folder
