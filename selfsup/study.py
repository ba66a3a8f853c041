"""Cross-field checks of a study, after its JSON schema has passed.

The schema (schemas/study.schema.yaml) checks structure, types and defaults. What it
cannot know lives here: the registries of methods and encoders, each method's options,
pool sizes against label budgets, and layers a protocol refers to. `check_study`
returns the study with every default filled in, so the workflow passes explicit
values to its jobs, and raises StudyError naming the key and the allowed values.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from selfsup import augment_settings, probes, training_settings
from selfsup import protocols as protocols_module
from selfsup.data import sources
from selfsup.data.dataset import DataError, foreign_count
from selfsup.data.splits import OWN_UNLABELED, fraction_split, validation_size


class StudyError(ValueError):
    """The study file asks for something the pipeline cannot do."""


# --- reading and the schema: cheap, before anything imports TensorFlow ---------------


def read_yaml(path: str | os.PathLike) -> dict:
    """A study file as a dict; a YAML syntax error names the file, line and column
    (Snakemake's own loader drops them), and so does a key written twice in one mapping
    (YAML, and so Snakemake, would keep the last one without a word)."""

    try:
        with open(path, encoding="utf-8") as f:
            value = yaml.load(f, Loader=StudyLoader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        if isinstance(err, DuplicateKey):
            raise StudyError(f"{where}: {err.problem}") from None
        raise StudyError(f"{where}: YAML syntax error: {err.problem or err.context}") from None
    if not isinstance(value, dict):
        raise StudyError(f"{path}: a study is a mapping of keys (study, dataset, ...), got {value!r}")
    return value


# libyaml's loader when PyYAML has it: it reads the schema in 8 ms, the Python one in 73 ms.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKey(yaml.constructor.ConstructorError):  # noqa: N818 - a YAML error
    """A key written twice in one mapping of a study file."""


class StudyLoader(_SafeLoader):
    """The safe loader, refusing a key written twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKey(
                    None,
                    None,
                    f"key {key!r} is written twice in one mapping (first at line {seen[key] + 1}); "
                    "YAML keeps only the last: remove one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_schema(path: str | os.PathLike) -> dict:

    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_SafeLoader)  # noqa: S506 - a safe loader


def _strict_validator(schema: dict):
    """A JSON-schema validator whose integers are Python ints: jsonschema's own takes 2.0
    (and Snakemake's validate with it), which then crashes a job that needs a count."""
    from jsonschema import Draft202012Validator, validators

    def is_integer(checker, value):
        return isinstance(value, int) and not isinstance(value, bool)

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer)
    return validators.extend(Draft202012Validator, type_checker=checker)(schema)


