"""The split stage: one replicate's labeled, unlabeled, test and monitor images, the
normalization statistics of the training images, and the default pool (every unlabeled
image), written for every later job of that replicate."""

from __future__ import annotations

from selfsup import artifacts
from selfsup.data import normalization, splits
from selfsup.data.dataset import Split


def split_dataset(data_path, settings: dict, seed: int) -> Split:
    """The split of replicate `seed` of the prepared dataset at `data_path`.

    `settings`: the study's split section plus `normalization` (its kind), whose
    statistics come from the genuine training images, read in chunks from the file.
    A contaminated file's foreign images and fraction come from the file itself.
    """
    info = artifacts.read_labels(data_path)
    foreign = info["foreign"]
    images = artifacts.ImageFile(data_path, "train", stop=info["sizes"]["train"] - len(foreign))
    try:
        stats = normalization.compute(settings.get("normalization", "none"), images)
    finally:
        images.close()
    return splits.make_split(
        info["y_train"],
        info["sizes"]["test"],
        settings.get("labeled"),
        settings.get("unlabeled"),
        settings.get("test"),
        seed=seed,
        labeled_fraction=settings.get("labeled_fraction"),
        folds=settings.get("folds", False),
        predefined_folds=info["folds"],
        n_own_unlabeled=info["sizes"].get("unlabeled", 0),
        normalization=stats,
        monitor=settings.get("monitor", 0),
        foreign=foreign,
        foreign_fraction=(info["contamination"] or {}).get("fraction", 0.0),
    )


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict) -> None:
    """The split rule's job."""
    seed = int(wildcards["seed"])
    settings = params["split"]
    split = split_dataset(inputs["data"], settings, seed)
    print(
        f"labeled {len(split.labeled)}, unlabeled {len(split.unlabeled)} ({split.unlabeled_part} images), "
        f"test {len(split.test)}, normalization {split.normalization.kind}"
    )
    meta = {"study": params["study"], "seed": seed}
    artifacts.write_split(outputs["split"], split, {**meta, "split": settings})
    artifacts.write_pool(outputs["pool"], split.unlabeled, split.unlabeled_part, {**meta, "pool": "all"})
