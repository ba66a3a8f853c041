"""The two training stages as plain functions: artifacts in, artifacts out.

Workflow scripts call these with what Snakemake hands them; tests call them directly.
Every image reaches a model through selfsup.data.inputs: uint8 until a batch is formed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from selfsup import artifacts, augment, downstream, joint, monitor, outliers, probes, schedules, training
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
        steps_per_execution=training.STEPS_PER_EXECUTION,
        **compile_args,
    )


def _steps(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size))


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
    train_pos, val_pos = downstream.validation_cut(len(indices), settings.get("validation_split", 0.0), seed)
    images, positions = load_pool(
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
        else _steps(len(train_pos), settings["batch_size"])
    )
    model = method.build(encoder, options, total_steps=steps * settings["epochs"], **in_model)
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
    return monitor.knn_callback(encoder, images, labels, **knn, stream=stream)


def _close(images) -> None:
    # A pool streamed from its HDF5 file holds the file open until closed.
    if hasattr(images, "close"):
        images.close()


def _state_dir(resume_dir):
    # Best-epoch weights live with the resume state, which is removed on success.
    return None if resume_dir is None else f"{resume_dir}/keep_best"


@dataclass
class ExtraExamples:
    """Training examples beyond the labeled budget, from a pool: pseudo-labeled ones (with
    their certainty as weight) for self-training, or unlabeled ones (label -1) for the
    joint model."""

    part: str
    indices: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None = None


UNLABELED = -1  # the class label of an unlabeled example: the joint model masks its class loss


def train_downstream(
    *,
    data_path,
    split_path,
    encoder_path,
    encoder_spec: dict,
    settings: dict,
    budget: str,
    seed: int,
    extra: ExtraExamples | None = None,
    resume_dir=None,
    stream=sys.stderr,
):
    """Train and evaluate one classifier; returns (metrics dict, history frame, model).

    `settings["protocol"]` says what is trained: a classifier under a freezing protocol
    (selfsup.downstream), the joint model (`joint`, with `extra` the unlabeled pool), or a
    self-training student (`self_training`: the labeled budget plus the pseudo-labeled
    `extra`, fine-tuning the pretext encoder when there is one).
    """
    protocol = settings["protocol"]
    if protocol in downstream.FEATURE_PROTOCOLS:
        return evaluate_features(
            data_path=data_path,
            split_path=split_path,
            encoder_path=encoder_path,
            encoder_spec=encoder_spec,
            settings=settings,
            budget=budget,
            seed=seed,
            stream=stream,
        )
    info = artifacts.read_labels(data_path)
    split = artifacts.read_split(split_path)
    training.set_precision(settings.get("precision", "float32"))
    if encoder_path is not None:
        encoder, _ = artifacts.read_encoder(encoder_path)
    else:
        encoder = build_encoder(encoder_spec["name"], info["image_shape"], **encoder_spec["options"])
    num_classes = len(info["class_names"])
    if protocol == "joint":
        model = joint.build_joint(encoder, num_classes, settings["joint"], head=settings["head"])
        compile_args = {}
    else:
        model = downstream.build_classifier(
            encoder,
            num_classes,
            downstream.classifier_protocol(protocol, pretrained=encoder_path is not None),
            feature_layer=settings["feature_layer"],
            **settings["head"],
        )
        compile_args = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    labeled = split.budget(budget)
    train_pos, val_pos = downstream.validation_cut(len(labeled), settings["validation_split"], seed)
    y_train, y_test = info["y_train"], info["y_test"]
    limit = settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    if extra is None:
        train_images, labeled_pos = load_pool(data_path, "train", labeled, limit)
        extra_pos = np.zeros(0, np.int64)
    else:
        train_images, labeled_pos, extra_pos = _labeled_and_extra(data_path, labeled, extra, limit)
    test_images, test_pos = load_pool(data_path, "test", split.test, limit)

    def classifier_batches(images, where, labels, shuffle_seed=None, augmentation=None, weights=None):
        return batches(
            images,
            where,
            labels,
            batch_size=settings["batch_size"],
            normalization=split.normalization,
            shuffle_seed=shuffle_seed,
            augment=augmentation,
            weights=weights,
        )

    # labeled_pos[i] is where the image of labeled[i] lies in train_images (extra_pos: of extra).
    fit_pos = np.concatenate([labeled_pos[train_pos], extra_pos])
    fit_labels = y_train[labeled[train_pos]]
    fit_weights = None
    if extra is not None:
        fit_labels = np.concatenate([fit_labels, extra.labels])
        if extra.weights is not None:
            # True labels weigh 1; a pseudo-label weighs its teacher's certainty.
            fit_weights = np.concatenate([np.ones(len(train_pos), np.float32), extra.weights])
    data = classifier_batches(
        train_images,
        fit_pos,
        fit_labels,
        seed,
        augment.build(settings.get("augmentation"), seed),
        fit_weights,
    )
    validation = None
    if len(val_pos):
        validation = classifier_batches(train_images, labeled_pos[val_pos], y_train[labeled[val_pos]])
    _compile(model, settings, _steps(len(fit_pos), settings["batch_size"]), **compile_args)
    counts = downstream.count_params(model if protocol != "joint" else model.classifier)
    print(
        f"downstream {protocol}: {len(labeled)} labels ({len(train_pos)} train, {len(val_pos)} validation)"
        + (
            f", {len(extra_pos)} more {'pseudo-labeled' if extra.weights is not None else 'unlabeled'} images"
            if extra
            else ""
        )
        + f", {counts['params']} params of which {counts['trainable_params']} trainable",
        file=stream,
        flush=True,
    )
    history = training.fit(
        model,
        data,
        epochs=settings["epochs"],
        samples_per_epoch=len(fit_pos),
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
        "n_extra": int(len(extra_pos)),
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
    return metrics, history, model


def evaluate_features(
    *, data_path, split_path, encoder_path, encoder_spec, settings, budget, seed, stream=sys.stderr
):
    """A feature protocol (downstream.FEATURE_PROTOCOLS): features of the budget's and the
    test images, extracted once in inference mode, then a cross-validated logistic
    regression or a weighted kNN classifier on them (selfsup.probes). Returns (metrics,
    history, None) as `train_downstream` does: history is the cross-validation accuracy
    per C (linear), or the leave-one-out accuracy on the budget (knn)."""
    info = artifacts.read_labels(data_path)
    split = artifacts.read_split(split_path)
    protocol = settings["protocol"]
    source, evaluation = downstream.FEATURE_PROTOCOLS[protocol]
    num_classes = len(info["class_names"])
    encoder_params = 0
    if source == "pixels":

        def extract(x):
            return np.asarray(x).reshape(len(x), -1)

    else:
        if source == "pretext":
            encoder, _ = artifacts.read_encoder(encoder_path)
        else:  # drawn from the job's seed, as the supervised protocol's starting point is
            encoder = build_encoder(encoder_spec["name"], info["image_shape"], **encoder_spec["options"])
        encoder = downstream.truncate(encoder, settings["feature_layer"])
        encoder_params = downstream.count_params(encoder)["params"]

        def extract(x):
            return np.asarray(encoder(x, training=False)).reshape(len(x), -1)

    limit = settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    labeled = split.budget(budget)
    y_fit, y_test = info["y_train"][labeled], info["y_test"][split.test]

    def features(part, indices):
        images, positions = load_pool(data_path, part, indices, limit)
        data = batches(images, positions, batch_size=monitor.FEATURE_BATCH, normalization=split.normalization)
        out = np.concatenate([extract(x) for x in data])
        _close(images)
        return out

    fit_features, test_features = features("train", labeled), features("test", split.test)
    print(
        f"downstream {protocol}: {len(labeled)} labels, {fit_features.shape[1]} features "
        f"({'pixels' if source == 'pixels' else f'{source} encoder, inference mode'})",
        file=stream,
        flush=True,
    )
    # NumPy's and scikit-learn's BLAS get the job's threads, as TensorFlow does: the
    # scheduler's count holds, and results do not depend on the machine's cores.
    with threadpool_limits(training.thread_settings()["intra_op_threads"]):
        if evaluation == "linear":
            probe = probes.LinearProbe(**settings["linear"], seed=seed).fit(fit_features, y_fit)

            def predict(f):
                return probe.predict_proba(f, num_classes)

            train_accuracy = float(np.mean(predict(fit_features).argmax(axis=1) == y_fit))
            history = pd.DataFrame(
                {"C": probe.Cs, "cv_accuracy": probe.cv_accuracy, "converged": probe.converged}
            )
            details = {
                "C": probe.C,
                "cv_folds": probe.folds,
                "cv_accuracy": float(probe.cv_accuracy[probe.chosen]),
                "lbfgs_iterations": probe.n_iter,
                "unconverged_cv_fits": probe.unconverged_cv_fits,
            }
            trainable = int(probe.model.coef_.size + probe.model.intercept_.size)
            print(
                f"linear probe: C={probe.C:.3g} chosen by {probe.folds}-fold cross-validation "
                f"(accuracy {details['cv_accuracy']:.4f}), refit in {probe.n_iter} L-BFGS iterations",
                file=stream,
                flush=True,
            )
        else:
            knn = settings["knn"]

            def predict(f):
                return probes.knn_predict(fit_features, y_fit, f, **knn, num_classes=num_classes)

            # Each budget image is its own nearest neighbour; leave it out to score the budget.
            train_accuracy = monitor.knn_accuracy(fit_features, y_fit, knn["k"], knn["temperature"])
            history = pd.DataFrame([{**knn, "leave_one_out_accuracy": train_accuracy}])
            details = dict(knn)
            trainable = 0
        probabilities = predict(test_features)
    metrics = {
        "protocol": protocol,
        "budget": str(budget),
        "n_labels": int(len(labeled)),
        "n_extra": 0,
        "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == y_test)),
        "train_accuracy": train_accuracy,
        "val_accuracy": None,
        "epochs_run": 0,
        "resumed_from_epoch": None,
        "params": encoder_params + trainable,
        "trainable_params": trainable,
        "features": int(fit_features.shape[1]),
        evaluation: details,
        **training.thread_settings(),
        "example": {
            "test_index": int(split.test[0]),
            "label": int(y_test[0]),
            "probabilities": [float(p) for p in probabilities[0]],
        },
    }
    print(f"test accuracy {metrics['test_accuracy']:.4f}", file=stream, flush=True)
    return metrics, history, None


def _labeled_and_extra(data_path, labeled, extra: ExtraExamples, memory_limit_mb: float):
    """One in-memory array of the labeled images and the extra ones (which may come from
    another image part), and where each labeled and each extra example lies in it."""
    shape = artifacts.read_labels(data_path)["image_shape"]
    labeled_unique, labeled_pos = np.unique(labeled, return_inverse=True)
    extra_unique, extra_pos = np.unique(extra.indices, return_inverse=True)
    megabytes = (len(labeled_unique) + len(extra_unique)) * int(np.prod(shape)) / 2**20
    if megabytes > memory_limit_mb:
        raise MemoryError(
            f"the labeled images and the pool's take {megabytes:.0f} MB, over memory_limit_mb "
            f"{memory_limit_mb}; raise memory_limit_mb for this stage, or use a smaller pool"
        )
    images = np.concatenate(
        [
            artifacts.read_images(data_path, "train", labeled_unique),
            artifacts.read_images(data_path, extra.part, extra_unique),
        ]
    )
    return images, labeled_pos.astype(np.int64), (len(labeled_unique) + extra_pos).astype(np.int64)


def predict_pool(model, data_path, part: str, indices, normalization, batch_size: int) -> np.ndarray:
    """Class probabilities of the pool images `indices`, in their order."""
    images, positions = load_pool(data_path, part, indices)
    data = batches(images, positions, batch_size=batch_size, normalization=normalization)
    probabilities = model.predict(data, verbose=0)
    _close(images)
    return probabilities


def self_training_round(
    *,
    data_path,
    split_path,
    pool_path,
    earlier_rounds: list,
    encoder_path,
    encoder_spec: dict,
    settings: dict,
    budget: str,
    seed: int,
    threshold: float | None,
    resume_dir=None,
    stream=sys.stderr,
):
    """Train a classifier on the labeled budget plus the pseudo-labels of `earlier_rounds`
    (artifacts of selfsup.artifacts.write_teacher_labels, weighted by their certainty),
    then, when `threshold` is given, label the rest of the pool with it.

    Returns (metrics, history, accepted) where accepted is None without a threshold, else
    {indices, labels, confidences, accepted, correct, remaining}: the predictions of top
    probability >= threshold, and for diagnosis only how many of them match the hidden
    true labels (None when the pool's images have none: a dataset's own unlabeled part).
    """
    split = artifacts.read_split(split_path)
    pool, part = artifacts.read_pool(pool_path)
    rounds = [artifacts.read_teacher_labels(path) for path in earlier_rounds]
    taken = np.concatenate([r["indices"] for r in rounds]) if rounds else np.zeros(0, np.int64)
    extra = ExtraExamples(
        part=part,
        indices=taken,
        labels=np.concatenate([r["labels"] for r in rounds]) if rounds else np.zeros(0, np.int64),
        weights=np.concatenate([r["confidences"] for r in rounds]) if rounds else np.zeros(0, np.float32),
    )
    metrics, history, model = train_downstream(
        data_path=data_path,
        split_path=split_path,
        encoder_path=encoder_path,
        encoder_spec=encoder_spec,
        settings=settings,
        budget=budget,
        seed=seed,
        extra=extra,
        resume_dir=resume_dir,
        stream=stream,
    )
    metrics["rounds"] = [
        {
            key: r.get(key)
            for key in (
                "round",
                "accepted",
                "correct",
                "remaining",
                "teacher_test_accuracy",
                "teacher_train_accuracy",
            )
        }
        for r in rounds
    ]
    if threshold is None:
        if rounds and rounds[-1].get("teacher_test_accuracy") is not None:
            # The reference reports its last teacher (labels plus the rounds before it), not
            # this student (labels plus every round): both reach the tables, named apart.
            metrics["last_teacher"] = {
                "test_accuracy": rounds[-1]["teacher_test_accuracy"],
                "train_accuracy": rounds[-1].get("teacher_train_accuracy"),
            }
        return metrics, history, None
    remaining = np.setdiff1d(pool, taken)
    probabilities = predict_pool(
        model, data_path, part, remaining, split.normalization, settings["batch_size"]
    )
    confidences = probabilities.max(axis=1)
    chosen = confidences >= threshold
    labels = probabilities.argmax(axis=1)[chosen]
    correct = None
    if part == "train":
        truth = artifacts.read_labels(data_path)["y_train"][remaining[chosen]]
        correct = int(np.sum(labels == truth))
    accepted = {
        "indices": remaining[chosen],
        "labels": labels,
        "confidences": confidences[chosen],
        "accepted": int(chosen.sum()),
        "correct": correct,
        "remaining": int(len(remaining) - chosen.sum()),
        "teacher_test_accuracy": metrics["test_accuracy"],
        "teacher_train_accuracy": metrics["train_accuracy"],
    }
    print(
        f"accepted {accepted['accepted']} of {len(remaining)} pool images at top probability >= {threshold}"
        + ("" if correct is None else f", {correct} of them right ({correct / max(1, chosen.sum()):.1%})"),
        file=stream,
        flush=True,
    )
    return metrics, history, accepted


def filter_outliers(
    *,
    data_path,
    split_path,
    pool_path,
    settings: dict,
    encoder_spec: dict,
    seed: int,
    meta: dict,
    outliers_path,
    inliers_path,
    history_path,
    resume_dir=None,
    stream=sys.stderr,
):
    """Score every image of a pool with a one-class model trained on the labeled images;
    write the scores (outliers_path) and the pool of the typical ones (inliers_path)."""
    split = artifacts.read_split(split_path)
    pool, part = artifacts.read_pool(pool_path)
    scorer = outliers.get_scorer(settings["method"])
    options = settings["options"]
    limit = settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    labeled_images, labeled_pos = load_pool(data_path, "train", split.labeled, limit)
    pool_images, pool_pos = load_pool(data_path, part, pool, limit)

    def image_batches(images, where, shuffle_seed=None, augmentation=None):
        return batches(
            images,
            where,
            batch_size=settings["batch_size"],
            normalization=split.normalization,
            shuffle_seed=shuffle_seed,
            augment=augmentation,
        )

    training.set_precision(settings.get("precision", "float32"))
    info = artifacts.read_labels(data_path)
    encoder = build_encoder(encoder_spec["name"], info["image_shape"], **encoder_spec["options"])
    steps = _steps(len(labeled_pos), settings["batch_size"])
    optimizer = training.make_optimizer(settings["optimizer"], schedules.learning_rate(settings, steps))
    print(
        f"outliers {settings['method']}: trained on {len(labeled_pos)} labeled images, scoring "
        f"{len(pool)} {part} images of the pool, at most {settings['epochs']} epochs",
        file=stream,
        flush=True,
    )
    result = scorer.fit_score(
        encoder,
        image_batches(labeled_images, labeled_pos, seed, augment.build(settings.get("augmentation"), seed)),
        image_batches(labeled_images, labeled_pos),
        image_batches(pool_images, pool_pos),
        options,
        epochs=settings["epochs"],
        optimizer=optimizer,
        samples_per_epoch=len(labeled_pos),
        resume_dir=resume_dir,
        stream=stream,
    )
    for images in (labeled_images, pool_images):
        _close(images)
    foreign = np.isin(pool, split.foreign) if part == "train" else np.zeros(len(pool), bool)
    removed = result.scores < result.threshold
    summary = {
        "n_removed": int(removed.sum()),
        "removed_share": float(removed.mean()),
        "epochs_run": int(len(result.history)),
    }
    if foreign.any() and not foreign.all():
        summary.update(
            n_foreign=int(foreign.sum()),
            auroc=rank_auroc(result.scores[~foreign], result.scores[foreign]),
            foreign_removed_share=float(removed[foreign].mean()),
            genuine_removed_share=float(removed[~foreign].mean()),
        )
    print(
        f"threshold {result.threshold:.4f}: {summary['n_removed']} of {len(pool)} removed "
        f"({summary['removed_share']:.1%})"
        + (
            f"; AUROC genuine vs foreign {summary['auroc']:.3f}, removed {summary['foreign_removed_share']:.1%} "
            f"of the foreign and {summary['genuine_removed_share']:.1%} of the genuine images"
            if "auroc" in summary
            else ""
        ),
        file=stream,
        flush=True,
    )
    meta = {**meta, "method": settings["method"], "seed": seed, "part": part, "settings": settings, **summary}
    result.history.to_csv(history_path, index=False)
    artifacts.write_outliers(outliers_path, pool, result.scores, result.threshold, foreign, meta)
    artifacts.write_pool(inliers_path, pool[~removed], part, {**meta, "pool": "inliers"})
    return summary


def rank_auroc(positive_scores, negative_scores) -> float:
    """Probability that a random positive outscores a random negative (ties count half):
    the area under the ROC curve, by the Mann-Whitney rank formula."""
    scores = np.concatenate([positive_scores, negative_scores])
    ranks = pd.Series(scores).rank().to_numpy()  # average ranks for ties
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
