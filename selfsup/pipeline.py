"""The two training stages as plain functions: artifacts in, artifacts out.

Workflow scripts call these with what Snakemake hands them; tests call them directly.
Every image reaches a model through selfsup.data.inputs: uint8 until a batch is formed.
"""

from __future__ import annotations

import sys
from functools import partial

import numpy as np

from selfsup import artifacts, augment, downstream, monitor, schedules, training
from selfsup.data.dataset import scale
from selfsup.data.inputs import DEFAULT_MEMORY_LIMIT_MB, batches, load_pool
from selfsup.encoders import build_encoder
from selfsup.pretext import get_method

EXAMPLE_IMAGES = 8  # images shown in each pretext examples figure


def _compile(model, settings: dict, steps_per_epoch: int, **compile_args) -> None:
    learning_rate = schedules.learning_rate(settings, steps_per_epoch)
    model.compile(
        optimizer=training.make_optimizer(settings["optimizer"], learning_rate),
        jit_compile=settings.get("jit_compile", False),
        **compile_args,
    )


def _steps(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size))


def train_pretext(
    *,
    data_path,
    split_path,
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
    """Train the study's encoder with one pretext method; save it, its history and examples."""
    split = artifacts.read_split(split_path)
    part = split.unlabeled_part
    method = get_method(settings["method"])
    options = settings["options"]
    if pseudo_path is not None:
        indices, labels = artifacts.read_pseudo_labels(pseudo_path)  # indices into `part`
    else:
        indices, labels = split.unlabeled, None
    train_pos, val_pos = downstream.validation_cut(len(indices), settings.get("validation_split", 0.0), seed)
    images, positions = load_pool(
        data_path, part, indices, settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    )

    def pretext_batches(where, shuffle_seed, augmentation):
        return batches(
            images,
            positions[where],
            None if labels is None else labels[where],
            batch_size=settings["batch_size"],
            normalization=split.normalization,
            shuffle_seed=shuffle_seed,
            augment=augmentation,
            transform=partial(method.transform, options=options),
            transform_seed=seed,
        )

    training.set_precision(settings.get("precision", "float32"))
    augmentation = augment.build(settings.get("augmentation"), seed)
    # Two-view methods augment inside their model (twice per image); the others get
    # their batches augmented by the input pipeline.
    in_model = augmentation if method.OWNS_AUGMENTATION else None
    data = pretext_batches(train_pos, seed, None if method.OWNS_AUGMENTATION else augmentation)
    validation = pretext_batches(val_pos, None, None) if len(val_pos) else None
    input_shape = tuple(images.shape[1:])
    encoder = build_encoder(encoder_spec["name"], input_shape, **encoder_spec["options"])
    steps = _steps(len(train_pos), settings["batch_size"])
    model = method.build(encoder, options, augmentation=in_model, total_steps=steps * settings["epochs"])
    _compile(model, settings, steps, **method.compile_args(options))
    callbacks = schedules.callbacks(settings, _state_dir(resume_dir), stream)
    if len(split.monitor):
        callbacks.insert(0, _knn_monitor(data_path, split, encoder, settings["knn_monitor"], stream))
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
        extra_callbacks=callbacks,
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
    _close(images)
    shown = scale(artifacts.read_images(data_path, part, split.unlabeled[:EXAMPLE_IMAGES]))
    examples = method.examples(model, shown, options, seed)
    artifacts.write_examples(examples_path, examples, {**meta, "method": settings["method"], "seed": seed})
    return history


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
    return monitor.knn_callback(encoder, images, labels, **knn, stream=stream)


def _close(images) -> None:
    # A pool streamed from its HDF5 file holds the file open until closed.
    if hasattr(images, "close"):
        images.close()


def _state_dir(resume_dir):
    # Best-epoch weights live with the resume state, which is removed on success.
    return None if resume_dir is None else f"{resume_dir}/keep_best"


def train_downstream(
    *,
    data_path,
    split_path,
    encoder_path,
    encoder_spec: dict,
    settings: dict,
    budget: str,
    seed: int,
    resume_dir=None,
    stream=sys.stderr,
):
    """Train and evaluate one classifier; returns (metrics dict, history frame)."""
    info = artifacts.read_labels(data_path)
    split = artifacts.read_split(split_path)
    protocol = settings["protocol"]
    training.set_precision(settings.get("precision", "float32"))
    if downstream.uses_pretext(protocol):
        encoder, _ = artifacts.read_encoder(encoder_path)
    else:
        encoder = build_encoder(encoder_spec["name"], info["image_shape"], **encoder_spec["options"])
    model = downstream.build_classifier(
        encoder,
        len(info["class_names"]),
        protocol,
        feature_layer=settings["feature_layer"],
        **settings["head"],
    )
    labeled = split.budget(budget)
    train_pos, val_pos = downstream.validation_cut(len(labeled), settings["validation_split"], seed)
    y_train, y_test = info["y_train"], info["y_test"]
    limit = settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    train_images, labeled_pos = load_pool(data_path, "train", labeled, limit)
    test_images, test_pos = load_pool(data_path, "test", split.test, limit)

    def classifier_batches(images, where, labels, shuffle_seed=None, augmentation=None):
        return batches(
            images,
            where,
            labels,
            batch_size=settings["batch_size"],
            normalization=split.normalization,
            shuffle_seed=shuffle_seed,
            augment=augmentation,
        )

    # labeled_pos[i] is where the image of labeled[i] lies in train_images.
    data = classifier_batches(
        train_images,
        labeled_pos[train_pos],
        y_train[labeled[train_pos]],
        seed,
        augment.build(settings.get("augmentation"), seed),
    )
    validation = None
    if len(val_pos):
        validation = classifier_batches(train_images, labeled_pos[val_pos], y_train[labeled[val_pos]])
    _compile(
        model,
        settings,
        _steps(len(train_pos), settings["batch_size"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    counts = downstream.count_params(model)
    print(
        f"downstream {protocol}: {len(labeled)} labels ({len(train_pos)} train, {len(val_pos)} validation), "
        f"{counts['params']} params of which {counts['trainable_params']} trainable",
        file=stream,
        flush=True,
    )
    history = training.fit(
        model,
        data,
        epochs=settings["epochs"],
        samples_per_epoch=len(train_pos),
        validation_data=validation,
        early_stopping=settings["early_stopping"],
        extra_callbacks=schedules.callbacks(settings, _state_dir(resume_dir), stream),
        resume_dir=resume_dir,
        stream=stream,
    )

    def accuracy(images, where, labels):
        return downstream.accuracy(model, classifier_batches(images, where, labels), labels)

    probabilities = model.predict(
        classifier_batches(test_images, test_pos[:1], y_test[split.test[:1]]), verbose=0
    )
    metrics = {
        "protocol": protocol,
        "budget": str(budget),
        "n_labels": int(len(labeled)),
        "test_accuracy": accuracy(test_images, test_pos, y_test[split.test]),
        "train_accuracy": accuracy(train_images, labeled_pos[train_pos], y_train[labeled[train_pos]]),
        "val_accuracy": (
            accuracy(train_images, labeled_pos[val_pos], y_train[labeled[val_pos]]) if len(val_pos) else None
        ),
        "epochs_run": int(len(history)),
        "resumed_from_epoch": history.attrs["resumed_from_epoch"],
        **counts,
        **training.thread_settings(),
        "example": {
            "test_index": int(split.test[0]),
            "label": int(y_test[split.test[0]]),
            "probabilities": [float(p) for p in probabilities[0]],
        },
    }
    print(f"test accuracy {metrics['test_accuracy']:.4f}", file=stream, flush=True)
    for images in (train_images, test_images):
        _close(images)
    return metrics, history
