"""Writers of the official layouts of CIFAR-10, CIFAR-100, STL-10 and SVHN (test fixtures).

They produce the official bytes, so tests and benchmarks can build small files that are
faithful to the format and go through the same readers (selfsup.data.formats) as the
real archives. Not part of the package: nothing in the pipeline writes these formats.
Tests import it as `data_writers` (tests/ is on sys.path through tests/conftest.py);
benchmarks put tests/ on sys.path first.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from selfsup.data.formats import CIFAR_PIXELS, STL10_FOLDS

# Images per write: bounds the writers' transposed copies (27 MB for STL-10).
CHUNK = 1000


def _images(x: np.ndarray, shape: tuple[int, int, int], name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != shape:
        raise ValueError(
            f"{name}: expected uint8 images shaped (N, {', '.join(map(str, shape))}), got {x.dtype} {x.shape}"
        )
    return x


def _labels(y: np.ndarray, n: int, classes: int, name: str) -> np.ndarray:
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{name}: {len(y)} labels for {n} images")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{name}: labels must be 0..{classes - 1} (one per class name)")
    return y


def _write_names(path: Path, names: Sequence[str], blank_lines: int = 0) -> None:
    path.write_text("".join(f"{name}\n" for name in names) + "\n" * blank_lines, encoding="utf-8")


def _write_cifar(path: Path, labels: list[np.ndarray], x: np.ndarray) -> None:
    with open(path, "wb") as f:
        for start in range(0, len(x), CHUNK):
            chunk = x[start : start + CHUNK]
            records = np.empty((len(chunk), len(labels) + CIFAR_PIXELS), dtype=np.uint8)
            for column, y in enumerate(labels):
                records[:, column] = y[start : start + CHUNK]
            records[:, len(labels) :] = chunk.transpose(0, 3, 1, 2).reshape(len(chunk), CIFAR_PIXELS)
            f.write(records.tobytes())


def write_cifar10(
    folder: str | Path,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str],
) -> Path:
    """Write CIFAR-10's binary files into `folder` (name it cifar-10-batches-bin), train in 5 batches."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x_train = _images(x_train, (32, 32, 3), "x_train")
    x_test = _images(x_test, (32, 32, 3), "x_test")
    y_train = _labels(y_train, len(x_train), len(class_names), "y_train")
    y_test = _labels(y_test, len(x_test), len(class_names), "y_test")
    bounds = [len(x_train) * i // 5 for i in range(6)]
    for i in range(5):
        part = slice(bounds[i], bounds[i + 1])
        _write_cifar(folder / f"data_batch_{i + 1}.bin", [y_train[part]], x_train[part])
    _write_cifar(folder / "test_batch.bin", [y_test], x_test)
    _write_names(folder / "batches.meta.txt", class_names, blank_lines=1)
    return folder


def write_cifar100(
    folder: str | Path,
    x_train: np.ndarray,
    y_fine_train: np.ndarray,
    y_coarse_train: np.ndarray,
    x_test: np.ndarray,
    y_fine_test: np.ndarray,
    y_coarse_test: np.ndarray,
    fine_names: Sequence[str],
    coarse_names: Sequence[str],
) -> Path:
    """Write CIFAR-100's binary files into `folder` (name it cifar-100-binary)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, fine, coarse in (
        ("train", x_train, y_fine_train, y_coarse_train),
        ("test", x_test, y_fine_test, y_coarse_test),
    ):
        x = _images(x, (32, 32, 3), f"x_{split}")
        coarse = _labels(coarse, len(x), len(coarse_names), f"y_coarse_{split}")
        fine = _labels(fine, len(x), len(fine_names), f"y_fine_{split}")
        _write_cifar(folder / f"{split}.bin", [coarse, fine], x)
    _write_names(folder / "coarse_label_names.txt", coarse_names)
    _write_names(folder / "fine_label_names.txt", fine_names)
    return folder


def _write_stl10_images(path: Path, chunks: Iterable[np.ndarray], name: str) -> int:
    count = 0
    with open(path, "wb") as f:
        for array in chunks:
            array = _images(array, (96, 96, 3), name)
            for start in range(0, len(array), CHUNK):
                # Only this chunk is ever transposed, so a memmap of any size can be written.
                f.write(array[start : start + CHUNK].transpose(0, 3, 2, 1).tobytes())
            count += len(array)
    return count


def write_stl10(
    folder: str | Path,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_unlabeled: np.ndarray | Iterable[np.ndarray] | None,
    folds: Sequence[Sequence[int]],
    class_names: Sequence[str],
) -> Path:
    """Write STL-10's binary files into `folder` (name it stl10_binary); labels 0-based in, 1-based out.

    `x_unlabeled`: an array (a memmap is fine), an iterable of arrays (e.g. a generator of
    chunks), or None for an empty file; it is written 1,000 images at a time.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x_train = _images(x_train, (96, 96, 3), "x_train")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = _images(x, (96, 96, 3), f"x_{split}")
        y = _labels(y, len(x), len(class_names), f"y_{split}")
        _write_stl10_images(folder / f"{split}_X.bin", [x], f"x_{split}")
        (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
    if x_unlabeled is None:
        x_unlabeled = []
    elif isinstance(x_unlabeled, np.ndarray):
        x_unlabeled = [x_unlabeled]
    _write_stl10_images(folder / "unlabeled_X.bin", x_unlabeled, "x_unlabeled")
    if len(folds) != STL10_FOLDS:
        raise ValueError(f"folds: STL-10 has {STL10_FOLDS} folds, got {len(folds)}")
    lines = []
    for fold in folds:
        fold = np.asarray(fold, dtype=np.int64)
        if len(fold) and (fold.min() < 0 or fold.max() >= len(x_train)):
            raise ValueError(f"folds: indices must be 0..{len(x_train) - 1}")
        lines.append(" ".join(map(str, fold.tolist())) + "\n")
    (folder / "fold_indices.txt").write_text("".join(lines), encoding="utf-8")
    _write_names(folder / "class_names.txt", class_names)
    return folder


def archive(folder: str | Path, tar_gz_path: str | Path) -> Path:
    """tar.gz `folder` under its own name, as the official archives hold `<folder name>/<member>`."""
    folder, tar_gz_path = Path(folder), Path(tar_gz_path)
    tar_gz_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_gz_path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return tar_gz_path


def write_svhn(path: str | Path, images: np.ndarray, digits: np.ndarray) -> Path:
    """`images` (N, 32, 32, 3) and `digits` 0..9 as SVHN's format 2 .mat file stores them:
    X shaped (32, 32, 3, N), y an (N, 1) column of labels 1..10 where 10 is the digit 0."""
    from scipy.io import savemat

    images = _images(images, (32, 32, 3), "images")
    digits = _labels(digits, len(images), 10, "digits")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
    savemat(path, {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": labels})
    return path
