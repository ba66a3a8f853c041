"""The outlier stage: score every image of a pool with a one-class model trained on the
labeled images; write the scores and the pool of the typical images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from selfsup import artifacts, augment, outliers, training
from selfsup.encoders import build_encoder
from selfsup.inputs import DEFAULT_MEMORY_LIMIT_MB, batches
from selfsup.jobs import input_files, resume_dir
from selfsup.stages import common


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
    labeled_images, labeled_pos = common.load_pool(data_path, "train", split.labeled, limit)
    pool_images, pool_pos = common.load_pool(data_path, part, pool, limit)

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
    steps = common.steps_per_epoch(len(labeled_pos), settings["batch_size"])
    optimizer = training.make_optimizer(settings["optimizer"], training.learning_rate(settings, steps))
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
        common.close_pool(images)
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


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict) -> None:
    """The outliers rule's job."""
    seed = int(wildcards["seed"])
    settings = params["settings"]
    training.configure(params["tf_threads"], seed, settings["deterministic"])
    filter_outliers(
        data_path=inputs["data"],
        split_path=inputs["split"],
        pool_path=inputs["pool"],
        settings=settings,
        encoder_spec=params["encoder"],
        seed=seed,
        meta={"study": params["study"]},
        outliers_path=outputs["scores"],
        inliers_path=outputs["pool"],
        history_path=outputs["history"],
        resume_dir=resume_dir(Path(outputs["scores"]).parent, list(params.values()), input_files(inputs)),
    )
