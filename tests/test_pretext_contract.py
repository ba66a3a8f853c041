"""The pretext contract: every method of the registry (selfsup.pretext.METHODS), trained
briefly through the real job function, makes the encoder's features better for telling
held-out labeled images apart than the same encoder at its random initialisation.

The test runs over the registry itself, so a method added later is held to it too, with
its default options unless HEADS lists smaller ones.

The task is one whose structure is known: 8x8 images of eight classes, each class a
fixed random binary glyph over heavy pixel noise (no jitter). Pixels separate the classes
(nearest neighbours in pixels are right on all held-out images), but the 24 features of
a small randomly initialised convolutional encoder keep too little of them: its kNN
accuracy on the held-out images is 0.67-0.77 (seeds 1-4). Every method's objective
rewards features that recognise the glyphs: rebuilding them (autoencoders), telling their
quarter turns apart (rotation) or matching two views of one image (two-view methods).
Measured with seeds 1-4, ten epochs add 0.09-0.48 to the kNN accuracy; MARGIN asks 0.05.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from selfsup import artifacts, config, encoders, training_settings
from selfsup.data.dataset import Dataset
from selfsup.data.splits import make_split
from selfsup.encoders import build_encoder
from selfsup.monitor import encoder_features, knn_accuracy
from selfsup.pretext import METHODS, PSEUDO_LABELS, get_method
from selfsup.stages import pretext as pretext_stage

SCHEMA = config.load_schema(config.SCHEMA_PATH)

# The glyph task (see the module docstring).
CLASSES, SIZE, NOISE = 8, 8, 100
N_POOL, N_HELD_OUT = 1000, 600
# Conv-only (3x3 convs 8, 8, pool, 6, 6, pool): 2x2x6 = 24 features, few enough that
# random ones lose much of the glyph, fewer than the 64 pixels an undercomplete
# autoencoder rebuilds, and laid out in space, which a rotation head needs (after a dense
# layer, rotation training pushes the classes of one quarter turn together).
ENCODER = {"name": "small_cnn", "options": {"filters": [8, 6], "dense": []}}
SEED = 1
EPOCHS, BATCH_SIZE, LEARNING_RATE = 10, 64, 0.003
# Two views of one image: brightness and contrast (the noise is the image's own, so views
# share it) and a random resized crop.
AUGMENTATION = {
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0, "probability": 1.0},
    "crop": {"scale": [0.6, 1.0]},
}
# Smaller heads than the defaults, for speed; a method not listed keeps its defaults. The
# reconstruction methods get a dense decoder: the default conv_transpose one needs about
# twice the epochs to rebuild the glyphs.
HEADS = {
    "autoencoder": {"decoder": "mlp", "decoder_units": [64]},
    "denoising_autoencoder": {"decoder": "mlp", "decoder_units": [64]},
    "inpainting": {"decoder": "mlp", "decoder_units": [64]},
    "simclr": {"projector": [32, 16]},
    "nnclr": {"projector": [32, 16], "predictor": [32, 16], "queue_size": 256},
    "simsiam": {"projector": [32, 32], "predictor": [8, 32]},
    "barlow_twins": {"projector": [32, 32]},
    # BYOL's own advice for short runs is a lower base momentum (see its OPTIONS).
    "byol": {"projector": [32, 16], "predictor": [32, 16], "momentum": 0.9},
    "vicreg": {"projector": [32, 32]},
    # A queue of a quarter of the pool (its default 4,096 is four pools). Its default
    # momentum: with BYOL's 0.9 here, the keys follow the queries and MoCo collapses.
    "mocov2plus": {"projector": [32, 16], "queue_size": 256},
}
K, TEMPERATURE = 20, 0.1  # the kNN classifier (selfsup.monitor.knn_accuracy)
MARGIN = 0.05  # what training must add to the random encoder's kNN accuracy


def glyphs(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """CLASSES fixed random binary glyphs of SIZE x SIZE, +200 over N(20, NOISE) pixels."""
    rng = np.random.default_rng(seed)
    templates = rng.random((CLASSES, SIZE, SIZE)) < 0.5

    def draw(n):
        labels = rng.integers(0, CLASSES, n)
        images = rng.normal(20, NOISE, (n, SIZE, SIZE)) + 200 * templates[labels]
        return np.clip(images, 0, 255).astype(np.uint8)[..., None], labels.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset(x_train, y_train, x_test, y_test, [f"glyph{c}" for c in range(CLASSES)])


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The dataset, split and pool files every method trains from. The held-out labeled
    images are the split's monitor slice (training images outside the pool), as the
    encoder sees them; the job's kNN monitor logs its accuracy on them after each epoch."""
    folder = tmp_path_factory.mktemp("contract")
    # One labeled image beyond the slice is left for budgets, which this test trains none of.
    data = glyphs(N_POOL + N_HELD_OUT + 1, 2)
    data_path = folder / "data.h5"
    artifacts.write_dataset(data_path, data, {})
    labeled = [N_POOL, N_POOL + N_HELD_OUT + 1]
    split = make_split(data.y_train, len(data.y_test), labeled, [0, N_POOL], None, seed=0, monitor=N_HELD_OUT)
    split_path = folder / "split.h5"
    artifacts.write_split(split_path, split, {})
    pool_path = folder / "pool.h5"
    artifacts.write_pool(pool_path, split.unlabeled, "train", {})
    images = data.x_train[split.monitor].astype(np.float32) / 255
    return SimpleNamespace(
        data_path=data_path,
        split_path=split_path,
        pool_path=pool_path,
        pool=split.unlabeled,
        images=np.asarray(split.normalization.apply(images), np.float32),
        labels=data.y_train[split.monitor],
    )


