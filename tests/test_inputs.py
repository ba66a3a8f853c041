"""selfsup.inputs and selfsup.augment: uint8 images to float batches, the one input path."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from selfsup import artifacts, augment, augment_settings
from selfsup.data.dataset import Dataset
from selfsup.data.normalization import compute
from selfsup.inputs import batches
from selfsup.pretext import get_method
from selfsup.stages.common import load_pool

rotation = get_method("rotation")


def numbered_images(n=20, shape=(4, 4, 1)) -> np.ndarray:
    """uint8 images whose every pixel is the image's own index, so a batch tells where it came from."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, *shape)).copy()


def collect(data) -> tuple[np.ndarray, np.ndarray | None]:
    """One epoch of (x, y) or x batches, concatenated."""
    xs, ys = [], []
    for batch in data:
        if isinstance(batch, tuple):
            xs.append(batch[0].numpy())
            ys.append(batch[1].numpy())
        else:
            xs.append(batch.numpy())
    return np.concatenate(xs), (np.concatenate(ys) if ys else None)


def sources(n=20) -> Dataset:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (n, 5, 5, 2), dtype=np.uint8)
    x_test = rng.integers(0, 256, (6, 5, 5, 2), dtype=np.uint8)
    return Dataset(x_train, np.arange(n) % 3, x_test, np.arange(6) % 3, ["a", "b", "c"])


@pytest.fixture
def stored(tmp_path):
    """(path, dataset) of a small dataset file."""
    data = sources()
    path = tmp_path / "dataset.h5"
    artifacts.write_dataset(path, data, {})
    return path, data


def test_uint8_to_float32_in_unit_range_in_order():
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 3, 2), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    positions = np.array([3, 1, 0, 9, 9, 4, 1])
    labels = np.arange(7) * 10
    data = batches(images, positions, labels, batch_size=3)
    sizes = [len(x) for x, _ in data]
    assert sizes == [3, 3, 1]
    x, y = collect(data)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x, images[positions] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int32


def test_drop_remainder_gives_full_batches_only_in_a_new_order_each_epoch():
    images = numbered_images(10)
    data = batches(images, np.arange(10), batch_size=4, shuffle_seed=3, drop_remainder=True)
    assert len(data) == 2
    seen = []
    for epoch in (0, 1):
        data.epoch_counter.assign(epoch)
        epoch_batches = [x.numpy() for x in data]
        assert [len(x) for x in epoch_batches] == [4, 4]
        seen.append(np.round(np.concatenate(epoch_batches)[:, 0, 0, 0] * 255).astype(int))
    # Each epoch leaves out two images, not always the same two.
    assert set(seen[0]) != set(seen[1])


def test_unlabeled_batches_are_images_only():
    images = numbered_images(6)
    x, y = collect(batches(images, np.arange(6), batch_size=4))
    assert y is None
    np.testing.assert_allclose(x[:, 0, 0, 0], np.arange(6) / 255, rtol=1e-6)


@pytest.mark.parametrize("kind", ["per_pixel_mean", "per_channel"])
def test_normalization_is_applied(kind):
    images = np.random.default_rng(1).integers(0, 256, (12, 4, 4, 3), dtype=np.uint8)
    stats = compute(kind, images)
    x, _ = collect(batches(images, np.arange(12), np.zeros(12), batch_size=5, normalization=stats))
    np.testing.assert_allclose(x, stats.apply(images.astype(np.float32) / 255), rtol=1e-5, atol=1e-6)


def at_epoch(data, epoch: int):
    """The pipeline set to `epoch`, as selfsup.training.fit sets it when the epoch begins."""
    data.epoch_counter.assign(epoch)
    return data


