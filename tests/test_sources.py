"""selfsup.data.sources (the registry) and the IDX, bundled and generated sources."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from selfsup import fingerprints
from selfsup.data.dataset import DataError
from selfsup.data.generated import load_digits, make_synthetic
from selfsup.data.idx import IDX_FILES, read_idx, read_idx_folder
from selfsup.data.sources import (
    FASHION,
    SOURCES,
    foreign_images,
    layout,
    load_dataset,
)
from selfsup.stages.download import download

REPO = Path(__file__).resolve().parents[1]


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0, 0, 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder, n_train=6, n_test=3, compress=True):
    """Four IDX files shaped like MNIST's (images 4x5 so height and width cannot be swapped)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 4, 5), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 4, 5), dtype=np.uint8),
        "y_test": (np.arange(n_test, dtype=np.uint8) + 3) % 10,
    }
    for key, stem in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


# --- read_idx -------------------------------------------------------------------------


def test_read_idx_raw_file(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(array))
    out = read_idx(path)
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_gzip_file(tmp_path):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), [5, 0, 4, 1, 9])


def test_read_idx_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "not-idx"
    # 0x0D is the IDX code of float32, which the reader must refuse.
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2) + b"\0" * 8)
    with pytest.raises(DataError, match="bad magic number") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "truncated.gz"
    data = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(DataError, match=r"\[3, 4, 4\] = 48 bytes, file has 43") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(path)


# --- read_idx_folder ------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_read_idx_folder(tmp_path, compress):
    arrays = write_idx_folder(tmp_path, compress=compress)
    data = read_idx_folder(tmp_path, FASHION)
    assert data.x_train.shape == (6, 4, 5, 1)
    assert data.x_test.shape == (3, 4, 5, 1)
    assert data.image_shape == (4, 5, 1)
    assert data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(data.y_test, [3, 4, 5])
    assert data.class_names[0] == "T-shirt/top"
    assert data.num_classes == 10


def test_read_idx_folder_missing_file_names_it_and_data_dir(tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        read_idx_folder(tmp_path, [str(d) for d in range(10)])
    message = str(err.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in message
    assert "dataset.data_dir" in message


def test_read_idx_folder_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="dataset.data_dir .*nowhere is not a folder"):
        read_idx_folder(tmp_path / "nowhere", FASHION)


def test_read_idx_folder_images_and_labels_disagree(tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(5, dtype=np.uint8)))
    )
    with pytest.raises(DataError, match=r"train images \(6, 4, 5\) do not match labels \(5,\)"):
        read_idx_folder(tmp_path, [str(d) for d in range(10)])


