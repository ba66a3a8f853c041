"""The downstream stage: one run of a protocol (selfsup.protocols) on a label budget and
seed, scored on the test set. Its two skeletons: `train_downstream` trains a Keras
classifier on the budget (and a pool's extra examples), `evaluate_features` evaluates
frozen features (selfsup.probes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from selfsup import (
    artifacts,
    augment,
    callbacks,
    downstream,
    encoders,
    joint,
    monitor,
    probes,
    protocols,
    training,
)
from selfsup.data.splits import drawn_budget, parse_budget, validation_cut
from selfsup.encoders import build_encoder
from selfsup.inputs import DEFAULT_MEMORY_LIMIT_MB, batches
from selfsup.jobs import input_files, resume_dir, write_json
from selfsup.protocols.base import Job
from selfsup.report import comparisons
from selfsup.stages import common


@dataclass
class ExtraExamples:
    """Training examples beyond the labeled budget, from a pool: pseudo-labeled ones (with
    their certainty as weight) for self-training, or unlabeled ones (label -1) for the
    joint model."""

    part: str
    indices: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None = None


def train_downstream(job: Job, extra: ExtraExamples | None = None):
    """Train and evaluate one classifier; returns (metrics dict, history frame, model).

    `job.settings["protocol"]` says what is trained: a classifier under a freezing
    protocol (selfsup.downstream), the joint model (`joint`, with `extra` the unlabeled
    pool), or a self-training student (`self_training`: the labeled budget plus the
    pseudo-labeled `extra`, fine-tuning the pretext encoder when there is one).
    """
    data_path, split_path, encoder_path = job.data_path, job.split_path, job.encoder_path
    settings, budget, seed, stream = job.settings, job.budget, job.seed, job.stream
    encoder_spec, resume_dir = job.encoder_spec, job.resume_dir
    protocol = settings["protocol"]
    info = artifacts.read_labels(data_path)
    split = artifacts.read_split(split_path)
    training.set_precision(settings.get("precision", "float32"))
    if encoder_path is not None:
        encoder, _ = encoders.read_encoder(encoder_path)
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
            protocols.classifier_protocol(protocol, pretrained=encoder_path is not None),
            feature_layer=settings["feature_layer"],
            **settings["head"],
        )
        compile_args = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    labeled = drawn_budget(split, info["y_train"], budget, seed)
    train_pos, val_pos = validation_cut(len(labeled), settings["validation_split"], seed)
    y_train, y_test = info["y_train"], info["y_test"]
    limit = settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    if extra is None:
        train_images, labeled_pos = common.load_pool(data_path, "train", labeled, limit)
        extra_pos = np.zeros(0, np.int64)
    else:
        train_images, labeled_pos, extra_pos = _labeled_and_extra(data_path, labeled, extra, limit)
    test_images, test_pos = common.load_pool(data_path, "test", split.test, limit)

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
    common.compile_model(
        model, settings, common.steps_per_epoch(len(fit_pos), settings["batch_size"]), **compile_args
    )
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
        extra_callbacks=callbacks.from_settings(settings, common.keep_best_dir(resume_dir), stream),
        resume_dir=resume_dir,
        stream=stream,
    )

    def accuracy(images, where, labels):
        return downstream.accuracy(model, classifier_batches(images, where, labels), labels)

    probabilities = model.predict(
        classifier_batches(test_images, test_pos[:1], y_test[split.test[:1]]), verbose=0
    )
    test_correct = downstream.correct(
        model, classifier_batches(test_images, test_pos, y_test[split.test]), y_test[split.test]
    )
    metrics = {
        "protocol": protocol,
        "budget": parse_budget(budget)[0],
        "draw": parse_budget(budget)[1],
        "n_labels": int(len(labeled)),
        "n_extra": int(len(extra_pos)),
        "test_accuracy": float(np.mean(test_correct)),
        "n_test": int(len(test_correct)),
        "test_correct": comparisons.encode_correct(test_correct),
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
        common.close_pool(images)
    return metrics, history, model


def evaluate_features(job: Job):
    """A feature protocol (probes.FEATURE_PROTOCOLS): features of the budget's and the
    test images, extracted once in inference mode, then a cross-validated logistic
    regression or a weighted kNN classifier on them (selfsup.probes). Returns (metrics,
    history, None) as `train_downstream` does: history is the cross-validation accuracy
    per C (linear), or the leave-one-out accuracy on the budget (knn)."""
    data_path, split_path, encoder_path, settings = (
        job.data_path,
        job.split_path,
        job.encoder_path,
        job.settings,
    )
    budget, seed, stream, encoder_spec = job.budget, job.seed, job.stream, job.encoder_spec
    info = artifacts.read_labels(data_path)
    split = artifacts.read_split(split_path)
    protocol = settings["protocol"]
    source, evaluation = probes.FEATURE_PROTOCOLS[protocol]
    num_classes = len(info["class_names"])
    encoder_params = 0
    if source == "pixels":

        def extract(x):
            return np.asarray(x).reshape(len(x), -1)

    else:
        if source == "pretext":
            encoder, _ = encoders.read_encoder(encoder_path)
        else:  # drawn from the job's seed, as the supervised protocol's starting point is
            encoder = build_encoder(encoder_spec["name"], info["image_shape"], **encoder_spec["options"])
        encoder = encoders.cut(encoder, settings["feature_layer"], "feature_layer")
        encoder_params = downstream.count_params(encoder)["params"]

        def extract(x):
            return np.asarray(encoder(x, training=False)).reshape(len(x), -1)

    limit = settings.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    labeled = drawn_budget(split, info["y_train"], budget, seed)
    y_fit, y_test = info["y_train"][labeled], info["y_test"][split.test]

    def features(part, indices):
        images, positions = common.load_pool(data_path, part, indices, limit)
        data = batches(images, positions, batch_size=monitor.FEATURE_BATCH, normalization=split.normalization)
        out = np.concatenate([extract(x) for x in data])
        common.close_pool(images)
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
        "budget": parse_budget(budget)[0],
        "draw": parse_budget(budget)[1],
        "n_labels": int(len(labeled)),
        "n_extra": 0,
        "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == y_test)),
        "n_test": int(len(y_test)),
        "test_correct": comparisons.encode_correct(probabilities.argmax(axis=1) == y_test),
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
    images, positions = common.load_pool(data_path, part, indices)
    data = batches(images, positions, batch_size=batch_size, normalization=normalization)
    probabilities = model.predict(data, verbose=0)
    common.close_pool(images)
    return probabilities


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict) -> None:
    """The job of the downstream rule: one run of any protocol its family runs there
    (selfsup.protocols: RULE "downstream")."""
    seed = int(wildcards["seed"])
    settings = params["settings"]
    training.configure(params["tf_threads"], seed, settings["deterministic"])
    metrics, history = protocols.family(settings["protocol"]).train(
        Job(
            data_path=inputs["data"],
            split_path=inputs["split"],
            settings=settings,
            budget=wildcards["budget"],
            seed=seed,
            encoder_spec=params["encoder"],
            encoder_path=inputs.get("encoder"),
            pool_path=inputs.get("pool"),
            resume_dir=resume_dir(
                Path(outputs["metrics"]).parent, list(params.values()), input_files(inputs)
            ),
        )
    )
    metrics.update(study=params["study"], method=wildcards["pretext"], pool=wildcards["pool"], seed=seed)
    history.to_csv(outputs["history"], index=False)
    write_json(outputs["metrics"], metrics)
