"""Cross-field checks of a study, after its JSON schema has passed.

The schema (schemas/study.schema.yaml) checks structure, types and defaults. What it
cannot know lives here: the registries of methods and encoders, each method's options,
pool sizes against label budgets, and layers a protocol refers to. `check_study`
returns the study with every default filled in, so the workflow passes explicit
values to its jobs, and raises StudyError naming the key and the allowed values.
"""

from __future__ import annotations

import copy
import json

from selfsup import augment, schedules, training
from selfsup.data import sources
from selfsup.data.dataset import DataError, foreign_count
from selfsup.data.splits import OWN_UNLABELED, fraction_split


class StudyError(ValueError):
    """The study file asks for something the pipeline cannot do."""


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
    layout = sources.layout(dataset["name"], dataset["options"])
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
            pool = _range_size(split, "unlabeled", layout.n_train)
        if foreign_count(fraction, pool) == 0:
            raise StudyError(
                f"{where}.fraction: {fraction} of an unlabeled pool of {pool} images rounds to "
                "no foreign image; raise the fraction"
            )
    return contamination


def check_options(where: str, options: dict, defaults: dict) -> dict:
    """`options` merged over `defaults`, rejecting unknown keys and wrong types."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise StudyError(
            f"{where}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(defaults)) or 'none'}"
        )
    merged = {**copy.deepcopy(defaults), **options}
    for key, value in options.items():
        default = defaults[key]
        if default is None:
            continue
        expected = (int, float) if isinstance(default, float) else type(default)
        if isinstance(default, (list, tuple)):
            expected = (list, tuple)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise StudyError(
                f"{where}.{key}: expected {type(default).__name__} like {default!r}, got {value!r}"
            )
    return merged


def _range_size(split: dict, key: str, size: int) -> int:
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
        labeled = _range_size(split, "labeled", layout.n_train)
    if split.get("unlabeled") == OWN_UNLABELED:
        if not layout.n_unlabeled:
            raise StudyError(
                "split.unlabeled: 'own' needs a dataset that ships unlabeled images (stl10); "
                "give an index range of training images instead"
            )
    elif split.get("labeled_fraction") is None:
        _range_size(split, "unlabeled", layout.n_train)
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


def check_training(where: str, settings: dict, channels: int | None = None) -> None:
    """Cross-key rules of one stage's training settings (schedules, augmentation,
    optimizer); `channels` of the images rules out colour augmentations on grayscale."""
    try:
        schedules.check(settings)
        augment.check(settings.get("augmentation") or {}, channels=channels)
        if settings.get("optimizer"):
            training.check_optimizer(settings["optimizer"])
    except ValueError as err:
        raise StudyError(f"{where}.{err}") from None


def check_monitors(where: str, settings: dict, reported: list[str]) -> None:
    """Every metric a callback watches must be one the model reports: `reported` names
    training metrics; their val_ forms exist when there is a validation split."""
    allowed = list(reported)
    if settings.get("validation_split", 0):
        allowed += [f"val_{name}" for name in reported if name != "knn_accuracy"]
    for section in ("early_stopping", "reduce_on_plateau", "keep_best"):
        if settings.get(section):
            monitor = settings[section].get("monitor", schedules.DEFAULT_MONITOR)
            if monitor not in allowed:
                raise StudyError(
                    f"{where}.{section}.monitor: {monitor!r} is not reported by this training; "
                    f"allowed: {', '.join(allowed)}"
                )


def check_study(config: dict) -> dict:
    """Validate what the schema cannot; return the study with all defaults filled in."""
    from selfsup import downstream, encoders, pretext

    study = json.loads(json.dumps(config))  # also breaks aliasing of schema defaults
    layout = check_dataset(study["dataset"], study["split"])
    image_shape = layout.image_shape

    split = study["split"]
    labeled = labeled_pool_size(split, layout, study["seeds"])
    _range_size(split, "test", layout.n_test)
    for budget in study["budgets"]:
        if budget != "all" and budget > labeled:
            raise StudyError(
                f"budgets: {budget} labels exceed the labeled pool of {labeled} (split); "
                f"use budgets <= {labeled} or 'all'"
            )
    normalization = study["dataset"].get("normalization", "none")

    encoder = study["encoder"]
    try:
        defaults = encoders.encoder_options(encoder["name"])
    except KeyError as err:
        raise StudyError(f"encoder.name: {err.args[0]}") from None
    encoder["options"] = check_options("encoder.options", encoder.get("options", {}), defaults)

    def build_encoder():
        return encoders.build_encoder(encoder["name"], image_shape, **encoder["options"])

    model = build_encoder()

    for name, entry in study["pretext"].items():
        entry.setdefault("method", name)
        try:
            method = pretext.get_method(entry["method"])
        except KeyError as err:
            raise StudyError(f"pretext.{name}.method: {err.args[0]}") from None
        entry["options"] = check_options(f"pretext.{name}.options", entry.get("options", {}), method.OPTIONS)
        check_training(f"pretext.{name}", entry, image_shape[-1])
        if getattr(method, "PIXEL_TARGETS", False) and normalization != "none":
            raise StudyError(
                f"pretext.{name}: {entry['method']} reconstructs pixels in [0, 1], so it cannot take "
                f"normalized inputs; set dataset.normalization to none (it is {normalization!r})"
            )
        try:
            method.check(entry["options"], entry)
            # Building the model is cheap and catches what only the encoder's shapes
            # reveal (an autoencoder code as wide as the image), before any job runs.
            method.build(build_encoder(), entry["options"], augmentation=None)
        except ValueError as err:
            raise StudyError(f"pretext.{name}.options: {err}") from None
        watched = ["knn_accuracy"] if split.get("monitor", 0) else []
        knn = entry.get("knn_monitor") or {}
        for section in ("early_stopping", "reduce_on_plateau", "keep_best"):
            if (entry.get(section) or {}).get("monitor") == "knn_accuracy" and knn.get("every", 1) > 1:
                raise StudyError(
                    f"pretext.{name}.{section}.monitor: knn_accuracy is computed every "
                    f"{knn['every']} epochs (knn_monitor.every), so the epochs between have none; "
                    "set knn_monitor.every to 1 to watch it"
                )
        check_monitors(f"pretext.{name}", entry, method.metric_names(entry["options"]) + watched)

    check_pools(study, image_shape)

    settings = study["downstream"]
    protocols = settings["protocols"]
    needs_pretext = [p for p in protocols if downstream.uses_pretext(p)]
    if needs_pretext and not study["pretext"]:
        raise StudyError(
            f"downstream.protocols: {needs_pretext} need a pretext method; add one under pretext"
        )
    for protocol in settings.get("overrides", {}):
        if protocol not in protocols:
            raise StudyError(f"downstream.overrides.{protocol}: not one of downstream.protocols {protocols}")
    for protocol in protocols:
        where = (
            "downstream"
            if protocol not in settings.get("overrides", {})
            else f"downstream.overrides.{protocol}"
        )
        check_training(where, downstream_settings(study, protocol), image_shape[-1])
        check_monitors(where, downstream_settings(study, protocol), ["loss", "accuracy"])
    try:
        features = downstream.truncate(model, settings.get("feature_layer"))
        for protocol in protocols:
            downstream.apply_protocol(features, downstream.classifier_protocol(protocol, pretrained=True))
    except ValueError as err:
        raise StudyError(f"downstream: {err}") from None
    return study


# Pool name -> what makes it; every stage that reads unlabeled images reads one of them.
POOLS = {"all": "the split (every unlabeled image)", "inliers": "the outlier filter (outliers)"}


def check_pools(study: dict, image_shape) -> None:
    """Pool names, the outlier filter's settings, self-training's and the joint model's."""
    from selfsup import downstream, encoders, joint, outliers

    for pool in study["pools"]:
        if pool not in POOLS:
            raise StudyError(
                f"pools: no stage produces a pool named {pool!r}; allowed: "
                + ", ".join(f"{name} (made by {maker})" for name, maker in POOLS.items())
            )
    protocols = study["downstream"]["protocols"]
    readers = [p for p in protocols if p in downstream.POOL_PROTOCOLS]
    if study["pools"] != ["all"] and not (study["pretext"] or readers):
        raise StudyError(
            f"pools: {study['pools']} but nothing reads a pool; add a pretext method or the "
            f"protocols {' or '.join(downstream.POOL_PROTOCOLS)}, or remove pools"
        )

    entry = study["outliers"]
    try:
        scorer = outliers.get_scorer(entry["method"])
    except KeyError as err:
        raise StudyError(f"outliers.method: {err.args[0]}") from None
    entry["options"] = check_options("outliers.options", entry.get("options", {}), scorer.OPTIONS)
    try:
        scorer.check(entry["options"])
    except ValueError as err:
        raise StudyError(f"outliers.options.{err}") from None
    check_training("outliers", entry, image_shape[-1])
    check_monitors("outliers", entry, ["loss"])

    rounds = study["self_training"]
    if not isinstance(rounds["rounds"], int) or rounds["rounds"] < 1:
        raise StudyError(
            f"self_training.rounds: {rounds['rounds']!r} rounds; allowed: an integer of at least 1 "
            "(without rounds there are no pseudo-labels: use the supervised protocol)"
        )
    if not 0 < rounds["threshold"] <= 1:
        raise StudyError(
            f"self_training.threshold: {rounds['threshold']!r}; allowed: a top probability in (0, 1]"
        )
    if rounds["from_pretext"] and not study["pretext"]:
        raise StudyError(
            "self_training.from_pretext: there is no pretext method to start from; add one under pretext"
        )

    study["joint"] = check_options("joint", study.get("joint") or {}, joint.OPTIONS)
    if "joint" in protocols:
        try:
            joint.check(study["joint"])
            encoder = study["encoder"]
            model = encoders.build_encoder(encoder["name"], image_shape, **encoder["options"])
            joint.build_joint(model, 2, study["joint"], head=study["downstream"].get("head"))
        except ValueError as err:
            raise StudyError(f"joint: {err}") from None


def downstream_settings(study: dict, protocol: str) -> dict:
    """The training settings of `protocol`: the shared ones with its overrides applied."""
    settings = study["downstream"]
    shared = {k: v for k, v in settings.items() if k not in ("protocols", "overrides")}
    return {**shared, **settings.get("overrides", {}).get(protocol, {})}
