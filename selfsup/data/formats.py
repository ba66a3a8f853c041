"""The official binary layouts of CIFAR-10, CIFAR-100 and STL-10: readers and writers.

Readers return `Dataset`s of uint8 (N, H, W, C) images and int64 labels. Large image
arrays are views on read-only `np.memmap`s, so that STL-10's 2.8 GB of unlabeled images
are never whole in memory here: the consumer copies them chunk by chunk.

Writers produce the official bytes, so tests and benchmarks can build small files that
are faithful to the format and go through the same readers as the real archives.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from selfsup.data.dataset import DataError, Dataset

# Per format: the folder the official archive extracts to, and its members with their
# full-size byte counts (None: a text file whose size is not part of the layout).
CIFAR10 = {
    "folder": "cifar-10-batches-bin",
    "archive": "cifar-10-binary.tar.gz",
    "md5": "c32a1d4ab5d03f1284b67883e8d87530",
    "url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "files": {
        **{f"data_batch_{i}.bin": 30_730_000 for i in range(1, 6)},
        "test_batch.bin": 30_730_000,
        "batches.meta.txt": None,
    },
}
CIFAR100 = {
    "folder": "cifar-100-binary",
    "archive": "cifar-100-binary.tar.gz",
    "md5": "03b5dce01913d631647c71ecec9e9cb8",
    "url": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    "files": {
        "train.bin": 153_700_000,
        "test.bin": 30_740_000,
        "coarse_label_names.txt": None,
        "fine_label_names.txt": None,
    },
}
STL10 = {
    "folder": "stl10_binary",
    "archive": "stl10_binary.tar.gz",
    "md5": "91f7769df0f17e558f3565bffb0c7dfb",
    "url": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "files": {
        "train_X.bin": 138_240_000,
        "train_y.bin": 5_000,
        "test_X.bin": 221_184_000,
        "test_y.bin": 8_000,
        "unlabeled_X.bin": 2_764_800_000,
        "class_names.txt": None,
        "fold_indices.txt": None,
    },
}

CIFAR_PIXELS = 3 * 32 * 32
STL10_PIXELS = 3 * 96 * 96
STL10_FOLDS = 10
CIFAR100_LABEL_MODES = ("fine", "coarse")
# Images per write: bounds the writers' transposed copies (27 MB for STL-10).
CHUNK = 1000


# ---------------------------------------------------------------- reading


def _size(path: Path) -> int:
    if not path.is_file():
        raise DataError(f"missing {path}")
    return path.stat().st_size


def _records(path: Path, record_size: int, what: str) -> np.ndarray:
    """The file as a read-only (N, record_size) uint8 memmap, its size checked."""
    size = _size(path)
    if size % record_size:
        raise DataError(
            f"{path} has {size} bytes, not a multiple of the {record_size}-byte record of {what}; "
            f"the file is truncated or not in the official binary layout"
        )
    if size == 0:
        # mmap refuses empty files; an empty batch is legal (small CIFAR-10 writers make them).
        return np.zeros((0, record_size), dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // record_size, record_size))


def _names(path: Path) -> list[str]:
    _size(path)
    # The official files end with blank lines; a name never is blank.
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_labels(labels: np.ndarray, names: list[str], label_path: Path, names_path: Path) -> None:
    if len(labels) and int(labels.max()) >= len(names):
        raise DataError(
            f"{label_path}: label {int(labels.max())} has no class name: {names_path} lists {len(names)}"
        )


def _cifar_images(records: np.ndarray, label_bytes: int) -> np.ndarray:
    # Per record: the red plane, then green, then blue, each 32x32 row-major.
    return records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def read_cifar10(folder: str | Path) -> Dataset:
    """CIFAR-10's binary version from its extracted `cifar-10-batches-bin` folder."""
    folder = Path(folder)
    record = 1 + CIFAR_PIXELS
    what = "CIFAR-10 (1 label byte + 3072 pixel bytes)"
    batches = [_records(folder / f"data_batch_{i}.bin", record, what) for i in range(1, 6)]
    test = _records(folder / "test_batch.bin", record, what)
    names_path = folder / "batches.meta.txt"
    names = _names(names_path)
    # Five files cannot be one memmap; filling one array avoids a second full copy.
    x_train = np.empty((sum(len(b) for b in batches), 32, 32, 3), dtype=np.uint8)
    start = 0
    for batch in batches:
        x_train[start : start + len(batch)] = _cifar_images(batch, 1)
        start += len(batch)
    y_train = np.concatenate([b[:, 0] for b in batches]).astype(np.int64)
    y_test = test[:, 0].astype(np.int64)
    for i, batch in enumerate(batches, start=1):
        _check_labels(batch[:, 0], names, folder / f"data_batch_{i}.bin", names_path)
    _check_labels(y_test, names, folder / "test_batch.bin", names_path)
    return Dataset(x_train, y_train, _cifar_images(test, 1), y_test, names)


