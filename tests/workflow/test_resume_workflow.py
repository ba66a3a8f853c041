"""Exact results, checked with real Snakemake runs of one small study (one pretext job and
one classifier on its encoder): a training job killed after a completed epoch and run
again ends with the very bytes of an uninterrupted run, and `--cores` changes nothing.

Compared: every dataset of the encoder's HDF5 file bit for bit and its attributes (the
file records `resumed_from_epoch`, which differs by design, and a content checksum that
covers it: both are left out for the killed run; across `--cores` nothing is left out,
and the encoder files are compared byte for byte too); the histories and the
classifier's metrics byte for byte. To keep it short, the other runs start from the
uninterrupted run's data, split and pseudo-labels (copied with their times, so Snakemake
takes them as done) and run only the training jobs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from smk import SNAKEMAKE, copy_workflow, load_study, snakemake, write_study

from selfsup import artifacts

pytestmark = pytest.mark.workflow

ENCODER_DIR = "results/exact/encoders/all/rotation/seed1"
RUN_DIR = "results/exact/runs/all/rotation/finetune/n32/seed1"
TARGET = f"{RUN_DIR}/metrics.json"
COMPARED = [f"{ENCODER_DIR}/history.csv", f"{RUN_DIR}/history.csv", TARGET]
UPSTREAM = ["results/data", "results/exact/split", "results/exact/pools", "results/exact/pseudo"]
# Differs between a resumed run and an uninterrupted one by design, and so does the
# checksum over the file's content (attributes included).
RESUME_ATTRS = {"resumed_from_epoch", "checksum"}


def study() -> dict:
    config = load_study("tiny_study.yaml")
    config["study"] = "exact"
    # Two threads, so that --cores 1 makes the job share one core among them.
    config["threads"] = 2
    config["dataset"]["options"].update(n_train=512)
    config["split"] = {"labeled": [0, 128], "unlabeled": [128, 512]}
    config["seeds"] = [1]
    config["budgets"] = [32]
    config["pretext"]["rotation"].update(epochs=5, augmentation={"horizontal_flip": True, "shift": 0.1})
    config["downstream"].update(protocols=["finetune"], epochs=3, validation_split=0.25)
    return config


def scratch(tmp_path_factory, name: str, upstream_from=None):
    workdir = copy_workflow(tmp_path_factory.mktemp(name))
    for folder in UPSTREAM if upstream_from else []:
        shutil.copytree(upstream_from / folder, workdir / folder)  # copy2: times kept
    return workdir, write_study(workdir / "exact.yaml", study())


def run(workdir, configfile, cores: int):
    result = snakemake(workdir, configfile, "--cores", str(cores), TARGET)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir, configfile = scratch(tmp_path_factory, "whole")
    run(workdir, configfile, 2)
    return workdir


def encoder_content(path):
    """{dataset name: array} and the root attributes of an HDF5 file."""
    arrays = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(
            lambda name, obj: arrays.update({name: obj[()]}) if isinstance(obj, h5py.Dataset) else None
        )
        attrs = {key: h5.attrs[key] for key in h5.attrs}
    return arrays, attrs


def assert_same_results(expected_dir, actual_dir, ignored_attrs=frozenset()):
    expected, expected_attrs = encoder_content(expected_dir / ENCODER_DIR / "encoder.h5")
    actual, actual_attrs = encoder_content(actual_dir / ENCODER_DIR / "encoder.h5")
    assert sorted(expected) == sorted(actual)
    for name, array in expected.items():
        assert array.dtype == actual[name].dtype and np.array_equal(array, actual[name]), name
    for key in set(expected_attrs) | set(actual_attrs):
        if key not in ignored_attrs:
            assert np.array_equal(expected_attrs.get(key), actual_attrs.get(key)), key
    for name in COMPARED:
        assert (expected_dir / name).read_bytes() == (actual_dir / name).read_bytes(), name


def test_killed_and_resumed_training_ends_as_an_uninterrupted_one(uninterrupted, tmp_path_factory):
    workdir, configfile = scratch(tmp_path_factory, "killed", uninterrupted)
    command = [SNAKEMAKE, "-s", str(workdir / "Snakefile"), "--configfile", str(configfile)]
    process = subprocess.Popen(
        [*command, "--cores", "2", TARGET],
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill Snakemake and the job (one process group) once the pretext job has saved an
    # epoch: a job dies mid-epoch, after its last saved one.
    deadline = time.time() + 240
    done = 0
    while done < 1:
        assert time.time() < deadline and process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
        histories = list((workdir / ENCODER_DIR).glob(".resume-*/history.csv"))
        done = len(histories[0].read_text().splitlines()[1:]) if histories else 0  # rows after the header
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (workdir / ENCODER_DIR / "encoder.h5").exists(), "killed too late: the job had finished"

    assert snakemake(workdir, configfile, "--unlock").returncode == 0
    run(workdir, configfile, 2)
    log = (workdir / "logs/exact/pretext/all/rotation/seed1.log").read_text()
    resumed_after = int(log.split("resuming after epoch ", 1)[1].split()[0])
    assert 1 <= resumed_after < 5
    assert artifacts.read_attrs(workdir / ENCODER_DIR / "encoder.h5")["resumed_from_epoch"] == resumed_after
    assert not list((workdir / ENCODER_DIR).glob(".resume-*"))  # the saved state goes with success
    assert_same_results(uninterrupted, workdir, ignored_attrs=RESUME_ATTRS)


def test_results_do_not_depend_on_cores(uninterrupted, tmp_path_factory):
    workdir, configfile = scratch(tmp_path_factory, "one_core", uninterrupted)
    run(workdir, configfile, 1)
    assert_same_results(uninterrupted, workdir)
    # HDF5 records no times here (h5py's default), so the files are the same bytes too.
    encoder = f"{ENCODER_DIR}/encoder.h5"
    assert (uninterrupted / encoder).read_bytes() == (workdir / encoder).read_bytes()
