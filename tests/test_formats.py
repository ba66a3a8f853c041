"""The CIFAR-10, CIFAR-100 and STL-10 binary readers (on files from tests/data_writers.py) and archive handling."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

import numpy as np
import pytest
from data_writers import archive, write_cifar10, write_cifar100, write_stl10

from selfsup.data.archives import check_md5, locate, md5sum, safe_extract
from selfsup.data.dataset import DataError
from selfsup.data.formats import CIFAR10, CIFAR100, STL10, read_cifar10, read_cifar100, read_stl10

NAMES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def l_glyph(size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A red "L" on black in the top-left quadrant, and its pixels as (row, column).

    Its vertical bar is longer than its foot, so a transpose or any flip moves pixels.
    """
    pixels = [(row, 2) for row in range(1, 8)] + [(7, col) for col in range(3, 6)]
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for row, col in pixels:
        image[row, col] = (255, 0, 0)
    return image, pixels


def assert_upright_red_l(image: np.ndarray) -> None:
    expected, pixels = l_glyph(image.shape[0])
    red = np.argwhere(image[..., 0] == 255)
    assert sorted(map(tuple, red.tolist())) == sorted(pixels)
    half = image.shape[0] // 2
    assert (red.max(axis=0) < half).all()  # top-left quadrant
    assert not image[..., 1:].any()  # green and blue are 0 everywhere, the red pixels included
    np.testing.assert_array_equal(image, expected)


def images(n: int, size: int, seed: int) -> np.ndarray:
    """n random images, the first one the red L."""
    x = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    x[0] = l_glyph(size)[0]
    return x


def packed(folder, spec, data_dir):
    """Archive `folder` into data_dir as the official archive name; return its MD5."""
    path = archive(folder, data_dir / spec["archive"])
    return md5sum(path)


# ---------------------------------------------------------------- CIFAR-10


@pytest.fixture
def cifar10(tmp_path):
    x_train, x_test = images(23, 32, 0), images(7, 32, 1)
    y_train, y_test = np.arange(23) % 10, (np.arange(7) * 3) % 10
    folder = write_cifar10(tmp_path / "src" / CIFAR10["folder"], x_train, y_train, x_test, y_test, NAMES10)
    return folder, (x_train, y_train, x_test, y_test)


