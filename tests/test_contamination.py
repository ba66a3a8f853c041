"""dataset.contamination: foreign images of another source mixed, as a known share, into
the unlabeled pool only (prepare, split, study checks)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from selfsup import artifacts
from selfsup.config import StudyError
from selfsup.data import normalization, sources
from selfsup.data.checks import check_dataset
from selfsup.data.dataset import DataError, foreign_count
from selfsup.data.generated import make_synthetic
from selfsup.data.splits import make_split
from selfsup.stages.prepare import prepare
from selfsup.stages.split import split_dataset
from selfsup.study import check_study

REPO = Path(__file__).resolve().parents[1]
# The dataset: synthetic images of another seed than the foreign source's defaults, so
# that synthetic with its defaults is a foreign source of the same 16x16x1 shape.
GENUINE = {"n_train": 200, "n_test": 40, "seed": 1}
FOREIGN = {"source": "synthetic", "fraction": 0.2, "seed": 3, "folder": None}


@pytest.fixture
def prepared(tmp_path):
    path = tmp_path / "data.h5"
    prepare("synthetic", None, GENUINE, path, {"dataset": "synthetic"}, contamination=FOREIGN)
    return path


def test_foreign_count_gives_the_share():
    assert foreign_count(0.2, 200) == 50 and foreign_count(0.5, 7) == 7
    assert foreign_count(0.1, 9) == 1 == foreign_count(0.1, 9, up=True)  # 1.0000000000000002
    assert foreign_count(0.1, 10) == 1 and foreign_count(0.1, 10, up=True) == 2
    with pytest.raises(ValueError, match=r"dataset.contamination.fraction must lie in \(0, 1\)"):
        foreign_count(1.0, 10)


# --- prepare --------------------------------------------------------------------------


def test_prepare_appends_foreign_images_labeled_minus_one(prepared):
    genuine = make_synthetic(**{**sources.SOURCES["synthetic"].options, **GENUINE})
    foreign = make_synthetic()  # the foreign source with its default options
    stored = artifacts.read_dataset(prepared)
    info = artifacts.read_labels(prepared)
    n = GENUINE["n_train"]
    k = foreign_count(0.2, n, up=True)  # 50
    assert info["sizes"] == {"train": n + k, "test": GENUINE["n_test"]}
    np.testing.assert_array_equal(info["foreign"], np.arange(n, n + k))
    assert info["foreign"].dtype == np.int64
    assert info["contamination"] == {"source": "synthetic", "fraction": 0.2, "seed": 3}
    np.testing.assert_array_equal(stored.x_train[:n], genuine.x_train)
    np.testing.assert_array_equal(stored.y_train[:n], genuine.y_train)
    np.testing.assert_array_equal(stored.y_train[n:], -1)
    np.testing.assert_array_equal(stored.x_test, genuine.x_test)  # the test set stays genuine
    with artifacts.h5py.File(prepared, "r") as h5:
        index = h5["foreign_source_index"][()]
    assert len(np.unique(index)) == k and np.all(np.diff(index) > 0)
    np.testing.assert_array_equal(stored.x_train[n:], foreign.x_train[index])
    # The choice is the seed's: same seed same images, another seed others.
    again = sources.foreign_images(FOREIGN, genuine)
    np.testing.assert_array_equal(again.source_index, index)
    other = sources.foreign_images({**FOREIGN, "seed": 4}, genuine)
    assert not np.array_equal(other.source_index, index)


def test_clean_file_has_no_foreign_images(tmp_path):
    path = tmp_path / "clean.h5"
    prepare("synthetic", None, GENUINE, path, {"dataset": "synthetic"})
    info = artifacts.read_labels(path)
    assert info["foreign"].shape == (0,) and info["foreign"].dtype == np.int64
    assert info["contamination"] is None
    split = split_dataset(path, {"labeled": [0, 100], "unlabeled": [100, 200]}, seed=1)
    assert split.foreign.shape == (0,) and len(split.unlabeled) == 100


def test_prepare_refuses_other_shapes_and_too_few_images(tmp_path):
    dataset = make_synthetic(n_train=20, n_test=4, image_size=12, seed=1)
    with pytest.raises(DataError, match=r"synthetic images are \(16, 16, 1\), the dataset's \(12, 12, 1\)"):
        sources.foreign_images(FOREIGN, dataset)
    dataset = make_synthetic(n_train=600, n_test=4, seed=1)  # 0.5 needs 600; the default has 512
    with pytest.raises(DataError, match="needs 600 foreign images; synthetic has 512 training images"):
        sources.foreign_images({**FOREIGN, "fraction": 0.5}, dataset)
    with pytest.raises(DataError, match="dataset.contamination.source mnist: mnist needs its files"):
        sources.foreign_images({"source": "mnist", "fraction": 0.1}, dataset)


@pytest.mark.realdata
def test_mnist_digits_into_fashion_mnist(tmp_path, real_data_dir):
    """The motivating case on the real files: a tenth of the pool is MNIST digits."""
    path = tmp_path / "fashion.h5"
    contamination = {"source": "mnist", "fraction": 0.1, "seed": 0, "folder": real_data_dir("mnist")}
    # The shared Fashion-MNIST images are rebuilt, not the official bytes: checks off.
    prepare(
        "fashion_mnist",
        real_data_dir("fashion-mnist"),
        {},
        path,
        {},
        contamination=contamination,
        verify_checksums=False,
    )
    info = artifacts.read_labels(path)
    assert len(info["foreign"]) == 6667 and info["sizes"]["train"] == 66667
    settings = {"labeled": [0, 1000], "unlabeled": [1000, 60000], "monitor": 100}
    split = split_dataset(path, {**settings, "normalization": "per_pixel_mean"}, seed=2)
    assert len(split.foreign) == round(0.1 / 0.9 * 59000) == 6556
    assert abs(len(split.foreign) / len(split.unlabeled) - 0.1) <= 1 / len(split.unlabeled)
    assert split.foreign.min() >= 60000 and np.isin(split.foreign, split.unlabeled).all()
    # The digits are other images: their mean differs from Fashion-MNIST's by far.
    digits = artifacts.read_images(path, "train", split.foreign[:500]).mean()
    clothes = artifacts.read_images(path, "train", np.arange(500)).mean()
    assert abs(digits - clothes) > 10
    genuine = artifacts.read_images(path, "train", np.arange(60000))
    np.testing.assert_allclose(split.normalization.mean, genuine.mean(axis=0) / 255, atol=1e-6)


# --- split ----------------------------------------------------------------------------


def pools(split) -> dict[str, np.ndarray]:
    return {
        "labeled": split.labeled,
        "test": split.test,
        "monitor": split.monitor,
        "budget": split.budget_order,
    }


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
@pytest.mark.parametrize(
    "settings",
    [
        {"labeled": [0, 100], "unlabeled": [100, 200], "monitor": 10},
        {"labeled": None, "unlabeled": None},  # overlapping pools: every genuine image
        {"labeled_fraction": {"fraction": 0.3, "seed": 5}, "monitor": 5},
    ],
    ids=["ranges", "all", "labeled_fraction"],
)
def test_pool_holds_the_fraction_of_foreign_images_and_no_other_pool_does(settings, fraction):
    n, k = 200, foreign_count(fraction, 200, up=True)
    y_train = np.concatenate([np.arange(n) % 4, np.full(k, -1)])
    foreign = np.arange(n, n + k)
    clean = make_split(y_train[:n], 40, **settings, seed=1)
    split = make_split(y_train, 40, **settings, seed=1, foreign=foreign, foreign_fraction=fraction)
    pool = split.unlabeled
    assert abs(np.isin(pool, foreign).mean() - fraction) <= 1 / len(pool)
    np.testing.assert_array_equal(split.foreign, pool[np.isin(pool, foreign)])
    assert len(np.unique(split.foreign)) == len(split.foreign) and np.all(np.diff(pool) > 0)
    # The genuine part of every pool is the clean split's, and foreign images are nowhere else.
    np.testing.assert_array_equal(pool[~np.isin(pool, foreign)], clean.unlabeled)
    for name, indices in pools(split).items():
        np.testing.assert_array_equal(indices, pools(clean)[name], err_msg=name)
    assert split.budget("all").max() < n and split.monitor.max(initial=0) < n


def test_foreign_pool_entries_are_drawn_per_seed():
    y_train = np.concatenate([np.arange(100) % 4, np.full(100, -1)])
    draw = {
        seed: make_split(
            y_train, 10, [0, 50], [50, 100], seed=seed, foreign=np.arange(100, 200), foreign_fraction=0.5
        ).foreign
        for seed in (1, 1, 2)
    }
    assert len(draw[1]) == 50
    assert not np.array_equal(draw[1], draw[2])
    np.testing.assert_array_equal(
        draw[1],
        make_split(
            y_train, 10, [0, 50], [50, 100], seed=1, foreign=np.arange(100, 200), foreign_fraction=0.5
        ).foreign,
    )


def test_split_errors():
    y_train = np.concatenate([np.arange(20) % 2, np.full(5, -1)])
    with pytest.raises(ValueError, match="must follow every genuine one"):
        make_split(y_train, 4, seed=1, foreign=np.arange(0, 5), foreign_fraction=0.2)
    with pytest.raises(ValueError, match="needs 20 foreign images; the prepared dataset holds 5"):
        make_split(y_train, 4, seed=1, foreign=np.arange(20, 25), foreign_fraction=0.5)
    with pytest.raises(ValueError, match="remove split.unlabeled: own or contamination"):
        make_split(
            y_train,
            4,
            unlabeled="own",
            n_own_unlabeled=8,
            seed=1,
            foreign=np.arange(20, 25),
            foreign_fraction=0.2,
        )
    # Ranges index the genuine images: the foreign ones are not in range.
    with pytest.raises(ValueError, match=r"split.unlabeled = \[0, 25\) must lie within \[0, 20\)"):
        make_split(y_train, 4, unlabeled=[0, 25], seed=1, foreign=np.arange(20, 25), foreign_fraction=0.2)


@pytest.mark.parametrize("kind", ["per_pixel_mean", "per_channel"])
def test_split_of_a_prepared_file_normalizes_with_genuine_images_only(prepared, tmp_path, kind):
    settings = {"labeled": [0, 100], "unlabeled": [50, 200], "monitor": 10, "normalization": kind}
    split = split_dataset(prepared, settings, seed=3)
    genuine = artifacts.read_dataset(prepared).x_train[: GENUINE["n_train"]]
    expected = normalization.compute(kind, genuine)
    np.testing.assert_allclose(split.normalization.mean, expected.mean, atol=1e-6)
    np.testing.assert_allclose(split.normalization.std, expected.std, atol=1e-6)
    assert len(split.foreign) == foreign_count(0.2, 150) == 38
    # The split file keeps which pool entries are foreign.
    artifacts.write_split(tmp_path / "split.h5", split, {})
    back = artifacts.read_split(tmp_path / "split.h5")
    np.testing.assert_array_equal(back.foreign, split.foreign)
    np.testing.assert_array_equal(back.unlabeled, split.unlabeled)


def test_image_file_stop_hides_the_tail(prepared):
    images = artifacts.ImageFile(prepared, "train", stop=200)
    try:
        assert len(images) == 200 and images.shape == (200, 16, 16, 1)
        assert len(images[0:4096]) == 200
        with pytest.raises(IndexError):
            images[np.array([199, 200])]
    finally:
        images.close()


# --- study checks ---------------------------------------------------------------------


def contaminated(study, **contamination):
    study = copy.deepcopy(study)
    study["dataset"]["options"]["seed"] = 1  # so that synthetic's defaults are foreign
    study["dataset"]["contamination"] = {"source": "synthetic", "fraction": 0.2, **contamination}
    return study


def check(study):
    """check_dataset as check_study calls it, with the study's split section."""
    return check_dataset(study["dataset"], study["split"])


