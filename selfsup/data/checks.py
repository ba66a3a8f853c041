"""The study's dataset and split sections checked against the declared layouts, before
any job: the registry (selfsup.data.sources) knows every size, so no file is read."""

from __future__ import annotations

from selfsup.config import StudyError, check_options
from selfsup.data import sources
from selfsup.data.dataset import DataError, foreign_count
from selfsup.data.splits import OWN_UNLABELED, fraction_split


def check_dataset(dataset: dict, split: dict | None = None) -> sources.Layout:
    """Fill in the source's option defaults; return its (genuine) layout. Options it would
    ignore are errors. `dataset.contamination` is checked against the layouts and against
    `split` (the study's split section) when given."""
    try:
        source = sources.get_source(dataset["name"])
    except DataError as err:
        raise StudyError(f"dataset.name: {err}") from None
    dataset["options"] = check_options("dataset.options", dataset.get("options", {}), source.options)
    for key, allowed in source.choices.items():
        if dataset["options"][key] not in allowed:
            raise StudyError(
                f"dataset.options.{key}: {dataset['options'][key]!r} is not one of {', '.join(allowed)}"
            )
    if dataset.get("data_dir") and not source.needs_files:
        raise StudyError(f"dataset.data_dir: {dataset['name']} reads no files; remove data_dir")
    try:
        layout = sources.layout(dataset["name"], dataset["options"])
    except DataError as err:
        raise StudyError(f"dataset.options.{err}") from None
    if len(layout.class_names) < 2:
        raise StudyError(
            f"dataset: {dataset['name']} with these options has {len(layout.class_names)} class(es); "
            "a classifier needs at least 2 (accuracy would be 1.0 by construction)"
        )
    dataset["contamination"] = check_contamination(dataset, layout, split)
    return layout


def check_contamination(dataset: dict, layout: sources.Layout, split: dict | None) -> dict | None:
    """dataset.contamination with its defaults filled in (None when absent), checked from
    the layouts alone: the foreign source's images must have the dataset's shape, and be
    enough for the fraction; they can only join a pool of training images."""
    contamination = dataset.get("contamination")
    if contamination is None:
        return None
    where = "dataset.contamination"
    contamination = {"seed": 0, "data_dir": None, **contamination}
    name, fraction = contamination["source"], contamination["fraction"]
    try:
        foreign = sources.get_source(name)
    except DataError as err:
        raise StudyError(f"{where}.source: {err}") from None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise StudyError(f"{where}.fraction: {fraction!r} must lie in (0, 1), both ends excluded")
    if contamination["data_dir"] and not foreign.needs_files:
        raise StudyError(f"{where}.data_dir: {name} reads no files; remove data_dir")
    if split is not None and split.get("unlabeled") == OWN_UNLABELED:
        raise StudyError(
            "split.unlabeled: contamination mixes foreign images into the training-image "
            "pool; remove split.unlabeled: own or contamination"
        )
    if name == dataset["name"] and (foreign.needs_files or dataset["options"] == foreign.options):
        raise StudyError(
            f"{where}.source: {name} (default options) would mix the dataset's own images "
            "into it, not foreign ones; name another source"
        )
    other = sources.layout(name)
    if other.image_shape != layout.image_shape:
        raise StudyError(
            f"{where}.source: {name} images are {other.image_shape}, {dataset['name']} images "
            f"{layout.image_shape}; the shapes must be equal"
        )
    needed = foreign_count(fraction, layout.n_train, up=True)
    if needed > other.n_train:
        raise StudyError(
            f"{where}.fraction: {fraction} of {layout.n_train} training images needs {needed} "
            f"foreign images; {name} has {other.n_train} training images"
        )
    if split is not None:
        if split.get("labeled_fraction") is not None:
            share = split["labeled_fraction"]
            pool = len(fraction_split(layout.n_train, share["fraction"], share["seed"])[1])
        else:
            pool = range_size(split, "unlabeled", layout.n_train)
        if foreign_count(fraction, pool) == 0:
            raise StudyError(
                f"{where}.fraction: {fraction} of an unlabeled pool of {pool} images rounds to "
                "no foreign image; raise the fraction"
            )
    return contamination


def range_size(split: dict, key: str, size: int) -> int:
    bounds = split.get(key)
    if bounds is None:
        return size
    start, stop = bounds
    if not 0 <= start < stop <= size:
        raise StudyError(f"split.{key}: [{start}, {stop}) must lie within [0, {size}) for this dataset")
    return stop - start


def labeled_pool_size(split: dict, layout: sources.Layout, seeds: list[int]) -> int:
    """Size of the labeled pool (the smallest over replicates), checking the split's options."""
    if split.get("labeled_fraction") is not None:
        for key in ("labeled", "unlabeled"):
            if split.get(key) is not None:
                raise StudyError(
                    f"split.{key}: labeled_fraction chooses the labeled and unlabeled images; "
                    f"remove split.{key} or labeled_fraction"
                )
        fraction = split["labeled_fraction"]
        labeled = len(fraction_split(layout.n_train, fraction["fraction"], fraction["seed"])[0])
        if labeled == 0 or labeled == layout.n_train:
            raise StudyError(
                f"split.labeled_fraction: {fraction} labels {labeled} of {layout.n_train} images"
            )
    else:
        labeled = range_size(split, "labeled", layout.n_train)
    if split.get("unlabeled") == OWN_UNLABELED:
        if not layout.n_unlabeled:
            raise StudyError(
                "split.unlabeled: 'own' needs a dataset that ships unlabeled images (stl10); "
                "give an index range of training images instead"
            )
    elif split.get("labeled_fraction") is None:
        range_size(split, "unlabeled", layout.n_train)
    if split.get("folds"):
        if not layout.n_folds:
            raise StudyError("split.folds: this dataset has no predefined folds (stl10 has 10)")
        if split.get("labeled") is not None or split.get("labeled_fraction") is not None:
            raise StudyError(
                "split.folds: the folds are the labeled pools; remove split.labeled / labeled_fraction"
            )
        bad = [s for s in seeds if not 1 <= s <= layout.n_folds]
        if bad:
            raise StudyError(
                f"seeds: with split.folds the seeds are fold numbers 1..{layout.n_folds}; {bad} name no fold"
            )
    monitor = split.get("monitor", 0)
    if split.get("folds") and monitor > labeled - layout.fold_size:
        raise StudyError(
            f"split.monitor: {monitor} held-out images must come from the {labeled - layout.fold_size} "
            "labeled images outside each fold, so that no fold loses any"
        )
    if monitor >= labeled:
        raise StudyError(
            f"split.monitor: {monitor} held-out images leave none of the {labeled} labeled ones for budgets"
        )
    return labeled - monitor