def test_cifar10_through_archive(cifar10, tmp_path):
    folder, (x_train, y_train, x_test, y_test) = cifar10
    md5 = packed(folder, CIFAR10, tmp_path / "data")
    found = locate(tmp_path / "data", CIFAR10, tmp_path / "work", expected_md5=md5)
    assert found == tmp_path / "work" / CIFAR10["folder"]
    data = read_cifar10(found)
    assert_upright_red_l(data.x_train[0])
    assert_upright_red_l(data.x_test[0])
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.y_train.dtype == np.int64 and data.x_train.dtype == np.uint8
    assert data.class_names == NAMES10
    assert isinstance(data.x_test, np.memmap)
    # 23 images in 5 batches, as evenly as possible
    sizes = [(found / f"data_batch_{i}.bin").stat().st_size // 3073 for i in range(1, 6)]
    assert sizes == [4, 5, 4, 5, 5]


def test_cifar10_hand_written_record(tmp_path):
    """One record laid out by hand from the documented layout, not by the writer."""
    image, _ = l_glyph(32)
    image[1, 20] = (0, 0, 200)  # a blue dot, top right, to tell the channels apart
    record = bytearray([7])
    for channel in range(3):  # the red plane, then green, then blue
        for row in range(32):
            for col in range(32):
                record.append(int(image[row, col, channel]))
    folder = tmp_path / CIFAR10["folder"]
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(bytes(record))
    for i in range(2, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(b"")
    (folder / "test_batch.bin").write_bytes(bytes(record) * 2)
    (folder / "batches.meta.txt").write_text("\n".join(NAMES10) + "\n\n")
    data = read_cifar10(folder)
    assert data.x_train.shape == (1, 32, 32, 3) and data.x_test.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(data.x_train[0], image)
    np.testing.assert_array_equal(data.x_test[1], image)
    assert data.y_train.tolist() == [7] and data.y_test.tolist() == [7, 7]
    assert data.class_names == NAMES10


# ---------------------------------------------------------------- CIFAR-100


@pytest.fixture
def cifar100(tmp_path):
    fine_names = [f"fine{i}" for i in range(100)]
    coarse_names = [f"coarse{i}" for i in range(20)]
    x_train, x_test = images(12, 32, 2), images(5, 32, 3)
    fine_train, fine_test = np.arange(12) * 7 % 100, np.arange(5) * 11 % 100
    coarse_train, coarse_test = fine_train // 5, fine_test // 5
    folder = write_cifar100(
        tmp_path / "src" / CIFAR100["folder"],
        x_train,
        fine_train,
        coarse_train,
        x_test,
        fine_test,
        coarse_test,
        fine_names,
        coarse_names,
    )
    return folder, locals()


def test_cifar100_through_archive_fine_and_coarse(cifar100, tmp_path):
    folder, made = cifar100
    md5 = packed(folder, CIFAR100, tmp_path / "data")
    found = locate(tmp_path / "data", CIFAR100, tmp_path / "work", expected_md5=md5)
    fine = read_cifar100(found)
    coarse = read_cifar100(found, label_mode="coarse")
    for data in (fine, coarse):
        assert_upright_red_l(data.x_train[0])
        assert_upright_red_l(data.x_test[0])
        np.testing.assert_array_equal(data.x_train, made["x_train"])
        np.testing.assert_array_equal(data.x_test, made["x_test"])
        assert isinstance(data.x_train, np.memmap)
    np.testing.assert_array_equal(fine.y_train, made["fine_train"])
    np.testing.assert_array_equal(fine.y_test, made["fine_test"])
    np.testing.assert_array_equal(coarse.y_train, made["coarse_train"])
    np.testing.assert_array_equal(coarse.y_test, made["coarse_test"])
    assert fine.class_names == made["fine_names"] and coarse.class_names == made["coarse_names"]
    with pytest.raises(DataError, match="'medium'.*fine, coarse"):
        read_cifar100(found, label_mode="medium")


def test_cifar100_hand_written_record(tmp_path):
    image, _ = l_glyph(32)
    image[1, 20] = (0, 0, 200)
    record = bytearray([3, 42])  # coarse label, then fine label
    for channel in range(3):
        for row in range(32):
            for col in range(32):
                record.append(int(image[row, col, channel]))
    folder = tmp_path / CIFAR100["folder"]
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes(record))
    (folder / "test.bin").write_bytes(bytes(record))
    (folder / "fine_label_names.txt").write_text("".join(f"f{i}\n" for i in range(100)))
    (folder / "coarse_label_names.txt").write_text("".join(f"c{i}\n" for i in range(20)))
    np.testing.assert_array_equal(read_cifar100(folder).x_train[0], image)
    assert read_cifar100(folder).y_train.tolist() == [42]
    assert read_cifar100(folder, "coarse").y_test.tolist() == [3]


# ---------------------------------------------------------------- STL-10


def unlabeled_chunks(n: int, per_chunk: int):
    """Unlabeled images as a generator, the way a benchmark would stream them."""
    for start in range(0, n, per_chunk):
        yield images(min(per_chunk, n - start), 96, 100 + start)


@pytest.fixture
def stl10(tmp_path):
    x_train, x_test = images(20, 96, 4), images(6, 96, 5)
    y_train, y_test = np.arange(20) % 10, np.array([9, 0, 1, 2, 3, 9])
    folds = [np.arange(i, 20, 3)[:4] for i in range(10)]
    folder = write_stl10(
        tmp_path / "src" / STL10["folder"],
        x_train,
        y_train,
        x_test,
        y_test,
        unlabeled_chunks(9, 4),
        folds,
        NAMES10,
    )
    return folder, locals()


def test_stl10_through_archive(stl10, tmp_path):
    folder, made = stl10
    assert (folder / "train_y.bin").read_bytes() == bytes(
        (np.arange(20) % 10 + 1).tolist()
    )  # 1-based on disk
    md5 = packed(folder, STL10, tmp_path / "data")
    found = locate(tmp_path / "data", STL10, tmp_path / "work", expected_md5=md5)
    data = read_stl10(found)
    assert_upright_red_l(data.x_train[0])
    assert_upright_red_l(data.x_test[0])
    assert_upright_red_l(data.x_unlabeled[0])
    np.testing.assert_array_equal(data.x_train, made["x_train"])
    np.testing.assert_array_equal(data.x_test, made["x_test"])
    np.testing.assert_array_equal(data.x_unlabeled, np.concatenate(list(unlabeled_chunks(9, 4))))
    np.testing.assert_array_equal(data.y_train, made["y_train"])
    np.testing.assert_array_equal(data.y_test, made["y_test"])
    assert data.y_train.dtype == np.int64 and data.class_names == NAMES10
    assert len(data.folds) == 10
    for got, want in zip(data.folds, made["folds"], strict=True):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    for array in (data.x_train, data.x_test, data.x_unlabeled):
        assert isinstance(array, np.memmap)


def test_stl10_hand_written_record(tmp_path):
    """One image laid out column-major per channel by hand, labels 1-based."""
    image, _ = l_glyph(96)
    image[1, 80] = (0, 0, 200)  # a blue dot, top right
    raw = bytearray()
    for channel in range(3):
        for col in range(96):  # column-major: rows vary fastest
            for row in range(96):
                raw.append(int(image[row, col, channel]))
    folder = tmp_path / STL10["folder"]
    folder.mkdir()
    for stem in ("train", "test", "unlabeled"):
        (folder / f"{stem}_X.bin").write_bytes(bytes(raw))
    (folder / "train_y.bin").write_bytes(bytes([10]))
    (folder / "test_y.bin").write_bytes(bytes([1]))
    (folder / "class_names.txt").write_text("\n".join(NAMES10) + "\n")
    (folder / "fold_indices.txt").write_text("0 \n" * 10)
    data = read_stl10(folder)
    for array in (data.x_train, data.x_test, data.x_unlabeled):
        np.testing.assert_array_equal(array[0], image)
    assert data.y_train.tolist() == [9] and data.y_test.tolist() == [0]
    assert [fold.tolist() for fold in data.folds] == [[0]] * 10


def test_stl10_bad_labels_and_folds(stl10):
    folder, _ = stl10
    (folder / "fold_indices.txt").write_text("0 1\n" * 9 + "3 20\n")
    with pytest.raises(DataError, match=r"fold_indices.txt line 10: index 20 .* expected 0\.\.19"):
        read_stl10(folder)
    (folder / "train_y.bin").write_bytes(bytes([1] * 19))
    with pytest.raises(DataError, match=r"train_y.bin has 19 labels .*train_X.bin has 20 images"):
        read_stl10(folder)
    (folder / "train_y.bin").write_bytes(bytes([0] * 20))  # 0-based by mistake
    with pytest.raises(DataError, match=r"train_y.bin: labels range 0\.\.0, expected 1\.\.10"):
        read_stl10(folder)


# ---------------------------------------------------------------- damaged and missing files


@pytest.mark.parametrize(
    ("fixture", "reader", "member", "record"),
    [
        ("cifar10", read_cifar10, "test_batch.bin", 3073),
        ("cifar100", read_cifar100, "train.bin", 3074),
        ("stl10", read_stl10, "unlabeled_X.bin", 27648),
    ],
)
def test_truncated_bin_file(request, fixture, reader, member, record):
    folder, _ = request.getfixturevalue(fixture)
    path = folder / member
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(
        DataError, match=rf"{re.escape(str(path))}.* not a multiple of the {record}-byte record"
    ):
        reader(folder)
    path.unlink()
    with pytest.raises(DataError, match=rf"missing {re.escape(str(path))}"):
        reader(folder)


def test_corrupted_archive(cifar10, tmp_path):
    folder, _ = cifar10
    md5 = packed(folder, CIFAR10, tmp_path / "data")
    path = tmp_path / "data" / CIFAR10["archive"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match=rf"(?s){re.escape(str(path))} has MD5 \w+, expected {md5}.*dataset.data_dir"
    ) as caught:
        locate(tmp_path / "data", CIFAR10, tmp_path / "work", expected_md5=md5)
    assert "Replace it with the official file" in str(caught.value)
    assert "dataset.verify_checksums: false" in str(caught.value)
    assert not (tmp_path / "work" / CIFAR10["folder"]).exists()


def test_an_archive_of_other_bytes_is_read_when_checksums_are_off(cifar10, tmp_path):
    """Official layout, other bytes (as every test archive): refused, unless the user
    turns the check off (dataset.verify_checksums: false)."""
    folder, _ = cifar10
    packed(folder, CIFAR10, tmp_path / "data")
    with pytest.raises(DataError, match=CIFAR10["md5"]):
        locate(tmp_path / "data", CIFAR10, tmp_path / "work")
    found = locate(tmp_path / "data", CIFAR10, tmp_path / "work", verify=False)
    assert found == tmp_path / "work" / CIFAR10["folder"] and (found / "test_batch.bin").is_file()


@pytest.mark.parametrize("spec", [CIFAR10, CIFAR100, STL10], ids=lambda spec: spec["folder"])
def test_missing_data_names_archive_md5_and_option(spec, tmp_path):
    with pytest.raises(DataError) as caught:
        locate(tmp_path / "nowhere", spec, tmp_path / "work")
    message = str(caught.value)
    for part in (
        str(tmp_path / "nowhere" / spec["archive"]),
        spec["md5"],
        spec["folder"],
        "dataset.data_dir",
    ):
        assert part in message


def test_md5(tmp_path):
    path = tmp_path / "blob"
    content = bytes(range(256)) * 5000  # more than one 1 MiB block
    path.write_bytes(content)
    assert md5sum(path) == hashlib.md5(content).hexdigest()
    check_md5(path, hashlib.md5(content).hexdigest())
    with pytest.raises(DataError, match=r"(?s)expected 0{32}.*leave data.dir empty"):
        check_md5(path, "0" * 32, option="data.dir")


# ---------------------------------------------------------------- locate and safe extraction


def test_locate_extracted_folder_and_bare_files(cifar10, tmp_path):
    folder, _ = cifar10
    # The extracted folder inside the data folder, and the members directly in a folder.
    assert locate(folder.parent, CIFAR10, tmp_path / "work") == folder
    assert locate(folder, CIFAR10, tmp_path / "work") == folder
    assert not (tmp_path / "work").exists()


def test_locate_extracts_once(stl10, tmp_path, monkeypatch):
    import selfsup.data.archives as archives

    folder, _ = stl10
    md5 = packed(folder, STL10, tmp_path / "data")
    first = locate(tmp_path / "data", STL10, tmp_path / "work", expected_md5=md5)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [STL10["folder"]]

    def refuse(*args):
        raise AssertionError("extracted again")

    monkeypatch.setattr(archives, "safe_extract", refuse)
    assert locate(tmp_path / "data", STL10, tmp_path / "work", expected_md5=md5) == first


def bad_tar(path, bad: tarfile.TarInfo):
    """A .tar.gz whose first members are harmless and whose last is `bad`."""
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("good")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        ok = tarfile.TarInfo("good/ok.bin")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        if bad.isreg():
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        else:
            tar.addfile(bad)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (member("../evil"), "outside"),
        (member("good/../../evil"), "outside"),
        (member("/tmp/selfsup-evil"), "absolute"),
        (member("good/link", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
        (member("good/hard", tarfile.LNKTYPE, "good/ok.bin"), "hard link"),
        (member("good/fifo", tarfile.FIFOTYPE), "fifo"),
        (member("good/dev", tarfile.CHRTYPE), "device"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "fifo", "device"],
)
def test_safe_extract_refuses(tmp_path, bad, reason):
    path = bad_tar(tmp_path / "bad.tar.gz", bad)
    dest = tmp_path / "dest"
    with pytest.raises(
        DataError, match=rf"{re.escape(str(path))}: refusing member {re.escape(repr(bad.name))}, .*{reason}"
    ):
        safe_extract(path, dest)
    assert list(dest.iterdir()) == []  # neither the harmless folder nor a staging folder
    assert not (tmp_path / "evil").exists()


def test_safe_extract_replaces_a_partial_folder(cifar10, tmp_path):
    folder, _ = cifar10
    path = archive(folder, tmp_path / "a.tar.gz")
    partial = tmp_path / "dest" / CIFAR10["folder"]
    partial.mkdir(parents=True)
    (partial / "data_batch_1.bin").write_bytes(b"half")
    assert safe_extract(path, tmp_path / "dest") == tmp_path / "dest"
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == [CIFAR10["folder"]]
    assert (partial / "data_batch_1.bin").read_bytes() == (folder / "data_batch_1.bin").read_bytes()


def test_safe_extract_of_a_truncated_archive_leaves_nothing(cifar10, tmp_path):
    folder, _ = cifar10
    path = archive(folder, tmp_path / "a.tar.gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"could not extract {re.escape(str(path))}"):
        safe_extract(path, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []
