"""Every HDF5 layout of the pipeline: datasets, splits, pseudo-labels and encoders.

Nothing else in selfsup opens HDF5 files. Each file records what made it as attributes
(study, method, seed, library version, key hyper-parameters), and every writer goes
through `_atomic_h5`, so an interrupted job never leaves a file that looks complete.

Each file also records a SHA-256 of its content (every dataset's bytes, shape and type,
every attribute; the `checksum` attribute), and readers check it once per file version
and machine (`_open`): a truncated, damaged or hand-edited artifact fails with
`CorruptArtifact`, naming the file and the rule that makes it, instead of a bare h5py
error or, worse, silently wrong numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from selfsup import __version__
from selfsup.data.dataset import NO_LABEL, Dataset, Foreign, Split
from selfsup.data.normalization import Normalization
from selfsup.jobs import digest

CHECKSUM_ATTR = "checksum"
KIND_ATTR = "artifact"


class CorruptArtifact(ValueError):
    """An artifact that HDF5 cannot read or whose content no longer matches its checksum."""


def _corrupt(path, kind: str | None, problem: str, attrs: dict | None = None) -> CorruptArtifact:
    # Snakemake's --forcerun takes the file itself: the library need not know which rule
    # makes it (it never imports Snakemake, and rule names are the workflow's business).
    kind = (attrs or {}).get(KIND_ATTR, kind)
    what = f"the {kind.replace('_', ' ')} " if kind else ""
    return CorruptArtifact(
        f"{what}file {path} is corrupt: {problem}.\n"
        f"It is made by the workflow: delete the file and run again, or run snakemake with "
        f"--forcerun {path}"
    )


def _attr_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode()
    array = np.asarray(value)
    if array.dtype.kind == "O":  # variable-length strings
        return b"o" + json.dumps(array.tolist(), default=str).encode()
    return f"{array.dtype.str}{array.shape}".encode() + array.tobytes()


_HASH_BLOCK = 64 << 20  # bytes of a dataset read per step, so a large one is never whole in memory


def content_checksum(h5: h5py.File) -> str:
    """SHA-256 over every object's name, attributes and, for datasets, type, shape and bytes.

    Computed through HDF5 on both sides (writer and reader), so it does not depend on the
    file's byte layout; the root's own `checksum` attribute is left out.
    """
    digest = hashlib.sha256()

    def attributes(obj, skip=()):
        for key in sorted(obj.attrs):
            if key not in skip:
                digest.update(f"\0attr {key}=".encode() + _attr_bytes(obj.attrs[key]))

    attributes(h5, skip=(CHECKSUM_ATTR,))
    names: list[str] = []
    h5.visit(names.append)
    for name in sorted(names):
        obj = h5[name]
        if isinstance(obj, h5py.Dataset):
            digest.update(f"\0dataset {name} {obj.dtype.str} {obj.shape}".encode())
            if obj.ndim == 0 or obj.size == 0:
                digest.update(np.ascontiguousarray(obj[()]).tobytes())
            else:
                rows = max(1, _HASH_BLOCK // max(1, obj.dtype.itemsize * obj.size // obj.shape[0]))
                for start in range(0, obj.shape[0], rows):
                    digest.update(np.ascontiguousarray(obj[start : start + rows]).tobytes())
        else:
            digest.update(f"\0group {name}".encode())
        attributes(obj)
    return "sha256:" + digest.hexdigest()


@contextlib.contextmanager
def _atomic_h5(path: str | os.PathLike, kind: str):
    """Write to a sibling temporary file and rename it into place only on success.

    The content checksum is computed last, from what HDF5 hands back, just as a reader
    will compute it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with h5py.File(partial, "w") as h5:
            h5.attrs["selfsup_version"] = __version__
            h5.attrs[KIND_ATTR] = kind
            yield h5
            h5.flush()
            h5.attrs[CHECKSUM_ATTR] = content_checksum(h5)
        os.replace(partial, path)
        _mark_verified(_identity(path))  # just written: no job need re-read it
    finally:
        partial.unlink(missing_ok=True)


# Files verified by this process, by identity and modification: a job reads the same
# dataset many times (labels, then batches), and pays for the full check once.
_VERIFIED: set[tuple] = set()
# ...and by any process on this machine: each job would otherwise re-read every input in
# full to check it (0.6 s for MNIST's prepared file, tens of seconds for STL-10's), though
# the job before it verified or wrote that very file version. A version is the file's
# identity and its size, modification and status-change times: rewriting, truncating or
# editing a file (even with its modification time set back) makes a new version, checked
# again; only damage that touches none of them (a failing disk) goes unseen by later jobs.
VERIFIED_DIR_VARIABLE = "SELFSUP_VERIFIED_DIR"


