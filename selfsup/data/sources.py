"""Image datasets: official IDX downloads, local IDX folders, bundled digits, synthetic.

Every source returns a `Dataset` of uint8 images shaped (N, H, W, C) and int64 labels.
Scaling to [0, 1] happens once, at training time (`Dataset` stays compact on disk).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# Published MD5 checksums of the official gzip files.
IDX_DATASETS = {
    "mnist": {
        "origin": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "class_names": [str(d) for d in range(10)],
    },
    "fashion_mnist": {
        "origin": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "class_names": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],  # fmt: skip
    },
}

SOURCES = ("mnist", "fashion_mnist", "digits", "synthetic")


class DataError(ValueError):
    """A dataset file is missing or not what it claims to be."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into an array, checking its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataError(f"{path}: header says {dims} = {expected} bytes, file has {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise DataError(
        f"missing {folder / (stem + '.gz')} (or uncompressed {stem}); put the official "
        f"IDX files there, or set dataset.data_dir to the folder that holds them, or leave "
        f"data_dir empty to download"
    )


def read_idx_folder(folder: str | Path, name: str) -> Dataset:
    """Load the four official IDX files of `name` (mnist, fashion_mnist) from `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"dataset.data_dir {folder} is not a folder")
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} do not match labels {y.shape}")
    return Dataset(
        x_train=arrays["x_train"][..., None],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"][..., None],
        y_test=arrays["y_test"].astype(np.int64),
        class_names=list(IDX_DATASETS[name]["class_names"]),
    )


def download_idx(name: str, dest: str | Path, origin: str | None = None) -> list[Path]:
    """Download the official gzip files of `name` into `dest`, verifying published MD5s.

    Uses Keras' downloader, which skips files already present with the right checksum.
    `origin` overrides the mirror (any URL prefix, file:// included).
    """
    import keras

    spec = IDX_DATASETS[name]
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, md5 in spec["md5"].items():
        url = (origin or spec["origin"]) + filename
        try:
            got = Path(
                keras.utils.get_file(
                    fname=filename,
                    origin=url,
                    file_hash=md5,
                    hash_algorithm="md5",
                    cache_dir=str(dest),
                    cache_subdir=".",
                )
            )
        except ValueError as error:  # Keras' words for a checksum mismatch
            (dest / filename).unlink(missing_ok=True)  # never leave a bad file that looks downloaded
            raise DataError(f"{url} fails its published MD5 check ({md5}): {error}") from None
        paths.append(got)
    return paths


def load_digits(test_size: int = 297) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), last images as test."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; scale to the 0..255 range every other source uses.
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    cut = len(images) - test_size
    return Dataset(images[:cut], labels[:cut], images[cut:], labels[cut:], [str(d) for d in range(10)])


def make_synthetic(
    n_train: int = 512, n_test: int = 128, image_size: int = 16, num_classes: int = 4, seed: int = 0
) -> Dataset:
    """Small images with an upright orientation, so a rotation model can learn it.

    Every image has a bright ground line at the bottom and a class-specific glyph above
    it, jittered in position and with pixel noise. Classes differ by glyph; rotations
    differ by where the ground line lies.
    """
    rng = np.random.default_rng(seed)
    size = image_size
    glyph_size = max(3, size // 2)
    glyphs = rng.random((num_classes, glyph_size, glyph_size)) > 0.55

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, num_classes, n)
        images = rng.normal(20, 10, (n, size, size))
        images[:, size - 2 :, 1 : size - 1] += 200
        for i, label in enumerate(labels):
            top = rng.integers(1, size - 2 - glyph_size + 1)
            left = rng.integers(0, size - glyph_size + 1)
            images[i, top : top + glyph_size, left : left + glyph_size] += 180 * glyphs[label]
        return np.clip(images, 0, 255).astype(np.uint8)[..., None], labels.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset(x_train, y_train, x_test, y_test, [f"glyph{c}" for c in range(num_classes)])


def load_dataset(name: str, folder: str | Path | None = None, **options) -> Dataset:
    """Load `name` from `folder` (IDX sources) or generate it (digits, synthetic)."""
    if name in IDX_DATASETS:
        if folder is None:
            raise DataError(f"{name} needs a folder of IDX files (download or dataset.data_dir)")
        return read_idx_folder(folder, name)
    if name == "digits":
        return load_digits(**options)
    if name == "synthetic":
        return make_synthetic(**options)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}")
