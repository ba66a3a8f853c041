"""selfsup.artifacts: HDF5 round trips, recorded attributes and atomic writes."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import selfsup
from selfsup.artifacts import (
    CorruptArtifact,
    ImageFile,
    Split,
    read_attrs,
    read_dataset,
    read_examples,
    read_images,
    read_labels,
    read_outliers,
    read_pool,
    read_pseudo_labels,
    read_split,
    read_teacher_labels,
    write_dataset,
    write_encoder,
    write_examples,
    write_outliers,
    write_pool,
    write_pseudo_labels,
    write_split,
    write_teacher_labels,
)
from selfsup.data.dataset import Dataset
from selfsup.data.generated import make_synthetic
from selfsup.data.normalization import Normalization
from selfsup.encoders import read_encoder

META = {"study": "tiny", "seed": 3, "learning_rate": 0.5, "resumed": False, "budgets": [16, "all"]}


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_dataset_round_trip_and_attributes(tmp_path):
    data = make_synthetic(n_train=20, n_test=6, image_size=8, num_classes=3, seed=1)
    path = tmp_path / "sub" / "dataset.h5"
    write_dataset(path, data, META)
    back = read_dataset(path)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
        assert getattr(back, name).dtype == getattr(data, name).dtype
    assert back.class_names == ["glyph0", "glyph1", "glyph2"]
    attrs = read_attrs(path)
    assert attrs["selfsup_version"] == selfsup.__version__ == "0.1.0"
    # Scalars keep their type; lists come back decoded from JSON.
    assert attrs["study"] == "tiny"
    assert attrs["seed"] == 3 and isinstance(attrs["seed"], int)
    assert attrs["learning_rate"] == 0.5
    assert attrs["resumed"] is False
    assert attrs["budgets"] == [16, "all"]
    assert attrs["class_names"] == ["glyph0", "glyph1", "glyph2"]
    assert leftovers(path.parent) == ["dataset.h5"]


def stl10_like(tmp_path):
    """A small dataset with its own unlabeled images and predefined folds, written to a file."""
    rng = np.random.default_rng(0)
    data = Dataset(
        x_train=rng.integers(0, 256, (30, 6, 6, 3), dtype=np.uint8),
        y_train=np.arange(30) % 4,
        x_test=rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8),
        y_test=np.arange(8) % 4,
        class_names=["a", "b", "c", "d"],
        x_unlabeled=rng.integers(0, 256, (50, 6, 6, 3), dtype=np.uint8),
        folds=[np.arange(0, 10), np.arange(10, 20), np.array([29, 3, 17, 5, 0, 11, 12, 13, 14, 15])],
    )
    path = tmp_path / "dataset.h5"
    write_dataset(path, data, {"dataset": "stl10_like"})
    return path, data


def test_dataset_round_trip_with_unlabeled_images_and_folds(tmp_path):
    path, data = stl10_like(tmp_path)
    back = read_dataset(path, parts=("train", "test", "unlabeled"))
    for name in ("x_train", "y_train", "x_test", "y_test", "x_unlabeled"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.x_unlabeled.dtype == np.uint8
    assert len(back.folds) == 3
    for got, fold in zip(back.folds, data.folds, strict=True):
        np.testing.assert_array_equal(got, fold)  # order kept: fold indices are not sorted
        assert got.dtype == np.int64
    assert back.class_names == ["a", "b", "c", "d"]

    # Parts not asked for are not read: empty images of the right shape, no unlabeled images.
    default = read_dataset(path)
    assert default.x_unlabeled is None
    np.testing.assert_array_equal(default.x_train, data.x_train)
    train_only = read_dataset(path, parts=("train",))
    assert train_only.x_test.shape == (0, 6, 6, 3) and train_only.x_test.dtype == np.uint8
    np.testing.assert_array_equal(train_only.y_test, data.y_test)  # labels are always there
    assert len(train_only.folds) == 3


def test_dataset_without_unlabeled_images_or_folds(tmp_path):
    data = make_synthetic(n_train=10, n_test=4, image_size=8, num_classes=2, seed=0)
    write_dataset(tmp_path / "dataset.h5", data, {})
    back = read_dataset(tmp_path / "dataset.h5", parts=("train", "test", "unlabeled"))
    assert back.x_unlabeled is None and back.folds is None
    info = read_labels(tmp_path / "dataset.h5")
    assert info["sizes"] == {"train": 10, "test": 4}
    assert info["folds"] is None


def test_read_labels_without_images(tmp_path):
    path, data = stl10_like(tmp_path)
    info = read_labels(path)
    np.testing.assert_array_equal(info["y_train"], data.y_train)
    np.testing.assert_array_equal(info["y_test"], data.y_test)
    assert info["class_names"] == ["a", "b", "c", "d"]
    assert info["image_shape"] == (6, 6, 3)
    assert info["sizes"] == {"train": 30, "test": 8, "unlabeled": 50}
    np.testing.assert_array_equal(info["folds"][2], data.folds[2])


def test_images_are_stored_uint8_and_chunked_per_image(tmp_path):
    path, _ = stl10_like(tmp_path)
    with h5py.File(path) as h5:
        for part in ("x_train", "x_test", "x_unlabeled"):
            stored = h5[part]
            assert stored.dtype == np.uint8
            assert stored.chunks[0] == 1
            assert stored.chunks == (1, *stored.shape[1:])  # one image per chunk


@pytest.mark.parametrize(
    "indices",
    [
        [7, 2, 2, 29, 0, 7],  # sparse: read by index
        [5, 3, 4, 4, 6, 3],  # dense: one contiguous block, then picked
        [11],
        [29, 0],
    ],
)
def test_read_images_equals_fancy_indexing(tmp_path, indices):
    path, data = stl10_like(tmp_path)
    got = read_images(path, "train", np.array(indices))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, data.x_train[indices])
    np.testing.assert_array_equal(
        read_images(path, "unlabeled", np.array(indices) + 20), data.x_unlabeled[np.array(indices) + 20]
    )


def test_read_images_of_no_indices(tmp_path):
    path, _ = stl10_like(tmp_path)
    got = read_images(path, "test", np.array([], np.int64))
    assert got.shape == (0, 6, 6, 3) and got.dtype == np.uint8


def test_image_file_reads_sorted_indices(tmp_path):
    path, data = stl10_like(tmp_path)
    images = ImageFile(path, "unlabeled")
    try:
        assert len(images) == 50 and images.shape == (50, 6, 6, 3)
        np.testing.assert_array_equal(images[np.array([1, 4, 49])], data.x_unlabeled[[1, 4, 49]])
        np.testing.assert_array_equal(images[10:13], data.x_unlabeled[10:13])
    finally:
        images.close()


def test_split_round_trip(tmp_path):
    split = Split(
        labeled=np.arange(10, 20),
        unlabeled=np.arange(10),
        test=np.array([0, 1, 2], dtype=np.int32),
        budget_order=np.arange(19, 9, -1),
    )
    write_split(tmp_path / "split.h5", split, {"seed": 1})
    back = read_split(tmp_path / "split.h5")
    for name in ("labeled", "unlabeled", "test", "budget_order"):
        np.testing.assert_array_equal(getattr(back, name), getattr(split, name))
        assert getattr(back, name).dtype == np.int64
    np.testing.assert_array_equal(back.budget(3), [19, 18, 17])
    assert read_attrs(tmp_path / "split.h5")["seed"] == 1
    # Defaults: the unlabeled pool indexes the training images, no normalization.
    assert back.unlabeled_part == "train"
    assert back.normalization.kind == "none"
    x = np.random.default_rng(0).random((2, 3, 3, 1)).astype(np.float32)
    np.testing.assert_array_equal(back.normalization.apply(x), x)


def test_split_round_trip_with_own_unlabeled_images_and_normalization(tmp_path):
    mean = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    split = Split(
        labeled=np.arange(5),
        unlabeled=np.arange(100),
        test=np.arange(3),
        budget_order=np.array([4, 0, 3, 1, 2]),
        unlabeled_part="unlabeled",
        normalization=Normalization("per_pixel_mean", mean=mean),
    )
    write_split(tmp_path / "split.h5", split, {"seed": 2})
    back = read_split(tmp_path / "split.h5")
    assert back.unlabeled_part == "unlabeled"
    assert back.normalization.kind == "per_pixel_mean"
    np.testing.assert_array_equal(back.normalization.mean, mean)
    np.testing.assert_array_equal(back.normalization.std, np.ones(1))
    assert read_attrs(tmp_path / "split.h5")["normalization"] == "per_pixel_mean"


def test_pseudo_labels_round_trip(tmp_path):
    indices, labels = np.array([0, 0, 5, 7]), np.array([0, 3, 1, 2])
    write_pseudo_labels(tmp_path / "pseudo.h5", indices, labels, {"method": "rotation"})
    got_indices, got_labels = read_pseudo_labels(tmp_path / "pseudo.h5")
    np.testing.assert_array_equal(got_indices, indices)
    np.testing.assert_array_equal(got_labels, labels)
    assert read_attrs(tmp_path / "pseudo.h5")["method"] == "rotation"


def test_pseudo_labels_length_mismatch_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="3 indices but 2 labels"):
        write_pseudo_labels(tmp_path / "pseudo.h5", np.arange(3), np.arange(2), {})
    assert leftovers(tmp_path) == []


def test_examples_round_trip_keeps_order(tmp_path):
    # Names out of alphabetical order, so a reader sorting by name would fail.
    examples = {
        "input": np.full((2, 4, 4, 1), 0.25),
        "corrupted": np.full((2, 4, 4, 1), 0.5),
        "b output": np.full((2, 4, 4, 1), 0.75),
    }
    write_examples(tmp_path / "examples.h5", examples, {"method": "rotation"})
    back = read_examples(tmp_path / "examples.h5")
    assert list(back) == ["input", "corrupted", "b output"]
    for name, images in examples.items():
        assert back[name].dtype == np.float32
        np.testing.assert_array_equal(back[name], images)


def test_encoder_round_trip(tmp_path, tiny_encoder):
    encoder = tiny_encoder((12, 12, 1), seed=1)
    spec = {"name": "small_cnn", "input_shape": [12, 12, 1], "options": {"filters": [4, 8], "dense": [16]}}
    path = tmp_path / "encoder.h5"
    write_encoder(path, encoder, spec, {"method": "rotation", "seed": 1})

    rebuilt, got_spec = read_encoder(path)
    assert got_spec == spec
    assert [w.path for w in rebuilt.weights] == [w.path for w in encoder.weights]
    assert len(rebuilt.weights) == 10  # 4 conv + 1 dense layers, kernel and bias each
    for a, b in zip(encoder.get_weights(), rebuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(0).random((5, 12, 12, 1)).astype(np.float32)
    np.testing.assert_array_equal(encoder.predict(images, verbose=0), rebuilt.predict(images, verbose=0))
    attrs = read_attrs(path)
    assert attrs["encoder"] == spec
    assert attrs["method"] == "rotation"
    assert attrs["selfsup_version"] == selfsup.__version__
    with h5py.File(path) as h5:
        assert h5["weights/0000"].attrs["name"] == "conv1/kernel"


def test_read_encoder_rejects_weights_of_another_architecture(tmp_path, tiny_encoder):
    spec = {"name": "small_cnn", "input_shape": [12, 12, 1], "options": {"filters": [4], "dense": [16]}}
    write_encoder(tmp_path / "encoder.h5", tiny_encoder((12, 12, 1)), spec, {})
    with pytest.raises(ValueError, match="holds 10 weight arrays but encoder 'small_cnn' has 6"):
        read_encoder(tmp_path / "encoder.h5")


def test_write_encoder_failing_midway_leaves_nothing(tmp_path, tiny_encoder):
    class Exploding:
        """An encoder whose weights cannot be read, as if the job died mid-write."""

        weights = tiny_encoder((12, 12, 1)).weights

        def get_weights(self):
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_encoder(tmp_path / "encoder.h5", Exploding(), {"name": "small_cnn"}, {})
    assert leftovers(tmp_path) == []


def test_failed_rewrite_keeps_the_previous_file(tmp_path):
    path = tmp_path / "examples.h5"
    write_examples(path, {"input": np.zeros((1, 2, 2, 1))}, {"seed": 1})

    class Unwritable:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_examples(path, {"input": np.ones((1, 2, 2, 1)), "output": Unwritable()}, {"seed": 2})
    assert leftovers(tmp_path) == ["examples.h5"]
    np.testing.assert_array_equal(read_examples(path)["input"], np.zeros((1, 2, 2, 1)))
    assert read_attrs(path)["seed"] == 1


def test_write_dataset_copies_in_chunks_from_read_only_views(tmp_path, monkeypatch):
    import selfsup.artifacts

    monkeypatch.setattr(selfsup.artifacts, "_WRITE_CHUNK", 7)  # 30 images: 4 full steps and a partial one
    data = make_synthetic(n_train=30, n_test=9, image_size=8, num_classes=3, seed=2)
    for images in (data.x_train, data.x_test):
        images.setflags(write=False)  # like np.memmap views on extracted archives
    write_dataset(tmp_path / "dataset.h5", data, {})
    back = read_dataset(tmp_path / "dataset.h5")
    np.testing.assert_array_equal(back.x_train, data.x_train)
    np.testing.assert_array_equal(back.x_test, data.x_test)


# --- corruption -----------------------------------------------------------------------


def _artifact(kind, folder, tiny_encoder):
    """(path, reader) of a small artifact of `kind`, written by its writer."""
    path = folder / f"{kind}.h5"
    rng = np.random.default_rng(0)
    if kind == "dataset":
        write_dataset(path, make_synthetic(n_train=20, n_test=6, image_size=8, num_classes=3, seed=1), META)
        return path, read_labels
    if kind == "images":
        write_dataset(path, make_synthetic(n_train=20, n_test=6, image_size=8, num_classes=3, seed=1), META)
        return path, lambda p: ImageFile(p, "train")[np.arange(3)]
    if kind == "split":
        write_split(path, Split(np.arange(5), np.arange(5, 20), np.arange(6), np.arange(5)), {"seed": 1})
        return path, read_split
    if kind in ("pool", "inliers"):
        write_pool(path, np.arange(5, 20), "train", {"pool": "all" if kind == "pool" else "inliers"})
        return path, read_pool
    if kind == "pseudo_labels":
        write_pseudo_labels(path, np.arange(8), np.arange(8) % 4, {"method": "rotation"})
        return path, read_pseudo_labels
    if kind == "examples":
        write_examples(path, {"input": rng.random((2, 4, 4, 1))}, {"method": "rotation"})
        return path, read_examples
    if kind == "encoder":
        spec = {
            "name": "small_cnn",
            "input_shape": [12, 12, 1],
            "options": {"filters": [4, 8], "dense": [16]},
        }
        write_encoder(path, tiny_encoder((12, 12, 1)), spec, {"method": "rotation"})
        return path, read_encoder
    if kind == "outliers":
        write_outliers(path, np.arange(6), rng.random(6), 0.5, np.zeros(6, bool), {"seed": 1})
        return path, read_outliers
    if kind == "teacher_labels":
        write_teacher_labels(path, np.arange(4), np.arange(4), np.full(4, 0.9), 1, {"seed": 1})
        return path, read_teacher_labels
    raise AssertionError(kind)


# Every kind of artifact the readers check.
KINDS = [
    "dataset",
    "images",
    "split",
    "pool",
    "inliers",
    "pseudo_labels",
    "examples",
    "encoder",
    "outliers",
    "teacher_labels",
]


def _data_offset(path):
    """The file offset of the first stored byte of the artifact's largest dataset."""
    with h5py.File(path) as h5:
        datasets = []
        h5.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        largest = max(datasets, key=lambda d: d.nbytes)
        offset = (
            largest.id.get_offset() if largest.chunks is None else largest.id.get_chunk_info(0).byte_offset
        )
    assert offset is not None
    return offset


