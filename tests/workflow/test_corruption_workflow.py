"""Damaged and unreachable files through the real rules: a truncated encoder or split,
its timestamp restored so that Snakemake sees nothing stale, fails the job that reads it,
naming the file and how to re-make it; a download that cannot
reach its server names the file and shows the data_dir setting that serves offline
machines, and that setting given on the command line keeps the study's dataset."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from smk import copy_workflow, job_counts, snakemake

pytestmark = pytest.mark.workflow

ENCODER = "results/tiny/encoders/all/rotation/seed1/encoder.h5"
SPLIT = "results/tiny/split/seed1.h5"
# A classifier that reads both (the split first, then the encoder).
FINETUNED = "results/tiny/runs/all/rotation/finetune/n16/seed1/metrics.json"


@pytest.fixture(scope="module")
def finished(tiny_workflow):
    """The finished tiny study of the session (tests copy it before damaging a file)."""
    workdir, configfile, _ = tiny_workflow
    return workdir, configfile


def truncate_keeping_time(path, keep):
    stat = path.stat()
    with open(path, "r+b") as f:
        f.truncate(keep)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize(
    "artifact, rule, target",
    [(ENCODER, "pretext", FINETUNED), (SPLIT, "split", FINETUNED)],
    ids=["encoder", "split"],
)
def test_a_truncated_artifact_fails_its_reader_naming_file_rule_and_fix(
    finished, tmp_path, artifact, rule, target
):
    # A copy with every time kept: each case starts from the finished run.
    workdir = Path(shutil.copytree(finished[0], tmp_path / "run", symlinks=True))
    configfile = workdir / finished[1].name
    path = workdir / artifact
    truncate_keeping_time(path, path.stat().st_size * 2 // 3)  # the header stays readable
    # With the time restored, Snakemake sees nothing to do: only a reader can tell.
    dry = snakemake(workdir, configfile, "--dry-run", target)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    result = snakemake(workdir, configfile, "--cores", "1", "--forcerun", "downstream", "--", target)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "CorruptArtifact" in output, output[-5000:]
    assert f"{artifact} is corrupt" in output, output[-5000:]
    assert "It is made by the workflow: delete the file and run again" in output
    assert f"--forcerun {artifact}" in output  # the path as the job reads it, from the workdir
    assert not (workdir / target).exists()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_offline_download_shows_the_data_dir_setting(tmp_path):
    """The default study on a machine that cannot reach the mirror: the registry's origin
    (in the workflow's private copy of the library) points at a closed local port."""
    workdir = copy_workflow(tmp_path)
    registry = workdir / "selfsup" / "data" / "sources.py"
    origin = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    unreachable = f"http://127.0.0.1:{closed_port()}/fashion/"
    assert origin in registry.read_text()
    registry.write_text(registry.read_text().replace(origin, unreachable))
    result = snakemake(workdir, None, "--cores", "1", "--retries", "0", "--", "results/data/fashion_mnist.h5")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"could not download train-images-idx3-ubyte.gz of fashion_mnist from {unreachable}" in output
    setting = (
        "dataset:\n  name: fashion_mnist\n  data_dir: /path/to/folder  # holding train-images-idx3-ubyte.gz"
    )
    assert setting in output, output[-3000:]
    assert "--config 'dataset={data_dir: /path/to/folder}'" in output
    assert not list((workdir / "resources").rglob("*.partial"))


def test_data_dir_on_the_command_line_keeps_the_studys_dataset(tmp_path):
    """The README's offline command on the default study: still Fashion-MNIST, read from
    the folder instead of downloaded."""
    workdir = copy_workflow(tmp_path / "work")
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    result = snakemake(workdir, None, "--dry-run", "--config", f"dataset={{data_dir: {folder}}}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert "download" not in counts and counts["prepare"] == 1
    assert "results/data/fashion_mnist.h5" in result.stdout
