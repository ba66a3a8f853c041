"""What every training stage shares: compiling a model with the study's optimizer and
schedule, steps per epoch, where a resumable job keeps its best weights, and closing a
pool streamed from its file."""

from __future__ import annotations

import numpy as np

from selfsup import artifacts, training
from selfsup.inputs import DEFAULT_MEMORY_LIMIT_MB


def compile_model(model, settings: dict, steps_per_epoch: int, **compile_args) -> None:
    learning_rate = training.learning_rate(settings, steps_per_epoch)
    model.compile(
        optimizer=training.make_optimizer(settings["optimizer"], learning_rate),
        jit_compile=settings.get("jit_compile", False),
        steps_per_execution=training.STEPS_PER_EXECUTION,
        **compile_args,
    )


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size))


def close_pool(images) -> None:
    # A pool streamed from its HDF5 file holds the file open until closed.
    if hasattr(images, "close"):
        images.close()


def keep_best_dir(resume_dir):
    # Best-epoch weights live with the resume state, which is removed on success.
    return None if resume_dir is None else f"{resume_dir}/keep_best"


def load_pool(data_path, part: str, indices: np.ndarray, memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB):
    """(images, positions): the images of pool `indices` and where each index lies in them.

    In memory (only the pool's images) when they fit in `memory_limit_mb`; otherwise an
    `artifacts.ImageFile` that reads each batch from disk, with positions = indices.
    """
    indices = np.asarray(indices, np.int64)
    shape = artifacts.read_labels(data_path)["image_shape"]
    unique, positions = np.unique(indices, return_inverse=True)
    if len(unique) * int(np.prod(shape)) <= memory_limit_mb * 2**20:
        return artifacts.read_images(data_path, part, unique), positions.astype(np.int64)
    return artifacts.ImageFile(data_path, part), indices
