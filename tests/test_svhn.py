"""selfsup.data.svhn: SVHN's cropped digits (format 2) from tiny .mat files written here."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from data_writers import write_svhn
from scipy.io import savemat

from selfsup.data import svhn
from selfsup.data.dataset import DataError
from selfsup.data.sources import SOURCES, load_dataset


def write_svhn_folder(folder, n_train=7, n_test=4, seed=0):
    """Both files, with an asymmetric mark (a red pixel at row 1, column 2) on image 0."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 200, (n, 32, 32, 3), dtype=np.uint8)
        x[0, 1, 2] = (255, 0, 0)
        y = np.arange(n) % 10
        write_svhn(folder / svhn.FILES[split][0], x, y)
        arrays[split] = (x, y)
    return arrays


def with_checksums_of(folder):
    """The svhn entry with the MD5s of the files in `folder` standing in for the official ones."""
    files = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in SOURCES["svhn"].files}
    return dataclasses.replace(SOURCES["svhn"], files=files)


def test_read_mat_layout_and_labels(tmp_path):
    arrays = write_svhn_folder(tmp_path, n_train=12)
    x, y = svhn.read_mat(tmp_path / "train_32x32.mat")
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, arrays["train"][0])
    assert tuple(x[0, 1, 2]) == (255, 0, 0)  # not transposed, not channel-swapped
    # Label 10 is the digit 0.
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])


def test_load_dataset_with_checksums_of_the_files(tmp_path, monkeypatch):
    arrays = write_svhn_folder(tmp_path)
    monkeypatch.setitem(SOURCES, "svhn", with_checksums_of(tmp_path))
    data = load_dataset("svhn", tmp_path)
    assert data.x_train.shape == (7, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(data.x_test, arrays["test"][0])
    np.testing.assert_array_equal(data.y_test, [0, 1, 2, 3])
    assert data.class_names == [str(d) for d in range(10)]


def test_files_that_are_not_the_official_ones_are_refused_before_parsing(tmp_path, monkeypatch):
    write_svhn_folder(tmp_path)
    path = tmp_path / "train_32x32.mat"
    with pytest.raises(DataError) as error:
        load_dataset("svhn", tmp_path)
    message = str(error.value)
    assert str(path) in message and "e26dedcc434d2e4c54c9b2d4a06d8373" in message
    assert "corrupt or not the official one" in message
    assert "leave dataset.data_dir empty" in message and "dataset.verify_checksums: false" in message
    # Without the check, the same files are read.
    assert load_dataset("svhn", tmp_path, verify_checksums=False).x_train.shape == (7, 32, 32, 3)


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "unverified"])
def test_a_missing_file_names_it_and_data_dir(tmp_path, verify):
    write_svhn_folder(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError) as error:
        load_dataset("svhn", tmp_path, verify_checksums=verify)
    message = str(error.value)
    assert f"missing {tmp_path / 'test_32x32.mat'}" in message and "dataset.data_dir" in message


def test_a_truncated_file_read_unverified_names_it(tmp_path):
    write_svhn_folder(tmp_path)
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match="cannot be read as a MATLAB file") as error:
        load_dataset("svhn", tmp_path, verify_checksums=False)
    assert str(path) in str(error.value) and "dataset.data_dir" in str(error.value)


@pytest.mark.parametrize(
    "variables, message",
    [
        (
            {"X": np.zeros((32, 32, 1, 2), np.uint8), "y": np.ones((2, 1), np.uint8)},
            r"expected uint8 \(32, 32, 3, N\)",
        ),
        ({"X": np.zeros((32, 32, 3, 2), np.float64), "y": np.ones((2, 1), np.uint8)}, "X is float64"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1), np.uint8)}, "3 labels for 2 images"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [1]], np.uint8)}, "integers 1..10"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [1]], np.uint8)}, "integers 1..10"),
        ({"images": np.zeros((32, 32, 3, 2), np.uint8)}, "lacks the variables X and y"),
    ],
    ids=["gray", "float", "count", "label0", "label11", "no_x"],
)
def test_files_of_another_layout_are_refused_by_name(tmp_path, variables, message):
    path = tmp_path / "train_32x32.mat"
    savemat(path, variables)
    with pytest.raises(DataError, match=message) as error:
        svhn.read_mat(path)
    assert str(path) in str(error.value)


def test_svhn_digits_as_foreign_images_of_a_32x32_colour_dataset(tmp_path, monkeypatch):
    """SVHN shares CIFAR-10's image shape, so it can contaminate it; its messages then
    name the contamination's own data_dir."""
    from selfsup.data.dataset import Dataset
    from selfsup.data.sources import foreign_images
    from selfsup.study import check_dataset

    check_dataset({"name": "cifar10", "contamination": {"source": "svhn", "fraction": 0.1}})
    write_svhn_folder(tmp_path / "svhn", n_train=9)
    monkeypatch.setitem(SOURCES, "svhn", with_checksums_of(tmp_path / "svhn"))
    genuine = Dataset(
        np.zeros((18, 32, 32, 3), np.uint8), np.zeros(18, np.int64), np.zeros((2, 32, 32, 3), np.uint8),
        np.zeros(2, np.int64), ["a", "b"],
    )  # fmt: skip
    contamination = {"source": "svhn", "fraction": 0.25, "seed": 1, "folder": tmp_path / "svhn"}
    foreign = foreign_images(contamination, genuine)
    assert foreign.images.shape == (6, 32, 32, 3) and foreign.source == "svhn"
    (tmp_path / "svhn" / "train_32x32.mat").unlink()
    with pytest.raises(DataError, match="set dataset.contamination.data_dir to the folder"):
        foreign_images(contamination, genuine)
