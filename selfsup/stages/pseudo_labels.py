"""The pseudo-label stage of the methods that have one (rotation's quarter turns): the
targets drawn once for a pool, before training. Needs no Keras: the method's module
imports it only to build models."""

from __future__ import annotations

from selfsup import artifacts
from selfsup.pretext import get_method


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict) -> None:
    """The pseudo_labels rule's job."""
    settings = params["method"]
    seed = int(wildcards["seed"])
    pool, part = artifacts.read_pool(inputs["pool"])
    positions, labels = get_method(settings["method"]).pseudo_labels(len(pool), settings["options"], seed)
    print(f"{len(labels)} pseudo-labels for the {len(pool)} images of pool {wildcards['pool']}")
    meta = {
        "study": params["study"],
        "method": settings["method"],
        "seed": seed,
        "pool": wildcards["pool"],
        "options": settings["options"],
    }
    # Positions index the pool; store indices into its images.
    artifacts.write_pseudo_labels(outputs["labels"], pool[positions], labels, meta)
