"""The downstream protocols' names and what the workflow needs to know of each: which
start from a pretext encoder, which read a pool, the pattern a protocol name matches.

No Keras here: the workflow reads these while it parses (selfsup.downstream trains the
classifiers, selfsup.probes evaluates frozen features). The schema's protocol pattern
must equal PROTOCOL_PATTERN (tests/test_protocols.py).
"""

from __future__ import annotations

import re

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
