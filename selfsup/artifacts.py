"""Every HDF5 layout of the pipeline: datasets, splits, pseudo-labels and encoders.

Nothing else in selfsup opens HDF5 files. Each file records what made it as attributes
(study, method, seed, library version, key hyper-parameters), and every writer goes
through `_atomic_h5`, so an interrupted job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from selfsup import __version__
from selfsup.data.sources import Dataset


@contextlib.contextmanager
def _atomic_h5(path: str | os.PathLike):
    """Write to a sibling temporary file and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with h5py.File(partial, "w") as h5:
            h5.attrs["selfsup_version"] = __version__
            yield h5
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _set_attrs(h5: h5py.File, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
            h5.attrs[key] = value
        else:
            h5.attrs[key] = json.dumps(value, sort_keys=True)


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """All attributes of an artifact, JSON-encoded ones decoded."""
    with h5py.File(path, "r") as h5:
        out = {}
        for key, value in h5.attrs.items():
            if isinstance(value, str) and value[:1] in "[{":
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            out[key] = value.item() if isinstance(value, np.generic) else value
        return out


# --- datasets -------------------------------------------------------------------------


def write_dataset(path, dataset: Dataset, meta: dict[str, Any]) -> None:
    with _atomic_h5(path) as h5:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            h5.create_dataset(name, data=getattr(dataset, name), compression="gzip")
        _set_attrs(h5, {**meta, "class_names": list(dataset.class_names)})


def read_dataset(path) -> Dataset:
    with h5py.File(path, "r") as h5:
        arrays = {name: h5[name][()] for name in ("x_train", "y_train", "x_test", "y_test")}
        class_names = json.loads(h5.attrs["class_names"])
    return Dataset(**arrays, class_names=class_names)


# --- splits ---------------------------------------------------------------------------


@dataclass
class Split:
    """Indices into a dataset: `labeled`, `unlabeled` and `test` pools.

    `budget_order` is the labeled pool reordered so that every prefix is a
    class-stratified subset: the budget of n labels is `budget_order[:n]`.
    """

    labeled: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray
    budget_order: np.ndarray

    def budget(self, n: int | str) -> np.ndarray:
        if n == "all":
            return self.budget_order
        n = int(n)
        if n > len(self.budget_order):
            raise ValueError(f"budget {n} exceeds the labeled pool of {len(self.budget_order)}")
        return self.budget_order[:n]


def write_split(path, split: Split, meta: dict[str, Any]) -> None:
    with _atomic_h5(path) as h5:
        for name in ("labeled", "unlabeled", "test", "budget_order"):
            h5.create_dataset(name, data=np.asarray(getattr(split, name), dtype=np.int64))
        _set_attrs(h5, meta)


def read_split(path) -> Split:
    with h5py.File(path, "r") as h5:
        return Split(**{name: h5[name][()] for name in ("labeled", "unlabeled", "test", "budget_order")})


# --- pseudo-labels --------------------------------------------------------------------


def write_pseudo_labels(path, indices: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> None:
    """Pseudo-labels: `indices` into the training images and one label per index."""
    if len(indices) != len(labels):
        raise ValueError(f"{len(indices)} indices but {len(labels)} labels")
    with _atomic_h5(path) as h5:
        h5.create_dataset("indices", data=np.asarray(indices, dtype=np.int64))
        h5.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        _set_attrs(h5, meta)


def read_pseudo_labels(path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as h5:
        return h5["indices"][()], h5["labels"][()]


# --- pretext examples -----------------------------------------------------------------


def write_examples(path, examples: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Named image arrays of the same length (input, corrupted, output, ...), in order."""
    with _atomic_h5(path) as h5:
        for order, (name, images) in enumerate(examples.items()):
            dataset = h5.create_dataset(name, data=np.asarray(images, dtype=np.float32))
            dataset.attrs["order"] = order
        _set_attrs(h5, meta)


def read_examples(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h5:
        names = sorted(h5, key=lambda name: h5[name].attrs["order"])
        return {name: h5[name][()] for name in names}


# --- encoders -------------------------------------------------------------------------
# An encoder is stored as its registry name, options and input shape plus its weight
# arrays. Loading rebuilds it from the registry, so no code is ever read from a file.


def write_encoder(path, encoder, spec: dict[str, Any], meta: dict[str, Any]) -> None:
    """Save `encoder` (a keras.Model) built from `spec` = {name, input_shape, options}."""
    with _atomic_h5(path) as h5:
        group = h5.create_group("weights")
        for i, (variable, value) in enumerate(zip(encoder.weights, encoder.get_weights(), strict=True)):
            dataset = group.create_dataset(f"{i:04d}", data=value)
            dataset.attrs["name"] = variable.path
        _set_attrs(h5, {**meta, "encoder": spec})


def read_encoder(path):
    """Rebuild the encoder saved at `path` and load its weights; returns (model, spec)."""
    from selfsup.encoders import build_encoder

    with h5py.File(path, "r") as h5:
        spec = json.loads(h5.attrs["encoder"])
        group = h5["weights"]
        values = [group[key][()] for key in sorted(group)]
    encoder = build_encoder(spec["name"], tuple(spec["input_shape"]), **spec.get("options", {}))
    if len(values) != len(encoder.weights):
        raise ValueError(
            f"{path} holds {len(values)} weight arrays but encoder {spec['name']!r} "
            f"has {len(encoder.weights)}; the file does not match its architecture"
        )
    encoder.set_weights(values)
    return encoder, spec
