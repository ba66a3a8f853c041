"""selfsup.stages: a classifier trained through the real job function learns its labels.

Guards the bookkeeping between a budget's indices, the images gathered for them and their
labels: a misaligned pairing trains on noise and stays at chance, which tiny workflow
runs cannot tell from a short training.
"""

from __future__ import annotations

import contextlib
import copy
import io

import keras
import numpy as np
import pandas as pd
import pytest

from selfsup import artifacts, encoders, training
from selfsup.data.generated import make_synthetic
from selfsup.data.splits import make_split
from selfsup.pretext import get_method
from selfsup.protocols.base import Job
from selfsup.stages import downstream as downstream_stage
from selfsup.stages import outliers as outliers_stage
from selfsup.stages import pretext as pretext_stage

SETTINGS = {
    "protocol": "supervised",
    "feature_layer": None,
    "head": {"hidden": [], "dropout": 0.0},
    "epochs": 25,
    "batch_size": 16,
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "validation_split": 0.25,
    "early_stopping": None,
}


TINY_ENCODER = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16]}}


def test_train_downstream_learns_a_learnable_task(tmp_path):
    # The job's script seeds every job (training.configure); here the test does, so the
    # result does not depend on the random state earlier tests leave behind.
    keras.utils.set_random_seed(0)
    data = make_synthetic(n_train=256, n_test=128, image_size=16, num_classes=4, seed=0)
    data_path = tmp_path / "data.h5"
    artifacts.write_dataset(data_path, data, {})
    # A labeled pool in the middle of the training images, in stratified (unsorted) order.
    split = make_split(data.y_train, len(data.y_test), [64, 256], [0, 64], None, seed=3)
    split_path = tmp_path / "split.h5"
    artifacts.write_split(split_path, split, {})
    metrics, history, _ = downstream_stage.train_downstream(
        Job(
            data_path=data_path,
            split_path=split_path,
            encoder_path=None,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            settings=SETTINGS,
            budget="all",
            seed=1,
        ),
    )
    # Chance is 0.25; glyphs are easy (nearest neighbours in pixels reach over 0.8).
    assert metrics["train_accuracy"] > 0.8, history
    assert metrics["test_accuracy"] > 0.6, history
    assert metrics["example"]["label"] == int(data.y_test[split.test[0]])


def test_two_view_pretext_leaves_out_the_partial_batch(tmp_path):
    """A pool one image over a multiple of the batch: the references drop the last batch;
    trained on, that batch of one makes VICReg's unbiased variance divide by zero."""
    data = make_synthetic(n_train=64, n_test=8, image_size=16, num_classes=4, seed=0)
    data_path = tmp_path / "data.h5"
    artifacts.write_dataset(data_path, data, {})
    split = make_split(data.y_train, len(data.y_test), [0, 31], [31, 64], None, seed=1)
    split_path = tmp_path / "split.h5"
    artifacts.write_split(split_path, split, {})
    pool_path = tmp_path / "pool.h5"
    artifacts.write_pool(pool_path, split.unlabeled, "train", {})
    assert len(split.unlabeled) == 33
    settings = {
        "method": "vicreg",
        "options": {**get_method("vicreg").OPTIONS, "projector": [16, 16]},
        "epochs": 1,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "augmentation": {"shift": 0.1},
    }
    history = pretext_stage.train_pretext(
        data_path=data_path,
        split_path=split_path,
        pool_path=pool_path,
        pseudo_path=None,
        settings=settings,
        encoder_spec=copy.deepcopy(TINY_ENCODER),
        seed=1,
        meta={},
        encoder_path=tmp_path / "encoder.h5",
        history_path=tmp_path / "history.csv",
        examples_path=tmp_path / "examples.h5",
        stream=io.StringIO(),
    )
    assert np.isfinite(history["loss"]).all()


