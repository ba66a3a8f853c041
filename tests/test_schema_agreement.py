"""Every closed list of names in the study schema equals the code's list.

The schema repeats them so that a study file is checked (and documented) without the
library; this test keeps the two in step. A new enum or pattern of names in the schema
must be added to AGREEMENTS, or the first test fails.
"""

import pytest

from selfsup import augment_settings, optimizers, protocols, training_settings
from selfsup.config import SCHEMA_PATH, load_schema
from selfsup.data import normalization, sources

SCHEMA = load_schema(SCHEMA_PATH)

# Schema location of an enum (or a pattern of names) -> what the code accepts there.
AGREEMENTS = {
    "/$defs/optimizer/properties/name": list(training_settings.OPTIMIZERS),
    "/$defs/optimizer/properties/weight_decay_mode": list(optimizers.WEIGHT_DECAY_MODES),
    "/$defs/lr_schedule/properties/name": list(training_settings.SCHEDULES),
    "/$defs/augmentation/properties/preset": list(augment_settings.PRESETS),
    "/$defs/precision": list(training_settings.PRECISIONS),
    "/properties/dataset/properties/name": list(sources.SOURCES),
    "/properties/dataset/properties/normalization": list(normalization.KINDS),
    "/properties/dataset/properties/contamination/properties/source": list(sources.SOURCES),
    "/properties/downstream/properties/protocols/items": protocols.PROTOCOL_PATTERN,
}
# Patterns that constrain the form of a free name, not a list of the code's names.
FREE_NAMES = {
    "/$defs/optimizer/properties/fixed_lr_for/items",
    "/properties/study",
    "/properties/pretext/propertyNames",
}


def closed_lists(node, path=""):
    """(location, enum or pattern) of every enum and pattern in the schema."""
    if isinstance(node, dict):
        if "enum" in node:
            yield path, node["enum"]
        if "pattern" in node:
            yield path, node["pattern"]
        for key, value in node.items():
            yield from closed_lists(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from closed_lists(value, f"{path}/{i}")


def test_every_closed_list_of_the_schema_has_its_agreement():
    found = {path for path, _ in closed_lists(SCHEMA)}
    assert found - FREE_NAMES == set(AGREEMENTS)


@pytest.mark.parametrize("path", sorted(AGREEMENTS))
def test_schema_names_equal_the_code(path):
    schema = dict(closed_lists(SCHEMA))[path]
    assert schema == AGREEMENTS[path]
