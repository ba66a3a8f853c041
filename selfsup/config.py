"""Reading a study file and checking it against its JSON schema: the generic half of the
study check, cheap and without Keras (selfsup.study adds what the schema cannot know).

`read_yaml` refuses a key written twice; `check_schema` is strict and concise (an
integer is an int, an unknown key lists the allowed ones); `fill_defaults` fills the
schema's defaults as snakemake.utils.validate does, without its slow reload;
`coerce_command_line` reads `--config` values as the schema's types.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

# The study schema: every key with its type, default and description.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "study.schema.yaml"


class StudyError(ValueError):
    """The study file asks for something the pipeline cannot do."""


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
