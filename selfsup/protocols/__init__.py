"""Registry of downstream protocols: one module per protocol family, keyed by its name,
with the protocol names it runs. Adding a protocol is one module, one line here and its
tests (docs/design.md, "Extending").

Entries are import paths, imported when a protocol of the family is first asked about:
a job imports its own family only (its code fingerprint names that one module). A
family module is imported while the workflow parses, so it imports no Keras at module
level (its `train` does). It defines:

- `READS_POOL`: whether its runs train on a pool's unlabeled images themselves (a run
  that starts from a pretext encoder reads the pool through it either way);
- `RULE`: the workflow rule that runs it: `downstream` for every family whose run is one
  job; self-training has rules of its own (its teacher rounds);
- `SECTION`: the study section of its own options, or None;
- `TRAINING_SETTINGS`: whether downstream's training settings (epochs, optimizer,
  augmentation, overrides) apply to it;
- `starts(protocol, study) -> tuple[bool, ...]`: whether its runs start from a pretext
  encoder: (False,) for a baseline, (True,) for a pretext protocol, (False, True) for both;
- `settings(study, protocol) -> dict`: what its job reads (editing anything else
  re-runs none of its jobs);
- `check(study, facts, chosen)`: the study's checks of it that need no Keras, raising
  ValueError naming the key (`facts`: a StudyFacts; `chosen`: the study's protocols of
  this family); `check_models(study, image_shape, chosen)` the ones that build models;
- `train(job: Job) -> (metrics, history)`: train and evaluate one run.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from selfsup.protocols.base import Job, StudyFacts, check_validation_split, training_settings

__all__ = ["Job", "StudyFacts", "check_validation_split", "training_settings"]

# Family -> (the protocol names it runs, as a regular expression: an alternation without
# anchors; its module).
FAMILIES: dict[str, tuple[str, str]] = {
    "classifier": (
        r"supervised|random|frozen|finetune|freeze_[1-9][0-9]*|partial_[1-9][0-9]*",
        "selfsup.protocols.classifier",
    ),
    "features": (
        "linear|knn|random_linear|random_knn|pixels_linear|pixels_knn",
        "selfsup.protocols.features",
    ),
    "self_training": ("self_training", "selfsup.protocols.self_training"),
    "joint": ("joint", "selfsup.protocols.joint"),
    "fixmatch": ("fixmatch", "selfsup.protocols.fixmatch"),
    "flexmatch": ("flexmatch", "selfsup.protocols.flexmatch"),
}
RULES = ("downstream", "self_training")  # the workflow's rules that run protocols
_modules: dict[str, ModuleType] = {}


def family_module(family: str) -> ModuleType:
    if family not in FAMILIES:
        raise KeyError(f"unknown protocol family {family!r}; choose one of {', '.join(FAMILIES)}")
    if family not in _modules:
        _modules[family] = importlib.import_module(module_path(family))
    return _modules[family]


def names(family: str) -> str:
    """The protocol names `family` runs, as a regular expression."""
    return FAMILIES[family][0]


def module_path(family: str) -> str:
    return FAMILIES[family][1]


def families() -> dict[str, ModuleType]:
    return {name: family_module(name) for name in FAMILIES}


def pattern(rule: str | None = None) -> str:
    """The protocol names of every family (those run by `rule`), as one alternation."""
    return "|".join(names(f) for f in FAMILIES if rule is None or family_module(f).RULE == rule)


def __getattr__(attribute: str):
    # PROTOCOL_PATTERN: the schema's protocol pattern equals it (tests/test_schema_agreement.py).
    if attribute == "PROTOCOL_PATTERN":
        return rf"^({pattern()})$"
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


def family_name(protocol: str) -> str:
    """The family that runs `protocol` (imports none)."""
    for name in FAMILIES:
        if re.fullmatch(names(name), protocol):
            return name
    raise ValueError(
        f"unknown protocol {protocol!r}; choose one of "
        + "; ".join(f"{name}: {names(name).replace('|', ', ')}" for name in FAMILIES)
    )


def family(protocol: str) -> ModuleType:
    """The family module that runs `protocol`."""
    return family_module(family_name(protocol))


def parse_protocol(protocol: str) -> tuple[str, int]:
    """("freeze", 3) for "freeze_3"; (protocol, 0) for every other protocol."""
    family_name(protocol)  # an unknown name fails here
    match = re.fullmatch(r"(freeze|partial)_([1-9][0-9]*)", protocol)
    return (match[1], int(match[2])) if match else (protocol, 0)


def starts(protocol: str, study: dict) -> tuple[bool, ...]:
    """Whether the runs of `protocol` start from a pretext encoder, per start it has."""
    return family(protocol).starts(protocol, study)


def uses_pretext(protocol: str, study: dict | None = None) -> bool:
    """Whether `protocol` needs a pretext encoder for every run (a protocol that can
    start from one or not, as the study says, needs none)."""
    return all(starts(protocol, study or {}))


def reads_pool(protocol: str) -> bool:
    return family(protocol).READS_POOL


def classifier_protocol(protocol: str, pretrained: bool) -> str:
    """The freezing protocol of the classifier a protocol trains: the pool families train
    every layer, from scratch or from a pretext encoder."""
    if family_name(protocol) == "classifier":
        return protocol
    return "finetune" if pretrained else "supervised"


def settings(study: dict, protocol: str) -> dict:
    """What a run of `protocol` reads: its family's settings, with the protocol's name."""
    return {**family(protocol).settings(study, protocol), "protocol": protocol}


def check(study: dict, facts: StudyFacts) -> None:
    """Every family's check (no Keras), given the study's protocols of that family (a
    family checks its own section even where the study runs none of its protocols)."""
    for name, module in families().items():
        module.check(study, facts, [p for p in study["downstream"]["protocols"] if family_name(p) == name])