def test_train_pretext_of_a_two_view_method_reports_knn_and_collapse_monitors(tmp_path):
    """SimCLR through the real job function: augmentation inside the model, the kNN
    monitor on the held-out slice, embedding_std per epoch, a readable encoder."""
    import numpy as np
    import pandas as pd

    data = make_synthetic(n_train=256, n_test=32, image_size=16, num_classes=4, seed=0)
    data_path = tmp_path / "data.h5"
    artifacts.write_dataset(data_path, data, {})
    split = make_split(data.y_train, len(data.y_test), [0, 128], [128, 256], None, seed=1, monitor=40)
    split_path = tmp_path / "split.h5"
    artifacts.write_split(split_path, split, {})
    settings = {
        "method": "simclr",
        "options": {"projector": [32, 16], "temperature": 0.2},
        "epochs": 3,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "augmentation": {"horizontal_flip": True, "shift": 0.1},
        "knn_monitor": {"every": 2, "k": 20, "temperature": 0.1},
    }
    pool_path = tmp_path / "pool.h5"
    artifacts.write_pool(pool_path, split.unlabeled, "train", {})
    history = pretext_stage.train_pretext(
        data_path=data_path,
        split_path=split_path,
        pool_path=pool_path,
        pseudo_path=None,
        settings=settings,
        encoder_spec=copy.deepcopy(TINY_ENCODER),
        seed=1,
        meta={},
        encoder_path=tmp_path / "encoder.h5",
        history_path=tmp_path / "history.csv",
        examples_path=tmp_path / "examples.h5",
    )
    saved = pd.read_csv(tmp_path / "history.csv")
    assert {"loss", "embedding_std", "knn_accuracy", "learning_rate"} <= set(saved.columns)
    assert list(np.isnan(saved.knn_accuracy)) == [True, False, False]  # epochs 2 and 3 (the last)
    # The last epoch's value is the kNN accuracy of the saved encoder on the held-out slice.
    from selfsup.monitor import encoder_features, knn_accuracy

    encoder, spec = encoders.read_encoder(tmp_path / "encoder.h5")
    held_out = data.x_train[split.monitor].astype("float32") / 255
    expected = knn_accuracy(encoder_features(encoder, held_out), data.y_train[split.monitor], 20, 0.1)
    assert saved.knn_accuracy.iloc[-1] == expected
    assert (saved.embedding_std > 0).all()
    assert len(history) == 3
    assert spec["name"] == "small_cnn"
    assert list(artifacts.read_examples(tmp_path / "examples.h5")) == ["input", "view 1", "view 2"]


# --- exact resume ---------------------------------------------------------------------------
# A job killed after any completed epoch and run again must end exactly where an
# uninterrupted one does: same weights, same history, same metrics.

RESUME_SEED = 4


class Killed(Exception):
    """Stands for the job being killed."""


class KilledAt(io.StringIO):
    """A job log that kills the job as epoch `epoch` prints its progress line: that epoch
    has run but its state is not saved yet, so the job resumes after epoch `epoch` - 1
    and runs epoch `epoch` again."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def write(self, text):
        if text.startswith(f"epoch {self.epoch}/"):
            raise Killed(text)
        return super().write(text)


@contextlib.contextmanager
def deterministic_ops():
    """Deterministic TensorFlow ops and sums computed as the code groups them, as every
    training job runs (training.configure), then back to the test process's defaults."""
    before = training.thread_settings()
    training.set_determinism(True)
    try:
        yield
    finally:
        if not before["deterministic_ops"]:
            training.set_determinism(False)


def whole_and_resumed(train, tmp_path, kill_at: int):
    """(uninterrupted, killed and resumed) results of `train(out_dir, stream)`, each
    started as a job starts: deterministic ops, seeds set, every object built afresh."""
    with deterministic_ops():
        return _whole_and_resumed(train, tmp_path, kill_at)


def _whole_and_resumed(train, tmp_path, kill_at: int):
    keras.utils.set_random_seed(RESUME_SEED)
    whole = train(tmp_path / "whole", io.StringIO())
    keras.utils.set_random_seed(RESUME_SEED)
    with pytest.raises(Killed):
        train(tmp_path / "killed", KilledAt(kill_at))
    (resume_dir,) = (tmp_path / "killed").glob("resume*")
    assert len(pd.read_csv(resume_dir / "history.csv")) == kill_at - 1
    keras.utils.set_random_seed(RESUME_SEED)  # a new process: configure seeds it again
    log = io.StringIO()
    resumed = train(tmp_path / "killed", log)
    assert f"resuming after epoch {kill_at - 1} from {resume_dir}\n" in log.getvalue()
    assert not resume_dir.exists()
    return whole, resumed


