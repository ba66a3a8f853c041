"""Cross-field checks of a study, after its JSON schema has passed.

The schema (schemas/study.schema.yaml) checks structure, types and defaults. What it
cannot know lives here: the registries of methods and encoders, each method's options,
pool sizes against label budgets, and layers a protocol refers to. `check_study`
returns the study with every default filled in, so the workflow passes explicit
values to its jobs, and raises StudyError naming the key and the allowed values.
"""

from __future__ import annotations

import copy
import inspect
import json

from selfsup.data.sources import DataError, make_synthetic

# The synthetic source's sizes come from its own defaults, so the two cannot disagree.
_SYNTHETIC_DEFAULTS = {p.name: p.default for p in inspect.signature(make_synthetic).parameters.values()}


class StudyError(ValueError):
    """The study file asks for something the pipeline cannot do."""


def dataset_shape(dataset: dict) -> tuple[int, int, tuple[int, int, int]]:
    """(train size, test size, image shape) of a dataset, known without loading it."""
    name = dataset["name"]
    if name in ("mnist", "fashion_mnist"):
        return 60000, 10000, (28, 28, 1)
    if name == "digits":
        return 1500, 297, (8, 8, 1)
    if name == "synthetic":
        options = {**_SYNTHETIC_DEFAULTS, **dataset.get("options", {})}
        size = options["image_size"]
        return options["n_train"], options["n_test"], (size, size, 1)
    raise StudyError(f"dataset.name: unknown dataset {name!r}")


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


def check_study(config: dict) -> dict:
    """Validate what the schema cannot; return the study with all defaults filled in."""
    from selfsup import downstream, encoders, pretext

    study = json.loads(json.dumps(config))  # also breaks aliasing of schema defaults
    try:
        n_train, n_test, image_shape = dataset_shape(study["dataset"])
    except DataError as err:
        raise StudyError(str(err)) from None

    split = study["split"]
    labeled = _range_size(split, "labeled", n_train)
    _range_size(split, "unlabeled", n_train)
    _range_size(split, "test", n_test)
    for budget in study["budgets"]:
        if budget != "all" and budget > labeled:
            raise StudyError(
                f"budgets: {budget} labels exceed the labeled pool of {labeled} (split.labeled); "
                f"use budgets <= {labeled} or 'all'"
            )

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
        try:
            if hasattr(method, "check"):
                method.check(entry["options"])
            # Building the model is cheap and catches what only the encoder's shapes
            # reveal (an autoencoder code as wide as the image), before any job runs.
            method.build(build_encoder(), entry["options"])
        except ValueError as err:
            raise StudyError(f"pretext.{name}.options: {err}") from None

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
