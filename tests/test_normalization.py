"""selfsup.data.normalization: statistics of the training images, applied per batch."""

from __future__ import annotations

import numpy as np
import pytest

from selfsup import artifacts
from selfsup.data import normalization
from selfsup.data.dataset import Dataset, Split
from selfsup.data.normalization import Normalization, compute
from selfsup.stages.split import split_dataset


def color_images(n=50, shape=(6, 5, 3), seed=0) -> np.ndarray:
    """uint8 images whose channels have clearly different means and spreads."""
    rng = np.random.default_rng(seed)
    images = rng.normal([60, 128, 200], [10, 40, 20], (n, *shape)).clip(0, 255)
    return images.astype(np.uint8)


def write(tmp_path, x_train, x_test=None) -> str:
    x_test = x_train[:4] if x_test is None else x_test
    data = Dataset(
        x_train, np.arange(len(x_train)) % 3, x_test, np.zeros(len(x_test), np.int64), ["a", "b", "c"]
    )
    path = tmp_path / "dataset.h5"
    artifacts.write_dataset(path, data, {})
    return path


def test_none_is_the_identity():
    stats = compute("none", color_images())
    assert stats.kind == "none"
    x = np.random.default_rng(0).random((2, 3, 3, 1)).astype(np.float32)
    assert stats.apply(x) is x
    assert Normalization().kind == "none"


def test_per_pixel_mean_is_the_mean_image():
    images = color_images()
    stats = compute("per_pixel_mean", images)
    expected = (images / 255.0).mean(axis=0)
    assert stats.kind == "per_pixel_mean"
    assert stats.mean.shape == images.shape[1:] and stats.mean.dtype == np.float32
    np.testing.assert_allclose(stats.mean, expected, rtol=1e-6)
    np.testing.assert_array_equal(stats.std, np.ones(1))
    x = images.astype(np.float32) / 255
    np.testing.assert_allclose(stats.apply(x), x - expected, atol=1e-6)
    np.testing.assert_allclose(stats.apply(x).mean(axis=0), 0, atol=1e-6)


def test_per_channel_standardizes_each_channel_of_the_training_images():
    images = color_images()
    stats = compute("per_channel", images)
    assert stats.mean.shape == stats.std.shape == (3,)
    x = images.astype(np.float32) / 255
    np.testing.assert_allclose(stats.mean, x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(stats.std, x.std(axis=(0, 1, 2)), rtol=1e-4)
    normalized = stats.apply(x)
    np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(axis=(0, 1, 2)), 1, rtol=1e-4)


def test_per_channel_of_a_constant_channel_stays_finite():
    images = np.full((4, 3, 3, 2), 7, np.uint8)
    stats = compute("per_channel", images)
    assert np.isfinite(stats.apply(images / 255.0)).all()


def test_unknown_kind():
    with pytest.raises(
        ValueError, match="normalization must be one of none, per_pixel_mean, per_channel, got 'zca'"
    ):
        compute("zca", color_images())


@pytest.mark.parametrize("kind", ["per_pixel_mean", "per_channel"])
def test_chunked_over_a_file_equals_in_memory(tmp_path, monkeypatch, kind):
    images = color_images(n=50)
    monkeypatch.setattr(normalization, "CHUNK", 7)  # 50 images: 7 full chunks and a partial one
    in_memory = compute(kind, images)
    stored = artifacts.ImageFile(write(tmp_path, images), "train")
    try:
        from_file = compute(kind, stored)
    finally:
        stored.close()
    np.testing.assert_allclose(from_file.mean, in_memory.mean, rtol=1e-6)
    np.testing.assert_allclose(from_file.std, in_memory.std, rtol=1e-6)
    expected = (
        (images / 255.0).mean(axis=0) if kind == "per_pixel_mean" else (images / 255.0).mean(axis=(0, 1, 2))
    )
    np.testing.assert_allclose(from_file.mean, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["per_pixel_mean", "per_channel"])
def test_apply_on_a_tensor_equals_numpy(kind):
    import tensorflow as tf

    images = color_images(n=10)
    stats = compute(kind, images)
    x = images.astype(np.float32) / 255
    got = stats.apply(tf.constant(x))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), stats.apply(x), rtol=1e-6, atol=1e-6)


def test_split_file_round_trips_the_normalization(tmp_path):
    stats = compute("per_channel", color_images())
    split = Split(
        labeled=np.arange(5),
        unlabeled=np.arange(3),
        test=np.arange(2),
        budget_order=np.arange(5)[::-1],
        unlabeled_part="unlabeled",
        normalization=stats,
    )
    artifacts.write_split(tmp_path / "split.h5", split, {"seed": 1})
    back = artifacts.read_split(tmp_path / "split.h5")
    assert back.normalization.kind == "per_channel"
    assert back.unlabeled_part == "unlabeled"
    np.testing.assert_array_equal(back.normalization.mean, stats.mean)
    np.testing.assert_array_equal(back.normalization.std, stats.std)
    x = np.random.default_rng(0).random((2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(back.normalization.apply(x), stats.apply(x))


def test_split_dataset_takes_statistics_from_the_training_images_only(tmp_path):
    x_train = color_images(n=30, seed=1)
    x_test = np.full((6, 6, 5, 3), 255, np.uint8)  # far from the training images: would shift the mean
    path = write(tmp_path, x_train, x_test)
    split = split_dataset(
        path, {"labeled": [0, 20], "unlabeled": [20, 30], "normalization": "per_pixel_mean"}, 1
    )
    np.testing.assert_allclose(split.normalization.mean, (x_train / 255.0).mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(split.labeled, np.arange(20))
    np.testing.assert_array_equal(split.test, np.arange(6))
    # Through the split file, as jobs read it.
    artifacts.write_split(tmp_path / "split.h5", split, {})
    back = artifacts.read_split(tmp_path / "split.h5").normalization
    assert back.kind == "per_pixel_mean"
    np.testing.assert_array_equal(back.mean, split.normalization.mean)
    assert split_dataset(path, {}, 1).normalization.kind == "none"