def _identity(path) -> tuple:
    stat = os.stat(path)
    return (
        os.path.realpath(path),
        stat.st_dev,
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
    )


def _verified_marker(identity: tuple) -> Path:
    import tempfile

    folder = (
        os.environ.get(VERIFIED_DIR_VARIABLE)
        or Path(tempfile.gettempdir()) / f"selfsup-verified-{os.getuid()}"
    )
    return Path(folder) / digest(list(identity), length=64)


def _is_verified(identity: tuple) -> bool:
    return identity in _VERIFIED or _verified_marker(identity).exists()


def _mark_verified(identity: tuple) -> None:
    _VERIFIED.add(identity)
    marker = _verified_marker(identity)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only temporary folder only costs later jobs their own check


def _decoded_attrs(h5) -> dict[str, Any]:
    out = {}
    for key, value in h5.attrs.items():
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def _open_verified(path, kind: str | None) -> h5py.File:
    """`path` open for reading, its checksum verified (once per file version and machine)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no {kind.replace('_', ' ') + ' ' if kind else ''}file {path}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:  # truncated (HDF5 checks the end of file on open) or not HDF5
        raise _corrupt(path, kind, f"HDF5 cannot open it ({error})") from None
    try:
        identity = _identity(path)
        if not _is_verified(identity):
            try:
                attrs = _decoded_attrs(h5)
            except Exception as error:  # noqa: BLE001 - any failure here means unreadable
                raise _corrupt(path, kind, f"its attributes cannot be read ({error})") from None
            recorded = attrs.get(CHECKSUM_ATTR)
            if recorded is None:
                raise _corrupt(
                    path,
                    kind,
                    "it records no checksum (written by another program or an older selfsup)",
                    attrs,
                )
            try:
                actual = content_checksum(h5)
            except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, ... on damage
                raise _corrupt(path, kind, f"its content cannot be read ({error})", attrs) from None
            if actual != recorded:
                raise _corrupt(
                    path, kind, f"its content has checksum {actual}, it was written with {recorded}", attrs
                )
            _mark_verified(identity)
    except BaseException:
        h5.close()
        raise
    return h5


@contextlib.contextmanager
def _open(path, kind: str | None):
    """Read `path` (an artifact of `kind`) after verifying it; read errors become CorruptArtifact."""
    h5 = _open_verified(path, kind)
    with h5:
        try:
            yield h5
        except (OSError, KeyError) as error:  # verified, yet unreadable: a layout this reader does not know
            raise _corrupt(
                path, kind, f"it cannot be read as a {kind or 'selfsup'} file ({error!r})"
            ) from None


def _set_attrs(h5: h5py.File, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
            h5.attrs[key] = value
        else:
            h5.attrs[key] = json.dumps(value, sort_keys=True)


def read_attrs(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """All attributes of an artifact, JSON-encoded ones decoded (its checksum verified)."""
    with _open(path, kind) as h5:
        return _decoded_attrs(h5)


# --- datasets -------------------------------------------------------------------------
# Images are stored uint8, uncompressed and chunked by image, so a training job can
# read any batch of a pool too large for memory straight from the file.

IMAGE_PARTS = ("train", "test", "unlabeled")
_WRITE_CHUNK = 1000  # images copied per step, so memmapped sources never load whole
# A contaminated dataset's foreign images follow its own training images in x_train,
# labeled -1; `foreign` holds their indices, its attributes the contamination settings,
# and `foreign_source_index` which training images of the foreign source they are.
_CONTAMINATION_ATTRS = ("source", "fraction", "seed")


def write_dataset(path, dataset: Dataset, meta: dict[str, Any], foreign: Foreign | None = None) -> None:
    """Write `dataset`, with `foreign` images appended after its training images."""
    parts = {"train": [dataset.x_train], "test": [dataset.x_test]}
    y_train = np.asarray(dataset.y_train, np.int64)
    if dataset.x_unlabeled is not None:
        parts["unlabeled"] = [dataset.x_unlabeled]
    if foreign is not None:
        if tuple(foreign.images.shape[1:]) != tuple(dataset.x_train.shape[1:]):
            raise ValueError(
                f"foreign images {tuple(foreign.images.shape[1:])} differ in shape from the "
                f"dataset's {tuple(dataset.x_train.shape[1:])}"
            )
        parts["train"].append(foreign.images)
        y_train = np.concatenate([y_train, np.full(len(foreign.images), NO_LABEL, np.int64)])
    with _atomic_h5(path, "dataset") as h5:
        for part, pieces in parts.items():
            shape = (sum(len(images) for images in pieces), *pieces[0].shape[1:])
            stored = h5.create_dataset(f"x_{part}", shape=shape, dtype=np.uint8, chunks=(1, *shape[1:]))
            offset = 0
            for images in pieces:
                for start in range(0, len(images), _WRITE_CHUNK):
                    chunk = np.asarray(images[start : start + _WRITE_CHUNK])
                    stored[offset + start : offset + start + len(chunk)] = chunk
                offset += len(images)
        h5.create_dataset("y_train", data=y_train, compression="gzip")
        h5.create_dataset("y_test", data=np.asarray(dataset.y_test, np.int64), compression="gzip")
        if dataset.folds is not None:
            h5.create_dataset("folds", data=np.stack([np.asarray(f, np.int64) for f in dataset.folds]))
        if foreign is not None:
            n = len(dataset.x_train)
            stored = h5.create_dataset("foreign", data=np.arange(n, n + len(foreign.images), dtype=np.int64))
            for key in _CONTAMINATION_ATTRS:
                stored.attrs[key] = getattr(foreign, key)
            h5.create_dataset("foreign_source_index", data=np.asarray(foreign.source_index, np.int64))
        _set_attrs(h5, {**meta, "class_names": list(dataset.class_names)})


def read_dataset(path, parts=("train", "test")) -> Dataset:
    """The dataset at `path` in memory, with the image `parts` asked for (others empty)."""
    with _open(path, "dataset") as h5:
        images = {
            part: h5[f"x_{part}"][()] if part in parts else np.zeros((0, *h5["x_train"].shape[1:]), np.uint8)
            for part in ("train", "test")
        }
        unlabeled = h5["x_unlabeled"][()] if "unlabeled" in parts and "x_unlabeled" in h5 else None
        return Dataset(
            x_train=images["train"],
            y_train=h5["y_train"][()],
            x_test=images["test"],
            y_test=h5["y_test"][()],
            class_names=json.loads(h5.attrs["class_names"]),
            x_unlabeled=unlabeled,
            folds=list(h5["folds"][()]) if "folds" in h5 else None,
        )


def read_labels(path) -> dict[str, Any]:
    """Labels, class names, image shape and part sizes of a dataset, without its images.

    `foreign`: indices of the foreign training images (label -1; empty when none), and
    `contamination` their settings ({source, fraction, seed}; None when none). The
    train size counts them.
    """
    with _open(path, "dataset") as h5:
        foreign = h5["foreign"] if "foreign" in h5 else None
        return {
            "y_train": h5["y_train"][()],
            "y_test": h5["y_test"][()],
            "class_names": json.loads(h5.attrs["class_names"]),
            "image_shape": tuple(h5["x_train"].shape[1:]),
            "sizes": {part: len(h5[f"x_{part}"]) for part in IMAGE_PARTS if f"x_{part}" in h5},
            "folds": list(h5["folds"][()]) if "folds" in h5 else None,
            "foreign": np.zeros(0, np.int64) if foreign is None else foreign[()],
            "contamination": None
            if foreign is None
            else {key: _plain(foreign.attrs[key]) for key in _CONTAMINATION_ATTRS},
        }


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


_READ_BLOCK = 4096  # images per contiguous read, so a large read never holds two copies


def read_images(path, part: str, indices: np.ndarray) -> np.ndarray:
    """uint8 images `indices` (any order, repeats allowed) of `part` (train, test, unlabeled)."""
    indices = np.asarray(indices, np.int64)
    unique, inverse = np.unique(indices, return_inverse=True)
    with _open(path, "dataset") as h5:
        stored = h5[f"x_{part}"]
        out = np.empty((len(unique), *stored.shape[1:]), np.uint8)
        for start in range(0, len(unique), _READ_BLOCK):
            wanted = unique[start : start + _READ_BLOCK]
            low, high = int(wanted[0]), int(wanted[-1]) + 1
            if high - low == len(wanted):  # a contiguous run: read straight into place
                stored.read_direct(out, np.s_[low:high], np.s_[start : start + len(wanted)])
            elif high - low <= 2 * len(wanted):  # dense: one contiguous read beats scattered ones
                out[start : start + len(wanted)] = stored[low:high][wanted - low]
            else:
                out[start : start + len(wanted)] = _scattered(stored, wanted)
    return out if len(unique) == len(indices) and np.array_equal(unique, indices) else out[inverse]


def _scattered(stored, sorted_indices: np.ndarray) -> np.ndarray:
    # One read per image: h5py's fancy indexing builds a selection per element and was
    # measured 70x slower (145 ms against 2 ms for 32 STL-10 images).
    return (
        np.stack([stored[int(i)] for i in sorted_indices])
        if len(sorted_indices)
        else (np.zeros((0, *stored.shape[1:]), np.uint8))
    )


class ImageFile:
    """Images of one part of a dataset file, read per batch: for pools too large for memory.

    Supports `len()`, `.shape` and indexing by a sorted, repeat-free index array, like the
    in-memory arrays it stands in for (selfsup.inputs asks for nothing more).
    `stop` keeps only the first `stop` images (a contaminated file's genuine ones).
    """

    def __init__(self, path, part: str, stop: int | None = None):
        self.path, self.part = str(path), part
        self._h5 = _open_verified(self.path, "dataset")
        self._images = self._h5[f"x_{part}"]
        self.shape = self._images.shape
        if stop is not None:
            if not 0 <= stop <= self.shape[0]:
                raise ValueError(f"stop {stop} outside [0, {self.shape[0]}] images of {part}")
            self.shape = (stop, *self.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sorted_indices):
        if isinstance(sorted_indices, slice):
            return self._images[slice(*sorted_indices.indices(len(self)))]
        sorted_indices = np.asarray(sorted_indices)
        if len(sorted_indices) and not 0 <= sorted_indices.min() <= sorted_indices.max() < len(self):
            raise IndexError(f"image indices outside [0, {len(self)}) of {self.part}")
        return _scattered(self._images, sorted_indices)

    def close(self) -> None:
        self._h5.close()


# --- splits ---------------------------------------------------------------------------

_SPLIT_ARRAYS = ("labeled", "unlabeled", "test", "budget_order", "monitor", "foreign")


def write_split(path, split: Split, meta: dict[str, Any]) -> None:
    with _atomic_h5(path, "split") as h5:
        for name in _SPLIT_ARRAYS:
            h5.create_dataset(name, data=np.asarray(getattr(split, name), dtype=np.int64))
        norm = split.normalization
        h5.create_dataset("normalization_mean", data=norm.mean)
        h5.create_dataset("normalization_std", data=norm.std)
        _set_attrs(h5, {**meta, "unlabeled_part": split.unlabeled_part, "normalization": norm.kind})


def read_split(path) -> Split:
    with _open(path, "split") as h5:
        return Split(
            **{name: h5[name][()] for name in _SPLIT_ARRAYS},
            unlabeled_part=str(h5.attrs["unlabeled_part"]),
            normalization=Normalization(
                str(h5.attrs["normalization"]), h5["normalization_mean"][()], h5["normalization_std"][()]
            ),
        )


# --- pseudo-labels --------------------------------------------------------------------


def write_pseudo_labels(path, indices: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> None:
    """Pseudo-labels: `indices` into the training images and one label per index."""
    if len(indices) != len(labels):
        raise ValueError(f"{len(indices)} indices but {len(labels)} labels")
    with _atomic_h5(path, "pseudo_labels") as h5:
        h5.create_dataset("indices", data=np.asarray(indices, dtype=np.int64))
        h5.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        _set_attrs(h5, meta)


def read_pseudo_labels(path) -> tuple[np.ndarray, np.ndarray]:
    with _open(path, "pseudo_labels") as h5:
        return h5["indices"][()], h5["labels"][()]


# --- pretext examples -----------------------------------------------------------------


def write_examples(path, examples: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Named image arrays of the same length (input, corrupted, output, ...), in order."""
    with _atomic_h5(path, "examples") as h5:
        for order, (name, images) in enumerate(examples.items()):
            dataset = h5.create_dataset(name, data=np.asarray(images, dtype=np.float32))
            dataset.attrs["order"] = order
        _set_attrs(h5, meta)


def read_examples(path) -> dict[str, np.ndarray]:
    with _open(path, "examples") as h5:
        names = sorted(h5, key=lambda name: h5[name].attrs["order"])
        return {name: h5[name][()] for name in names}


# --- encoders -------------------------------------------------------------------------
# An encoder is stored as its registry name, options and input shape plus its weight
# arrays. Loading rebuilds it from the registry, so no code is ever read from a file.


def write_encoder(path, encoder, spec: dict[str, Any], meta: dict[str, Any]) -> None:
    """Save `encoder` (a keras.Model) built from `spec` = {name, input_shape, options}."""
    with _atomic_h5(path, "encoder") as h5:
        group = h5.create_group("weights")
        for i, (variable, value) in enumerate(zip(encoder.weights, encoder.get_weights(), strict=True)):
            dataset = group.create_dataset(f"{i:04d}", data=value)
            dataset.attrs["name"] = variable.path
        _set_attrs(h5, {**meta, "encoder": spec})


def read_encoder_weights(path) -> tuple[dict, list[np.ndarray]]:
    """(spec, weight arrays in saving order) of the encoder saved at `path`
    (selfsup.encoders.read_encoder rebuilds the model)."""
    with _open(path, "encoder") as h5:
        spec = json.loads(h5.attrs["encoder"])
        group = h5["weights"]
        values = [group[key][()] for key in sorted(group)]
    return spec, values


# --- pools ----------------------------------------------------------------------------
# A pool is the set of unlabeled images a stage may use: indices into one image part.


def write_pool(path, indices: np.ndarray, part: str, meta: dict[str, Any]) -> None:
    """Pool `indices` into the images of `part` (train | unlabeled), with what made it."""
    if part not in IMAGE_PARTS:
        raise ValueError(f"pool part must be one of {', '.join(IMAGE_PARTS)}, got {part!r}")
    with _atomic_h5(path, "pool") as h5:
        h5.create_dataset("indices", data=np.asarray(indices, dtype=np.int64))
        _set_attrs(h5, {**meta, "part": part})


def read_pool(path) -> tuple[np.ndarray, str]:
    """(indices, part) of the pool at `path`."""
    with _open(path, "pool") as h5:
        return h5["indices"][()], str(h5.attrs["part"])


# --- outlier filtering ----------------------------------------------------------------


def write_outliers(path, indices, scores, threshold: float, foreign, meta: dict[str, Any]) -> None:
    """Scores of every pool image (`indices`, in pool order) and the threshold below which an
    image is atypical; `kept` and `removed` are the indices on either side of it. `foreign`
    marks images known to be foreign (a contaminated dataset), for measuring the filter."""
    indices, scores = np.asarray(indices, np.int64), np.asarray(scores, np.float64)
    kept = scores >= threshold
    with _atomic_h5(path, "outliers") as h5:
        h5.create_dataset("indices", data=indices)
        h5.create_dataset("scores", data=scores)
        h5.create_dataset("kept", data=indices[kept])
        h5.create_dataset("removed", data=indices[~kept])
        h5.create_dataset("foreign", data=np.asarray(foreign, bool))
        _set_attrs(h5, {**meta, "threshold": float(threshold)})


def read_outliers(path) -> dict[str, Any]:
    """Arrays (indices, scores, kept, removed, foreign) and attributes of an outlier artifact
    (threshold, and what the filter measured: n_removed, removed_share, auroc, ...)."""
    with _open(path, "outliers") as h5:
        arrays = {name: h5[name][()] for name in ("indices", "scores", "kept", "removed", "foreign")}
        attrs = _decoded_attrs(h5)
    return {**arrays, **attrs}


# --- self-training rounds -------------------------------------------------------------


def write_teacher_labels(path, indices, labels, confidences, round_number: int, meta: dict[str, Any]) -> None:
    """One self-training round's accepted pseudo-labels: pool `indices`, predicted `labels`
    and the teacher's top probability (`confidences`, the examples' training weights)."""
    if not len(indices) == len(labels) == len(confidences):
        raise ValueError(f"{len(indices)} indices, {len(labels)} labels, {len(confidences)} confidences")
    with _atomic_h5(path, "teacher_labels") as h5:
        h5.create_dataset("indices", data=np.asarray(indices, np.int64))
        h5.create_dataset("labels", data=np.asarray(labels, np.int64))
        h5.create_dataset("confidences", data=np.asarray(confidences, np.float32))
        _set_attrs(h5, {**meta, "round": int(round_number)})


def read_teacher_labels(path) -> dict[str, Any]:
    with _open(path, "teacher_labels") as h5:
        arrays = {name: h5[name][()] for name in ("indices", "labels", "confidences")}
        attrs = _decoded_attrs(h5)
    return {**arrays, **attrs}