def test_load_dataset_dispatch(tmp_path):
    write_idx_folder(tmp_path)  # not the official bytes: read without the checksum check
    assert load_dataset("mnist", tmp_path, verify_checksums=False).x_train.shape == (6, 4, 5, 1)
    assert load_dataset("synthetic", n_train=10, n_test=2).x_train.shape == (10, 16, 16, 1)
    with pytest.raises(DataError, match="mnist needs its files: download them or set dataset.data_dir"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown dataset 'cifar'; choose one of mnist, fashion_mnist"):
        load_dataset("cifar")


# --- real data ------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_mnist(real_data_dir):
    data = load_dataset("mnist", real_data_dir("mnist"))
    assert data.x_train.shape == (60000, 28, 28, 1)
    assert data.x_test.shape == (10000, 28, 28, 1)
    assert data.y_train.shape == (60000,)
    assert data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    # The normalization constant every MNIST tutorial uses.
    assert data.x_train.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    np.testing.assert_array_equal(
        np.bincount(data.y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )


@pytest.mark.realdata
def test_real_fashion_mnist(real_data_dir):
    # The shared image files are rebuilt from another package (see its README): not the
    # official bytes, so they are read as a user's own trusted files.
    data = load_dataset("fashion_mnist", real_data_dir("fashion-mnist"), verify_checksums=False)
    assert data.x_train.shape == (60000, 28, 28, 1)
    assert data.x_test.shape == (10000, 28, 28, 1)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    np.testing.assert_array_equal(np.bincount(data.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test), [1000] * 10)
    np.testing.assert_array_equal(data.y_train[:5], [9, 0, 0, 3, 0])
    assert data.x_train.mean() / 255 == pytest.approx(0.2860, abs=2e-4)


@pytest.mark.realdata
def test_published_md5_of_official_fashion_label_files(real_data_dir):
    """The shared Fashion-MNIST label files are the official gz files (the images and
    MNIST files were recompressed there), so their bytes must hash to the published MD5s."""
    folder = real_data_dir("fashion-mnist")
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        digest = hashlib.md5((folder / name).read_bytes()).hexdigest()
        assert digest == SOURCES["fashion_mnist"].files[name]


# --- checksums of local files ---------------------------------------------------------


def test_a_truncated_idx_gz_in_data_dir_names_the_file_and_its_checksum(tmp_path):
    write_idx_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    found = hashlib.md5(content[: len(content) // 2]).hexdigest()
    expected = SOURCES["mnist"].files["train-images-idx3-ubyte.gz"]
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert str(path) in message and expected in message and found in message
    assert "not a complete gzip file" in message
    assert "download it again" in message and "leave dataset.data_dir empty" in message
    assert "dataset.verify_checksums: false" in message


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_idx_files_that_are_not_the_official_ones_are_refused_before_parsing(tmp_path, compress):
    write_idx_folder(tmp_path, compress=compress)
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    # Official decompressed content, compressed or not; published MD5 of the .gz
    content = SOURCES["mnist"].contents["train-images-idx3-ubyte"]
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert str(tmp_path / name) in message and content in message
    assert "corrupt or not the official one" in message
    if compress:
        assert SOURCES["mnist"].files[name] in message


def with_checksums_of(folder, name="mnist"):
    """Source `name` whose registered checksums are those of the IDX files in `folder`:
    stands in for the official files, which tests do not ship."""
    files = {
        f"{stem}.gz": hashlib.md5((folder / f"{stem}.gz").read_bytes()).hexdigest()
        for stem in IDX_FILES.values()
    }
    contents = {
        stem: hashlib.md5(gzip.decompress((folder / f"{stem}.gz").read_bytes())).hexdigest()
        for stem in IDX_FILES.values()
    }
    return dataclasses.replace(SOURCES[name], files=files, contents=contents)


def test_official_content_is_accepted_raw_or_recompressed(tmp_path, monkeypatch):
    official = tmp_path / "official"
    write_idx_folder(official)
    monkeypatch.setitem(SOURCES, "mnist", with_checksums_of(official))
    assert load_dataset("mnist", official).x_train.shape == (6, 4, 5, 1)
    other = tmp_path / "other"
    other.mkdir()
    for i, stem in enumerate(IDX_FILES.values()):
        raw = gzip.decompress((official / f"{stem}.gz").read_bytes())
        if i % 2:  # raw
            (other / stem).write_bytes(raw)
        else:  # compressed by another tool: other bytes, the same content
            (other / f"{stem}.gz").write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
            assert (other / f"{stem}.gz").read_bytes() != (official / f"{stem}.gz").read_bytes()
    assert load_dataset("mnist", other).x_train.shape == (6, 4, 5, 1)


def test_a_damaged_foreign_source_names_its_setting(tmp_path):
    write_idx_folder(tmp_path / "digits")
    contamination = {"source": "mnist", "fraction": 0.1, "seed": 0, "folder": tmp_path / "digits"}
    genuine = make_synthetic(n_train=20, n_test=4, image_size=28, num_classes=2)
    with pytest.raises(DataError, match="leave dataset.contamination.data_dir empty"):
        foreign_images(contamination, genuine)


@pytest.mark.realdata
def test_real_files_checked_against_the_official_content(real_data_dir):
    """The shared MNIST files were recompressed (other bytes, official content): accepted.
    The shared Fashion-MNIST images were rebuilt from another package: refused, by name."""
    assert load_dataset("mnist", real_data_dir("mnist")).x_train.shape == (60000, 28, 28, 1)
    folder = real_data_dir("fashion-mnist")
    with pytest.raises(DataError, match="decompressed bytes have MD5") as error:
        load_dataset("fashion_mnist", folder)
    assert str(folder / "train-images-idx3-ubyte.gz") in str(error.value)
    assert "f4a8712d7a061bf5bd6d2ca38dc4d50a" in str(error.value)


# --- download ---------------------------------------------------------------------


def make_mirror(folder):
    """A folder of four small gzip IDX files under the official names, and their MD5s."""
    write_idx_folder(folder)
    return {
        f"{stem}.gz": hashlib.md5((folder / f"{stem}.gz").read_bytes()).hexdigest()
        for stem in IDX_FILES.values()
    }


def test_download_idx_rejects_file_with_wrong_md5(tmp_path):
    """A mirror serving files that are not the official ones must not be accepted."""
    mirror = tmp_path / "mirror"
    make_mirror(mirror)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz fails its published MD5 check"):
        download("mnist", dest, origin=mirror.as_uri() + "/")
    # The bad file is gone, and after the first failure nothing else was fetched.
    assert not list(dest.iterdir())


def test_download_idx_accepts_matching_md5_and_reads_back(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    md5s = make_mirror(mirror)
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], files=md5s))
    dest = tmp_path / "dest"
    paths = download("mnist", dest, origin=mirror.as_uri() + "/")
    assert sorted(p.name for p in paths) == sorted(md5s)
    assert all(p.parent == dest.resolve() for p in paths)
    assert load_dataset("mnist", dest, verify_checksums=False).x_train.shape == (6, 4, 5, 1)

    # A file already there with the right checksum is kept, not fetched again.
    shutil.rmtree(mirror)
    assert download("mnist", dest, origin=mirror.as_uri() + "/") == paths


def test_download_idx_refetches_a_corrupted_local_file(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    md5s = make_mirror(mirror)
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], files=md5s))
    dest = tmp_path / "dest"
    download("mnist", dest, origin=mirror.as_uri() + "/")
    target = dest / "train-images-idx3-ubyte.gz"
    target.write_bytes(b"half a download")
    download("mnist", dest, origin=mirror.as_uri() + "/")
    assert target.read_bytes() == (mirror / target.name).read_bytes()


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "option, lines",
    [
        ("dataset.data_dir", ["dataset:", "  name: fashion_mnist", "  data_dir: /path/to/folder"]),
        (
            "dataset.contamination.data_dir",
            ["dataset:", "  contamination:", "    source: fashion_mnist", "    data_dir: /path/to/folder"],
        ),
    ],
)
def test_a_failed_download_names_the_file_and_the_offline_setting(tmp_path, option, lines):
    origin = f"http://127.0.0.1:{closed_port()}/mirror/"
    with pytest.raises(DataError) as error:
        download("fashion_mnist", tmp_path, origin=origin, option=option)
    message = str(error.value)
    assert (
        f"could not download train-images-idx3-ubyte.gz of fashion_mnist from {origin}train-images" in message
    )
    assert "\n".join(lines) in message  # YAML to paste, the files it needs listed
    assert (
        "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz" in message
    )
    assert list(tmp_path.iterdir()) == []  # no partial file left


