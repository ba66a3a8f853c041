"""Frozen features evaluated as the field reports them (selfsup.probes): a
cross-validated logistic regression or a weighted kNN classifier on the features of a
pretext encoder (linear, knn), of a freshly initialized one (random_*) or on the pixels
(pixels_*). Nothing is trained by gradient."""

from __future__ import annotations

from selfsup import probes
from selfsup.protocols.base import Job

READS_POOL = False
RULE = "downstream"
SECTION = None
TRAINING_SETTINGS = False


def starts(protocol: str, study: dict) -> tuple[bool, ...]:
    return (probes.FEATURE_PROTOCOLS[protocol][0] == "pretext",)


def settings(study: dict, protocol: str) -> dict:
    """Only what the evaluation reads: editing epochs or the optimizer re-runs none of them."""
    downstream = study["downstream"]
    source, evaluation = probes.FEATURE_PROTOCOLS[protocol]
    keys = [key for key in probes.FEATURE_SETTINGS if not (source == "pixels" and key == "feature_layer")]
    return {key: downstream[key] for key in (*keys, evaluation)}


def check(study: dict, facts, chosen: list[str]) -> None:
    """What the feature protocols need of the budgets: as many labeled images as kNN
    neighbours, and two per class for the logistic regression's cross-validation."""
    downstream = study["downstream"]
    used = {evaluation: [] for evaluation in probes.EVALUATIONS}
    for protocol in chosen:
        used[probes.FEATURE_PROTOCOLS[protocol][1]].append(protocol)
    smallest = min(facts.labeled if budget == "all" else budget for budget in study["budgets"])
    if used["knn"] and downstream["knn"]["k"] > smallest:
        raise ValueError(
            f"downstream.knn.k: {downstream['knn']['k']} neighbours, but the smallest budget has "
            f"{smallest} labeled images to search ({', '.join(used['knn'])}); use k <= {smallest} "
            "or larger budgets"
        )
    if used["linear"] and smallest < 2 * facts.num_classes:
        raise ValueError(
            f"budgets: the linear probe ({', '.join(used['linear'])}) chooses its regularization by cross-validation, "
            f"which needs 2 labeled images of each of the {facts.num_classes} classes; the smallest "
            f"budget has {smallest}: use budgets of at least {2 * facts.num_classes}"
        )


def check_models(study: dict, encoder, chosen: list[str]) -> None:
    pass  # the feature layer, which every protocol cuts, is checked with the encoder


def train(job: Job):
    from selfsup.stages.downstream import evaluate_features

    metrics, history, _ = evaluate_features(job)
    return metrics, history