def assert_same_training(whole, resumed):
    weights, history = whole[:2]
    resumed_weights, resumed_history = resumed[:2]
    assert len(weights) == len(resumed_weights)
    for a, b in zip(weights, resumed_weights, strict=True):
        assert np.array_equal(a, b)
    pd.testing.assert_frame_equal(history, resumed_history, check_exact=True)


@pytest.fixture(scope="module")
def resume_files(tmp_path_factory):
    """(data, split, pool) files of a tiny synthetic dataset."""
    folder = tmp_path_factory.mktemp("resume")
    data = make_synthetic(n_train=192, n_test=32, image_size=16, num_classes=4, seed=0)
    artifacts.write_dataset(folder / "data.h5", data, {})
    split = make_split(data.y_train, len(data.y_test), [0, 96], [96, 192], None, seed=1)
    artifacts.write_split(folder / "split.h5", split, {})
    artifacts.write_pool(folder / "pool.h5", split.unlabeled, "train", {})
    return folder


def pretext_run(files, settings, encoder_spec, pseudo=None):
    def train(out, stream):
        out.mkdir(exist_ok=True)
        history = pretext_stage.train_pretext(
            data_path=files / "data.h5",
            split_path=files / "split.h5",
            pool_path=files / "pool.h5",
            pseudo_path=pseudo,
            settings=settings,
            encoder_spec=copy.deepcopy(encoder_spec),
            seed=RESUME_SEED,
            meta={},
            encoder_path=out / "encoder.h5",
            history_path=out / "history.csv",
            examples_path=out / "examples.h5",
            resume_dir=out / "resume",
            stream=stream,
        )
        encoder, _ = encoders.read_encoder(out / "encoder.h5")
        return encoder.get_weights(), history

    return train


@pytest.mark.parametrize("kill_at", [2, 3])
def test_rotation_pretext_with_augmentation_and_dropout_resumes_exactly(resume_files, tmp_path, kill_at):
    # Shuffle, in-pipeline augmentation, dropout in the encoder (a seed generator inside
    # the model) and a per-step schedule (the optimizer's step count) all carry over.
    pool, _ = artifacts.read_pool(resume_files / "pool.h5")
    positions, labels = get_method("rotation").pseudo_labels(len(pool), {"rotations": "random"}, RESUME_SEED)
    pseudo = tmp_path / "pseudo.h5"
    artifacts.write_pseudo_labels(pseudo, pool[positions], labels, {})
    settings = {
        "method": "rotation",
        "options": {"rotations": "random"},
        "epochs": 4,
        "batch_size": 32,
        "validation_split": 0.2,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "lr_schedule": {"name": "warmup_cosine", "warmup_epochs": 1},
        "augmentation": {"horizontal_flip": True, "shift": 0.1},
    }
    encoder = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16], "dropout": 0.5}}
    whole, resumed = whole_and_resumed(
        pretext_run(resume_files, settings, encoder, pseudo), tmp_path, kill_at
    )
    assert_same_training(whole, resumed)


def test_two_view_pretext_with_crop_resumes_exactly(resume_files, tmp_path):
    # The two views are drawn inside the model's train_step.
    settings = {
        "method": "simclr",
        "options": {"projector": [16, 8], "temperature": 0.2},
        "epochs": 3,
        "batch_size": 32,
        "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        "augmentation": {"crop": {"scale": [0.3, 1.0]}, "horizontal_flip": True},
    }
    whole, resumed = whole_and_resumed(pretext_run(resume_files, settings, TINY_ENCODER), tmp_path, 3)
    assert_same_training(whole, resumed)


