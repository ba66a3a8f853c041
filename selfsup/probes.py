"""Evaluations of frozen features, as the field reports them: a converged logistic
regression and a weighted kNN classifier.

`linear` follows the linear evaluation of SimCLR's transfer experiments (Chen et al.
2020, appendix; the protocol of Kornblith et al. 2019, "Do better ImageNet models
transfer better?"): features of the frozen network, extracted once and without
augmentation, an L2-regularized multinomial logistic regression fitted with L-BFGS, its
regularization chosen among 45 log-spaced values of C from 1e-6 to 1e5. Deviations, and
why: the strength is chosen by stratified k-fold cross-validation on the labeled budget
itself (a few-label study has no validation set to spare), and the features are
standardized first (scikit-learn's L-BFGS converges far faster on standardized features;
the scaler is fitted on the whole budget, so the folds share its mean and scale).

`knn` is the weighted kNN classifier of Wu et al. (2018) that solo-learn
(solo/utils/knn.py: k=20, T=0.07 by default) and DINO report: cosine similarity between
L2-normalized features, the k most similar labeled images vote for their class with
weight exp(similarity / T). The budget's images are the memory bank.

No Keras here: features come in as arrays (selfsup.stages.downstream extracts them).
"""

from __future__ import annotations

import warnings

import numpy as np

# Protocol -> (feature source, evaluation); selfsup.downstream lists the protocols.
FEATURE_PROTOCOLS = {
    "linear": ("pretext", "linear"),
    "knn": ("pretext", "knn"),
    "random_linear": ("random", "linear"),
    "random_knn": ("random", "knn"),
    "pixels_linear": ("pixels", "linear"),
    "pixels_knn": ("pixels", "knn"),
}
# Their evaluations, each with its options under downstream.<evaluation> in a study.
EVALUATIONS = tuple(dict.fromkeys(evaluation for _, evaluation in FEATURE_PROTOCOLS.values()))
# Settings a feature protocol's job reads (none of the training settings apply).
FEATURE_SETTINGS = ("feature_layer", "memory_limit_mb", "deterministic")

# The C grid of SimCLR's small-dataset linear evaluation: 45 values, 1e-6 to 1e5.
C_RANGE = (1e-6, 1e5)
LINEAR_OPTIONS = {"c_values": 45, "folds": 5, "max_iter": 1000}
KNN_OPTIONS = {"k": 20, "temperature": 0.07}


def knn_votes(similarity: np.ndarray, bank_labels: np.ndarray, k: int, temperature: float, num_classes: int):
    """(queries, classes) vote weights: each query's k most similar bank entries (columns
    of `similarity`) vote for their label with weight exp(similarity / temperature)."""
    k = min(k, similarity.shape[1])
    neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    nearest = np.take_along_axis(similarity, neighbours, axis=1)
    # Shifting by each row's largest similarity leaves the vote unchanged and keeps exp finite.
    weights = np.exp((nearest - nearest.max(axis=1, keepdims=True)) / temperature)
    votes = np.zeros((len(similarity), num_classes))
    np.add.at(votes, (np.arange(len(similarity))[:, None], bank_labels[neighbours]), weights)
    return votes


def unit_rows(features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def knn_predict(bank, bank_labels, queries, *, k: int, temperature: float, num_classes: int) -> np.ndarray:
    """Class probabilities (normalized votes) of `queries` by weighted kNN on `bank`."""
    bank_labels = np.asarray(bank_labels)
    if k > len(bank):
        raise ValueError(f"knn.k is {k}, more than the {len(bank)} labeled images it searches")
    bank = unit_rows(bank)
    out = []
    for start in range(0, len(queries), 1024):  # a (1024, bank) similarity block at a time
        similarity = unit_rows(queries[start : start + 1024]) @ bank.T
        out.append(knn_votes(similarity, bank_labels, k, temperature, num_classes))
    votes = np.concatenate(out)
    return votes / votes.sum(axis=1, keepdims=True)


def c_grid(c_values: int) -> np.ndarray:
    return np.logspace(np.log10(C_RANGE[0]), np.log10(C_RANGE[1]), c_values)


class LinearProbe:
    """Standardize, choose C by stratified k-fold cross-validation, refit on every image.

    After `fit`: `C` (the chosen strength, `Cs[chosen]`, among the C values whose fold
    fits all converged: `converged`), `cv_accuracy` (mean fold accuracy per C of `Cs`),
    `folds`, `n_iter` of the final fit, `unconverged_cv_fits` (fold fits that stopped at
    max_iter)."""

    def __init__(self, *, c_values: int, folds: int, max_iter: int, seed: int):
        self.Cs = c_grid(c_values)
        self.requested_folds = folds
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, features, labels) -> LinearProbe:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler

        labels = np.asarray(labels)
        counts = np.bincount(labels)[np.unique(labels)]
        # As many folds as the rarest class has images, at least 2: a class with fewer images
        # than folds is missing from some of them (scikit-learn warns, and the folds still
        # score every C alike).
        self.folds = int(min(self.requested_folds, max(2, counts.min())))
        if len(counts) < 2 or counts.max() < self.folds:
            raise ValueError(
                f"the linear probe chooses its regularization by cross-validation, which needs "
                f"2 classes and a class with 2 labeled images; the budget's classes have {counts.tolist()}"
            )
        self.scaler = StandardScaler().fit(features)
        x = self.scaler.transform(features)
        folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search = LogisticRegressionCV(
                Cs=self.Cs,
                l1_ratios=(0.0,),
                cv=folds,
                scoring="accuracy",
                max_iter=self.max_iter,
                refit=False,
                use_legacy_attributes=False,
            ).fit(x, labels)
        for caught_warning in caught:  # convergence is judged below, per C
            if not issubclass(caught_warning.category, ConvergenceWarning):
                warnings.warn(caught_warning.message, caught_warning.category, stacklevel=2)
        self.cv_accuracy = np.asarray(search.scores_).reshape(self.folds, -1, len(self.Cs))[:, 0].mean(axis=0)
        iterations = np.asarray(search.n_iter_).reshape(self.folds, -1, len(self.Cs))[:, 0]
        # A C whose fold fits stopped at max_iter was scored on unconverged models: not chosen.
        converged = (iterations < self.max_iter).all(axis=0)
        self.unconverged_cv_fits = int((iterations >= self.max_iter).sum())
        if not converged.any():
            raise RuntimeError(
                f"the linear probe did not converge in {self.max_iter} L-BFGS iterations for any C "
                "in cross-validation; raise downstream.linear.max_iter"
            )
        # The first best is the smallest C: the strongest regularization among the ties.
        self.converged = converged
        self.chosen = int(np.argmax(np.where(converged, self.cv_accuracy, -np.inf)))
        self.C = float(self.Cs[self.chosen])
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                self.model = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x, labels)
            except ConvergenceWarning:
                raise RuntimeError(
                    f"the linear probe did not converge in {self.max_iter} L-BFGS iterations at the "
                    f"chosen C={self.C:g}; raise downstream.linear.max_iter"
                ) from None
        self.n_iter = int(np.max(self.model.n_iter_))
        return self

    def predict_proba(self, features, num_classes: int) -> np.ndarray:
        """Probabilities over all `num_classes` (a budget may miss a class)."""
        probabilities = np.zeros((len(features), num_classes))
        probabilities[:, self.model.classes_] = self.model.predict_proba(self.scaler.transform(features))
        return probabilities
