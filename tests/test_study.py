"""selfsup.study: what the schema cannot check, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from selfsup.study import StudyError, check_options, check_study, dataset_shape, downstream_settings

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
    assert "split.labeled" in str(err.value)


def test_budget_all_and_whole_pool(study):
    study["budgets"] = [128, "all"]
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
        StudyError, match=r"downstream\.protocols: \['linear', 'freeze_1', 'finetune'\] need a pretext"
    ):
        check_study(study)
    study["downstream"]["protocols"] = ["supervised", "random"]
    check_study(study)


def test_bad_feature_layer(study):
    study["downstream"]["feature_layer"] = "conv9"
    with pytest.raises(
        StudyError, match=r"downstream: feature_layer 'conv9' is not a layer of encoder"
    ) as err:
        check_study(study)
    assert "'pool2'" in str(err.value)


def test_freeze_k_too_large(study):
    study["downstream"]["protocols"] = ["linear", "freeze_5"]
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
    supervised = downstream_settings(checked, "supervised")
    assert supervised["batch_size"] == 32
    assert supervised["optimizer"] == {"name": "sgd", "learning_rate": 0.1}
    assert supervised["epochs"] == 2
    linear = downstream_settings(checked, "linear")
    assert linear["batch_size"] == 16
    assert linear["optimizer"] == {"name": "adam", "learning_rate": 0.003, "momentum": 0.0}
    assert "protocols" not in linear and "overrides" not in linear
    assert linear["head"] == {"hidden": [], "dropout": 0.0}


def test_dataset_shapes():
    assert dataset_shape({"name": "mnist"}) == (60000, 10000, (28, 28, 1))
    assert dataset_shape({"name": "fashion_mnist"}) == (60000, 10000, (28, 28, 1))
    assert dataset_shape({"name": "digits"}) == (1500, 297, (8, 8, 1))
    assert dataset_shape({"name": "synthetic"}) == (512, 128, (16, 16, 1))
    assert dataset_shape({"name": "synthetic", "options": {"image_size": 12, "n_test": 7}}) == (
        512,
        7,
        (12, 12, 1),
    )
    with pytest.raises(StudyError, match="dataset.name: unknown dataset 'cifar'"):
        dataset_shape({"name": "cifar"})


def test_digits_shape_matches_the_source():
    from selfsup.data.sources import load_digits

    data = load_digits()
    n_train, n_test, shape = dataset_shape({"name": "digits"})
    assert (len(data.x_train), len(data.x_test), data.image_shape) == (n_train, n_test, shape)
