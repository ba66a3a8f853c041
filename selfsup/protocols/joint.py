"""The joint model (selfsup.joint): one network with a class and a reconstruction
output, trained on the budget and the pool's unlabeled images, whose class loss is
masked out. It starts from no pretext encoder."""

from __future__ import annotations

from selfsup.protocols.base import Job, check_validation_split, training_settings

READS_POOL = True
RULE = "downstream"
SECTION = "joint"
TRAINING_SETTINGS = True


def starts(protocol: str, study: dict) -> tuple[bool, ...]:
    return (False,)


def settings(study: dict, protocol: str) -> dict:
    return {**training_settings(study, protocol), "protocol": protocol, "joint": study[SECTION]}


def check(study: dict, facts, chosen: list[str]) -> None:
    for protocol in chosen:
        check_validation_split(study, protocol, facts.labeled)


def check_models(study: dict, encoder, chosen: list[str]) -> None:
    """Its options (selfsup.joint.OPTIONS, which imports Keras), and its model built on
    the study's encoder (a code layer that does not exist, a decoder that cannot reach
    the image's shape)."""
    from selfsup import joint
    from selfsup.config import check_options

    study[SECTION] = check_options(SECTION, study.get(SECTION) or {}, joint.OPTIONS)
    if chosen:
        joint.check(study[SECTION])
        joint.build_joint(encoder, 2, study[SECTION], head=study["downstream"].get("head"))


def train(job: Job):
    import numpy as np

    from selfsup import artifacts
    from selfsup.data.dataset import NO_LABEL
    from selfsup.stages.downstream import ExtraExamples, train_downstream

    pool, part = artifacts.read_pool(job.pool_path)
    extra = ExtraExamples(part, pool, labels=np.full(len(pool), NO_LABEL))
    metrics, history, _ = train_downstream(job, extra)
    return metrics, history