def _assert_names_file_and_fix(error, path):
    text = str(error.value)
    assert str(path) in text
    assert f"--forcerun {path}" in text and "delete the file" in text


@pytest.mark.parametrize("kind", KINDS)
def test_every_artifact_kind_detects_truncation_and_flipped_bytes(tmp_path, tiny_encoder, kind):
    path, read = _artifact(kind, tmp_path, tiny_encoder)
    read(path)  # a good file reads fine
    good = path.read_bytes()
    damaged = {
        "truncated by half": good[: len(good) // 2],
        "truncated by one byte": good[:-1],
        "a data byte flipped": bytearray(good),
    }
    offset = _data_offset(path)
    damaged["a data byte flipped"][offset] ^= 0xFF
    for how, content in damaged.items():
        path.write_bytes(bytes(content))
        with pytest.raises(CorruptArtifact) as error:
            read(path)
        _assert_names_file_and_fix(error, path)
        assert isinstance(error.value, ValueError), how
    path.write_bytes(good)
    read(path)


def test_a_file_read_once_is_verified_again_after_it_changes(tmp_path):
    path, _ = _artifact("split", tmp_path, None)
    read_split(path)
    content = bytearray(path.read_bytes())
    content[_data_offset(path)] ^= 0x01
    path.write_bytes(bytes(content))  # a new modification time and inode state: checked again
    with pytest.raises(CorruptArtifact, match="checksum"):
        read_split(path)


def test_a_file_without_a_checksum_is_refused(tmp_path):
    path = tmp_path / "split.h5"
    with h5py.File(path, "w") as h5:
        for name in ("labeled", "unlabeled", "test", "budget_order", "monitor", "foreign"):
            h5.create_dataset(name, data=np.arange(3))
    with pytest.raises(CorruptArtifact, match="records no checksum") as error:
        read_split(path)
    _assert_names_file_and_fix(error, path)


def test_a_file_that_is_not_hdf5_names_the_file_and_its_fix(tmp_path):
    path = tmp_path / "encoder.h5"
    path.write_bytes(b"")
    with pytest.raises(CorruptArtifact, match="HDF5 cannot open it") as error:
        read_encoder(path)
    _assert_names_file_and_fix(error, path)


def test_a_missing_file_is_not_called_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="split.h5"):
        read_split(tmp_path / "split.h5")


