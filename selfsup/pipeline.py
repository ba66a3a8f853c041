"""The two training stages as plain functions: artifacts in, artifacts out.

Workflow scripts call these with what Snakemake hands them; tests call them directly.
"""

from __future__ import annotations

import sys

import numpy as np

from selfsup import artifacts, downstream, training
from selfsup.encoders import build_encoder
from selfsup.pretext import get_method

EXAMPLE_IMAGES = 8  # images shown in each pretext examples figure


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


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
    dataset = artifacts.read_dataset(data_path)
    split = artifacts.read_split(split_path)
    method = get_method(settings["method"])
    options = settings["options"]
    if pseudo_path is not None:
        indices, labels = artifacts.read_pseudo_labels(pseudo_path)
        # Pseudo-labels index training images; the method wants positions in its images.
        images = scale(dataset.x_train[indices])
        pseudo = (np.arange(len(indices)), labels)
    else:
        images = scale(dataset.x_train[split.unlabeled])
        pseudo = None

    input_shape = dataset.image_shape
    encoder = build_encoder(encoder_spec["name"], input_shape, **encoder_spec["options"])
    model = method.build(encoder, options)
    model.compile(optimizer=training.make_optimizer(settings["optimizer"]), **method.compile_args(options))
    data = method.dataset(images, pseudo, options, settings["batch_size"], seed)
    samples = len(pseudo[0]) if pseudo is not None else len(images)
    print(
        f"pretext {settings['method']}: {samples} samples, encoder {encoder_spec['name']} "
        f"({encoder.count_params()} params), {settings['epochs']} epochs, "
        f"threads {training.thread_settings()}",
        file=stream,
        flush=True,
    )
    history = training.fit(
        model,
        data,
        epochs=settings["epochs"],
        samples_per_epoch=samples,
        early_stopping=settings.get("early_stopping"),
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
    shown = scale(dataset.x_train[split.unlabeled[:EXAMPLE_IMAGES]])
    examples = method.examples(model, shown, options, seed)
    artifacts.write_examples(examples_path, examples, {**meta, "method": settings["method"], "seed": seed})
    return history


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
    dataset = artifacts.read_dataset(data_path)
    split = artifacts.read_split(split_path)
    protocol = settings["protocol"]
    if downstream.uses_pretext(protocol):
        encoder, _ = artifacts.read_encoder(encoder_path)
    else:
        encoder = build_encoder(encoder_spec["name"], dataset.image_shape, **encoder_spec["options"])
    model = downstream.build_classifier(
        encoder,
        dataset.num_classes,
        protocol,
        feature_layer=settings["feature_layer"],
        **settings["head"],
    )
    model.compile(
        optimizer=training.make_optimizer(settings["optimizer"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    labeled = split.budget(budget)
    train_pos, val_pos = downstream.validation_cut(len(labeled), settings["validation_split"], seed)
    x_train, y_train = scale(dataset.x_train[labeled[train_pos]]), dataset.y_train[labeled[train_pos]]
    validation = None
    if len(val_pos):
        validation = (scale(dataset.x_train[labeled[val_pos]]), dataset.y_train[labeled[val_pos]])

    import tensorflow as tf

    data = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(settings["batch_size"])
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
        samples_per_epoch=len(x_train),
        validation_data=validation,
        early_stopping=settings["early_stopping"],
        resume_dir=resume_dir,
        stream=stream,
    )
    x_test, y_test = scale(dataset.x_test[split.test]), dataset.y_test[split.test]
    example = model.predict(x_test[:1], verbose=0)[0]
    metrics = {
        "protocol": protocol,
        "budget": str(budget),
        "n_labels": int(len(labeled)),
        "test_accuracy": downstream.accuracy(model, x_test, y_test),
        "train_accuracy": downstream.accuracy(model, x_train, y_train),
        "val_accuracy": downstream.accuracy(model, *validation) if validation else None,
        "epochs_run": int(len(history)),
        "resumed_from_epoch": history.attrs["resumed_from_epoch"],
        **counts,
        **training.thread_settings(),
        "example": {
            "test_index": int(split.test[0]),
            "label": int(y_test[0]),
            "probabilities": [float(p) for p in example],
        },
    }
    print(f"test accuracy {metrics['test_accuracy']:.4f}", file=stream, flush=True)
    return metrics, history
