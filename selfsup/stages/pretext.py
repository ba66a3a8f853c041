"""The pretext stage: train the study's encoder with one pretext method on the images of
a pool, and write the encoder, its history and example figures' arrays."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

from selfsup import artifacts, augment, callbacks, training
from selfsup.data.dataset import scale
from selfsup.data.splits import validation_cut
from selfsup.encoders import build_encoder
from selfsup.inputs import DEFAULT_MEMORY_LIMIT_MB, batches
from selfsup.jobs import input_files, resume_dir
from selfsup.pretext import get_method
from selfsup.stages import common

EXAMPLE_IMAGES = 8  # images shown in each pretext examples figure


def train_pretext(
    *,
    data_path,
    split_path,
    pool_path,
    pseudo_path,
    settings: dict,
    encoder_spec: dict,
    seed: int,
    meta: dict,
    encoder_path,
    history_path,
    examples_path,
    resume_dir=None,
    stream=sys.stderr,
):
    """Train the study's encoder with one pretext method on the images of a pool; save it,
    its history and examples."""
    split = artifacts.read_split(split_path)
    pool, part = artifacts.read_pool(pool_path)
    method = get_method(settings["method"])
    options = settings["options"]
    if pseudo_path is not None:
        indices, labels = artifacts.read_pseudo_labels(pseudo_path)  # indices into `part`
    else:
        indices, labels = pool, None
    train_pos, val_pos = validation_cut(len(indices), settings.get("validation_split", 0.0), seed)
    images, positions = common.load_pool(
        data_path, part, indices, settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    )

    # Two-view methods train on full batches only, as their references (drop_last=True in
    # solo-learn's and SimSiam's loaders); a pool smaller than one batch keeps its one batch.
    full_batches = method.FULL_BATCHES_ONLY and len(train_pos) >= settings["batch_size"]

    training.set_precision(settings.get("precision", "float32"))
    # Two-view methods augment inside their model (twice per image, each view with its own
    # layers when second_view makes the recipe asymmetric); the others get their batches
    # augmented by the input pipeline (and refuse a second_view).
    in_model, in_pipeline = {}, None
    if method.OWNS_AUGMENTATION:
        first, second = augment.build_views(settings.get("augmentation"), seed)
        in_model = {"augmentation": first, "second_augmentation": second}
    else:
        in_pipeline = augment.build(settings.get("augmentation"), seed)
    transform = partial(method.transform, options=options)
    turned = _precomputed(
        method,
        options,
        images,
        positions,
        labels,
        in_pipeline,
        split.normalization,
        settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB),
    )
    if turned is not None:
        # The same batches, bit for bit, without per-batch pretext work (which on 2 cores
        # takes time from the model's step).
        images, labels = turned
        positions, transform = np.arange(len(labels)), None

    def pretext_batches(where, shuffle_seed, augmentation, drop_remainder=False):
        return batches(
            images,
            positions[where],
            None if labels is None else labels[where],
            batch_size=settings["batch_size"],
            normalization=split.normalization,
            shuffle_seed=shuffle_seed,
            augment=augmentation,
            transform=transform,
            transform_seed=seed,
            drop_remainder=drop_remainder,
        )

    data = pretext_batches(train_pos, seed, in_pipeline, drop_remainder=full_batches)
    validation = pretext_batches(val_pos, None, None) if len(val_pos) else None
    input_shape = tuple(images.shape[1:])
    encoder = build_encoder(encoder_spec["name"], input_shape, **encoder_spec["options"])
    steps = (
        len(train_pos) // settings["batch_size"]
        if full_batches
        else common.steps_per_epoch(len(train_pos), settings["batch_size"])
    )
    model = method.build(encoder, options, total_steps=steps * settings["epochs"], **in_model)
    common.compile_model(model, settings, steps, **method.compile_args(options))
    stage_callbacks = callbacks.from_settings(settings, common.keep_best_dir(resume_dir), stream)
    if len(split.monitor):
        stage_callbacks.insert(0, _knn_monitor(data_path, split, encoder, settings["knn_monitor"], stream))
    print(
        f"pretext {settings['method']}: {len(train_pos)} samples ({len(val_pos)} validation) from "
        f"{len(np.unique(indices))} {part} images ({'in memory' if isinstance(images, np.ndarray) else 'streamed from disk'}), "
        f"encoder {encoder_spec['name']} ({encoder.count_params()} params), {settings['epochs']} epochs, "
        f"threads {training.thread_settings()}",
        file=stream,
        flush=True,
    )
    history = training.fit(
        model,
        data,
        epochs=settings["epochs"],
        samples_per_epoch=len(train_pos),
        validation_data=validation,
        early_stopping=settings.get("early_stopping"),
        extra_callbacks=stage_callbacks,
        resume_dir=resume_dir,
        stream=stream,
    )
    spec = {
        "name": encoder_spec["name"],
        "input_shape": list(input_shape),
        "options": encoder_spec["options"],
    }
    final = {k: float(v) for k, v in history.iloc[-1].items() if k != "epoch"}
    artifacts.write_encoder(
        encoder_path,
        encoder,
        spec,
        {
            **meta,
            "method": settings["method"],
            "seed": seed,
            "settings": settings,
            "final_metrics": final,
            "resumed_from_epoch": history.attrs["resumed_from_epoch"],
            **training.thread_settings(),
        },
    )
    history.to_csv(history_path, index=False)
    common.close_pool(images)
    shown = scale(artifacts.read_images(data_path, part, pool[:EXAMPLE_IMAGES]))
    examples = method.examples(model, shown, options, seed)
    artifacts.write_examples(examples_path, examples, {**meta, "method": settings["method"], "seed": seed})
    return history


def _precomputed(method, options, images, positions, labels, augmentation, normalization, memory_limit_mb):
    """The method's transform done once for the run (PretextMethod.precompute), where that
    gives the batches the per-batch path gives: the pool in memory, every pseudo-labelled
    image in it too, no augmentation before the transform, and a normalization the
    transform commutes with (a quarter turn does not commute with a mean image)."""
    if labels is None or augmentation is not None or not isinstance(images, np.ndarray):
        return None
    if normalization.kind == "per_pixel_mean":
        return None
    if len(positions) * images[0].nbytes > memory_limit_mb * 2**20:
        return None  # as a pool too large for memory (rotations: all makes 4 copies)
    return method.precompute(images[positions], labels, options)


def _knn_monitor(data_path, split, encoder, knn: dict, stream):
    """The kNN accuracy callback on the split's held-out labeled slice, as the model sees images."""
    images = scale(artifacts.read_images(data_path, "train", split.monitor))
    images = np.asarray(split.normalization.apply(images), dtype=np.float32)
    labels = artifacts.read_labels(data_path)["y_train"][split.monitor]
    print(
        f"kNN monitor: {len(labels)} held-out labeled images, k={knn['k']}, "
        f"temperature {knn['temperature']}, every {knn['every']} epoch(s)",
        file=stream,
        flush=True,
    )
    return callbacks.KnnMonitor(encoder, images, labels, **knn, stream=stream)


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict) -> None:
    """The pretext rule's job."""
    seed = int(wildcards["seed"])
    settings = params["settings"]
    training.configure(params["tf_threads"], seed, settings["deterministic"])
    train_pretext(
        data_path=inputs["data"],
        split_path=inputs["split"],
        pool_path=inputs["pool"],
        pseudo_path=inputs.get("pseudo"),
        settings=settings,
        encoder_spec=params["encoder"],
        seed=seed,
        meta={"study": params["study"], "pretext": wildcards["pretext"], "pool": wildcards["pool"]},
        encoder_path=outputs["encoder"],
        history_path=outputs["history"],
        examples_path=outputs["examples"],
        resume_dir=resume_dir(Path(outputs["encoder"]).parent, list(params.values()), input_files(inputs)),
    )
