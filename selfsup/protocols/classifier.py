"""Classifiers trained on the labeled budget under a freezing protocol
(selfsup.downstream.apply_protocol): supervised and random start from a freshly
initialized encoder, the others from a pretext encoder."""

from __future__ import annotations

from selfsup.protocols.base import Job, check_validation_split, training_settings

READS_POOL = False
RULE = "downstream"
SECTION = None
TRAINING_SETTINGS = True
FROM_SCRATCH = ("supervised", "random")


def starts(protocol: str, study: dict) -> tuple[bool, ...]:
    return (protocol not in FROM_SCRATCH,)


def settings(study: dict, protocol: str) -> dict:
    return training_settings(study, protocol)


def check(study: dict, facts, chosen: list[str]) -> None:
    for protocol in chosen:
        check_validation_split(study, protocol, facts.labeled)


def check_models(study: dict, encoder, chosen: list[str]) -> None:
    """Each freezing protocol fits the encoder (freeze_9 on 4 conv layers does not)."""
    from selfsup import downstream

    for protocol in chosen:
        downstream.apply_protocol(encoder, protocol)


def train(job: Job):
    from selfsup.stages.downstream import train_downstream

    metrics, history, _ = train_downstream(job)
    return metrics, history
