"""FlexMatch (Zhang et al. 2021) as a downstream protocol: FixMatch whose threshold is
class-wise, from the learning status of each class (selfsup.fixmatch.FlexMatchStatus),
with its warm-up. Everything else, its options included, is FixMatch's
(selfsup/protocols/fixmatch.py), under a study section of its own.

Reference, read before writing: USB, microsoft/Semi-supervised-learning:
semilearn/algorithms/flexmatch/flexmatch.py and utils.py (`FlexMatchThresholdingHook`),
config/classic_cv/flexmatch/flexmatch_cifar10_40_0.yaml (`thresh_warmup: True`).
"""

from __future__ import annotations

from selfsup.protocols import fixmatch
from selfsup.protocols.base import Job

READS_POOL = True
RULE = "downstream"
SECTION = "flexmatch"
TRAINING_SETTINGS = False
# warmup: USB's thresh_warmup, the slots no prediction has reached yet count in the
# largest class count, so thresholds rise from 0 as the pool is labeled.
OPTIONS = {**fixmatch.OPTIONS, "warmup": True}
starts = fixmatch.starts
settings = fixmatch.settings
check_models = fixmatch.check_models


def check(study: dict, facts, chosen: list[str]) -> None:
    fixmatch.check(study, facts, chosen, OPTIONS)


def train(job: Job):
    return fixmatch.train(job, flexmatch=True)