def test_checksum_covers_attributes(tmp_path):
    path, _ = _artifact("split", tmp_path, None)
    with h5py.File(path, "r+") as h5:
        h5.attrs["seed"] = 2  # edited by hand: the split no longer is what its rule made
    with pytest.raises(CorruptArtifact, match="checksum"):
        read_split(path)


def test_a_file_version_verified_by_one_job_is_not_read_in_full_by_the_next(tmp_path, monkeypatch):
    from selfsup import artifacts

    monkeypatch.setenv(artifacts.VERIFIED_DIR_VARIABLE, str(tmp_path / "verified"))
    path, _ = _artifact("split", tmp_path, None)
    artifacts._VERIFIED.clear()  # a new job: nothing verified in this process yet
    read_split(path)  # verifies, and says so machine-wide
    checked = []
    real = artifacts.content_checksum
    monkeypatch.setattr(artifacts, "content_checksum", lambda h5: checked.append(1) or real(h5))
    artifacts._VERIFIED.clear()  # the next job
    read_split(path)
    assert checked == []
    # Edited with its modification time set back: a new version all the same, checked again.
    stat = path.stat()
    content = bytearray(path.read_bytes())
    content[_data_offset(path)] ^= 0x01
    path.write_bytes(bytes(content))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    artifacts._VERIFIED.clear()
    with pytest.raises(CorruptArtifact, match="checksum"):
        read_split(path)
    assert checked == [1]