def pretext_settings(name: str) -> dict:
    """The pretext run's settings as a study gives them: schema defaults filled in, the
    method's option defaults merged, and the study's checks passed."""
    method = get_method(name)
    entry = {
        "method": name,
        "options": HEADS.get(name, {}),
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "optimizer": {"name": "adam", "learning_rate": LEARNING_RATE},
        "knn_monitor": {"every": 1, "k": K, "temperature": TEMPERATURE},
    }
    if method.OWNS_AUGMENTATION:
        entry["augmentation"] = AUGMENTATION
    written = {
        "study": "contract",
        "dataset": {"name": "synthetic"},
        "encoder": ENCODER,
        "pretext": {name: entry},
    }
    settings = config.fill_defaults(copy.deepcopy(written), SCHEMA)["pretext"][name]
    settings["options"] = config.check_options(f"pretext.{name}.options", settings["options"], method.OPTIONS)
    training_settings.check_training(f"pretext.{name}", settings, channels=1)
    method.check(settings["options"], settings)
    return settings


def knn(encoder, task) -> float:
    return knn_accuracy(encoder_features(encoder, task.images), task.labels, K, TEMPERATURE)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_pretext_training_beats_the_random_encoder_on_held_out_knn(name, task, tmp_path):
    method = get_method(name)
    settings = pretext_settings(name)
    pseudo_path = None
    if method.has_pseudo_labels():  # as the workflow's pseudo_labels rule makes them
        positions, labels = method.pseudo_labels(len(task.pool), settings["options"], SEED)
        pseudo_path = tmp_path / "pseudo.h5"
        artifacts.write_pseudo_labels(pseudo_path, task.pool[positions], labels, {})

    keras.utils.set_random_seed(SEED)  # what the job's script does first
    untrained = build_encoder(ENCODER["name"], task.images.shape[1:], **ENCODER["options"])
    keras.utils.set_random_seed(SEED)
    history = pretext_stage.train_pretext(
        data_path=task.data_path,
        split_path=task.split_path,
        pool_path=task.pool_path,
        pseudo_path=pseudo_path,
        settings=settings,
        encoder_spec=copy.deepcopy(ENCODER),
        seed=SEED,
        meta={},
        encoder_path=tmp_path / "encoder.h5",
        history_path=tmp_path / "history.csv",
        examples_path=tmp_path / "examples.h5",
    )
    trained, _ = encoders.read_encoder(tmp_path / "encoder.h5")

    before, after = knn(untrained, task), knn(trained, task)
    curve = " ".join(f"{v:.2f}" for v in history["knn_accuracy"])
    assert after - before >= MARGIN, (
        f"{name}: held-out kNN accuracy {before:.3f} at random initialisation, {after:.3f} after "
        f"{EPOCHS} epochs (needs +{MARGIN}); per epoch: {curve}; "
        f"loss {history['loss'].iloc[0]:.3f} -> {history['loss'].iloc[-1]:.3f}"
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_registry_says_which_methods_make_pseudo_labels(name):
    # The workflow reads PSEUDO_LABELS while it parses, without importing the method.
    assert get_method(name).has_pseudo_labels() == (name in PSEUDO_LABELS)
