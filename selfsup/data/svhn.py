"""SVHN (the Street View House Numbers), cropped digits: format 2 of
http://ufldl.stanford.edu/housenumbers/, two MATLAB files.

Each file holds `X`, uint8 images stored as (32, 32, 3, N) (height, width, channel,
image), and `y`, labels 1..10 where 10 means the digit 0. File names, MD5s and the label
convention are those of torchvision's torchvision/datasets/svhn.py (split_list; "label 10
== 0 so modulo operator required"), which also reads the files with scipy.io.loadmat.

Not offered: `extra_32x32.mat` (531,131 more labeled digits, MD5
a93ce644f1a588dc4d68dda5feec44a7). A source's files are downloaded whatever its options,
so an option would fetch 1.3 GB for every SVHN study; loadmat cannot memory-map it (1.6
GB of pixels in memory at once); and its images are labeled, which Layout.n_unlabeled
(the source's own unlabeled images) does not say.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.data import archives
from selfsup.data.dataset import DataError, Dataset, Layout, Source

CLASS_NAMES = tuple(str(d) for d in range(10))
FILES = {  # split -> (official file, its MD5 as torchvision lists it)
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
}
ORIGIN = "http://ufldl.stanford.edu/housenumbers/"


def read_mat(path: str | Path, option: str = "dataset.data_dir") -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file as uint8 images (N, 32, 32, 3) and int64 labels 0..9.

    The images are a view on the array loadmat read (no second copy); label 10 becomes 0.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"missing {path}; put the official SVHN file there (from {ORIGIN}), or set {option} "
            f"to the folder that holds {' and '.join(name for name, _ in FILES.values())}"
        )
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except (MatReadError, ValueError, OSError, NotImplementedError) as error:
        raise DataError(
            f"{path} cannot be read as a MATLAB file ({error}); it is truncated, corrupt or not "
            f"the official one: replace it (from {ORIGIN}) or fix {option}"
        ) from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} lacks the variables X and y of SVHN's format 2 (cropped digits)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(
            f"{path}: X is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N) images (SVHN's format 2)"
        )
    if len(y) != x.shape[3]:
        raise DataError(f"{path}: {len(y)} labels for {x.shape[3]} images")
    labels = y.astype(np.int64)
    if len(labels) and (np.any(labels != y) or labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels must be the integers 1..10 (10 is the digit 0)")
    return x.transpose(3, 0, 1, 2), labels % 10


def load(folder, work_dir=None, verify=True, option="dataset.data_dir", files=None, contents=None) -> Dataset:
    """SVHN from `folder`, each file checked against its MD5 (when `verify`) before it is parsed."""
    if folder is None:
        raise DataError(f"SVHN needs its files (download or {option})")
    folder = Path(folder)
    files = files or dict(FILES.values())
    missing = [str(folder / name) for name, _ in FILES.values() if not (folder / name).is_file()]
    if missing:  # before any checksum: hashing 180 MB to then fail on a missing file helps no one
        raise DataError(
            f"missing {' and '.join(missing)}; put the official SVHN files there (from {ORIGIN}), "
            f"or set {option} to the folder that holds them, or leave it empty to download"
        )
    if verify:  # every file, before any is parsed
        for name, _ in FILES.values():
            archives.check_md5(folder / name, files[name], option)
    (x_train, y_train), (x_test, y_test) = (read_mat(folder / FILES[s][0], option) for s in ("train", "test"))
    return Dataset(x_train, y_train, x_test, y_test, list(CLASS_NAMES))


SOURCE = Source(
    description="SVHN cropped digits (format 2), 32x32x3, 73,257 train / 26,032 test",
    layout=lambda options: Layout(73257, 26032, (32, 32, 3), CLASS_NAMES),
    load=load,
    files=dict(FILES.values()),
    origin=ORIGIN,
)