def test_shuffle_is_a_function_of_seed_and_epoch():
    images = numbered_images(40)
    labels = np.arange(40) * 2
    data = batches(images, np.arange(40), labels, batch_size=8, shuffle_seed=3)

    def epoch(pipeline, number):
        x, y = collect(at_epoch(pipeline, number))
        order = np.rint(x[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(y, labels[order])  # labels travel with their images
        return order

    first, second = epoch(data, 0), epoch(data, 1)
    np.testing.assert_array_equal(np.sort(first), np.arange(40))  # each example once per epoch
    np.testing.assert_array_equal(np.sort(second), np.arange(40))
    assert not np.array_equal(first, np.arange(40))
    assert not np.array_equal(first, second)
    # Iterating again, or a pipeline built afresh (a resumed job), gives an epoch's order
    # from its number alone, whatever came before.
    np.testing.assert_array_equal(epoch(data, 0), first)
    again = batches(images, np.arange(40), labels, batch_size=8, shuffle_seed=3)
    np.testing.assert_array_equal(epoch(again, 1), second)
    np.testing.assert_array_equal(epoch(again, 0), first)
    other = batches(images, np.arange(40), labels, batch_size=8, shuffle_seed=4)
    assert not np.array_equal(epoch(other, 0), first)
    assert data.cardinality().numpy() == 5  # Keras ends each epoch on it


def test_from_a_file_equals_from_memory(stored):
    path, data = stored
    positions = np.array([7, 2, 2, 19, 0, 7, 7, 11])  # unsorted, repeated
    labels = data.y_train[positions]
    in_memory = collect(batches(data.x_train, positions, labels, batch_size=3))
    images = artifacts.ImageFile(path, "train")
    try:
        assert len(images) == 20 and images.shape == data.x_train.shape
        streamed = collect(batches(images, positions, labels, batch_size=3))
        shuffled = collect(batches(images, positions, labels, batch_size=3, shuffle_seed=5))
        shuffled_in_memory = collect(batches(data.x_train, positions, labels, batch_size=3, shuffle_seed=5))
    finally:
        images.close()
    np.testing.assert_array_equal(streamed[0], in_memory[0])
    np.testing.assert_array_equal(streamed[1], in_memory[1])
    np.testing.assert_allclose(in_memory[0], data.x_train[positions] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(shuffled[0], shuffled_in_memory[0])
    np.testing.assert_array_equal(shuffled[1], shuffled_in_memory[1])


def test_load_pool_in_memory_or_streamed(stored):
    path, data = stored
    indices = np.array([9, 3, 3, 15, 0])
    images, positions = load_pool(path, "train", indices)
    assert isinstance(images, np.ndarray) and images.dtype == np.uint8
    assert len(images) == 4  # only the pool's distinct images
    np.testing.assert_array_equal(images[positions], data.x_train[indices])

    streamed, positions = load_pool(path, "train", indices, memory_limit_mb=0)
    try:
        assert isinstance(streamed, artifacts.ImageFile)
        np.testing.assert_array_equal(positions, indices)
        x, _ = collect(batches(streamed, positions, batch_size=2))
    finally:
        streamed.close()
    np.testing.assert_allclose(x, data.x_train[indices] / 255.0, rtol=1e-6)

    test_images, positions = load_pool(path, "test", np.array([5, 1]))
    np.testing.assert_array_equal(test_images[positions], data.x_test[[5, 1]])


def test_load_pool_limit_is_the_uint8_size(stored):
    path, _ = stored
    indices = np.arange(20)  # 20 images of 5x5x2 bytes = 1,000 bytes
    assert isinstance(load_pool(path, "train", indices, memory_limit_mb=1000 / 2**20)[0], np.ndarray)
    streamed = load_pool(path, "train", indices, memory_limit_mb=999 / 2**20)[0]
    assert isinstance(streamed, artifacts.ImageFile)
    streamed.close()


def test_transform_gets_the_scaled_batch_and_labels():
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
    positions, labels = rotation.pseudo_labels(6, {"rotations": "random"}, seed=0)
    data = batches(
        images,
        positions,
        labels,
        batch_size=4,
        transform=partial(rotation.transform, options={"rotations": "random"}),
        transform_seed=1,
    )
    x, y = collect(data)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x, rotation.rotate(images / 255.0, labels), rtol=1e-6)


def test_transform_seeds_are_per_batch_and_a_function_of_seed_and_epoch():
    def seeds_of(transform_seed, epochs=(0, 1)):
        # Seeds are tensors inside the graph: return them as the batch to read them.
        data = batches(
            numbered_images(8),
            np.arange(8),
            np.zeros(8),
            batch_size=4,
            transform=lambda x, y, seed: (x, seed),
            transform_seed=transform_seed,
        )
        return [np.stack([s.numpy() for _, s in at_epoch(data, e)]) for e in epochs]

    first, second = seeds_of(7)
    assert first.shape == (2, 2)
    assert not np.array_equal(first[0], first[1])  # a new seed per batch
    assert not np.array_equal(first, second)  # and per epoch
    again = seeds_of(7, epochs=(1, 0))  # built afresh, epochs in another order
    np.testing.assert_array_equal(again[0], second)
    np.testing.assert_array_equal(again[1], first)
    assert not np.array_equal(seeds_of(8)[0], first)


# --- augmentation --------------------------------------------------------------------------


def augmentation_batch() -> np.ndarray:
    return np.random.default_rng(0).random((8, 12, 12, 3)).astype(np.float32)


def test_augment_build_none_for_no_augmentation():
    assert augment.build(None, 0) is None
    assert augment.build({}, 0) is None
    assert augment.build({"horizontal_flip": False, "shift": 0.0}, 0) is None


def test_augment_changes_images_keeps_shapes_and_repeats_with_its_seed():
    x = augmentation_batch()
    settings = {"horizontal_flip": True, "shift": 0.1}
    layers = augment.build(settings, seed=5)
    assert [layer.name for layer in layers.layers] == ["horizontal_flip", "shift"]
    out = np.asarray(layers(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.allclose(out, x)
    again = np.asarray(augment.build(settings, seed=5)(x, training=True))
    np.testing.assert_array_equal(again, out)
    other = np.asarray(augment.build(settings, seed=6)(x, training=True))
    assert not np.allclose(other, out)
    # Outside training, nothing changes.
    np.testing.assert_array_equal(np.asarray(layers(x, training=False)), x)


def test_horizontal_flip_alone_mirrors_some_images_and_keeps_the_others():
    x = augmentation_batch()
    out = np.asarray(augment.build({"horizontal_flip": True}, seed=1)(x, training=True))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x, strict=True)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped)


def test_augmentation_in_the_input_pipeline():
    images = np.random.default_rng(0).integers(0, 256, (8, 12, 12, 3), dtype=np.uint8)

    def epochs(seed, numbers=(0, 1)):
        layers = augment.build({"horizontal_flip": True, "shift": 0.2}, seed=seed)
        data = batches(images, np.arange(8), np.arange(8), batch_size=4, augment=layers)
        return [collect(at_epoch(data, number)) for number in numbers]

    (x, y), (second, _) = epochs(2)
    assert x.shape == images.shape and x.dtype == np.float32
    np.testing.assert_array_equal(y, np.arange(8))
    assert not np.allclose(x, images / 255.0)
    assert 0 <= x.min() and x.max() <= 1  # flips and edge-filled shifts make no new values
    assert not np.allclose(x, second)  # new augmentations every epoch
    # Fresh layers, same seed: the same augmentations, epoch by epoch, whatever ran before
    # (a resumed job starts at a later epoch).
    again = epochs(2, numbers=(1, 0))
    np.testing.assert_array_equal(again[0][0], second)
    np.testing.assert_array_equal(again[1][0], x)
    assert not np.allclose(epochs(3)[0][0], x)


def test_augment_check():
    augment_settings.check({"horizontal_flip": True, "shift": 0.5})
    with pytest.raises(ValueError, match=r"augmentation.shift must lie in \[0, 1\), got 1.5"):
        augment_settings.check({"shift": 1.5})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['jitter'\]"):
        augment_settings.check({"jitter": 0.2})
