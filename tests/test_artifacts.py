"""selfsup.artifacts: HDF5 round trips, recorded attributes and atomic writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import selfsup
from selfsup.artifacts import (
    Split,
    read_attrs,
    read_dataset,
    read_encoder,
    read_examples,
    read_pseudo_labels,
    read_split,
    write_dataset,
    write_encoder,
    write_examples,
    write_pseudo_labels,
    write_split,
)
from selfsup.data.sources import make_synthetic

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
