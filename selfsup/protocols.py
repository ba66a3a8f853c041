"""The downstream protocols' names and what the workflow needs to know of each: which
start from a pretext encoder, which read a pool, the pattern a protocol name matches.

No Keras here: the workflow reads these while it parses (selfsup.downstream trains the
classifiers, selfsup.probes evaluates frozen features). The schema's protocol pattern
must equal PROTOCOL_PATTERN (tests/test_protocols.py).
"""

from __future__ import annotations

import re

from selfsup import probes
from selfsup.data.splits import validation_size
from selfsup.probes import FEATURE_PROTOCOLS

FIXED_PROTOCOLS = ("supervised", "random", "frozen", "finetune")
CLASSIFIER_PATTERN = (
    rf"({'|'.join((*FIXED_PROTOCOLS, *FEATURE_PROTOCOLS))}|freeze_[1-9][0-9]*|partial_[1-9][0-9]*)"
)
POOL_PROTOCOLS = ("self_training", "joint")  # protocols that also train on a pool's images
PROTOCOL_PATTERN = rf"^({CLASSIFIER_PATTERN[1:-1]}|{'|'.join(POOL_PROTOCOLS)})$"
# Protocols that use no pretext encoder: a freshly initialized one, or the pixels.
BASELINES = ("supervised", "random", "random_linear", "random_knn", "pixels_linear", "pixels_knn")


def parse_protocol(protocol: str) -> tuple[str, int]:
    """("freeze", 3) for "freeze_3"; (protocol, 0) for the fixed ones."""
    if not re.match(PROTOCOL_PATTERN, protocol):
        raise ValueError(
            f"unknown protocol {protocol!r}; choose "
            f"{', '.join((*FIXED_PROTOCOLS, *FEATURE_PROTOCOLS, *POOL_PROTOCOLS))}, "
            "freeze_<k> or partial_<k>"
        )
    if protocol in POOL_PROTOCOLS or protocol in FEATURE_PROTOCOLS:
        return protocol, 0
    kind, _, k = protocol.partition("_")
    return kind, int(k or 0)


def uses_pretext(protocol: str) -> bool:
    """Whether the protocol starts from a pretext encoder (self_training can do both)."""
    return parse_protocol(protocol)[0] not in (*BASELINES, *POOL_PROTOCOLS)


def classifier_protocol(protocol: str, pretrained: bool) -> str:
    """The freezing protocol of the classifier a protocol trains: pool protocols train
    every layer, from scratch or from a pretext encoder."""
    if protocol in POOL_PROTOCOLS:
        return "finetune" if pretrained else "supervised"
    return protocol


def downstream_settings(study: dict, protocol: str) -> dict:
    """The training settings of `protocol`: the shared ones with its overrides applied."""
    settings = study["downstream"]
    if protocol in probes.FEATURE_PROTOCOLS:
        # Only what the evaluation reads: editing epochs or the optimizer re-runs none of them.
        source, evaluation = probes.FEATURE_PROTOCOLS[protocol]
        keys = [key for key in probes.FEATURE_SETTINGS if not (source == "pixels" and key == "feature_layer")]
        return {key: settings[key] for key in (*keys, evaluation)}
    excluded = ("protocols", "overrides", *probes.EVALUATIONS)
    shared = {k: v for k, v in settings.items() if k not in excluded}
    return {**shared, **settings.get("overrides", {}).get(protocol, {})}


def check_feature_protocols(study: dict, labeled: int, num_classes: int) -> None:
    """What the feature protocols need of the budgets: as many labeled images as kNN
    neighbours, and two per class for the logistic regression's cross-validation."""
    settings = study["downstream"]
    used = {evaluation: [] for evaluation in probes.EVALUATIONS}
    for protocol in settings["protocols"]:
        if protocol in probes.FEATURE_PROTOCOLS:
            used[probes.FEATURE_PROTOCOLS[protocol][1]].append(protocol)
    smallest = min(labeled if budget == "all" else budget for budget in study["budgets"])
    if used["knn"] and settings["knn"]["k"] > smallest:
        raise ValueError(
            f"downstream.knn.k: {settings['knn']['k']} neighbours, but the smallest budget has "
            f"{smallest} labeled images to search ({', '.join(used['knn'])}); use k <= {smallest} "
            "or larger budgets"
        )
    if used["linear"] and smallest < 2 * num_classes:
        raise ValueError(
            f"budgets: the linear probe ({', '.join(used['linear'])}) chooses its regularization by cross-validation, "
            f"which needs 2 labeled images of each of the {num_classes} classes; the smallest "
            f"budget has {smallest}: use budgets of at least {2 * num_classes}"
        )


def check_validation_splits(study: dict, labeled: int) -> None:
    """A downstream validation split must leave training and validation images in every
    budget ('all': the labeled pool), or its jobs would fail after their predecessors ran."""
    settings = study["downstream"]
    for protocol in settings["protocols"]:
        if protocol in probes.FEATURE_PROTOCOLS:
            continue
        fraction = downstream_settings(study, protocol).get("validation_split", 0)
        where = (
            f"downstream.overrides.{protocol}"
            if "validation_split" in settings.get("overrides", {}).get(protocol, {})
            else "downstream"
        )
        for budget in study["budgets"]:
            size = labeled if budget == "all" else budget
            try:
                validation_size(size, fraction)
            except ValueError as err:
                raise ValueError(
                    f"{where}.validation_split: budget {budget}: {err}; use a larger budget or "
                    "validation_split, or 0 to train on every label"
                ) from None
