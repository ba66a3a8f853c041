"""selfsup.pretext.rotation: quarter turns, pseudo-labels, model and a short training."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from selfsup.data.generated import make_synthetic
from selfsup.inputs import batches
from selfsup.pretext import get_method, has_pseudo_labels
from selfsup.training import make_optimizer

rotation = get_method("rotation")


def test_registry():
    assert type(get_method("rotation")).__name__ == "Rotation"
    assert has_pseudo_labels("rotation")
    with pytest.raises(KeyError, match="unknown pretext method 'jigsaw'; choose one of .*rotation"):
        get_method("jigsaw")


def test_rotate_quarter_turn_counter_clockwise_by_hand():
    image = np.array([[1, 2], [3, 4]])[None, :, :, None]
    once = rotation.rotate(image, np.array([1]))[0, :, :, 0]
    # Counter-clockwise: the right column becomes the top row.
    np.testing.assert_array_equal(once, [[2, 4], [1, 3]])
    np.testing.assert_array_equal(rotation.rotate(image, np.array([2]))[0, :, :, 0], [[4, 3], [2, 1]])
    np.testing.assert_array_equal(rotation.rotate(image, np.array([3]))[0, :, :, 0], [[3, 1], [4, 2]])
    np.testing.assert_array_equal(rotation.rotate(image, np.array([0]))[0, :, :, 0], [[1, 2], [3, 4]])


def test_rotate_each_image_by_its_own_turns():
    images = np.arange(4 * 3 * 3 * 2).reshape(4, 3, 3, 2)
    turns = np.array([3, 0, 1, 2])
    out = rotation.rotate(images, turns)
    assert out.shape == images.shape and out.dtype == images.dtype
    for image, r, rotated in zip(images, turns, out, strict=True):
        np.testing.assert_array_equal(rotated, np.rot90(image, r))
    # Channels move together: channel 1 is channel 0 plus one everywhere.
    np.testing.assert_array_equal(out[..., 1], out[..., 0] + 1)


def test_pseudo_labels_all_has_every_rotation_of_every_position():
    positions, labels = rotation.pseudo_labels(5, {"rotations": "all"}, seed=0)
    assert len(positions) == len(labels) == 20
    np.testing.assert_array_equal(np.bincount(positions), [4] * 5)
    # No wrap-around: position 0 gets rotations 0..3, and the last position is there.
    np.testing.assert_array_equal(labels[positions == 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(labels[positions == 4], [0, 1, 2, 3])
    np.testing.assert_array_equal(positions[:8], [0, 0, 0, 0, 1, 1, 1, 1])
    assert positions.min() == 0 and positions.max() == 4
    assert {(p, r) for p, r in zip(positions, labels, strict=True)} == {
        (p, r) for p in range(5) for r in range(4)
    }


def test_pseudo_labels_random_deterministic_and_uniform():
    positions, labels = rotation.pseudo_labels(4000, {"rotations": "random"}, seed=1)
    np.testing.assert_array_equal(positions, np.arange(4000))
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # Each of 4 classes near 1000 (binomial std about 27).
    assert np.abs(np.bincount(labels) - 1000).max() < 100
    np.testing.assert_array_equal(labels, rotation.pseudo_labels(4000, {"rotations": "random"}, seed=1)[1])
    other = rotation.pseudo_labels(4000, {"rotations": "random"}, seed=2)[1]
    assert 0.15 < np.mean(labels == other) < 0.35  # independent draws agree about 1/4 of the time


def test_check_options():
    rotation.check({"rotations": "all"})
    with pytest.raises(ValueError, match="rotations must be 'all' or 'random', got 'some'"):
        rotation.check({"rotations": "some"})
    assert rotation.OPTIONS == {"rotations": "random"}


def rotation_batches(images, pseudo, options, batch_size, seed):
    """The pretext job's training batches: shuffled uint8 images through the method's transform."""
    positions, labels = pseudo
    return batches(
        images,
        positions,
        labels,
        batch_size=batch_size,
        shuffle_seed=seed,
        transform=partial(rotation.transform, options=options),
        transform_seed=seed,
    )


def test_batches_rotate_images_by_their_labels():
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 1), dtype=np.uint8)
    pseudo = rotation.pseudo_labels(3, {"rotations": "all"}, seed=0)
    data = list(rotation_batches(images, pseudo, {"rotations": "all"}, batch_size=5, seed=0))
    assert [len(x) for x, _ in data] == [5, 5, 2]
    x = np.concatenate([b[0] for b in data])
    y = np.concatenate([b[1] for b in data])
    assert x.dtype == np.float32
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    # Every batch item is one of the (scaled) images rotated by its label, and each
    # (image, rotation) pair appears exactly once.
    scaled = images.astype(np.float32) / 255
    found = set()
    for image, r in zip(x, y, strict=True):
        matches = [
            i for i, original in enumerate(scaled) if np.allclose(image, np.rot90(original, r), atol=1e-7)
        ]
        assert len(matches) == 1
        found.add((matches[0], int(r)))
    assert found == {(i, r) for i in range(3) for r in range(4)}


def test_transform_turns_each_image_by_its_label():
    import tensorflow as tf

    images = np.random.default_rng(1).random((5, 6, 6, 2)).astype(np.float32)
    labels = np.array([0, 3, 1, 2, 3])
    x, y = rotation.transform(tf.constant(images), tf.constant(labels), tf.constant([1, 2], tf.int64), {})
    np.testing.assert_array_equal(x.numpy(), rotation.rotate(images, labels))
    np.testing.assert_array_equal(y.numpy(), labels)


def test_rotate_batch_equals_numpy_rotate_for_all_turns():
    import tensorflow as tf

    # No symmetry: every pixel of every channel differs, and so does every image.
    image = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2) / 50
    images = np.stack([image, image[::-1], image * 0.5 + 1, image[:, ::-1] + 2])
    for r in range(4):
        turns = np.full(4, r)
        got = rotation.rotate_batch(tf.constant(images), tf.constant(turns)).numpy()
        np.testing.assert_array_equal(got, rotation.rotate(images, turns))
        np.testing.assert_array_equal(got, np.rot90(images, r, axes=(1, 2)))
        if r:
            assert not np.array_equal(got, images)
    turns = np.array([3, 0, 2, 1])
    got = rotation.rotate_batch(tf.constant(images), tf.constant(turns)).numpy()
    np.testing.assert_array_equal(got, rotation.rotate(images, turns))
    # uint8 and int64 turns too (the pipeline's labels are int32).
    as_uint8 = (images * 40).astype(np.uint8)
    got = rotation.rotate_batch(tf.constant(as_uint8), tf.constant(turns, tf.int64)).numpy()
    np.testing.assert_array_equal(got, rotation.rotate(as_uint8, turns))


def test_build_compile_and_fit_one_step(tiny_encoder):
    encoder = tiny_encoder((16, 16, 1))
    model = rotation.build(encoder, {"rotations": "all"})
    assert model.output_shape == (None, 4)
    assert model.get_layer("encoder") is encoder
    model.compile(
        optimizer=make_optimizer({"name": "adam", "learning_rate": 0.01}), **rotation.compile_args({})
    )
    x = np.random.default_rng(0).random((8, 16, 16, 1)).astype(np.float32)
    before = [w.copy() for w in encoder.get_weights()]
    history = model.fit(x, np.arange(8) % 4, batch_size=8, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert np.isfinite(history.history["loss"][0])
    # One gradient step moved the encoder's weights, not only the head's.
    assert not np.allclose(before[0], encoder.get_weights()[0])
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_build_flattens_spatial_features(tiny_encoder):
    from selfsup.encoders import cut

    features = cut(tiny_encoder((16, 16, 1)), "pool1", "feature_layer")
    model = rotation.build(features, {})
    assert model.get_layer("features").output.shape == (None, 8 * 8 * 4)
    assert model.output_shape == (None, 4)


def test_rotation_is_learnable_on_synthetic_data(tiny_encoder):
    """A few epochs on the synthetic ground-line images beat chance (25%) clearly."""
    data = make_synthetic(n_train=512, image_size=16, seed=0)
    options = {"rotations": "random"}
    train = rotation_batches(
        data.x_train, rotation.pseudo_labels(512, options, seed=0), options, batch_size=32, seed=0
    )
    model = rotation.build(tiny_encoder((16, 16, 1), seed=0), options)
    model.compile(
        optimizer=make_optimizer({"name": "adam", "learning_rate": 0.01}), **rotation.compile_args(options)
    )
    model.fit(train, epochs=3, verbose=0, shuffle=False)
    # Accuracy on freshly rotated test images, not on the training batches.
    test_images = data.x_test.astype(np.float32) / 255
    turns = np.arange(len(test_images)) % 4
    predicted = model.predict(rotation.rotate(test_images, turns), verbose=0).argmax(axis=1)
    assert np.mean(predicted == turns) > 0.8


def test_examples_are_the_four_rotations():
    images = np.random.default_rng(0).random((3, 5, 5, 1)).astype(np.float32)
    examples = rotation.examples(None, images, {"rotations": "random"}, seed=0)
    assert list(examples) == ["r = 0 (0°)", "r = 1 (90°)", "r = 2 (180°)", "r = 3 (270°)"]
    for r, batch in enumerate(examples.values()):
        assert batch.shape == (3, 5, 5, 1)
        np.testing.assert_array_equal(batch, np.rot90(images, r, axes=(1, 2)))


def test_rotation_pseudo_labels_need_no_tensorflow():
    # The pseudo-label job runs this alone; importing TensorFlow would cost it seconds.
    import subprocess
    import sys

    code = (
        "import sys; from selfsup.pretext import get_method; "
        "get_method('rotation').pseudo_labels(8, {'rotations': 'all'}, 1); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
