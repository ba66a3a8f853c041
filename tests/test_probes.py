"""selfsup.probes and the feature protocols: the logistic regression is the one
scikit-learn fits by hand on the same features, the kNN is the written-out loop, and both
run through the real job function on the right images and labels."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

from selfsup import artifacts, probes
from selfsup.data.generated import make_synthetic
from selfsup.data.splits import make_split
from selfsup.encoders import build_encoder
from selfsup.protocols.base import Job
from selfsup.stages import downstream as downstream_stage

TINY_ENCODER = {"name": "small_cnn", "options": {"filters": [4, 8], "dense": [16]}}
LINEAR = {"c_values": 7, "folds": 3, "max_iter": 1000}


def blobs(n=90, dims=12, classes=3, seed=0, spread=1.5):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, dims)) * spread
    return centres[labels] + rng.normal(size=(n, dims)) * 3 + 10, labels


def test_linear_probe_is_scikit_learns_cross_validated_logistic_regression_by_hand():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x, y = blobs()
    probe = probes.LinearProbe(**LINEAR, seed=4).fit(x, y)
    # By hand: standardize on the whole budget, one plain fit per fold and C, the best
    # mean fold accuracy (the smallest C among ties), refit on everything.
    scaled = StandardScaler().fit_transform(x)
    Cs = np.logspace(-6, 5, 7)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=4).split(scaled, y))
    accuracy = [
        np.mean(
            [
                LogisticRegression(C=C, max_iter=1000, tol=1e-8)
                .fit(scaled[fit], y[fit])
                .score(scaled[held], y[held])
                for fit, held in folds
            ]
        )
        for C in Cs
    ]
    np.testing.assert_allclose(probe.Cs, Cs)
    np.testing.assert_allclose(probe.cv_accuracy, accuracy)
    assert probe.C == Cs[int(np.argmax(accuracy))]
    assert 1e-6 < probe.C < 1e5  # the data makes the choice, not an end of the grid
    final = LogisticRegression(C=probe.C, max_iter=1000).fit(scaled, y)
    np.testing.assert_allclose(probe.predict_proba(x, 3), final.predict_proba(scaled), atol=1e-6)


def test_linear_probe_fills_classes_its_budget_lacks_and_takes_a_class_of_one_image():
    x, y = blobs(classes=3)
    keep = y != 1
    probabilities = probes.LinearProbe(**LINEAR, seed=0).fit(x[keep], y[keep]).predict_proba(x, 3)
    assert probabilities.shape == (90, 3) and (probabilities[:, 1] == 0).all()
    # A stratified budget may hold one image of a rare class: two folds, one without it.
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    with pytest.warns(UserWarning, match="least populated class in y has only 1 members"):
        probe = probes.LinearProbe(**LINEAR, seed=0).fit(x[:7], labels)
    assert probe.folds == 2 and probe.predict_proba(x[:7], 3).shape == (7, 3)
    with pytest.raises(ValueError, match=r"needs 2 classes and a class with 2 labeled images.*\[1, 1, 1\]"):
        probes.LinearProbe(**LINEAR, seed=0).fit(x[:3], np.array([0, 1, 2]))


def test_linear_probe_that_cannot_converge_says_which_setting_to_raise():
    x, y = blobs()
    with pytest.raises(
        RuntimeError,
        match=r"did not converge in 1 L-BFGS iterations for any C.*raise downstream\.linear\.max_iter",
    ):
        probes.LinearProbe(c_values=2, folds=3, max_iter=1, seed=0).fit(x, y)


def test_linear_probe_never_chooses_a_c_whose_fold_fits_did_not_converge():
    # With 3 L-BFGS iterations only the strongest regularizations converge in the folds;
    # the best fold score belongs to one that did not, and it must not be chosen.
    x, y = blobs(spread=0.7)
    probe = probes.LinearProbe(c_values=7, folds=3, max_iter=3, seed=0).fit(x, y)
    best_of_all = int(np.argmax(probe.cv_accuracy))
    assert not probe.converged[best_of_all] and probe.unconverged_cv_fits > 0
    assert probe.converged[probe.chosen] and probe.chosen != best_of_all


def test_knn_is_the_written_out_weighted_vote():
    rng = np.random.default_rng(1)
    bank, bank_labels = rng.normal(size=(40, 6)), rng.integers(0, 4, 40)
    queries = rng.normal(size=(25, 6))
    k, temperature = 7, 0.1
    expected = []
    for q in queries:
        similarity = [q @ b / np.linalg.norm(q) / np.linalg.norm(b) for b in bank]
        votes = np.zeros(4)
        for i in np.argsort(similarity)[::-1][:k]:
            votes[bank_labels[i]] += np.exp(similarity[i] / temperature)
        expected.append(votes / votes.sum())
    got = probes.knn_predict(bank, bank_labels, queries, k=k, temperature=temperature, num_classes=4)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    with pytest.raises(ValueError, match="knn.k is 41, more than the 40 labeled images it searches"):
        probes.knn_predict(bank, bank_labels, queries, k=41, temperature=0.1, num_classes=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probes")
    data = make_synthetic(n_train=256, n_test=128, image_size=16, num_classes=4, seed=0)
    artifacts.write_dataset(folder / "data.h5", data, {})
    split = make_split(data.y_train, len(data.y_test), [64, 256], [0, 64], None, seed=3)
    artifacts.write_split(folder / "split.h5", split, {})
    return folder, data, split


def evaluate(files, protocol, budget="all", seed=1, encoder_path=None, **options):
    folder, _, _ = files
    settings = {
        "protocol": protocol,
        "feature_layer": None,
        "linear": LINEAR,
        "knn": {"k": 10, "temperature": 0.1},
        **options,
    }
    return downstream_stage.evaluate_features(
        Job(
            data_path=folder / "data.h5",
            split_path=folder / "split.h5",
            encoder_path=encoder_path,
            encoder_spec=copy.deepcopy(TINY_ENCODER),
            settings=settings,
            budget=budget,
            seed=seed,
        ),
    )


def test_pixel_protocols_score_the_budgets_images_against_the_test_set(files):
    folder, data, split = files
    labeled = split.budget("all")
    # The job's features are the scaled pixels (normalization none), flattened.
    bank = data.x_train[labeled].reshape(len(labeled), -1) / 255.0
    test = data.x_test[split.test].reshape(len(split.test), -1) / 255.0
    votes = probes.knn_predict(bank, data.y_train[labeled], test, k=10, temperature=0.1, num_classes=4)
    metrics, history, model = evaluate(files, "pixels_knn")
    assert model is None and metrics["trainable_params"] == 0 and metrics["features"] == 256
    assert metrics["test_accuracy"] == pytest.approx(np.mean(votes.argmax(axis=1) == data.y_test[split.test]))
    assert metrics["test_accuracy"] > 0.4  # chance is 0.25
    np.testing.assert_allclose(metrics["example"]["probabilities"], votes[0], rtol=1e-6)
    assert list(history.columns) == ["k", "temperature", "leave_one_out_accuracy"]

    metrics, history, _ = evaluate(files, "pixels_linear")
    assert metrics["test_accuracy"] > 0.4 and metrics["train_accuracy"] >= metrics["test_accuracy"]
    assert metrics["linear"]["C"] in set(history.C) and len(history) == LINEAR["c_values"]
    assert metrics["linear"]["cv_folds"] == 3 and metrics["trainable_params"] == 256 * 4 + 4


def test_random_and_pretext_encoders_give_their_own_features(files, tmp_path):
    folder, data, split = files
    keras.utils.set_random_seed(5)
    random_metrics, _, _ = evaluate(files, "random_linear", budget=64)
    # The random encoder is the one the job's seed draws, as supervised training starts from.
    keras.utils.set_random_seed(5)
    again, _, _ = evaluate(files, "random_linear", budget=64)
    assert again["test_accuracy"] == random_metrics["test_accuracy"]
    assert random_metrics["features"] == 16 and random_metrics["n_labels"] == 64

    # A pretext encoder file: its weights make the features, whatever the seed draws.
    encoder = build_encoder(TINY_ENCODER["name"], (16, 16, 1), **TINY_ENCODER["options"])
    path = tmp_path / "encoder.h5"
    artifacts.write_encoder(
        path, encoder, {**TINY_ENCODER, "input_shape": [16, 16, 1]}, {"method": "rotation"}
    )
    labeled = split.budget(64)
    bank = encoder(data.x_train[labeled] / np.float32(255), training=False)
    test = encoder(data.x_test[split.test] / np.float32(255), training=False)
    votes = probes.knn_predict(
        np.asarray(bank), data.y_train[labeled], np.asarray(test), k=10, temperature=0.1, num_classes=4
    )
    for draw in (5, 6):
        keras.utils.set_random_seed(draw)
        metrics, _, _ = evaluate(files, "knn", budget=64, encoder_path=path)
        assert metrics["test_accuracy"] == pytest.approx(
            np.mean(votes.argmax(axis=1) == data.y_test[split.test])
        )
        assert metrics["params"] == encoder.count_params()
