"""selfsup.report: accuracy tables (mean and std over seeds) and figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from selfsup.report import figures, tables


def write_runs(folder, runs):
    paths = []
    for i, run in enumerate(runs):
        path = folder / f"run{i}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
        paths.append(path)
    return paths


def run(method, protocol, n_labels, seed, test, train=1.0, pool=None):
    return {
        "pool": pool or ("none" if method == "none" else "all"),
        "method": method,
        "protocol": protocol,
        "budget": n_labels,
        "n_labels": n_labels,
        "seed": seed,
        "test_accuracy": test,
        "train_accuracy": train,
    }


RUNS = [
    run("rotation", "linear", 100, 2, 0.7, 0.9),
    run("none", "supervised", 100, 1, 0.4),
    run("rotation", "linear", 100, 1, 0.5, 0.8),
    run("none", "supervised", 1000, 1, 0.8),
    run("rotation", "linear", 1000, 1, 0.85),
]


@pytest.fixture
def runs(tmp_path):
    return tables.collect(write_runs(tmp_path, RUNS))


def test_collect_sorts_runs_and_keeps_paths(runs, tmp_path):
    assert len(runs) == 5
    assert list(runs.method) == ["none", "none", "rotation", "rotation", "rotation"]
    assert list(runs.n_labels) == [100, 1000, 100, 100, 1000]
    assert list(runs.seed[2:4]) == [1, 2]
    assert runs.metrics_path[0] == str(tmp_path / "run1" / "metrics.json")


def test_collect_nothing():
    with pytest.raises(ValueError, match="no downstream runs to tabulate"):
        tables.collect([])


def test_summarize_mean_and_sample_std(runs):
    summary = tables.summarize(runs)
    assert len(summary) == 4
    linear_100 = summary[(summary.protocol == "linear") & (summary.n_labels == 100)].iloc[0]
    assert linear_100.test_mean == pytest.approx(0.6)
    assert linear_100.test_std == pytest.approx(np.sqrt(0.02), abs=1e-12)  # 0.1414: sample std of 0.5, 0.7
    assert linear_100.train_mean == pytest.approx(0.85)
    assert linear_100.train_std == pytest.approx(0.0707107, abs=1e-6)
    assert linear_100.seeds == 2
    # A single seed has no spread: 0, not NaN.
    single = summary[(summary.protocol == "supervised") & (summary.n_labels == 1000)].iloc[0]
    assert single.test_mean == pytest.approx(0.8)
    assert single.test_std == 0.0 and single.seeds == 1
    assert list(summary.n_labels) == [100, 100, 1000, 1000]


def test_label():
    assert tables.label("none", "supervised") == "supervised"
    assert tables.label("rotation", "freeze_3") == "rotation + freeze_3"


def test_to_markdown(runs):
    markdown = tables.to_markdown(tables.summarize(runs))
    lines = markdown.splitlines()
    assert lines[0] == "Test accuracy (%), mean ± std over 1/2 seed(s)."
    header = lines[2]
    assert "classifier" in header and "100 labels" in header and "1000 labels" in header
    assert header.index("100 labels") < header.index("1000 labels")
    test_block, train_block = markdown.split("\nTrain accuracy (%)")
    rows = {line.split("|")[1].strip(): line for line in test_block.splitlines()[4:] if line}
    assert set(rows) == {"rotation + linear", "supervised"}
    assert "60.00 ± 14.14" in rows["rotation + linear"]
    assert "85.00 ± 0.00" in rows["rotation + linear"]
    assert "40.00 ± 0.00" in rows["supervised"]
    assert "80.00 ± 0.00" in rows["supervised"]
    train_rows = {line.split("|")[1].strip(): line for line in train_block.splitlines()[4:] if line}
    assert "85.00 ± 7.07" in train_rows["rotation + linear"]  # train 0.9 and 0.8 at 100 labels
    assert "100.00 ± 0.00" in train_rows["supervised"]


def test_runs_on_another_pool_are_rows_of_their_own(tmp_path):
    runs = tables.collect(
        write_runs(
            tmp_path,
            [
                run("none", "self_training", 100, 1, 0.5, pool="all"),
                run("none", "self_training", 100, 1, 0.6, pool="inliers"),
                run("none", "supervised", 100, 1, 0.4),
            ],
        )
    )
    markdown = tables.to_markdown(tables.summarize(runs))
    rows = {
        line.split("|")[1].strip(): line for line in markdown.split("\nTrain")[0].splitlines()[4:] if line
    }
    assert set(rows) == {"self_training", "self_training (inliers)", "supervised"}
    assert "60.00" in rows["self_training (inliers)"] and "50.00" in rows["self_training"]


def test_self_training_reports_its_student_and_the_references_last_teacher(tmp_path):
    student = run("none", "self_training", 100, 1, 0.5, 0.9)
    student["last_teacher"] = {"test_accuracy": 0.45, "train_accuracy": 0.8}
    runs = tables.collect(write_runs(tmp_path, [student, run("none", "supervised", 100, 1, 0.4)]))
    assert sorted(runs.protocol) == ["self_training", tables.LAST_TEACHER, "supervised"]
    teacher = runs[runs.protocol == tables.LAST_TEACHER].iloc[0]
    assert (teacher.test_accuracy, teacher.train_accuracy, teacher.seed) == (0.45, 0.8, 1)
    markdown = tables.to_markdown(tables.summarize(runs))
    rows = {
        line.split("|")[1].strip(): line for line in markdown.split("\nTrain")[0].splitlines()[4:] if line
    }
    assert "45.00" in rows[tables.LAST_TEACHER] and "50.00" in rows["self_training"]
    assert "the model the reference reports" in markdown


def assert_image(path, magic):
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(magic)


PNG = b"\x89PNG\r\n\x1a\n"


def test_accuracy_vs_labels_figure(runs, tmp_path):
    summary = tables.summarize(runs)
    png, svg = tmp_path / "accuracy.png", tmp_path / "accuracy.svg"
    figures.accuracy_vs_labels(summary, "tiny", png, svg)
    assert_image(png, PNG)
    assert_image(svg, b"<?xml")
    text = svg.read_text()
    # Matplotlib writes text as glyph paths, but keeps the strings in ids/comments.
    assert "supervised" in text and "rotation + linear" in text


def test_class_probabilities_figure(tmp_path):
    runs = pd.DataFrame(
        {
            "method": ["none", "rotation"],
            "protocol": ["supervised", "linear"],
            "pool": ["none", "all"],
            "n_labels": [100, 100],
            "probabilities": [np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.1, 0.8])],
        }
    )
    image = np.random.default_rng(0).random((8, 8, 1))
    path = tmp_path / "probabilities.png"
    figures.class_probabilities(image, "two", runs, ["zero", "one", "two"], path)
    assert_image(path, PNG)


def test_pretext_examples_figure(tmp_path):
    from selfsup.pretext import get_method

    rotation = get_method("rotation")

    images = np.random.default_rng(0).random((3, 8, 8, 1))
    path = tmp_path / "examples.png"
    figures.pretext_examples(rotation.examples(None, images, {}, seed=0), "rotation", path)
    assert_image(path, PNG)
    import matplotlib.pyplot as plt

    # Figures are closed after saving: jobs drawing many do not pile them up.
    assert plt.get_fignums() == []
