"""The download stage: a dataset's official files fetched into the workflow's resources
folder and checked against their published MD5s; where there is no internet, the error
shows the study setting that reads them from a folder instead."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

from selfsup.data import archives, sources
from selfsup.data.dataset import DataError

_TIMEOUT = 60  # seconds without a byte before a download counts as failed


def offline_setting(name: str, option: str = "dataset.data_dir") -> str:
    """The study lines that serve source `name` from a local folder, for `option`
    (dataset.data_dir or dataset.contamination.data_dir), naming the files it must hold."""
    folder = f"data_dir: /path/to/folder  # holding {', '.join(sources.get_source(name).files)}"
    if option == "dataset.contamination.data_dir":
        return (
            f"dataset:\n  contamination:\n    source: {name}\n    {folder}\n"
            "(on the command line: --config 'dataset={contamination: {data_dir: /path/to/folder}}')"
        )
    return f"dataset:\n  name: {name}\n  {folder}\n(on the command line: --config 'dataset={{data_dir: /path/to/folder}}')"


def download(
    name: str, dest: str | Path, origin: str | None = None, option: str = "dataset.data_dir"
) -> list[Path]:
    """Download the official files of `name` into `dest`, verifying published MD5s.

    A file already there with the right checksum is kept. Each file is fetched to a
    `.partial` sibling and renamed only once its checksum matches, so a failed or killed
    download never leaves a file that looks complete. `origin` overrides the mirror (any
    URL prefix, file:// included). A file that cannot be fetched names its URL and shows
    the `option` setting (dataset.data_dir, or the contamination's) that serves offline
    machines.
    """
    source = sources.get_source(name)
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, md5 in source.files.items():
        target = dest / filename
        if target.is_file() and archives.md5sum(target) == md5:
            paths.append(target)
            continue
        url = (origin or source.origin) + filename
        partial = target.with_name(f"{filename}.partial")
        print(f"downloading {url}", flush=True)
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT) as response, open(partial, "wb") as f:
                shutil.copyfileobj(response, f, archives.BLOCK)
        except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts; ValueError: a bad URL
            partial.unlink(missing_ok=True)
            raise DataError(
                f"could not download {filename} of {name} from {url} ({error}).\n"
                f"Without internet, put the official files in a folder and set in the study:\n"
                f"{offline_setting(name, option)}"
            ) from None
        actual = archives.md5sum(partial)
        if actual != md5:
            partial.unlink()  # never leave a bad file that looks downloaded
            raise DataError(
                f"{url}: {filename} fails its published MD5 check: expected {md5}, got {actual} "
                f"(an interrupted download or a wrong mirror); run again to re-download"
            )
        os.replace(partial, target)
        paths.append(target)
    return paths


def job(inputs: dict, outputs: dict, params: dict, wildcards: dict, config: dict) -> None:
    """The job of the download rules (the study's dataset, and its contamination source).
    The offline setting it shows is the one of the source it fetches, told apart by name
    (a study's two sources are never the same files): not a param, which would make
    Snakemake re-run (and first delete) every finished download."""
    own = params["dataset"] == config.get("dataset", {}).get("name")
    setting = "dataset.data_dir" if own else "dataset.contamination.data_dir"
    try:
        paths = download(params["dataset"], params["folder"], option=setting)
    except DataError as error:  # the message says what to do; a traceback would bury it
        sys.exit(f"{error}")
    for path in paths:
        print(f"verified {path}")
