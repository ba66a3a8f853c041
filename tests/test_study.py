"""selfsup.study: what the schema cannot check, with errors that name the key."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from selfsup.config import (
    StudyError,
    check_options,
    check_schema,
    coerce_command_line,
    load_schema,
    read_yaml,
)
from selfsup.data.checks import check_dataset, labeled_pool_size
from selfsup.data.dataset import DataError
from selfsup.data.generated import load_digits, make_synthetic
from selfsup.data.sources import layout
from selfsup.protocols import settings as run_settings
from selfsup.study import check_requests, check_study, checked_study
from selfsup.training_settings import check_training

ROOT = Path(__file__).resolve().parents[1]


def test_fixture_is_the_tiny_study_after_schema_defaults(study):
    """The hand-written study fixture equals tests/data/tiny_study.yaml validated by the schema."""
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "tests" / "data" / "tiny_study.yaml").read_text())
    validate(config, str(ROOT / "schemas" / "study.schema.yaml"))
    assert config == study


def test_valid_study_gets_defaults_filled(study):
    del study["encoder"]["options"]["dense"]
    checked = check_study(study)
    assert checked["encoder"]["options"] == {"filters": [4, 8], "dense": [128], "dropout": 0.0}
    assert checked["pretext"]["rotation"]["method"] == "rotation"
    assert checked["pretext"]["rotation"]["options"] == {"rotations": "all"}
    # The input is not modified.
    assert "method" not in study["pretext"]["rotation"]


def test_method_options_default(study):
    study["pretext"]["rotation"]["options"] = {}
    assert check_study(study)["pretext"]["rotation"]["options"] == {"rotations": "random"}


def test_pretext_key_other_than_method(study):
    study["pretext"]["rot_all"] = {**study["pretext"].pop("rotation"), "method": "rotation"}
    assert check_study(study)["pretext"]["rot_all"]["method"] == "rotation"


def test_unknown_pretext_method(study):
    study["pretext"]["jigsaw"] = study["pretext"].pop("rotation")
    with pytest.raises(StudyError, match=r"pretext\.jigsaw\.method: unknown pretext method 'jigsaw'") as err:
        check_study(study)
    assert "rotation" in str(err.value).split("choose one of")[1]


def test_unknown_encoder(study):
    study["encoder"] = {"name": "vgg16", "options": {}}
    with pytest.raises(StudyError, match=r"encoder\.name: unknown encoder 'vgg16'") as err:
        check_study(study)
    for name in ("rotnet_fashion_mnist", "rotnet_mnist", "small_cnn"):
        assert name in str(err.value)


def test_unknown_encoder_option(study):
    study["encoder"]["options"]["width"] = 3
    with pytest.raises(
        StudyError, match=r"encoder\.options: unknown option\(s\) width; allowed: dense, dropout, filters"
    ):
        check_study(study)


def test_unknown_method_option(study):
    study["pretext"]["rotation"]["options"]["angles"] = 8
    with pytest.raises(
        StudyError, match=r"pretext\.rotation\.options: unknown option\(s\) angles; allowed: rotations"
    ):
        check_study(study)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("filters", 4, "list like"),
        ("dropout", "high", "float like 0.0"),
        ("dropout", True, "float like 0.0"),
    ],
)
def test_wrong_encoder_option_type(study, key, value, expected):
    study["encoder"]["options"][key] = value
    with pytest.raises(StudyError, match=rf"encoder\.options\.{key}: expected {expected}.*got {value!r}"):
        check_study(study)


def test_int_accepted_for_float_option(study):
    study["encoder"]["options"]["dropout"] = 0
    assert check_study(study)["encoder"]["options"]["dropout"] == 0


def test_check_options_rules():
    defaults = {"flag": False, "count": 3, "rate": 0.5, "anything": None}
    assert check_options("x", {"anything": [1]}, defaults) == {
        "flag": False,
        "count": 3,
        "rate": 0.5,
        "anything": [1],
    }
    with pytest.raises(StudyError, match=r"x\.count: expected int like 3, got True"):
        check_options("x", {"count": True}, defaults)
    with pytest.raises(StudyError, match=r"x\.flag: expected bool like False, got 1"):
        check_options("x", {"flag": 1}, defaults)
    with pytest.raises(StudyError, match="unknown option\\(s\\) a; allowed: none"):
        check_options("y", {"a": 1}, {})


def test_method_check_runs(study):
    study["pretext"]["rotation"]["options"]["rotations"] = "some"
    with pytest.raises(StudyError, match=r"pretext\.rotation\.options: rotations must be 'all' or 'random'"):
        check_study(study)


def test_budget_above_labeled_pool(study):
    study["budgets"] = [16, 200]
    with pytest.raises(StudyError, match=r"budgets: 200 labels exceed the labeled pool of 128") as err:
        check_study(study)
    # The pool may come from split.labeled, labeled_fraction or folds: the message points at split.
    assert "(split); use budgets <= 128 or 'all'" in str(err.value)


def test_budget_of_the_whole_pool_next_to_all_trains_twice(study):
    study["budgets"] = [16, 128, "all"]
    with pytest.raises(StudyError, match=r"^budgets: 128 and 'all' are the same 128 labeled images"):
        check_study(study)
    study["budgets"] = [16, 128]
    check_study(study)
    study["split"]["labeled"] = None
    study["budgets"] = [256]
    check_study(study)


def test_split_range_outside_dataset(study):
    study["split"]["unlabeled"] = [128, 300]
    with pytest.raises(StudyError, match=r"split\.unlabeled: \[128, 300\) must lie within \[0, 256\)"):
        check_study(study)
    study["split"]["unlabeled"] = None
    study["split"]["test"] = [0, 65]
    with pytest.raises(StudyError, match=r"split\.test: \[0, 65\) must lie within \[0, 64\)"):
        check_study(study)


def test_protocols_needing_pretext_without_pretext(study):
    study["pretext"] = {}
    with pytest.raises(
        StudyError,
        match=r"downstream\.protocols: \['frozen', 'freeze_1', 'finetune', 'linear'\] need a pretext",
    ):
        check_study(study)
    study["downstream"]["protocols"] = ["supervised", "random", "random_linear", "pixels_knn"]
    check_study(study)


def test_bad_feature_layer(study):
    study["downstream"]["feature_layer"] = "conv9"
    with pytest.raises(
        StudyError, match=r"downstream: feature_layer 'conv9' is not a layer of the encoder"
    ) as err:
        check_study(study)
    assert "pool2" in str(err.value).split("choose one of ")[1]


def test_freeze_k_too_large(study):
    study["downstream"]["protocols"] = ["frozen", "freeze_5"]
    with pytest.raises(StudyError, match=r"downstream: freeze_5: the encoder has only 4 conv layers"):
        check_study(study)


def test_freeze_k_counts_conv_layers_before_the_feature_layer(study):
    study["downstream"]["feature_layer"] = "pool1"
    study["downstream"]["protocols"] = ["freeze_2"]
    check_study(study)
    study["downstream"]["protocols"] = ["freeze_3"]
    with pytest.raises(StudyError, match="freeze_3: the encoder has only 2 conv layers"):
        check_study(study)


def test_override_of_an_unlisted_protocol(study):
    study["downstream"]["overrides"] = {"partial_1": {"epochs": 3}}
    with pytest.raises(
        StudyError, match=r"downstream\.overrides\.partial_1: not one of downstream\.protocols"
    ):
        check_study(study)


def test_downstream_settings_merges_overrides(study):
    study["downstream"]["overrides"] = {
        "supervised": {"batch_size": 32, "optimizer": {"name": "sgd", "learning_rate": 0.1}}
    }
    checked = check_study(study)
    supervised = run_settings(checked, "supervised")
    assert supervised["batch_size"] == 32
    assert supervised["optimizer"] == {"name": "sgd", "learning_rate": 0.1}
    assert supervised["epochs"] == 2
    frozen = run_settings(checked, "frozen")
    assert frozen["batch_size"] == 16
    assert frozen["optimizer"] == {"name": "adam", "learning_rate": 0.003, "weight_decay": 0.0}
    assert "protocols" not in frozen and "overrides" not in frozen
    assert frozen["head"] == {"hidden": [], "dropout": 0.0}
    # The feature protocols' options are not training settings: editing them re-runs no
    # trained classifier, and editing a training setting re-runs no feature protocol.
    assert "linear" not in frozen and "knn" not in frozen
    assert run_settings(checked, "pixels_linear") == {
        "memory_limit_mb": 2048,
        "deterministic": True,
        "linear": {"c_values": 45, "folds": 5, "max_iter": 1000},
        "protocol": "pixels_linear",
    }
    assert set(run_settings(checked, "knn")) == {
        "feature_layer",
        "memory_limit_mb",
        "deterministic",
        "knn",
        "protocol",
    }


def test_feature_protocols_are_not_trained(study):
    study["downstream"]["overrides"] = {"linear": {"epochs": 50}}
    with pytest.raises(
        StudyError,
        match=r"^downstream\.overrides\.linear: linear evaluates frozen features with no training.*"
        r"set downstream\.linear instead, or use the frozen protocol",
    ):
        check_study(study)


def test_knn_neighbours_beyond_the_smallest_budget(study):
    study["downstream"]["knn"]["k"] = 17  # budgets 16 and 64
    with pytest.raises(
        StudyError, match=r"^downstream\.knn\.k: 17 neighbours, but the smallest budget has 16 .*use k <= 16"
    ):
        check_study(study)
    study["downstream"]["protocols"] = ["supervised", "linear"]  # no kNN: k is not used
    check_study(study)


def test_linear_probe_needs_two_labels_per_class(study):
    study["budgets"] = [6, 64]  # 4 classes: cross-validation needs 8
    study["downstream"]["knn"]["k"] = 4
    with pytest.raises(
        StudyError,
        match=r"^budgets: the linear probe .*2 labeled images of each of the 4 classes.*at least 8",
    ):
        check_study(study)
    study["downstream"]["protocols"] = ["supervised", "pixels_knn"]
    check_study(study)


def test_a_validation_split_must_leave_training_and_validation_images_in_every_budget(study):
    study["downstream"]["validation_split"] = 0.02  # 16 * 0.02 rounds to 0 images
    with pytest.raises(
        StudyError,
        match=r"^downstream\.validation_split: budget 16: validation_split 0\.02 of 16 examples "
        r"holds out no validation example",
    ):
        check_study(study)
    study["downstream"]["validation_split"] = 0.25
    check_study(study)
    study["downstream"]["overrides"] = {"finetune": {"validation_split": 0.99}}
    with pytest.raises(
        StudyError,
        match=r"^downstream\.overrides\.finetune\.validation_split: budget 16: .*leaves no training example",
    ):
        check_study(study)


def test_knn_monitor_neighbours_must_fit_the_held_out_images():
    written = {"split": {"monitor": 8}, "pretext": {"rotation": {"knn_monitor": {"k": 8}}}}
    with pytest.raises(
        StudyError,
        match=r"^pretext\.rotation\.knn_monitor\.k: 8 neighbours, but each of the split\.monitor 8 "
        r"held-out images has 7 others to search; set knn_monitor\.k <= 7",
    ):
        check_requests(written)
    written["pretext"]["rotation"]["knn_monitor"]["k"] = 7
    check_requests(written)
    # The default k (200) is not a request: it is capped to the held-out images' others.
    written["pretext"]["rotation"]["knn_monitor"] = {"every": 2}
    check_requests(written)


def test_a_knn_monitor_without_held_out_images_is_refused(study):
    del study["pretext"]["rotation"]["knn_monitor"]  # as written: the schema's default is not a request
    check_requests(study)
    study["pretext"]["rotation"]["knn_monitor"] = {"k": 20}
    with pytest.raises(StudyError, match=r"^pretext\.rotation\.knn_monitor: set, but split\.monitor is 0"):
        check_requests(study)
    study["split"]["monitor"] = 40
    check_requests(study)


def test_a_key_written_twice_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("study: x\ndownstream:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n")
    with pytest.raises(
        StudyError,
        match=r"twice\.yaml, line 5, column 3: key 'epochs' is written twice in one mapping \(first at line 3\)",
    ):
        read_yaml(path)


def test_layouts_of_the_registry():
    def sizes(name, options=None):
        found = layout(name, options)
        return found.n_train, found.n_test, found.image_shape

    assert sizes("mnist") == (60000, 10000, (28, 28, 1))
    assert sizes("fashion_mnist") == (60000, 10000, (28, 28, 1))
    assert sizes("digits") == (1500, 297, (8, 8, 1))
    assert sizes("cifar10") == (50000, 10000, (32, 32, 3))
    assert sizes("cifar100") == (50000, 10000, (32, 32, 3))
    assert sizes("stl10") == (5000, 8000, (96, 96, 3))
    assert sizes("synthetic") == (512, 128, (16, 16, 1))
    assert sizes("synthetic", {"image_size": 12, "n_test": 7}) == (512, 7, (12, 12, 1))
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        layout("cifar")


def test_layout_classes_folds_and_unlabeled_images():
    assert len(layout("cifar10").class_names) == 10
    assert len(layout("cifar100").class_names) == 100  # label_mode fine by default
    assert len(layout("cifar100", {"label_mode": "coarse"}).class_names) == 20
    assert layout("synthetic", {"num_classes": 3}).class_names == ("glyph0", "glyph1", "glyph2")
    stl10 = layout("stl10")
    assert (stl10.n_unlabeled, stl10.n_folds, stl10.fold_size) == (100000, 10, 1000)
    for name in ("mnist", "cifar10", "cifar100", "digits", "synthetic"):
        found = layout(name)
        assert (found.n_unlabeled, found.n_folds, found.fold_size) == (0, 0, 0)


def test_digits_layout_matches_the_source():
    data = load_digits()
    found = layout("digits")
    assert (len(data.x_train), len(data.x_test), data.image_shape) == (
        found.n_train,
        found.n_test,
        found.image_shape,
    )
    assert tuple(data.class_names) == found.class_names


def test_synthetic_layout_matches_the_source():
    options = {"n_train": 20, "n_test": 6, "image_size": 10, "num_classes": 3, "seed": 1}
    data = make_synthetic(**options)
    found = layout("synthetic", options)
    assert (len(data.x_train), len(data.x_test), data.image_shape) == (
        found.n_train,
        found.n_test,
        found.image_shape,
    )
    assert tuple(data.class_names) == found.class_names


# --- datasets and splits, against the registry -----------------------------------------


def with_dataset(study: dict, name: str, options: dict | None = None, **split) -> dict:
    """`study` on dataset `name`, with whole-range pools and `split` changes."""
    study["dataset"] = {"name": name, "data_dir": None, "options": options or {}, "normalization": "none"}
    study["split"] = {
        "labeled": None,
        "unlabeled": None,
        "test": None,
        "labeled_fraction": None,
        "folds": False,
        **split,
    }
    # The fixture's budgets of 16 and 64 labels are too few for a linear probe's
    # cross-validation over 10 or 100 classes (test_linear_probe_needs_two_labels_per_class).
    protocols = study["downstream"]["protocols"]
    study["downstream"]["protocols"] = [p for p in protocols if p not in ("linear", "pixels_linear")]
    return study


def test_cifar_and_stl10_studies_pass_with_defaults_filled(study):
    checked = check_study(with_dataset(study, "cifar100"))
    assert checked["dataset"]["options"] == {"label_mode": "fine"}
    checked = check_study(with_dataset(study, "cifar10"))
    assert checked["dataset"]["options"] == {}
    study["seeds"] = [1, 10]
    study["budgets"] = [100, 1000, "all"]
    check_study(with_dataset(study, "stl10", folds=True, unlabeled="own"))


def test_check_dataset_fills_option_defaults_in_place():
    dataset = {"name": "cifar100", "options": {}}
    assert check_dataset(dataset).class_names == layout("cifar100").class_names
    assert dataset["options"] == {"label_mode": "fine"}
    dataset = {"name": "synthetic", "options": {"n_train": 40}}
    assert check_dataset(dataset).n_train == 40
    assert dataset["options"]["image_size"] == 16


def test_unknown_dataset_name(study):
    with pytest.raises(StudyError, match=r"^dataset\.name: unknown dataset 'cifar'; choose one of") as err:
        check_study(with_dataset(study, "cifar"))
    assert "cifar100" in str(err.value) and "stl10" in str(err.value)


def test_cifar100_label_mode_must_be_fine_or_coarse(study):
    with pytest.raises(
        StudyError, match=r"^dataset\.options\.label_mode: 'middle' is not one of fine, coarse"
    ):
        check_study(with_dataset(study, "cifar100", {"label_mode": "middle"}))
    assert check_study(with_dataset(study, "cifar100", {"label_mode": "coarse"}))["dataset"]["options"] == {
        "label_mode": "coarse"
    }


def test_option_the_source_does_not_take(study):
    with pytest.raises(StudyError, match=r"^dataset\.options: unknown option\(s\) label_mode; allowed: none"):
        check_study(with_dataset(study, "mnist", {"label_mode": "fine"}))
    with pytest.raises(StudyError, match=r"^dataset\.options: unknown option\(s\) size; allowed: image_size"):
        check_study(with_dataset(study, "synthetic", {"size": 8}))


def test_wrong_type_of_a_source_option(study):
    with pytest.raises(StudyError, match=r"^dataset\.options\.n_train: expected int like 512, got '40'"):
        check_study(with_dataset(study, "synthetic", {"n_train": "40"}))


def test_data_dir_with_a_source_that_reads_no_files(study):
    with_dataset(study, "synthetic")
    study["dataset"]["data_dir"] = "/data/synthetic"
    with pytest.raises(StudyError, match=r"^dataset\.data_dir: synthetic reads no files; remove data_dir"):
        check_study(study)
    with_dataset(study, "cifar10")
    study["dataset"]["data_dir"] = "/data/cifar10"
    check_study(study)  # a source with files takes a folder (it is read by the prepare job)


def test_folds_on_a_dataset_without_folds(study):
    with pytest.raises(StudyError, match=r"^split\.folds: this dataset has no predefined folds"):
        check_study(with_dataset(study, "cifar10", folds=True))


@pytest.mark.parametrize("seeds, bad", [([0, 1], [0]), ([10, 11, 12], [11, 12])])
def test_fold_seeds_must_name_folds(study, seeds, bad):
    study["seeds"] = seeds
    study["budgets"] = [100]
    with pytest.raises(
        StudyError, match=rf"^seeds: .*fold numbers 1\.\.10; {re.escape(str(bad))} name no fold"
    ):
        check_study(with_dataset(study, "stl10", folds=True))


def test_folds_replace_the_labeled_range(study):
    study["budgets"] = [100]
    with pytest.raises(StudyError, match=r"^split\.folds: the folds are the labeled pools"):
        check_study(with_dataset(study, "stl10", folds=True, labeled=[0, 1000]))


def test_own_unlabeled_images_need_a_dataset_that_has_them(study):
    with pytest.raises(StudyError, match=r"^split\.unlabeled: 'own' needs a dataset that ships unlabeled"):
        check_study(with_dataset(study, "cifar10", unlabeled="own"))
    study["budgets"] = [100, 5000]
    check_study(with_dataset(study, "stl10", unlabeled="own"))  # all 5,000 training images labeled


def test_labeled_fraction_with_a_labeled_range(study):
    fraction = {"fraction": 0.2, "seed": 125}
    with pytest.raises(StudyError, match=r"^split\.labeled: labeled_fraction chooses the labeled"):
        check_study(with_dataset(study, "cifar100", labeled=[0, 1000], labeled_fraction=fraction))
    with pytest.raises(StudyError, match=r"^split\.unlabeled: labeled_fraction chooses"):
        check_study(with_dataset(study, "cifar100", unlabeled=[0, 1000], labeled_fraction=fraction))


def test_labeled_fraction_that_labels_nothing(study):
    # 256 draws, none of them below 0.001 with this seed.
    with_dataset(study, "synthetic", {"n_train": 256}, labeled_fraction={"fraction": 0.001, "seed": 0})
    with pytest.raises(StudyError, match=r"^split\.labeled_fraction: .* labels 0 of 256 images"):
        check_study(study)


def test_budget_within_the_fraction_pool(study):
    # CIFAR-100 with the reference draw labels 10,080 of 50,000 images.
    with_dataset(study, "cifar100", labeled_fraction={"fraction": 0.2, "seed": 125})
    study["budgets"] = [1000, 10080]
    check_study(study)
    assert labeled_pool_size(study["split"], layout("cifar100"), study["seeds"]) == 10080
    study["budgets"] = [10081]
    with pytest.raises(StudyError, match=r"^budgets: 10081 labels exceed the labeled pool of 10080"):
        check_study(study)


def test_budgets_with_folds_reach_every_labeled_image(study):
    study["seeds"] = [1, 2, 3]
    study["budgets"] = [100, 5001]
    with pytest.raises(StudyError, match=r"^budgets: 5001 labels exceed the labeled pool of 5000"):
        check_study(with_dataset(study, "stl10", folds=True, unlabeled="own"))
    assert labeled_pool_size(study["split"], layout("stl10"), study["seeds"]) == 5000


def test_monitor_slice_is_taken_from_the_labeled_pool(study):
    split = {**study["split"], "monitor": 28}
    assert labeled_pool_size(split, layout("synthetic"), [1]) == 100
    with pytest.raises(StudyError, match=r"^split\.monitor: 128 held-out images leave none of the 128"):
        labeled_pool_size({**split, "monitor": 128}, layout("synthetic"), [1])
    folds = {"labeled": None, "unlabeled": "own", "test": None, "labeled_fraction": None, "folds": True}
    with pytest.raises(StudyError, match=r"^split\.monitor: 4001 held-out images must come from the 4000"):
        labeled_pool_size({**folds, "monitor": 4001}, layout("stl10"), [1])


def test_labeled_pool_sizes():
    cifar = layout("cifar10")
    base = {"labeled": None, "unlabeled": None, "test": None, "labeled_fraction": None, "folds": False}
    assert labeled_pool_size(base, cifar, [1]) == 50000
    assert labeled_pool_size({**base, "labeled": [100, 4100]}, cifar, [1]) == 4000
    with pytest.raises(StudyError, match=r"^split\.labeled: \[0, 50001\) must lie within \[0, 50000\)"):
        labeled_pool_size({**base, "labeled": [0, 50001]}, cifar, [1])


# --- methods against the dataset ------------------------------------------------------


@pytest.mark.parametrize("kind", ["per_pixel_mean", "per_channel"])
def test_reconstruction_method_rejects_normalized_inputs(study, kind):
    study["pretext"]["recon"] = {**study["pretext"].pop("rotation"), "method": "autoencoder", "options": {}}
    study["dataset"]["normalization"] = kind
    with pytest.raises(
        StudyError,
        match=rf"^pretext\.recon: autoencoder reconstructs pixels .*dataset\.normalization .*{kind!r}",
    ):
        check_study(study)
    study["dataset"]["normalization"] = "none"
    check_study(study)


def test_rotation_takes_normalized_inputs(study):
    study["dataset"]["normalization"] = "per_pixel_mean"
    assert check_study(study)["dataset"]["normalization"] == "per_pixel_mean"


# --- training settings -----------------------------------------------------------------

MISMATCHED = {"name": "step", "boundaries": [80, 120], "factors": [0.1]}


def test_lr_schedule_with_mismatched_factors_names_the_stage(study):
    study["pretext"]["rotation"]["lr_schedule"] = MISMATCHED
    with pytest.raises(StudyError, match=r"^pretext\.rotation\.lr_schedule\.factors must list one factor"):
        check_study(study)
    study["pretext"]["rotation"]["lr_schedule"] = None
    study["downstream"]["lr_schedule"] = MISMATCHED
    with pytest.raises(StudyError, match=r"^downstream\.lr_schedule\.factors must list one factor"):
        check_study(study)
    study["downstream"]["lr_schedule"] = None
    study["downstream"]["overrides"] = {"frozen": {"lr_schedule": MISMATCHED}}
    with pytest.raises(
        StudyError, match=r"^downstream\.overrides\.frozen\.lr_schedule\.factors must list one factor"
    ):
        check_study(study)


def test_sound_schedule_and_augmentation_pass(study):
    study["pretext"]["rotation"]["lr_schedule"] = {"name": "step", "boundaries": [1], "factors": [0.1]}
    study["downstream"]["augmentation"] = {"horizontal_flip": True, "shift": 0.1}
    checked = check_study(study)
    assert checked["downstream"]["augmentation"] == {"horizontal_flip": True, "shift": 0.1}


def test_check_training_rejects_a_shift_of_more_than_the_image():
    with pytest.raises(ValueError, match=r"^downstream\.augmentation\.shift must lie in \[0, 1\), got 1\.5"):
        check_training("downstream", {"augmentation": {"shift": 1.5}})
    with pytest.raises(ValueError, match=r"^pretext\.rotation\.augmentation: unknown key\(s\) \['jitter'\]"):
        check_training("pretext.rotation", {"augmentation": {"jitter": 0.1}})
    check_training("downstream", {"augmentation": {"horizontal_flip": True, "shift": 0.5}})
    check_training("downstream", {"augmentation": None})


def test_only_two_view_methods_take_a_second_view(study):
    rotation = copy.deepcopy(study)
    rotation["pretext"]["rotation"]["augmentation"] = {"second_view": {"horizontal_flip": True}}
    with pytest.raises(
        StudyError, match=r"^pretext\.rotation\.augmentation\.second_view: only two-view methods"
    ):
        check_study(rotation)
    downstream = copy.deepcopy(study)
    downstream["downstream"]["augmentation"] = {"shift": 0.1, "second_view": {"shift": 0.2}}
    with pytest.raises(StudyError, match=r"^downstream\.augmentation\.second_view: only two-view methods"):
        check_study(downstream)
    asymmetric = {"preset": "simclr_grayscale", "second_view": {"horizontal_flip": False}}
    check_study(two_view(copy.deepcopy(study), "byol", augmentation=asymmetric))


def test_schema_rejects_a_shift_of_more_than_the_image():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "tests" / "data" / "tiny_study.yaml").read_text())
    config["downstream"]["augmentation"] = {"shift": 1.5}
    with pytest.raises(WorkflowError, match="1.5"):
        validate(config, str(ROOT / "schemas" / "study.schema.yaml"))


# --- two-view methods: bad input stops the study before any job ---------------------------


def two_view(study, method="simclr", **changes):
    entry = copy.deepcopy(study["pretext"]["rotation"])
    entry.update({"options": {}, "augmentation": {"preset": "simclr_grayscale"}, **changes})
    study["pretext"] = {method: entry}
    return study


def test_fixed_lr_for_must_name_a_layer_of_the_method(study):
    optimizer = {"name": "sgd", "learning_rate": 0.03, "fixed_lr_for": ["predictor"]}
    simsiam = two_view(copy.deepcopy(study), "simsiam", optimizer=optimizer)
    simsiam["pretext"]["simsiam"]["options"] = {"projector": [16, 16], "predictor": [8, 16]}
    check_study(simsiam)
    simclr = two_view(copy.deepcopy(study), "simclr", optimizer=optimizer)
    with pytest.raises(
        StudyError, match=r"^pretext\.simclr\.optimizer\.fixed_lr_for: no trainable variable belongs to"
    ):
        check_study(simclr)


def test_a_sound_two_view_study_passes(study):
    study = two_view(study, keep_best={"monitor": "knn_accuracy"})
    study["split"]["monitor"] = 16
    checked = check_study(study)
    assert checked["pretext"]["simclr"]["options"]["temperature"] == 0.2


@pytest.mark.parametrize(
    ("method", "changes", "monitor", "message"),
    [
        (
            "simclr",
            {"options": {"temperature": 0.0}},
            0,
            r"pretext\.simclr\.options: temperature must be > 0",
        ),
        (
            "nnclr",
            {"options": {"queue_size": 32}},
            0,
            r"pretext\.nnclr\.options: queue_size \(32\) must be at least the batch size \(64\)",
        ),
        (
            "simclr",
            {"augmentation": {"equalize": 0.2}},
            0,
            r"pretext\.simclr\.augmentation: unknown key\(s\) \['equalize'\]; allowed: .*color_jitter",
        ),
        (
            "simclr",
            {"augmentation": {"preset": "big"}},
            0,
            r"augmentation\.preset: unknown preset 'big'; allowed",
        ),
        (
            "simclr",
            {"augmentation": {}},
            0,
            r"pretext\.simclr\.options: augmentation: a two-view method needs",
        ),
        (
            "simclr",
            {"augmentation": {"preset": "simclr_small"}},
            0,
            r"^pretext\.simclr\.augmentation\.color_jitter\.saturation: no colour jitter on 1-channel images",
        ),
        (
            "simclr",
            {"early_stopping": {"monitor": "accuracy", "patience": 2}},
            0,
            r"pretext\.simclr\.early_stopping\.monitor: 'accuracy' is not reported by this training; "
            r"allowed: loss, embedding_std$",
        ),
        (
            "byol",
            {"keep_best": {"monitor": "knn_accuracy"}},
            0,
            r"pretext\.byol\.keep_best\.monitor: 'knn_accuracy' is not reported.*allowed: loss, embedding_std$",
        ),
        (
            "vicreg",
            {
                "keep_best": {"monitor": "knn_accuracy"},
                "knn_monitor": {"every": 2, "k": 200, "temperature": 0.1},
            },
            16,
            r"pretext\.vicreg\.keep_best\.monitor: knn_accuracy is computed every 2 epochs",
        ),
        (
            "simsiam",
            {"optimizer": {"name": "adam", "learning_rate": 0.1, "trust_coefficient": 0.01}},
            0,
            r"pretext\.simsiam\.optimizer\.trust_coefficient",
        ),
    ],
    ids=[
        "temperature",
        "queue",
        "unknown_augmentation",
        "unknown_preset",
        "no_augmentation",
        "colour_on_grayscale",
        "monitor_not_reported",
        "knn_without_slice",
        "knn_not_every_epoch",
        "trust_without_lars",
    ],
)
def test_two_view_bad_input_names_the_key(study, method, changes, monitor, message):
    study = two_view(study, method, **changes)
    study["split"]["monitor"] = monitor
    with pytest.raises(StudyError, match=message):
        check_study(study)


# --- pools, outlier filtering, self-training, the joint model ------------------------


def test_pools_and_semi_supervised_sections_get_defaults(study):
    study["downstream"]["protocols"] += ["self_training", "joint"]
    study["pools"] = ["all", "inliers"]
    checked = check_study(study)
    assert checked["outliers"]["options"] == {
        "nu": 0.9,
        "tolerance": 0.025,
        "patience": 3,
        "l2": 0.01,
        "initial_radius": 1.0,
    }
    assert checked["joint"]["reconstruction_weight"] == 1.0


def _semi_supervised(study):
    study["downstream"]["protocols"] += ["self_training", "joint"]
    study["joint"] = {"code_layer": "pool2"}
    return study


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.update(pools=["all", "typical"]),
            r"pools: no stage produces a pool named 'typical'; allowed: all .*inliers",
        ),
        (lambda s: s["outliers"].update(options={"nu": 0.0}), r"outliers\.options\.nu: must lie in \(0, 1\)"),
        (lambda s: s["outliers"].update(options={"nu": 1.0}), r"outliers\.options\.nu: must lie in \(0, 1\)"),
        (lambda s: s["outliers"].update(options={"nu": 1.5}), r"outliers\.options\.nu: must lie in \(0, 1\)"),
        (
            lambda s: s["outliers"].update(options={"radius": 1}),
            r"outliers\.options: unknown option\(s\) radius; allowed: initial_radius, l2, nu",
        ),
        (
            lambda s: s["outliers"].update(method="isolation"),
            r"outliers\.method: unknown outlier method 'isolation'; choose one of one_class_network",
        ),
        (
            lambda s: s["self_training"].update(rounds=0),
            r"self_training\.rounds: 0 rounds; allowed: an integer of at least 1",
        ),
        (
            lambda s: s["self_training"].update(threshold=0.0),
            r"self_training\.threshold: 0\.0; allowed: a top probability in \(0, 1\]",
        ),
        (
            lambda s: s["self_training"].update(threshold=1.2),
            r"self_training\.threshold: 1\.2; allowed: a top probability in \(0, 1\]",
        ),
        (lambda s: s["joint"].update(reconstruction_weight=0.0), r"joint: reconstruction_weight"),
        (lambda s: s["joint"].update(code_layer="conv9"), r"joint: .*conv9"),
        (lambda s: s["joint"].update(lr=1), r"joint: unknown option\(s\) lr"),
    ],
)
def test_bad_semi_supervised_settings_name_the_key_and_the_allowed_values(study, edit, message):
    edit(_semi_supervised(study))
    with pytest.raises(StudyError, match=message):
        check_study(study)


def test_a_threshold_of_one_is_allowed(study):
    _semi_supervised(study)["self_training"]["threshold"] = 1.0
    check_study(study)


def test_inliers_pool_without_any_reader(study):
    study["pretext"] = {}
    study["downstream"]["protocols"] = ["supervised"]
    study["pools"] = ["all", "inliers"]
    with pytest.raises(StudyError, match=r"pools: .* but nothing reads a pool"):
        check_study(study)


def test_self_training_from_pretext_needs_a_pretext_method(study):
    study["pretext"] = {}
    study["downstream"]["protocols"] = ["supervised", "self_training"]
    study["self_training"]["from_pretext"] = True
    with pytest.raises(StudyError, match=r"self_training\.from_pretext: there is no pretext method"):
        check_study(study)


# --- the schema, strictly and concisely ----------------------------------------------

SCHEMA = load_schema(ROOT / "schemas" / "study.schema.yaml")


def tiny_file() -> dict:
    return yaml.safe_load((ROOT / "tests" / "data" / "tiny_study.yaml").read_text())


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["seeds"], [1.0, 2], r"^seeds\[0\]: 1\.0 \(float\) given; allowed: an integer >= 0 and <= 4294967295$"),
        (["seeds"], [True], r"^seeds\[0\]: True \(bool\) given"),
        (["seeds"], [2**40], r"^seeds\[0\]: 1099511627776 given; allowed: an integer >= 0 and <= 4294967295$"),
        (["downstream", "epochs"], 2.0, r"^downstream\.epochs: 2\.0 \(float\) given; allowed: an integer >= 1$"),
        (["pretext", "rotation", "batch_size"], 16.0, r"^pretext\.rotation\.batch_size: 16\.0 \(float\)"),
        (["budgets"], [16.0], r"^budgets\[0\]: 16\.0 given; allowed: an integer >= 1 or 'all'$"),
        (["split", "labeled"], [0, 1.5], r"^split\.labeled\[1\]: 1\.5 \(float\)"),
        (["downstream", "optimizer"], {"name": "adam", "lr": 1}, r"^downstream\.optimizer: unknown key\(s\) lr; allowed: bias_lr_factor, clip_lr, fixed_lr_for, learning_rate, momentum, name"),
        (["downstream", "knn"], {"k": 5, "neighbours": 3}, r"^downstream\.knn: unknown key\(s\) neighbours; allowed: k, temperature$"),
        (["downstream", "linear"], {"C": 1.0}, r"^downstream\.linear: unknown key\(s\) C; allowed: c_values, folds, max_iter$"),
        (["downstream", "knn", "temperature"], 0, r"^downstream\.knn\.temperature: 0"),
    ],
)  # fmt: skip
def test_schema_rejects_floats_and_booleans_as_integers_in_one_line(path, value, message):
    config = tiny_file()
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(StudyError, match=message) as err:
        check_schema(config, SCHEMA)
    assert "\n" not in str(err.value)


def test_unknown_top_level_key_lists_the_allowed_keys_not_the_schema():
    config = {**tiny_file(), "seed": 1}
    with pytest.raises(StudyError) as err:
        check_schema(config, SCHEMA)
    message = str(err.value)
    assert message.startswith("the study: unknown key(s) seed; allowed: budgets, dataset, description")
    assert len(message) < 400


def test_unknown_key_of_a_stage_with_shared_training_keys():
    config = tiny_file()
    config["pretext"]["rotation"]["epoch"] = 3
    with pytest.raises(
        StudyError, match=r"^pretext\.rotation: unknown key\(s\) epoch; allowed: .*epochs.*knn_monitor"
    ):
        check_schema(config, SCHEMA)


def test_schema_accepts_the_tiny_study_and_the_presets():
    check_schema(tiny_file(), SCHEMA)
    for path in [ROOT / "config.yaml", *sorted((ROOT / "studies").glob("*.yaml"))]:
        check_schema(yaml.safe_load(path.read_text()), SCHEMA)


def test_command_line_strings_become_the_schema_numbers():
    def coerce(key, value):
        return coerce_command_line(value, SCHEMA["properties"][key], SCHEMA)

    assert coerce("seeds", ["1", "2"]) == [1, 2]
    assert coerce("budgets", ["100", "all"]) == [100, "all"]
    assert coerce("split", {"labeled": ["0", "100"], "monitor": "5"}) == {"labeled": [0, 100], "monitor": 5}
    assert coerce("dataset", {"name": "mnist", "data_dir": "/data/mnist"}) == {
        "name": "mnist",
        "data_dir": "/data/mnist",
    }
    assert coerce("study", "123") == "123"  # a string where the schema wants one
    assert coerce("seeds", ["x"]) == ["x"]  # left for the schema to reject, naming it
    assert coerce("downstream", {"epochs": "2", "validation_split": "0.1"}) == {
        "epochs": 2,
        "validation_split": 0.1,
    }


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("study: x\ndataset: {name: synthetic\nseeds: [1]\n")
    with pytest.raises(
        StudyError, match=r"bad\.yaml, line 3, column 6: YAML syntax error: .*expected ',' or '}'"
    ):
        read_yaml(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(StudyError, match=r"a study is a mapping"):
        read_yaml(path)


# --- mistakes that used to pass or crash inside a job --------------------------------


def test_encoder_too_big_for_the_images_is_one_line_naming_both(study):
    study["dataset"]["options"]["image_size"] = 6
    study["encoder"] = {"name": "rotnet_mnist", "options": {}}
    with pytest.raises(StudyError) as err:
        check_study(study)
    message = str(err.value)
    assert message.startswith("encoder: rotnet_mnist cannot take synthetic images of 6x6x1: MaxPooling2D")
    assert "\n" not in message and "\x1b" not in message


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_classes": 1}, r"^dataset: synthetic with these options has 1 class\(es\)"),
        (
            {"image_size": 5},
            r"^dataset\.options\.image_size: 5 is too small; allowed: an integer of at least 6",
        ),
        ({"n_train": 0}, r"^dataset\.options\.n_train: 0 is too small"),
    ],
)
def test_synthetic_options_the_generator_cannot_make(study, options, message):
    study["dataset"]["options"].update(options)
    with pytest.raises(StudyError, match=message):
        check_study(study)


def test_a_one_class_budget_or_pool(study):
    study["budgets"] = [1, 16]
    with pytest.raises(StudyError, match=r"^budgets: 1 label is one class"):
        check_study(study)
    study["budgets"] = ["all"]
    study["split"]["labeled"] = [0, 1]
    with pytest.raises(StudyError, match=r"^split: a labeled pool of 1 image"):
        check_study(study)


def test_list_options_of_integers_reject_floats(study):
    study["encoder"]["options"]["filters"] = [4.0, 8]
    with pytest.raises(StudyError, match=r"^encoder\.options\.filters: expected a list of integers"):
        check_study(study)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_any_momentum_with_adam_is_an_error(study, momentum):
    study["downstream"]["optimizer"] = {"name": "adam", "learning_rate": 0.01, "momentum": momentum}
    with pytest.raises(StudyError, match=r"^downstream\.optimizer\.momentum: adam takes no momentum"):
        check_study(study)


def test_cheap_mistakes_are_found_before_keras_is_imported(study):
    """The dry-run table relies on it: most bad studies fail in about a second."""
    import subprocess
    import sys

    study["budgets"] = [200]
    code = (
        "import json, sys\n"
        "from selfsup.study import StudyError, check_study\n"
        f"study = json.loads({json.dumps(json.dumps(study))})\n"
        "try:\n    check_study(study)\nexcept StudyError as err:\n    print(err)\n"
        "print('keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "budgets: 200 labels exceed the labeled pool of 128 (split); use budgets <= 128 or 'all'",
        "False",
    ]


def test_checked_study_is_cached_by_content(study, tmp_path):
    checked = checked_study(study, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("study-*.json")
    again = checked_study(study, cache_dir=tmp_path)
    assert again == checked == json.loads(json.dumps(check_study(study)))
    assert list(again["pretext"]) == list(study["pretext"])  # key order kept
    # Another study is another entry; a damaged entry is checked again and rewritten.
    checked_study({**study, "seeds": [3]}, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("study-*.json"))) == 2
    entry.write_text("{")
    assert checked_study(study, cache_dir=tmp_path) == checked
    assert json.loads(entry.read_text())["study"] == checked


def test_defaults_are_filled_as_snakemake_validate_fills_them():
    """fill_defaults replaces snakemake.utils.validate (which re-reads the schema slowly):
    the filled study must be the same, or every job's params would change."""
    from snakemake.utils import validate

    from selfsup.config import fill_defaults

    for path in [
        ROOT / "tests" / "data" / "tiny_study.yaml",
        ROOT / "config.yaml",
        *sorted((ROOT / "studies").glob("*.yaml")),
    ]:
        ours, theirs = yaml.safe_load(path.read_text()), yaml.safe_load(path.read_text())
        fill_defaults(ours, SCHEMA)
        validate(theirs, str(ROOT / "schemas" / "study.schema.yaml"))
        assert json.dumps(ours) == json.dumps(theirs), path.name  # key order included
    filled = fill_defaults({"study": "x", "dataset": {"name": "mnist"}, "encoder": {"name": "mlp"}}, SCHEMA)
    filled["split"]["monitor"] = 5
    assert (
        fill_defaults({"study": "y", "dataset": {"name": "mnist"}, "encoder": {"name": "mlp"}}, SCHEMA)[
            "split"
        ]["monitor"]
        == 0
    )


def test_command_line_check_of_study_files(tmp_path, capsys):
    from selfsup.study import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**tiny_file(), "seeds": [1.0]}))
    assert main([str(ROOT / "tests" / "data" / "tiny_study.yaml"), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{ROOT / 'tests' / 'data' / 'tiny_study.yaml'}: ok\n"
    assert err.startswith(f"{bad}: ") and "seeds[0]: 1.0 (float)" in err
