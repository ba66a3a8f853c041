"""What every protocol family shares: a run (Job), the study's facts a check reads
(StudyFacts), and downstream's training settings with a protocol's overrides."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from selfsup.data.splits import validation_size


def training_settings(study: dict, protocol: str) -> dict:
    """Downstream's shared training settings with the overrides of `protocol` applied:
    what the families that train a Keras classifier read."""
    from selfsup import probes

    downstream = study["downstream"]
    excluded = ("protocols", "overrides", *probes.EVALUATIONS)
    shared = {k: v for k, v in downstream.items() if k not in excluded}
    return {**shared, **downstream.get("overrides", {}).get(protocol, {})}


@dataclass(frozen=True)
class StudyFacts:
    """What a family's check may need besides the study: the sizes of the labeled pool
    (the smallest over replicates) and of the unlabeled pool `all` (at most), the classes,
    the image shape and the dataset's name."""

    labeled: int
    unlabeled: int
    num_classes: int
    image_shape: tuple[int, ...]
    dataset: str


def check_validation_split(study: dict, protocol: str, labeled: int) -> None:
    """A downstream validation split must leave training and validation images in every
    budget ('all': the labeled pool), or its jobs would fail after their predecessors ran."""
    overrides = study["downstream"].get("overrides", {}).get(protocol, {})
    fraction = training_settings(study, protocol).get("validation_split", 0)
    where = f"downstream.overrides.{protocol}" if "validation_split" in overrides else "downstream"
    for budget in study["budgets"]:
        size = labeled if budget == "all" else budget
        try:
            validation_size(size, fraction)
        except ValueError as err:
            raise ValueError(
                f"{where}.validation_split: budget {budget}: {err}; use a larger budget or "
                "validation_split, or 0 to train on every label"
            ) from None


@dataclass
class Job:
    """One run of a protocol: its inputs (paths), settings, budget and seed."""

    data_path: Any
    split_path: Any
    settings: dict
    budget: str
    seed: int
    encoder_spec: dict
    encoder_path: Any = None  # a pretext encoder to start from, or None
    pool_path: Any = None  # the pool's file, for the families that read one
    resume_dir: Any = None
    extra: dict = field(default_factory=dict)  # what a family's own rule passes besides
    stream: TextIO = sys.stderr