def test_classifier_with_validation_early_stopping_and_plateau_resumes_exactly(resume_files, tmp_path):
    # Early stopping's and the plateau's counters, best value and best weights carry over.
    settings = {
        **SETTINGS,
        "epochs": 6,
        "head": {"hidden": [8], "dropout": 0.3},
        "augmentation": {"shift": 0.1},
        "early_stopping": {"monitor": "val_loss", "patience": 3},
        "reduce_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 0},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    }

    def train(out, stream):
        metrics, history, model = downstream_stage.train_downstream(
            Job(
                data_path=resume_files / "data.h5",
                split_path=resume_files / "split.h5",
                encoder_path=None,
                encoder_spec=copy.deepcopy(TINY_ENCODER),
                settings=settings,
                budget="all",
                seed=RESUME_SEED,
                resume_dir=out / "resume",
                stream=stream,
            ),
        )
        return model.get_weights(), history, metrics

    # Killed in epoch 4: the best epoch (2) lies before the kill, one epoch without
    # improvement has lowered the rate, and the rest stops early, restoring epoch 2.
    whole, resumed = whole_and_resumed(train, tmp_path, 4)
    assert_same_training(whole, resumed)
    history = whole[1]
    assert history.val_loss.idxmin() == 1 and len(history) < settings["epochs"], history
    assert history.learning_rate.iloc[3] < history.learning_rate.iloc[0]
    assert resumed[2].pop("resumed_from_epoch") == 3
    assert whole[2].pop("resumed_from_epoch") == 0
    assert whole[2] == resumed[2]


def test_outlier_filter_resumes_exactly(resume_files, tmp_path):
    # The radius r and its settled-epoch count are model variables; its batches are augmented.
    settings = {
        "method": "one_class_network",
        "options": {"nu": 0.5, "tolerance": 1e-6, "patience": 3, "l2": 0.01},
        "epochs": 4,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "augmentation": {"shift": 0.1},
    }

    def train(out, stream):
        out.mkdir(exist_ok=True)
        outliers_stage.filter_outliers(
            data_path=resume_files / "data.h5",
            split_path=resume_files / "split.h5",
            pool_path=resume_files / "pool.h5",
            settings=settings,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            seed=RESUME_SEED,
            meta={},
            outliers_path=out / "scores.h5",
            inliers_path=out / "inliers.h5",
            history_path=out / "history.csv",
            resume_dir=out / "resume",
            stream=stream,
        )
        scores = artifacts.read_outliers(out / "scores.h5")
        return [np.asarray(scores["scores"]), np.asarray(scores["threshold"])], pd.read_csv(
            out / "history.csv"
        )

    whole, resumed = whole_and_resumed(train, tmp_path, 3)
    assert_same_training(whole, resumed)


def test_a_second_reader_of_the_loss_changes_no_reported_digit(resume_files, tmp_path, monkeypatch):
    """The cause of a resumed outlier filter once reporting its last epoch's loss one unit
    in the last place apart (0.19108981 against 0.19108982, same weights): TensorFlow's
    graph optimizer regrouped the loss metric's running sum `t + (hinge + l2)` into
    `(t + hinge) + l2` or not, depending on the graph around it. Here the graph changes
    in a way that cannot matter (the step's losses get one more reader), and the
    history must not change by one bit. With the regrouping on (TensorFlow's default),
    epoch 4's loss differs here."""
    from selfsup.outliers import one_class_network

    settings = {
        "method": "one_class_network",
        "options": {"nu": 0.5, "tolerance": 1e-6, "patience": 3, "l2": 0.01},
        "epochs": 4,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "augmentation": {"shift": 0.1},
    }

    def history(out):
        keras.utils.set_random_seed(RESUME_SEED)
        outliers_stage.filter_outliers(
            data_path=resume_files / "data.h5",
            split_path=resume_files / "split.h5",
            pool_path=resume_files / "pool.h5",
            settings=settings,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            seed=RESUME_SEED,
            meta={},
            outliers_path=out / "scores.h5",
            inliers_path=out / "inliers.h5",
            history_path=out / "history.csv",
            stream=io.StringIO(),
        )
        return pd.read_csv(out / "history.csv")

    with deterministic_ops():
        (tmp_path / "plain").mkdir()
        plain = history(tmp_path / "plain")
        import tensorflow as tf

        readings = tf.Variable(tf.zeros((3,)), trainable=False)
        report = one_class_network.OneClassModel.report

        def report_and_keep(self, total, hinge, penalty):
            readings.assign(tf.stack([total, hinge, penalty]))  # one more reader of each
            return report(self, total, hinge, penalty)

        monkeypatch.setattr(one_class_network.OneClassModel, "report", report_and_keep)
        (tmp_path / "read").mkdir()
        read = history(tmp_path / "read")
    assert float(readings[0]) > 0  # the extra reader ran
    pd.testing.assert_frame_equal(plain, read, check_exact=True)


@pytest.mark.parametrize("rotations", ["all", "random"])
def test_rotations_turned_once_for_the_run_train_exactly_as_turned_per_batch(
    resume_files, tmp_path, monkeypatch, rotations
):
    # A pure speed-up: the pool turned once (uint8, before scaling) must give the weights
    # and history that turning each float batch gives, bit for bit.
    pool, _ = artifacts.read_pool(resume_files / "pool.h5")
    positions, labels = get_method("rotation").pseudo_labels(len(pool), {"rotations": rotations}, RESUME_SEED)
    pseudo = tmp_path / "pseudo.h5"
    artifacts.write_pseudo_labels(pseudo, pool[positions], labels, {})
    settings = {
        "method": "rotation",
        "options": {"rotations": rotations},
        "epochs": 2,
        "batch_size": 32,
        "validation_split": 0.2,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    }
    train = pretext_run(resume_files, settings, TINY_ENCODER, pseudo)
    precomputed = pretext_stage._precomputed
    used = []

    def spy(*args):
        used.append(precomputed(*args) is not None)
        return precomputed(*args)

    monkeypatch.setattr(pretext_stage, "_precomputed", spy)
    with deterministic_ops():
        keras.utils.set_random_seed(RESUME_SEED)
        once = train(tmp_path / "once", io.StringIO())
        monkeypatch.setattr(pretext_stage, "_precomputed", lambda *args: None)
        keras.utils.set_random_seed(RESUME_SEED)
        per_batch = train(tmp_path / "per_batch", io.StringIO())
    assert used == [True]
    assert_same_training(once, per_batch)


def test_rotations_are_turned_per_batch_where_turning_once_would_change_the_batches():
    from selfsup.data.normalization import Normalization

    rotation = get_method("rotation")
    images = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3, 1)
    positions, labels = np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4)
    plain = Normalization("per_channel", mean=[0.5], std=[0.2])

    def turned(*, augmentation=None, normalization=plain, images=images, limit_mb=1.0):
        args = (rotation, {}, images, positions, labels, augmentation, normalization, limit_mb)
        return pretext_stage._precomputed(*args)

    out, out_labels = turned()
    np.testing.assert_array_equal(out, rotation.rotate(images[positions], labels))
    np.testing.assert_array_equal(out_labels, labels)
    # A mean image does not turn with the image; augmentation comes before the turn.
    assert turned(normalization=Normalization("per_pixel_mean", mean=np.zeros((3, 3, 1)))) is None
    assert turned(augmentation=object()) is None
    # Four turned copies above the memory limit: turned per batch, as a streamed pool.
    assert turned(limit_mb=16 * 9 / 2**20 - 1e-9) is None