def _resolve(schema: dict, root: dict) -> dict:
    """`schema` with a local $ref ("#/$defs/x") replaced by its target."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _location(path) -> str:
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    return where or "the study"


def _properties(schema: dict, root: dict) -> dict:
    """The properties of an object schema, those of its allOf parts included (a stage's
    own `epochs: {}` only marks the key; its definition is in the shared training part)."""
    schema = _resolve(schema, root)
    found = {}
    for part in schema.get("allOf", []):
        found.update(_properties(part, root))
    for key, definition in schema.get("properties", {}).items():
        if definition or key not in found:
            found[key] = definition
    return found


def _keys_allowed(schema: dict, root: dict) -> list[str]:
    return sorted(_properties(schema, root))


def _describe(schema: dict, root: dict) -> str:
    """What `schema` allows, in words: "an integer >= 0 and <= 4294967295", "'all'"."""
    schema = _resolve(schema, root)
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(_describe(part, root) for part in schema[key])
    types = schema.get("type", "any value")
    names = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}  # fmt: skip
    text = " or ".join(names.get(t, t) for t in ([types] if isinstance(types, str) else types))
    bounds = [(">=", "minimum"), (">", "exclusiveMinimum"), ("<=", "maximum"), ("<", "exclusiveMaximum")]
    limits = [f"{op} {schema[key]}" for op, key in bounds if key in schema]
    if limits:
        text += " " + " and ".join(limits)
    if "items" in schema:
        text += f" of {_describe(schema['items'], root)}"
    if "minItems" in schema or "maxItems" in schema:
        text += f" ({schema.get('minItems', 0)} to {schema.get('maxItems', 'any number of')} items)"
    return text


def _message(error, root: dict) -> str:
    """One line for a jsonschema error: the key, what was given, what is allowed."""
    where = _location(error.absolute_path)
    value = error.instance
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = _keys_allowed(error.schema, root)
        unknown = sorted(set(value) - set(allowed)) if allowed else sorted(value)
        return (
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed) or 'none'}"
        )
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "propertyNames":
        return f"{where}: bad name {error.instance!r}: {error.message}"
    if error.validator == "uniqueItems":
        return f"{where}: {value!r} lists a value twice; every item must be different"
    if error.validator == "pattern":
        return f"{where}: {value!r} does not match {error.validator_value!r}"
    given = f"{value!r} ({type(value).__name__})" if error.validator == "type" else repr(value)
    if error.validator in ("minItems", "maxItems"):
        return f"{where}: {given} has {len(value)} item(s); allowed: {_describe(error.schema, root)}"
    return f"{where}: {given} given; allowed: {_describe(error.schema, root)}"


def check_schema(config: dict, schema: dict) -> None:
    """Raise StudyError with one concise line for the first place where `config` breaks
    `schema` (instead of the schema dump Snakemake prints), integers strictly ints."""
    from jsonschema.exceptions import relevance

    errors = list(_strict_validator(schema).iter_errors(config))
    if errors:
        # jsonschema's own ranking (as its best_match): a missing or unknown key first.
        error = max(errors, key=relevance)
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise StudyError(_message(error, schema) + more)


def fill_defaults(config: dict, schema: dict) -> dict:
    """`config` with every schema default filled in, in place and returned: the recipe of
    jsonschema's FAQ that snakemake.utils.validate uses, with each default copied (never
    shared with the schema). Call after check_schema."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if isinstance(instance, dict) and "default" in subschema:
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    validators.extend(Draft202012Validator, {"properties": set_defaults})(schema).validate(config)
    return config