def test_contamination_defaults_are_filled(study):
    study = contaminated(study)
    check(study)
    assert study["dataset"]["contamination"] == {
        "source": "synthetic",
        "fraction": 0.2,
        "seed": 0,
        "data_dir": None,
    }
    del study["dataset"]["contamination"]
    check(study)
    assert study["dataset"]["contamination"] is None


def test_check_study_checks_contamination_against_the_split(study):
    checked = check_study(contaminated(study))
    assert checked["dataset"]["contamination"]["seed"] == 0
    with pytest.raises(StudyError, match="rounds to no foreign image"):
        check_study(contaminated(study, fraction=0.001))


@pytest.mark.parametrize(
    "contamination, message",
    [
        (
            {"source": "imagenet"},
            r"dataset.contamination.source: unknown dataset 'imagenet'; choose one of mnist, ",
        ),
        ({"fraction": 0}, r"dataset.contamination.fraction: 0 must lie in \(0, 1\)"),
        ({"fraction": 1.0}, r"dataset.contamination.fraction: 1.0 must lie in \(0, 1\)"),
        ({"fraction": 1.5}, r"dataset.contamination.fraction: 1.5 must lie in \(0, 1\)"),
        (
            {"source": "mnist"},
            r"dataset.contamination.source: mnist images are \(28, 28, 1\), synthetic images \(16, 16, 1\)",
        ),
        ({"data_dir": "/data"}, "dataset.contamination.data_dir: synthetic reads no files"),
        ({"fraction": 0.7}, "needs 598 foreign images; synthetic has 512 training images"),
        ({"fraction": 0.001}, r"0.001 of an unlabeled pool of 128 images rounds to no foreign image"),
    ],
)
def test_study_check_errors(study, contamination, message):
    with pytest.raises(StudyError, match=message):
        check(contaminated(study, **contamination))


