"""The self-training stage: one round of teacher pseudo-labels on a pool, or the student
trained on labels plus the pseudo-labels of every round."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup import artifacts, training
from selfsup.data.splits import parse_budget
from selfsup.jobs import input_files, resume_dir, write_json
from selfsup.protocols.base import Job
from selfsup.stages.downstream import ExtraExamples, predict_pool, train_downstream


def self_training_round(job: Job, earlier_rounds: list, threshold: float | None):
    """Train a classifier on the labeled budget plus the pseudo-labels of `earlier_rounds`
    (artifacts of selfsup.artifacts.write_teacher_labels, weighted by their certainty),
    then, when `threshold` is given, label the rest of the pool (`job.pool_path`) with it.

    Returns (metrics, history, accepted) where accepted is None without a threshold, else
    {indices, labels, confidences, accepted, correct, remaining}: the predictions of top
    probability >= threshold, and for diagnosis only how many of them match the hidden
    true labels (None when the pool's images have none: a dataset's own unlabeled part).
    """
    data_path, split_path, pool_path, settings = job.data_path, job.split_path, job.pool_path, job.settings
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
    metrics, history, model = train_downstream(job, extra)
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
        file=job.stream,
        flush=True,
    )
    return metrics, history, accepted


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict) -> None:
    """The job of both self-training rules: a round (threshold given) trains a teacher and
    writes the pseudo-labels it accepts; the student (no threshold) is the run whose
    metrics count."""
    seed = int(wildcards["seed"])
    settings = params["settings"]
    threshold = params["threshold"]
    training.configure(params["tf_threads"], seed, settings["deterministic"])
    first_output = Path(next(iter(outputs.values())))
    # Rounds share their run's folder, so each keeps its resume state in a folder of its own.
    state_dir = first_output.parent if threshold is None else first_output.parent / first_output.stem
    metrics, history, accepted = self_training_round(
        Job(
            data_path=inputs["data"],
            split_path=inputs["split"],
            settings=settings,
            budget=wildcards["budget"],
            seed=seed,
            encoder_spec=params["encoder"],
            encoder_path=inputs.get("encoder"),
            pool_path=inputs["pool"],
            resume_dir=resume_dir(state_dir, list(params.values()), input_files(inputs)),
        ),
        list(inputs["rounds"]),
        threshold,
    )
    history.to_csv(outputs["history"], index=False)
    meta = {
        "study": params["study"],
        "method": wildcards["pretext"],
        "pool": wildcards["pool"],
        "budget": parse_budget(wildcards["budget"])[0],
        "draw": parse_budget(wildcards["budget"])[1],
        "seed": seed,
    }
    if accepted is None:
        write_json(outputs["metrics"], {**metrics, **meta})
        return
    artifacts.write_teacher_labels(
        outputs["labels"],
        accepted.pop("indices"),
        accepted.pop("labels"),
        accepted.pop("confidences"),
        int(wildcards["round"]),
        {
            **meta,
            "threshold": threshold,
            **{key: value for key, value in accepted.items() if value is not None},
        },
    )
