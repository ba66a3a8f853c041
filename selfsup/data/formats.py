"""The official binary layouts of CIFAR-10, CIFAR-100 and STL-10: readers.

Readers return `Dataset`s of uint8 (N, H, W, C) images and int64 labels. Large image
arrays are views on read-only `np.memmap`s, so that STL-10's 2.8 GB of unlabeled images
are never whole in memory here: the consumer copies them chunk by chunk.

The writers of the same bytes, with which tests and benchmarks build small files that
go through these readers, are test fixtures: tests/data_writers.py.
"""

from __future__ import annotations

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