def test_study_check_refuses_the_dataset_itself_and_its_own_unlabeled_images(study):
    same = contaminated(study)
    same["dataset"]["options"]["seed"] = 0  # synthetic's defaults: the dataset's own images
    same["dataset"]["options"].update(n_train=512, n_test=128)
    with pytest.raises(StudyError, match="dataset.contamination.source: synthetic .* not foreign ones"):
        check(same)
    stl10 = {"name": "stl10", "contamination": {"source": "cifar10", "fraction": 0.1}}
    with pytest.raises(StudyError, match="remove split.unlabeled: own or contamination"):
        check_dataset(stl10, {"unlabeled": "own"})
    # The checks read layouts only: a real pair of sources needs no files.
    fashion = {"name": "fashion_mnist", "contamination": {"source": "mnist", "fraction": 0.5}}
    assert check_dataset(fashion, {}).n_train == 60000  # the genuine layout
    fashion["contamination"]["fraction"] = 0.51
    with pytest.raises(StudyError, match="needs 62449 foreign images; mnist has 60000"):
        check_dataset(fashion, {})


def test_schema_names_the_registered_sources_and_defaults_to_none():
    from snakemake.utils import validate

    schema = yaml.safe_load((REPO / "schemas" / "study.schema.yaml").read_text())
    dataset = schema["properties"]["dataset"]["properties"]
    assert dataset["contamination"]["properties"]["source"]["enum"] == list(sources.SOURCES)
    config = yaml.safe_load((REPO / "tests" / "data" / "tiny_study.yaml").read_text())
    config["dataset"]["contamination"] = {"source": "synthetic", "fraction": 0.2}
    validate(config, str(REPO / "schemas" / "study.schema.yaml"))
    # No per-key defaults (snakemake's validator would set them on a null object too).
    assert config["dataset"]["contamination"] == {"source": "synthetic", "fraction": 0.2}
    del config["dataset"]["contamination"]
    validate(config, str(REPO / "schemas" / "study.schema.yaml"))
    assert config["dataset"]["contamination"] is None