# --- digits and synthetic -------------------------------------------------------------


def test_load_digits():
    data = load_digits()
    assert data.x_train.shape == (1500, 8, 8, 1)
    assert data.x_test.shape == (297, 8, 8, 1)
    assert data.x_train.dtype == np.uint8
    assert data.x_train.min() == 0
    assert data.x_train.max() == 255  # 16 * 16 clipped
    assert data.y_train.dtype == np.int64
    assert set(np.unique(data.y_train)) == set(range(10))
    assert data.class_names == [str(d) for d in range(10)]
    assert load_digits(test_size=97).x_test.shape == (97, 8, 8, 1)


def test_make_synthetic_shapes_and_types():
    data = make_synthetic(n_train=40, n_test=12, image_size=12, num_classes=3, seed=1)
    assert data.x_train.shape == (40, 12, 12, 1)
    assert data.x_test.shape == (12, 12, 12, 1)
    assert data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64
    assert set(np.unique(data.y_train)) <= {0, 1, 2}
    assert data.class_names == ["glyph0", "glyph1", "glyph2"]


def test_make_synthetic_is_deterministic_per_seed():
    a = make_synthetic(n_train=32, n_test=8, seed=3)
    b = make_synthetic(n_train=32, n_test=8, seed=3)
    c = make_synthetic(n_train=32, n_test=8, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_make_synthetic_has_ground_line_and_class_glyphs():
    data = make_synthetic(n_train=512, image_size=16, num_classes=4, seed=0)
    images = data.x_train[..., 0].astype(float)
    # The ground line (two bottom rows) is far brighter than the top row: an orientation cue.
    assert images[:, 14:, 1:15].mean() > 200
    assert images[:, 0, :].mean() < 40
    # Each class has its own glyph (at a jittered place): nearest neighbours in pixel
    # space recover the class of test images far above the 25% of chance.
    train = images.reshape(len(images), -1)
    test = data.x_test[..., 0].reshape(len(data.x_test), -1).astype(float)
    distances = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    predicted = data.y_train[distances.argmin(axis=1)]
    assert np.mean(predicted == data.y_test) > 0.8


def test_missing_real_data_skips_with_reason(real_data_dir):
    with pytest.raises(pytest.skip.Exception, match="real data not available: .*no-such-set does not exist"):
        real_data_dir("no-such-set")


# --- the registry ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["name", "contamination"])
def test_schema_names_exactly_the_registered_sources(where):
    schema = yaml.safe_load((REPO / "schemas" / "study.schema.yaml").read_text())
    dataset = schema["properties"]["dataset"]["properties"]
    enum = (
        dataset["name"]["enum"]
        if where == "name"
        else dataset["contamination"]["properties"]["source"]["enum"]
    )
    assert enum == list(SOURCES)


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_layout_matches_what_the_loader_gives(name):
    """The registry's layout is what study checks rely on before any job: it must be true."""
    expected = layout(name)
    data = load_dataset(name)
    assert (len(data.x_train), len(data.x_test)) == (expected.n_train, expected.n_test)
    assert data.image_shape == expected.image_shape
    assert tuple(data.class_names) == expected.class_names


# The contract every registry entry meets: a new source gets these tests by its one line.


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_declares_a_consistent_layout(name):
    source = SOURCES[name]
    assert source.description, name
    entry = layout(name)
    assert len(entry.image_shape) == 3 and all(isinstance(d, int) and d > 0 for d in entry.image_shape)
    assert entry.n_train > 0 and entry.n_test > 0 and entry.n_unlabeled >= 0
    assert all(isinstance(c, str) and c for c in entry.class_names)
    assert len(set(entry.class_names)) == len(entry.class_names) > 1
    # Folds: both or neither, each within the training images (STL-10's folds overlap).
    assert bool(entry.n_folds) == bool(entry.fold_size)
    assert entry.fold_size <= entry.n_train


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_declares_checksummed_files_and_their_origin(name):
    source = SOURCES[name]
    for filename, md5 in source.files.items():
        assert re.fullmatch(r"[0-9a-f]{32}", md5), (filename, md5)
    if source.needs_files:
        assert re.fullmatch(r"https?://\S+/", source.origin), source.origin
    # contents: the decompressed MD5 of each gzip file, exactly those.
    gzipped = {f.removesuffix(".gz") for f in source.files if f.endswith(".gz")}
    assert set(source.contents) == (gzipped if source.contents else set())
    for stem, md5 in source.contents.items():
        assert re.fullmatch(r"[0-9a-f]{32}", md5), (stem, md5)


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_lists_the_choices_of_its_string_options(name):
    source = SOURCES[name]
    assert set(source.choices) <= set(source.options)
    for key, default in source.options.items():
        if isinstance(default, str):
            assert key in source.choices, f"{name} option {key} is a string without choices"
    for key, allowed in source.choices.items():
        assert source.options[key] in allowed
        for value in allowed:  # each choice has a layout
            assert layout(name, {key: value}).n_train > 0
        with pytest.raises(DataError, match=f"{name} option {key}"):
            layout(name, {key: "no-such-choice"})


@pytest.mark.parametrize("name", [name for name, source in SOURCES.items() if source.needs_files])
def test_every_source_with_files_names_them_and_data_dir_when_they_are_missing(name, tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset(name, tmp_path, tmp_path / "work")
    message = str(error.value)
    assert "dataset.data_dir" in message
    assert any(filename in message for filename in SOURCES[name].files), message


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_module_is_fingerprinted_by_the_prepare_rule(name):
    """The prepare job's fingerprint holds what its script imports (selfsup.fingerprints):
    editing a source's own module must re-run its prepare job."""
    module = SOURCES[name].load.__module__
    prepare = Path(__file__).resolve().parents[1] / "scripts" / "prepare.py"
    assert module.replace("selfsup.", "").replace(".", "/") + ".py" in fingerprints.library_files(prepare)


def test_cifar100_label_modes_change_the_classes():
    assert len(layout("cifar100").class_names) == 100
    assert len(layout("cifar100", {"label_mode": "coarse"}).class_names) == 20


def test_unknown_source_lists_the_registered_ones():
    with pytest.raises(
        DataError, match="unknown dataset 'imagenet'; choose one of mnist, fashion_mnist, cifar10"
    ):
        layout("imagenet")
