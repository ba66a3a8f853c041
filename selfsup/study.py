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
from selfsup.data.dataset import DataError
from selfsup.data.splits import OWN_UNLABELED, fraction_split


class StudyError(ValueError):
    """The study file asks for something the pipeline cannot do."""


def check_dataset(dataset: dict) -> sources.Layout:
    """Fill in the source's option defaults; return its layout. Options it would ignore are errors."""
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
    return sources.layout(dataset["name"], dataset["options"])


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
    layout = check_dataset(study["dataset"])
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
            downstream.apply_protocol(features, protocol)
    except ValueError as err:
        raise StudyError(f"downstream: {err}") from None
    return study


def downstream_settings(study: dict, protocol: str) -> dict:
    """The training settings of `protocol`: the shared ones with its overrides applied."""
    settings = study["downstream"]
    shared = {k: v for k, v in settings.items() if k not in ("protocols", "overrides")}
    return {**shared, **settings.get("overrides", {}).get(protocol, {})}
