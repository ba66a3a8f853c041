"""Official dataset archives: checksums, safe extraction, and finding the extracted files.

A format spec is one of the dicts of `selfsup.data.formats` (CIFAR10, CIFAR100, STL10):
"folder" (what the archive extracts to), "archive" (its file name), "md5", "url", and
"files" (member name -> full-size byte count, or None for text files).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from selfsup.data.dataset import DataError

BLOCK = 1 << 20


def md5sum(path: str | Path) -> str:
    """The MD5 hex digest of a file, read 1 MiB at a time."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


# How a user fixes a file that fails its check; `option` names where the file came from.
OPT_OUT = (
    "to use files you trust that are not the official bytes (rebuilt or converted), set "
    "dataset.verify_checksums: false"
)


def _fix(option: str) -> str:
    return (
        f"Replace it with the official file, or download it again (a downloaded file: delete it "
        f"and run again; a file in {option}: leave {option} empty); {OPT_OUT}"
    )


def check_md5(path: str | Path, expected: str, option: str = "dataset.data_dir") -> None:
    """Raise DataError unless the file's MD5 is `expected`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"missing {path} (expected MD5 {expected}); put the official file there or set {option}"
        )
    actual = md5sum(path)
    if actual != expected.lower():
        raise DataError(
            f"{path} has MD5 {actual}, expected {expected} (the published checksum): the file is "
            f"truncated, corrupt or not the official one.\n{_fix(option)}"
        )


def gunzipped_md5(path: str | Path) -> str:
    """The MD5 of a gzip file's decompressed bytes, streamed 1 MiB at a time."""
    digest = hashlib.md5(usedforsecurity=False)
    with gzip.open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_gzip(path: str | Path, expected: str, content: str, option: str = "dataset.data_dir") -> None:
    """Raise DataError unless the .gz file is the official one (MD5 `expected`) or holds
    the official bytes compressed by another tool (decompressed MD5 `content`)."""
    path = Path(path)
    actual = md5sum(path)
    if actual == expected.lower():
        return
    try:
        decompressed = gunzipped_md5(path)
    except (EOFError, OSError, zlib.error) as error:  # truncated or not gzip at all
        raise DataError(
            f"{path} is not a complete gzip file ({error}); it has MD5 {actual}, expected {expected} "
            f"(the published checksum).\n{_fix(option)}"
        ) from None
    if decompressed != content.lower():
        raise DataError(
            f"{path} has MD5 {actual}, expected {expected} (the published checksum), and its "
            f"decompressed bytes have MD5 {decompressed}, not the official {content}: the file is "
            f"corrupt or not the official one.\n{_fix(option)}"
        )


def _check_member(member: tarfile.TarInfo, root: Path, archive_path: Path) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive_path}: refusing member {name!r}, an absolute path")
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise DataError(f"{archive_path}: refusing member {name!r}, which would land outside {root}")
    if not (member.isreg() or member.isdir()):
        if member.issym():
            kind = "a symlink"
        elif member.islnk():
            kind = "a hard link"
        elif member.isfifo():
            kind = "a fifo"
        elif member.isdev():
            kind = "a device"
        else:
            kind = "not a regular file or folder"
        raise DataError(f"{archive_path}: refusing member {name!r}, {kind}")


def _complete_copy(new: Path, old: Path) -> bool:
    """Whether `old` already holds every file of `new` with the same size."""
    if not old.is_dir():
        return False
    for path in new.rglob("*"):
        twin = old / path.relative_to(new)
        if path.is_file() and (not twin.is_file() or twin.stat().st_size != path.stat().st_size):
            return False
    return True


def safe_extract(archive_path: str | Path, dest: str | Path) -> Path:
    """Extract a .tar.gz into `dest`, refusing links, devices and paths that leave `dest`; returns `dest`.

    Members go to a temporary folder inside `dest` first and each top-level entry is
    renamed into place only once the whole archive is out, so an interrupted or refused
    extraction never leaves a folder that looks complete.
    """
    archive_path, dest = Path(archive_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest))
    try:
        root = staging.resolve()
        try:
            with tarfile.open(archive_path, "r:gz") as tar:
                # One pass, checking each member before it is written: listing the members
                # first would decompress a large archive twice.
                for member in tar:
                    _check_member(member, root, archive_path)
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, root, filter="data")
                    else:
                        tar.extract(member, root)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            # FilterError: what tarfile's own "data" filter refuses (Python 3.11.4+).
            if isinstance(error, getattr(tarfile, "FilterError", ())):
                raise DataError(f"{archive_path}: refusing member: {error}") from None
            raise DataError(f"could not extract {archive_path} into {dest}: {error}") from None
        for entry in sorted(root.iterdir()):
            _move_into_place(entry, dest / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _move_into_place(entry: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        # Another job may have extracted the same archive meanwhile: keep its copy if whole,
        # since a reader may already hold it open.
        if _complete_copy(entry, target):
            return
        stale = target.with_name(f".stale-{target.name}-{os.getpid()}")
        os.rename(target, stale)
        os.rename(entry, target)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        return
    os.rename(entry, target)


def _missing(directory: Path, spec: dict) -> list[str]:
    return [name for name in spec["files"] if not (directory / name).is_file()]


def locate(
    folder: str | Path,
    spec: dict,
    work_dir: str | Path,
    option: str = "dataset.data_dir",
    expected_md5: str | None = None,
    verify: bool = True,
) -> Path:
    """The folder holding the extracted files of `spec`, extracting its archive from `folder` if need be.

    Looks for `folder/<spec folder>/<member>` or `folder/<member>`, then for
    `folder/<archive>`, which is MD5-checked (unless not `verify`) and extracted into
    `work_dir` (once). An extracted folder has no published checksums: the readers check
    its files' layout.
    """
    folder, work_dir = Path(folder), Path(work_dir)
    expected_md5 = expected_md5 or spec["md5"]
    extracted = folder / spec["folder"]
    for candidate in (extracted, folder):
        if candidate.is_dir() and not _missing(candidate, spec):
            return candidate
    archive_path = folder / spec["archive"]
    if archive_path.is_file():
        if verify:
            check_md5(archive_path, expected_md5, option)
        target = work_dir / spec["folder"]
        if not _missing(target, spec):
            return target
        safe_extract(archive_path, work_dir)
        missing = _missing(target, spec)
        if missing:
            raise DataError(
                f"{archive_path} passed its MD5 check but did not extract to {target} with "
                f"{', '.join(missing)}"
            )
        return target
    partial = ""
    if extracted.is_dir():
        partial = f" ({extracted} exists but lacks {', '.join(_missing(extracted, spec))})"
    raise DataError(
        f"no {spec['folder']} data in {folder}{partial}: looked for the archive {archive_path} "
        f"(MD5 {expected_md5}, from {spec['url']}) and for its extracted folder {extracted}; "
        f"put either there, or set {option} to the folder that holds them"
    )