def test_flexmatch_resumes_exactly(resume_files, tmp_path):
    """FlexMatch's state beyond weights and optimizer: the weight average, the class
    slots and their status (model variables), the two batch streams and the step's
    augmentation draws (functions of the seed and the step). A threshold of 0.5 fills
    slots from the first epoch on, and without the warm-up the most predicted class's
    threshold is then 0.5, so the status the resumed run starts from is in use."""
    from selfsup.protocols import flexmatch as flexmatch_protocol

    settings = {
        **flexmatch_protocol.OPTIONS,
        "protocol": "flexmatch",
        "steps": 30,
        "eval_every": 10,
        "median_of": 2,
        "batch_size": 16,
        "unlabeled_ratio": 2,
        "threshold": 0.5,
        "warmup": False,
        "feature_layer": None,
        "head": {"hidden": [], "dropout": 0.0},
    }

    def train(out, stream):
        metrics, history = flexmatch_protocol.train(
            Job(
                data_path=resume_files / "data.h5",
                split_path=resume_files / "split.h5",
                settings=settings,
                budget="all",
                seed=RESUME_SEED,
                encoder_spec=copy.deepcopy(TINY_ENCODER),
                pool_path=resume_files / "pool.h5",
                resume_dir=out / "resume",
                stream=stream,
            )
        )
        return [np.asarray(metrics["example"]["probabilities"])], history, metrics

    whole, resumed = whole_and_resumed(train, tmp_path, 2)
    assert_same_training(whole, resumed)
    # Thresholds above 0 from the epoch the resumed run repeats on: its status was in use.
    assert (whole[1].mask_rate.iloc[1:] < 1.0).all()
    assert resumed[2].pop("resumed_from_epoch") == 1 and whole[2].pop("resumed_from_epoch") == 0
    assert whole[2] == resumed[2]
