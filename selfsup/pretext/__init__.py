"""Registry of pretext methods: one class per method (selfsup.pretext.base.PretextMethod),
keyed by its config name. Adding a method is one module, one line here and its tests.

Entries are import paths, imported when a method is first asked for: a job that needs
only a method's pseudo-labels (rotation's quarter turns) never imports Keras and
TensorFlow, several seconds of every such job (benchmarks/results/job_cost.md).
"""

from __future__ import annotations

import importlib

from selfsup.pretext.base import PretextMethod

METHODS: dict[str, str] = {
    "rotation": "selfsup.pretext.rotation:Rotation",
    "autoencoder": "selfsup.pretext.autoencoder:Autoencoder",
    "denoising_autoencoder": "selfsup.pretext.denoising_autoencoder:DenoisingAutoencoder",
    "inpainting": "selfsup.pretext.inpainting:Inpainting",
    "simclr": "selfsup.pretext.simclr:SimCLR",
    "nnclr": "selfsup.pretext.nnclr:NNCLR",
    "simsiam": "selfsup.pretext.simsiam:SimSiam",
    "barlow_twins": "selfsup.pretext.barlow_twins:BarlowTwins",
    "byol": "selfsup.pretext.byol:BYOL",
    "mocov2plus": "selfsup.pretext.mocov2plus:MoCoV2Plus",
    "vicreg": "selfsup.pretext.vicreg:VICReg",
}
# The methods whose workflow makes pseudo-labels before training (a rule of their own):
# the workflow reads this while it parses, without importing a method and Keras. The
# contract test checks it against the classes that implement `pseudo_labels`.
PSEUDO_LABELS = frozenset({"rotation"})
_instances: dict[str, PretextMethod] = {}


def get_method(name: str) -> PretextMethod:
    if name not in METHODS:
        raise KeyError(f"unknown pretext method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    if name not in _instances:
        module, cls = METHODS[name].split(":")
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]


def method_module(name: str) -> str:
    """The module of method `name` (what its jobs run), without importing it."""
    if name not in METHODS:
        raise KeyError(f"unknown pretext method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name].split(":")[0]


def has_pseudo_labels(name: str) -> bool:
    method_module(name)  # an unknown name fails here
    return name in PSEUDO_LABELS
