"""What a source declares (`Source`, `Layout`) and what a prepared dataset is, in memory.

`Source` and `Layout` live here, below the registry (selfsup.data.sources), so that a
dataset's own module can build its `Source` and the registry list it in one line
without an import cycle.

Images stay uint8 (N, H, W, C) everywhere but inside a training batch: scaling to
[0, 1] and normalization happen per batch (selfsup.inputs), never on a whole pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from selfsup.data.normalization import Normalization


class DataError(ValueError):
    """A dataset file is missing or not what it claims to be."""


@dataclass
class Dataset:
    """uint8 images shaped (N, H, W, C), int64 labels and class names.

    `x_unlabeled`: the images a source ships without labels (STL-10), else None.
    `folds`: predefined lists of training indices (STL-10's ten folds), else None.
    Image arrays may be read-only views on files (np.memmap), so that a large
    source is written to HDF5 in chunks without ever being whole in memory.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)
    x_unlabeled: np.ndarray | None = None
    folds: list[np.ndarray] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Layout:
    """What a source holds, for given options: sizes, image shape, classes."""

    n_train: int
    n_test: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    n_unlabeled: int = 0  # the source's own unlabeled images (STL-10), 0 if none
    n_folds: int = 0  # predefined folds of training indices (STL-10), 0 if none
    fold_size: int = 0  # training images in each fold


@dataclass(frozen=True)
class Source:
    """One dataset: its files, layout, options and loader.

    `load(folder, work_dir, verify, option, files, contents, **options)` reads the dataset
    from `folder` (the download folder or the study setting `option`), checking its files
    against the entry's `files` and `contents` checksums when `verify`; archives are
    extracted into `work_dir`.
    `files` maps each official file to its published MD5; empty when nothing is
    downloaded. `contents` maps the decompressed name of each gzip-compressed file (the
    IDX files) to the MD5 of its decompressed bytes, which a folder may hold raw or
    compressed by another tool. `origin` is the URL prefix the files are downloaded
    from. `options` holds the defaults of the source's options, `choices` the allowed
    values of its string options.

    A new dataset is one module that builds its `Source` (see selfsup/data/svhn.py) and
    one line in selfsup.data.sources.SOURCES; tests/test_sources.py holds the contract
    every entry must meet.
    """

    description: str
    layout: Callable[[dict], Layout]
    load: Callable[..., Dataset]
    options: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    origin: str = ""
    # Whether a horizontally mirrored image keeps its class (photographs, clothes); not
    # for digits and glyphs (a mirrored 2 is no 2). Weak views flip only where it does.
    mirror_keeps_class: bool = False
    contents: dict = field(default_factory=dict)

    @property
    def needs_files(self) -> bool:
        return bool(self.files)


@dataclass
class Foreign:
    """Training images of another source appended after a dataset's own (a contaminated
    dataset), labeled -1: `source_index` says which training images of `source` they are,
    drawn with `seed` so that they make up `fraction` of the training images."""

    images: np.ndarray
    source_index: np.ndarray
    source: str
    fraction: float
    seed: int = 0


# The label of an image without a class: a foreign training image in a prepared file, an
# unlabeled pool image the joint model trains on (its class loss is masked out).
NO_LABEL = -1


def foreign_count(fraction: float, n_genuine: int, *, up: bool = False) -> int:
    """Foreign images that make up `fraction` of a set beside `n_genuine` genuine ones:
    fraction / (1 - fraction) * n_genuine, rounded to nearest (or up, with `up`)."""
    if not 0 < fraction < 1:
        raise ValueError(f"dataset.contamination.fraction must lie in (0, 1), got {fraction}")
    exact = fraction / (1 - fraction) * n_genuine
    # A hair of tolerance so that 0.1 / 0.9 * 9 = 1.0000000000000002 stays 1.
    return math.ceil(exact - 1e-9) if up else round(exact)


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1] (for small arrays; batches scale in tf.data)."""
    return np.asarray(images, dtype=np.float32) / 255.0


@dataclass
class Split:
    """Indices into a dataset: `labeled`, `unlabeled` and `test` pools.

    `budget_order` is the labeled pool reordered so that every prefix is a
    class-stratified subset: the budget of n labels is `budget_order[:n]`.
    `monitor` is a labeled slice held out from every budget, on which pretext runs
    report their kNN accuracy (selfsup.monitor). `foreign`: the entries of `unlabeled`
    that are foreign images of a contaminated dataset (indices into the training
    images, sorted), empty when none.
    """

    labeled: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray
    budget_order: np.ndarray
    unlabeled_part: str = "train"  # which images `unlabeled` indexes: train | unlabeled
    normalization: Normalization = field(default_factory=Normalization)
    monitor: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    foreign: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def budget(self, n: int | str) -> np.ndarray:
        if n == "all":
            return self.budget_order
        n = int(n)
        if n > len(self.budget_order):
            raise ValueError(f"budget {n} exceeds the labeled pool of {len(self.budget_order)}")
        return self.budget_order[:n]