def coerce_command_line(value, schema: dict, root: dict | None = None):
    """`value` from `snakemake --config key=value`, whose scalars Snakemake parses as
    strings inside lists and mappings (`seeds=[1, 2]` gives ['1', '2']): strings where
    the schema wants a number, boolean or null are read as YAML scalars."""

    root = root or schema
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        properties = _properties(schema, root)
        extra = schema.get("additionalProperties")
        return {
            key: coerce_command_line(
                item, properties.get(key, extra if isinstance(extra, dict) else {}), root
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [coerce_command_line(item, schema.get("items", {}), root) for item in value]
    if isinstance(value, str):
        wanted = set()
        for part in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
            part = _resolve(part, root)
            if value in [part.get("const"), *part.get("enum", [])]:
                return value  # a keyword such as the budget "all"
            if "const" not in part and "enum" not in part:
                types = part.get("type", [])
                wanted.update([types] if isinstance(types, str) else types)
        if "string" not in wanted and wanted & {"integer", "number", "boolean", "null"}:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            if parsed is None or isinstance(parsed, (int, float)):
                return parsed
        elif value in ("null", "~") and "null" in wanted:
            return None
    return value


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
        # Items of a list of ints (filters, dense units) are ints too: 4.0 filters crash a job.
        if isinstance(default, (list, tuple)) and default and _all_ints(default) and not _all_ints(value):
            raise StudyError(
                f"{where}.{key}: expected a list of integers like {list(default)!r}, got {value!r}"
            )
    return merged


def _all_ints(values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


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


def check_training(where: str, settings: dict, channels: int | None = None, views: int | None = None) -> None:
    """Cross-key rules of one stage's training settings (schedules, augmentation,
    optimizer); `channels` of the images rules out colour augmentations on grayscale;
    `views` 1 (a stage that augments each image once) rules out a second view."""
    try:
        training_settings.check_schedules(settings)
        augment_settings.check(settings.get("augmentation") or {}, channels=channels, views=views)
        if settings.get("optimizer"):
            training_settings.check_optimizer(settings["optimizer"])
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
            monitor = settings[section].get("monitor", training_settings.DEFAULT_MONITOR)
            if monitor not in allowed:
                raise StudyError(
                    f"{where}.{section}.monitor: {monitor!r} is not reported by this training; "
                    f"allowed: {', '.join(allowed)}"
                )


def _one_line(err: Exception) -> str:
    """Keras' multi-line, colored layer error as one line: the layer and what it says."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].startswith("Exception encountered when calling") and len(lines) > 1:
        return f"{lines[0].removeprefix('Exception encountered when calling ').rstrip('.')}: {lines[1]}"
    return " ".join(lines)


def check_training_sections(study: dict, channels: int) -> None:
    """The training settings of every stage, and the monitors of the stages whose
    metrics are known without their models (downstream: loss and accuracy)."""
    for name, entry in study["pretext"].items():
        check_training(f"pretext.{name}", entry, channels)
    check_training("outliers", study["outliers"], channels, views=1)
    check_monitors("outliers", study["outliers"], ["loss"])
    settings = study["downstream"]
    for protocol in settings.get("overrides", {}):
        if protocol not in settings["protocols"]:
            raise StudyError(
                f"downstream.overrides.{protocol}: not one of downstream.protocols {settings['protocols']}"
            )
        if protocol in probes.FEATURE_PROTOCOLS:
            evaluation = probes.FEATURE_PROTOCOLS[protocol][1]
            raise StudyError(
                f"downstream.overrides.{protocol}: {protocol} evaluates frozen features with no "
                f"training, so training settings do not apply to it; set downstream.{evaluation} "
                "instead, or use the frozen protocol for a trained head"
            )
    for protocol in settings["protocols"]:
        if protocol in probes.FEATURE_PROTOCOLS:
            continue
        where = (
            "downstream"
            if protocol not in settings.get("overrides", {})
            else f"downstream.overrides.{protocol}"
        )
        check_training(where, downstream_settings(study, protocol), channels, views=1)
        check_monitors(where, downstream_settings(study, protocol), ["loss", "accuracy"])


def check_validation_splits(study: dict, labeled: int) -> None:
    """A downstream validation split must leave training and validation images in every
    budget ('all': the labeled pool), or its jobs would fail after their predecessors ran."""
    settings = study["downstream"]
    for protocol in settings["protocols"]:
        if protocol in probes.FEATURE_PROTOCOLS:
            continue
        fraction = downstream_settings(study, protocol).get("validation_split", 0)
        where = (
            f"downstream.overrides.{protocol}"
            if "validation_split" in settings.get("overrides", {}).get(protocol, {})
            else "downstream"
        )
        for budget in study["budgets"]:
            size = labeled if budget == "all" else budget
            try:
                validation_size(size, fraction)
            except ValueError as err:
                raise StudyError(
                    f"{where}.validation_split: budget {budget}: {err}; use a larger budget or "
                    "validation_split, or 0 to train on every label"
                ) from None


def check_requests(config: dict) -> None:
    """Settings the study asks for that nothing would use, or could not honour, found
    before the schema's defaults fill them in (after, a default and a request look the same)."""
    held_out = (config.get("split") or {}).get("monitor", 0)
    for name, entry in (config.get("pretext") or {}).items():
        if not isinstance(entry, dict) or "knn_monitor" not in entry:
            continue
        if not held_out:
            raise StudyError(
                f"pretext.{name}.knn_monitor: set, but split.monitor is 0, so no held-out "
                "images are there to monitor; set split.monitor (e.g. 500) or remove knn_monitor"
            )
        # Each held-out image is classified by the others; the default k is capped to them.
        k = (entry["knn_monitor"] or {}).get("k")
        if k is not None and k > held_out - 1:
            raise StudyError(
                f"pretext.{name}.knn_monitor.k: {k} neighbours, but each of the split.monitor "
                f"{held_out} held-out images has {held_out - 1} others to search; set "
                f"knn_monitor.k <= {held_out - 1} or hold out more images"
            )


def check_feature_protocols(study: dict, labeled: int, num_classes: int) -> None:
    """What the feature protocols need of the budgets: as many labeled images as kNN
    neighbours, and two per class for the logistic regression's cross-validation."""
    settings = study["downstream"]
    used = {evaluation: [] for evaluation in probes.EVALUATIONS}
    for protocol in settings["protocols"]:
        if protocol in probes.FEATURE_PROTOCOLS:
            used[probes.FEATURE_PROTOCOLS[protocol][1]].append(protocol)
    smallest = min(labeled if budget == "all" else budget for budget in study["budgets"])
    if used["knn"] and settings["knn"]["k"] > smallest:
        raise StudyError(
            f"downstream.knn.k: {settings['knn']['k']} neighbours, but the smallest budget has "
            f"{smallest} labeled images to search ({', '.join(used['knn'])}); use k <= {smallest} "
            "or larger budgets"
        )
    if used["linear"] and smallest < 2 * num_classes:
        raise StudyError(
            f"budgets: the linear probe ({', '.join(used['linear'])}) chooses its regularization by cross-validation, "
            f"which needs 2 labeled images of each of the {num_classes} classes; the smallest "
            f"budget has {smallest}: use budgets of at least {2 * num_classes}"
        )


def check_study(config: dict) -> dict:
    """Validate what the schema cannot; return the study with all defaults filled in."""
    study = json.loads(json.dumps(config))  # also breaks aliasing of schema defaults
    layout = check_dataset(study["dataset"], study["split"])
    image_shape = layout.image_shape

    split = study["split"]
    labeled = labeled_pool_size(split, layout, study["seeds"])
    _range_size(split, "test", layout.n_test)
    if labeled < 2:
        raise StudyError(
            f"split: a labeled pool of {labeled} image(s) holds one class at most; "
            "a classifier needs at least 2 labeled images"
        )
    for budget in study["budgets"]:
        if budget != "all" and budget > labeled:
            raise StudyError(
                f"budgets: {budget} labels exceed the labeled pool of {labeled} (split); "
                f"use budgets <= {labeled} or 'all'"
            )
        if budget == 1:
            raise StudyError(
                "budgets: 1 label is one class, so its classifier would be right by construction; "
                "use budgets of at least 2"
            )
        if budget == labeled and "all" in study["budgets"]:
            raise StudyError(
                f"budgets: {budget} and 'all' are the same {labeled} labeled images (split), so the "
                "same classifiers would train twice; remove one of them"
            )
    normalization = study["dataset"].get("normalization", "none")
    check_training_sections(study, image_shape[-1])
    check_feature_protocols(study, labeled, len(layout.class_names))
    check_validation_splits(study, labeled)

    # Only now import what imports Keras (seconds): the checks above need none of it.
    from selfsup import downstream, encoders, pretext, training

    encoder = study["encoder"]
    try:
        defaults = encoders.encoder_options(encoder["name"])
    except KeyError as err:
        raise StudyError(f"encoder.name: {err.args[0]}") from None
    encoder["options"] = check_options("encoder.options", encoder.get("options", {}), defaults)

    def build_encoder():
        return encoders.build_encoder(encoder["name"], image_shape, **encoder["options"])

    try:
        model = build_encoder()
    except ValueError as err:
        raise StudyError(
            f"encoder: {encoder['name']} cannot take {study['dataset']['name']} images of "
            f"{'x'.join(map(str, image_shape))}: {_one_line(err)}"
        ) from None

    for name, entry in study["pretext"].items():
        entry.setdefault("method", name)
        try:
            method = pretext.get_method(entry["method"])
        except KeyError as err:
            raise StudyError(f"pretext.{name}.method: {err.args[0]}") from None
        entry["options"] = check_options(f"pretext.{name}.options", entry.get("options", {}), method.OPTIONS)
        if not method.OWNS_AUGMENTATION:  # its input pipeline augments each image once
            try:
                augment_settings.check(entry.get("augmentation") or {}, views=1)
            except ValueError as err:
                raise StudyError(f"pretext.{name}.{err}") from None
        if getattr(method, "PIXEL_TARGETS", False) and normalization != "none":
            raise StudyError(
                f"pretext.{name}: {entry['method']} reconstructs pixels in [0, 1], so it cannot take "
                f"normalized inputs; set dataset.normalization to none (it is {normalization!r})"
            )
        try:
            method.check(entry["options"], entry)
            # Building the model is cheap and catches what only the encoder's shapes
            # reveal (an autoencoder code as wide as the image), before any job runs.
            pretext_model = method.build(build_encoder(), entry["options"], augmentation=None)
        except ValueError as err:
            raise StudyError(f"pretext.{name}.options: {_one_line(err)}") from None
        if entry["optimizer"].get("fixed_lr_for"):
            # The layers it names must exist in this method's model (e.g. predictor).
            try:
                training.make_optimizer(entry["optimizer"]).build(pretext_model.trainable_variables)
            except ValueError as err:
                raise StudyError(f"pretext.{name}.optimizer.{_one_line(err)}") from None
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
    needs_pretext = [p for p in protocols if protocols_module.uses_pretext(p)]
    if needs_pretext and not study["pretext"]:
        raise StudyError(
            f"downstream.protocols: {needs_pretext} need a pretext method; add one under pretext"
        )
    try:
        features = downstream.truncate(model, settings.get("feature_layer"))
        for protocol in protocols:
            if protocol not in probes.FEATURE_PROTOCOLS:
                downstream.apply_protocol(
                    features, protocols_module.classifier_protocol(protocol, pretrained=True)
                )
    except ValueError as err:
        raise StudyError(f"downstream: {_one_line(err)}") from None
    return study


# Pool name -> what makes it; every stage that reads unlabeled images reads one of them.
# Each pool a study may name, and the workflow rule that makes it (the one place that says so).
POOLS = {"all": "split", "inliers": "outliers"}


def check_pools(study: dict, image_shape) -> None:
    """Pool names, the outlier filter's settings, self-training's and the joint model's."""
    from selfsup import encoders, joint, outliers

    for pool in study["pools"]:
        if pool not in POOLS:
            raise StudyError(
                f"pools: no stage produces a pool named {pool!r}; allowed: "
                + ", ".join(f"{name} (made by rule {rule})" for name, rule in POOLS.items())
            )
    protocols = study["downstream"]["protocols"]
    readers = [p for p in protocols if p in protocols_module.POOL_PROTOCOLS]
    if study["pools"] != ["all"] and not (study["pretext"] or readers):
        raise StudyError(
            f"pools: {study['pools']} but nothing reads a pool; add a pretext method or the "
            f"protocols {' or '.join(protocols_module.POOL_PROTOCOLS)}, or remove pools"
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
            raise StudyError(f"joint: {_one_line(err)}") from None


def downstream_settings(study: dict, protocol: str) -> dict:
    """The training settings of `protocol`: the shared ones with its overrides applied."""
    settings = study["downstream"]
    if protocol in probes.FEATURE_PROTOCOLS:
        # Only what the evaluation reads: editing epochs or the optimizer re-runs none of them.
        source, evaluation = probes.FEATURE_PROTOCOLS[protocol]
        keys = [key for key in probes.FEATURE_SETTINGS if not (source == "pixels" and key == "feature_layer")]
        return {key: settings[key] for key in (*keys, evaluation)}
    excluded = ("protocols", "overrides", *probes.EVALUATIONS)
    shared = {k: v for k, v in settings.items() if k not in excluded}
    return {**shared, **settings.get("overrides", {}).get(protocol, {})}


# --- the checked study, cached: a parse that finds it never imports TensorFlow ----------

LIBRARY = Path(__file__).resolve().parent


def library_digest() -> str:
    """Hash of every library source file: check_study's verdict depends on the registries,
    encoders and methods, so any edit of them invalidates the cached checks."""
    digest = hashlib.sha256()
    for path in sorted(LIBRARY.rglob("*.py")):
        digest.update(path.relative_to(LIBRARY).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def checked_study(config: dict, cache_dir: str | os.PathLike | None = None) -> dict:
    """check_study(config), read from `cache_dir` when the same
    study (after schema defaults) was checked by the same library code before: every
    cluster job and every re-run parses the workflow again, and the full check builds
    Keras models. A failing study is never cached, so its error shows on every parse."""
    key = hashlib.sha256(
        # Not sort_keys: key order is part of the study (the order of pretext runs).
        json.dumps(config, default=str).encode() + library_digest().encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / f"study-{key}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            cached = json.loads(path.read_text())
            return cached["study"]
        except (ValueError, KeyError):
            pass  # a damaged cache entry: check again and rewrite it
    # JSON round trip: the study's values are the same whether cached or not (lists, not
    # tuples), so the params Snakemake records never flip between parses.
    study = json.loads(json.dumps(check_study(config)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"study": study}))
        os.replace(partial, path)  # atomic: concurrent parses never read half a file
    return study


def main(argv: list[str] | None = None) -> int:
    """`python -m selfsup.study STUDY.yaml...`: check study files as the workflow does,
    without Snakemake; a YAML syntax error names its line (Snakemake's `--configfile`
    reader drops it)."""
    import sys

    schema = load_schema(LIBRARY.parent / "schemas" / "study.schema.yaml")
    failed = 0
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            config = read_yaml(path)
            check_schema(config, schema)
            check_requests(config)
            check_study(fill_defaults(config, schema))
            print(f"{path}: ok")
        except StudyError as err:
            message = str(err)
            print(message if message.startswith(str(path)) else f"{path}: {message}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