def read_cifar100(folder: str | Path, label_mode: str = "fine") -> Dataset:
    """CIFAR-100's binary version from its extracted `cifar-100-binary` folder.

    `label_mode` "fine" (100 classes) or "coarse" (20 superclasses) picks labels and names.
    """
    if label_mode not in CIFAR100_LABEL_MODES:
        raise DataError(
            f"CIFAR-100 label_mode {label_mode!r} is not one of {', '.join(CIFAR100_LABEL_MODES)}"
        )
    folder = Path(folder)
    record = 2 + CIFAR_PIXELS
    what = "CIFAR-100 (coarse and fine label bytes + 3072 pixel bytes)"
    train = _records(folder / "train.bin", record, what)
    test = _records(folder / "test.bin", record, what)
    names_path = folder / f"{label_mode}_label_names.txt"
    names = _names(names_path)
    column = 0 if label_mode == "coarse" else 1
    for path, records in ((folder / "train.bin", train), (folder / "test.bin", test)):
        _check_labels(records[:, column], names, path, names_path)
    return Dataset(
        _cifar_images(train, 2),
        train[:, column].astype(np.int64),
        _cifar_images(test, 2),
        test[:, column].astype(np.int64),
        names,
    )


def _stl10_images(path: Path) -> np.ndarray:
    records = _records(path, STL10_PIXELS, "STL-10 images (3 x 96 x 96 bytes)")
    # Channel-major, then column-major within a channel: axes are (image, channel, column, row).
    return records.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)


def _stl10_labels(path: Path, images: np.ndarray, images_path: Path, names: list[str]) -> np.ndarray:
    size = _size(path)
    if size != len(images):
        raise DataError(
            f"{path} has {size} labels (one byte each), but {images_path} has {len(images)} images"
        )
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if len(labels) and (labels.min() < 1 or labels.max() > len(names)):
        raise DataError(
            f"{path}: labels range {labels.min()}..{labels.max()}, expected 1..{len(names)} "
            f"(STL-10 labels are 1-based, one per class name)"
        )
    return labels - 1


def _stl10_folds(path: Path, n_train: int) -> list[np.ndarray]:
    _size(path)
    lines = path.read_text(encoding="utf-8").rstrip().split("\n")
    if len(lines) != STL10_FOLDS:
        raise DataError(f"{path} has {len(lines)} lines, expected {STL10_FOLDS} (one fold per line)")
    folds = []
    for number, line in enumerate(lines, start=1):
        try:
            fold = np.array(line.split(), dtype=np.int64)
        except ValueError:
            raise DataError(f"{path} line {number}: expected space-separated integers") from None
        if len(fold) and (fold.min() < 0 or fold.max() >= n_train):
            raise DataError(
                f"{path} line {number}: index {fold.min() if fold.min() < 0 else fold.max()} is out of "
                f"range, expected 0..{n_train - 1} (zero-based indices of the {n_train} training images)"
            )
        folds.append(fold)
    return folds


def read_stl10(folder: str | Path) -> Dataset:
    """STL-10's binary version from its extracted `stl10_binary` folder, unlabeled images and folds."""
    folder = Path(folder)
    names = _names(folder / "class_names.txt")
    x_train = _stl10_images(folder / "train_X.bin")
    x_test = _stl10_images(folder / "test_X.bin")
    return Dataset(
        x_train,
        _stl10_labels(folder / "train_y.bin", x_train, folder / "train_X.bin", names),
        x_test,
        _stl10_labels(folder / "test_y.bin", x_test, folder / "test_X.bin", names),
        names,
        x_unlabeled=_stl10_images(folder / "unlabeled_X.bin"),
        folds=_stl10_folds(folder / "fold_indices.txt", len(x_train)),
    )


# ---------------------------------------------------------------- writing


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
