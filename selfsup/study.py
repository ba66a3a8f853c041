"""The study check: what the schema cannot know, before any job runs.

selfsup.config reads the file and applies the schema; this module runs the domain
checks, each kept next to the code it checks (the dataset and split sections in
selfsup.data.checks, a training section in selfsup.training_settings, the downstream
protocols in selfsup.protocols), then builds the study's encoder, pretext models and
classifiers once, so that options that do not fit them fail here. `check_study` returns
the study with every default filled in and raises StudyError naming the key;
`checked_study` caches the verdict, so a re-parse imports no TensorFlow.
`python -m selfsup.study STUDY.yaml` runs the same check without Snakemake.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from selfsup import augment_settings, fingerprints, probes
from selfsup import protocols as protocols_module
from selfsup.config import (
    SCHEMA_PATH,
    StudyError,
    check_options,
    check_schema,
    fill_defaults,
    load_schema,
    read_yaml,
)
from selfsup.data.checks import check_dataset, labeled_pool_size, range_size
from selfsup.data.splits import OWN_UNLABELED, fraction_split
from selfsup.jobs import digest
from selfsup.training_settings import check_monitors, check_training


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
        family = protocols_module.family(protocol)
        if not family.TRAINING_SETTINGS:
            raise StudyError(
                f"downstream.overrides.{protocol}: {protocol} trains as its reference does, with "
                f"settings of its own; set them under {family.SECTION} instead"
            )
    for protocol in settings["protocols"]:
        if not protocols_module.family(protocol).TRAINING_SETTINGS:
            continue
        where = (
            "downstream"
            if protocol not in settings.get("overrides", {})
            else f"downstream.overrides.{protocol}"
        )
        check_training(where, protocols_module.training_settings(study, protocol), channels, views=1)
        check_monitors(where, protocols_module.training_settings(study, protocol), ["loss", "accuracy"])


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


def check_study(config: dict) -> dict:
    """Validate what the schema cannot; return the study with all defaults filled in."""
    study = json.loads(json.dumps(config))  # also breaks aliasing of schema defaults
    layout = check_dataset(study["dataset"], study["split"])
    image_shape = layout.image_shape

    split = study["split"]
    labeled = labeled_pool_size(split, layout, study["seeds"])
    range_size(split, "test", layout.n_test)
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
    if study["draws"] > 1 and "all" in study["budgets"]:
        raise StudyError(
            f"draws: {study['draws']} draws of budget all are the same labeled images each time; "
            "remove all from budgets or use draws: 1"
        )
    if study["draws"] > 1 and split.get("folds"):
        raise StudyError(
            f"draws: {study['draws']}, but split.folds makes each seed a predefined fold, which is "
            "its draw of labels; use draws: 1 (or more seeds: more folds)"
        )
    normalization = study["dataset"].get("normalization", "none")
    try:
        # Checks kept next to their code raise ValueError with the key at fault.
        check_training_sections(study, image_shape[-1])
        protocols_module.check(
            study,
            protocols_module.StudyFacts(
                labeled=labeled,
                unlabeled=unlabeled_pool_size(split, layout),
                num_classes=len(layout.class_names),
                image_shape=tuple(image_shape),
                dataset=study["dataset"]["name"],
            ),
        )
    except ValueError as err:
        if isinstance(err, StudyError):
            raise
        raise StudyError(str(err)) from None

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
        try:
            check_monitors(f"pretext.{name}", entry, method.metric_names(entry["options"]) + watched)
        except ValueError as err:
            raise StudyError(str(err)) from None

    check_pools(study, image_shape)

    settings = study["downstream"]
    protocols = settings["protocols"]
    needs_pretext = [p for p in protocols if protocols_module.uses_pretext(p, study)]
    if needs_pretext and not study["pretext"]:
        raise StudyError(
            f"downstream.protocols: {needs_pretext} need a pretext method; add one under pretext"
        )
    try:
        features = encoders.cut(model, settings.get("feature_layer"), "feature_layer")
        for protocol in protocols:
            if protocols_module.family_name(protocol) != "features":
                downstream.apply_protocol(
                    features, protocols_module.classifier_protocol(protocol, pretrained=True)
                )
    except ValueError as err:
        raise StudyError(f"downstream: {_one_line(err)}") from None
    for name, family in protocols_module.families().items():
        chosen = [p for p in protocols if protocols_module.family_name(p) == name]
        try:
            family.check_models(study, build_encoder(), chosen)
        except StudyError:
            raise
        except ValueError as err:
            raise StudyError(f"{family.SECTION or 'downstream'}: {_one_line(err)}") from None
    return study


# Pool name -> what makes it; every stage that reads unlabeled images reads one of them.
# Each pool a study may name, and the workflow rule that makes it (the one place that says so).
POOLS = {"all": "split", "inliers": "outliers"}


def unlabeled_pool_size(split: dict, layout) -> int:
    """The size of the pool `all` as the split's settings make it, at most: its images
    less those the split holds out (a job checks the pool it reads)."""
    if split.get("unlabeled") == OWN_UNLABELED:
        return layout.n_unlabeled
    if split.get("labeled_fraction") is not None:
        share = split["labeled_fraction"]
        return len(fraction_split(layout.n_train, share["fraction"], share["seed"])[1])
    return range_size(split, "unlabeled", layout.n_train)


def check_pools(study: dict, image_shape) -> None:
    """Pool names and the outlier filter's settings (each protocol family checks its own
    section: selfsup.protocols)."""
    from selfsup import outliers

    for pool in study["pools"]:
        if pool not in POOLS:
            raise StudyError(
                f"pools: no stage produces a pool named {pool!r}; allowed: "
                + ", ".join(f"{name} (made by rule {rule})" for name, rule in POOLS.items())
            )
    protocols = study["downstream"]["protocols"]
    readers = [p for p in protocols if protocols_module.reads_pool(p)]
    if study["pools"] != ["all"] and not (study["pretext"] or readers):
        pool_readers = [
            protocols_module.names(n) for n, f in protocols_module.families().items() if f.READS_POOL
        ]
        raise StudyError(
            f"pools: {study['pools']} but nothing reads a pool; add a pretext method or the "
            f"protocols {' or '.join(pool_readers)}, or remove pools"
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


# --- the checked study, cached: a parse that finds it never imports TensorFlow ----------


def study_from_config(
    config: dict, schema: dict | None = None, cache_dir: str | os.PathLike | None = None
) -> dict:
    """The study check as the workflow runs it, in its order: the schema (strict and
    concise), the requests that defaults would hide, the defaults filled in (into `config`
    too, as Snakemake's config), then the full check, cached in `cache_dir` when given.
    Raises StudyError naming the key; the Snakefile, `python -m selfsup.study` and the
    benchmarks all call this one function."""
    schema = load_schema(SCHEMA_PATH) if schema is None else schema
    check_schema(config, schema)
    check_requests(config)
    fill_defaults(config, schema)
    return checked_study(config, cache_dir=cache_dir)


def checked_study(config: dict, cache_dir: str | os.PathLike | None = None) -> dict:
    """check_study(config), read from `cache_dir` when the same
    study (after schema defaults) was checked by the same library code before: every
    cluster job and every re-run parses the workflow again, and the full check builds
    Keras models. A failing study is never cached, so its error shows on every parse."""
    # Not sort_keys: key order is part of the study (the order of pretext runs).
    key = digest([config, fingerprints.library_digest()], length=24, sort_keys=False)
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
    schema = load_schema(SCHEMA_PATH)
    failed = 0
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            study_from_config(read_yaml(path), schema)
            print(f"{path}: ok")
        except StudyError as err:
            message = str(err)
            print(message if message.startswith(str(path)) else f"{path}: {message}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
