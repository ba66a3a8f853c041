"""Self-training: rounds of teacher pseudo-labels on the pool, weighted by their
certainty, then a student on labels plus pseudo-labels, from scratch or fine-tuning a
pretext encoder (self_training.from_pretext). Its rounds are jobs of their own (rules
self_training_round and self_training); `train` is the student's."""

from __future__ import annotations

from selfsup.protocols.base import Job, check_validation_split, training_settings

READS_POOL = True
RULE = "self_training"
SECTION = "self_training"
TRAINING_SETTINGS = True


def starts(protocol: str, study: dict) -> tuple[bool, ...]:
    return (False, True) if (study.get(SECTION) or {}).get("from_pretext") else (False,)


def settings(study: dict, protocol: str) -> dict:
    return training_settings(study, protocol)


def check(study: dict, facts, chosen: list[str]) -> None:
    rounds = study[SECTION]
    if not isinstance(rounds["rounds"], int) or rounds["rounds"] < 1:
        raise ValueError(
            f"self_training.rounds: {rounds['rounds']!r} rounds; allowed: an integer of at least 1 "
            "(without rounds there are no pseudo-labels: use the supervised protocol)"
        )
    if not 0 < rounds["threshold"] <= 1:
        raise ValueError(
            f"self_training.threshold: {rounds['threshold']!r}; allowed: a top probability in (0, 1]"
        )
    if rounds["from_pretext"] and not study["pretext"]:
        raise ValueError(
            "self_training.from_pretext: there is no pretext method to start from; add one under pretext"
        )
    for protocol in chosen:
        check_validation_split(study, protocol, facts.labeled)


def check_models(study: dict, encoder, chosen: list[str]) -> None:
    pass  # its classifier is the finetune or supervised one, checked with the encoder


def train(job: Job):
    """The student of a run whose rounds are `job.extra["rounds"]` (pseudo-label files)."""
    from selfsup.stages.self_training import self_training_round

    metrics, history, _ = self_training_round(job, list(job.extra.get("rounds", [])), threshold=None)
    return metrics, history
