"""dataset.contamination through the real rules: the foreign source's files are
downloaded by their own job, the prepared file is not the clean one, and prepare and
split put the foreign images into the unlabeled pool only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from smk import REPO, copy_workflow, job_counts, load_study, snakemake, write_study

from selfsup import artifacts

pytestmark = pytest.mark.workflow
SHARED = REPO.parent / "shared" / "data"


def fashion_with_digits(workdir, **dataset):
    study = load_study("tiny_study.yaml")
    study["study"] = "fashion_with_digits"
    study["dataset"] = {
        "name": "fashion_mnist",
        "contamination": {"source": "mnist", "fraction": 0.1},
        **dataset,
    }
    study["split"] = {"labeled": [0, 1000], "unlabeled": [1000, 60000]}
    study["budgets"] = [20, 64]  # the linear probe's cross-validation needs 2 per class of 10
    return write_study(workdir / "study.yaml", study)


def test_dry_run_downloads_the_foreign_source_too(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = fashion_with_digits(workdir)
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["download"] == counts["download_foreign"] == counts["prepare"] == 1
    assert "resources/mnist/train-images-idx3-ubyte.gz" in result.stdout
    # A contaminated file has its own name: it never stands in for the clean one.
    assert "results/data/fashion_mnist-" in result.stdout
    assert "results/data/fashion_mnist.h5" not in result.stdout


def test_prepare_and_split_mix_foreign_images_into_the_pool_only(tmp_path):
    workdir = copy_workflow(tmp_path)
    study = load_study("tiny_study.yaml")
    study["dataset"]["options"]["seed"] = 1  # synthetic's defaults are then foreign images
    study["dataset"]["contamination"] = {"source": "synthetic", "fraction": 0.25, "seed": 2}
    study["split"]["monitor"] = 8
    config = write_study(workdir / "study.yaml", study)
    result = snakemake(workdir, config, "--cores", "1", "results/tiny/split/seed1.h5")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (prepared,) = (workdir / "results" / "data").glob("synthetic-*.h5")
    info = artifacts.read_labels(prepared)
    assert info["contamination"] == {"source": "synthetic", "fraction": 0.25, "seed": 2}
    np.testing.assert_array_equal(info["foreign"], np.arange(256, 256 + 86))  # ceil(256 / 3)
    split = artifacts.read_split(workdir / "results" / "tiny" / "split" / "seed1.h5")
    assert len(split.foreign) == round(128 / 3) == 43 and len(split.unlabeled) == 128 + 43
    assert np.isin(split.foreign, info["foreign"]).all() and np.isin(split.foreign, split.unlabeled).all()
    assert split.labeled.max() < 128 and split.monitor.max() < 128


@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"real MNIST files not found in {SHARED}")
def test_prepare_reads_both_sources_from_their_download_folders(tmp_path):
    """The files where the download rules put them (copied from ../shared/data, so
    nothing is fetched): prepare reads each source from its own folder."""
    workdir = copy_workflow(tmp_path)
    # The shared Fashion-MNIST images are rebuilt, not the official bytes: checks off.
    config = fashion_with_digits(workdir, verify_checksums=False)
    for name, folder in (("fashion_mnist", "fashion-mnist"), ("mnist", "mnist")):
        shutil.copytree(SHARED / folder, workdir / "resources" / name)
    # Files no job wrote have no provenance: only their times say they are up to date.
    target = "results/fashion_with_digits/split/seed1.h5"
    result = snakemake(workdir, config, "--cores", "1", "--rerun-triggers", "mtime", "--", target)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert job_counts(result.stderr) == {"prepare": 1, "split": 1}
    (prepared,) = (workdir / "results" / "data").glob("fashion_mnist-*.h5")
    info = artifacts.read_labels(prepared)
    assert info["class_names"][0] == "T-shirt/top" and len(info["foreign"]) == 6667
    split = artifacts.read_split(workdir / "results" / "fashion_with_digits" / "split" / "seed1.h5")
    assert len(split.foreign) == round(59000 / 9)
