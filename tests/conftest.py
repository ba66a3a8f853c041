"""Shared fixtures of the unit tests: tiny synthetic data, tiny encoders, a full study."""

from __future__ import annotations

import copy
import os
from pathlib import Path

# TensorFlow reads these when it is first imported, which happens below.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

# ../shared/data, next to the repository: real MNIST / Fashion-MNIST IDX files, when present.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_ENCODER = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16]}}


def pytest_configure(config):
    # The test machine has 2 cores shared with other jobs; thread pools can only be
    # sized before TensorFlow runs its first operation, so do it once, here.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)


@pytest.fixture
def real_data_dir():
    """A function giving the folder of real IDX files of a dataset (mnist, fashion-mnist),
    or skipping the test when it is absent."""

    def find(name: str) -> Path:
        folder = SHARED_DATA / name
        if not folder.is_dir():
            pytest.skip(
                f"real data not available: {folder} does not exist (put the official IDX files there)"
            )
        return folder

    return find


@pytest.fixture(scope="session")
def synthetic():
    """A tiny synthetic dataset: 128 train / 32 test images of 16x16x1, 4 classes."""
    from selfsup.data.generated import make_synthetic

    return make_synthetic(n_train=128, n_test=32, image_size=16, num_classes=4, seed=0)


@pytest.fixture
def tiny_encoder():
    """A factory of small_cnn encoders (conv 4, 4, pool, conv 8, 8, pool, dense 16)."""
    import keras

    from selfsup.encoders import build_encoder

    def make(input_shape=(16, 16, 1), seed=0, **options):
        keras.utils.set_random_seed(seed)
        return build_encoder(TINY_ENCODER["name"], input_shape, **{**TINY_ENCODER["options"], **options})

    return make


# A study like tests/data/tiny_study.yaml with every schema default written out, as
# check_study receives it after snakemake.utils.validate.
_TRAINING_DEFAULTS = {
    "validation_split": 0.0,
    "early_stopping": None,
    "lr_schedule": None,
    "reduce_on_plateau": None,
    "keep_best": None,
    "augmentation": {},
    "jit_compile": False,
    "precision": "float32",
    "memory_limit_mb": 2048,
    "deterministic": True,
}
_STUDY = {
    "study": "tiny",
    "description": "",
    "dataset": {
        "name": "synthetic",
        "data_dir": None,
        "options": {"n_train": 256, "n_test": 64, "image_size": 16, "num_classes": 4, "seed": 0},
        "normalization": "none",
        "contamination": None,
        "verify_checksums": True,
    },
    "split": {
        "labeled": [0, 128],
        "unlabeled": [128, 256],
        "test": None,
        "labeled_fraction": None,
        "folds": False,
        "monitor": 0,
    },
    "threads": 1,
    "seeds": [1, 2],
    "budgets": [16, 64],
    "draws": 1,
    "encoder": copy.deepcopy(TINY_ENCODER),
    "pretext": {
        "rotation": {
            "options": {"rotations": "all"},
            "epochs": 2,
            "batch_size": 64,
            "optimizer": {"name": "adam", "learning_rate": 0.003, "weight_decay": 0.0},
            **copy.deepcopy(_TRAINING_DEFAULTS),
            "knn_monitor": {"every": 1, "k": 200, "temperature": 0.1},
        }
    },
    "pools": ["all"],
    "outliers": {
        "method": "one_class_network",
        "options": {},
        "epochs": 10,
        "batch_size": 128,
        "optimizer": {"name": "adam", "learning_rate": 0.001, "weight_decay": 0.0},
        **copy.deepcopy(_TRAINING_DEFAULTS),
    },
    "self_training": {"rounds": 3, "threshold": 0.8, "from_pretext": False},
    "joint": {},
    "fixmatch": {},
    "flexmatch": {},
    "downstream": {
        "protocols": ["supervised", "random", "frozen", "freeze_1", "finetune", "linear", "pixels_knn"],
        "feature_layer": None,
        "linear": {"c_values": 45, "folds": 5, "max_iter": 1000},
        "knn": {"k": 8, "temperature": 0.1},
        "head": {"hidden": [], "dropout": 0.0},
        "overrides": {},
        "epochs": 2,
        "batch_size": 16,
        "optimizer": {"name": "adam", "learning_rate": 0.003, "weight_decay": 0.0},
        **copy.deepcopy(_TRAINING_DEFAULTS),
    },
}


@pytest.fixture
def study() -> dict:
    """A valid study dict (a fresh copy per test, so tests may edit it)."""
    return copy.deepcopy(_STUDY)
