"""The prepare stage: a dataset's official files (or generated images) read once, checked,
and written as the one prepared HDF5 file every later job reads."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from selfsup import artifacts
from selfsup.data import sources
from selfsup.data.dataset import DataError


def prepare(
    name: str,
    folder,
    options: dict,
    path,
    meta: dict,
    contamination: dict | None = None,
    verify_checksums: bool = True,
) -> None:
    """Load source `name` and write it to `path` (selfsup.artifacts' dataset layout).

    Archives are extracted into a temporary folder beside `path` (the data folder may be
    read-only, and /tmp too small for STL-10), removed once the images are copied out.
    `contamination` ({source, fraction, seed, folder}): append foreign training images
    of another source after the training images, labeled -1 (see selfsup.data.sources.foreign_images).
    `verify_checksums`: check both sources' files against their published checksums.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=Path(path).parent) as work_dir:
        dataset = sources.load_dataset(name, folder, work_dir, verify_checksums=verify_checksums, **options)
        print(
            f"{name}: train {dataset.x_train.shape}, test {dataset.x_test.shape}, unlabeled "
            f"{None if dataset.x_unlabeled is None else dataset.x_unlabeled.shape}",
            flush=True,
        )
        foreign = None
        if contamination:
            foreign = sources.foreign_images(
                contamination, dataset, Path(work_dir) / "foreign", verify_checksums
            )
            print(
                f"contamination: {len(foreign.images)} {foreign.source} training images appended "
                f"(fraction {foreign.fraction}, seed {foreign.seed})",
                flush=True,
            )
        artifacts.write_dataset(path, dataset, meta, foreign=foreign)


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict, config: dict) -> None:
    """The prepare rule's job. `verify_checksums` comes from the study, not a param:
    turning the check off must not re-run prepare."""
    source = params["source"]
    try:
        prepare(
            source["name"],
            source["folder"],
            source["options"],
            outputs["data"],
            {"dataset": source["name"], "source": source},
            contamination=source.get("contamination"),
            verify_checksums=config.get("dataset", {}).get("verify_checksums", True),
        )
    except DataError as error:  # the message names the file and the fix; a traceback would bury it
        sys.exit(f"{error}")
