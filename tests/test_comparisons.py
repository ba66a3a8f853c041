"""selfsup.report.comparisons: paired intervals and verdicts, and the tables' answers."""

from __future__ import annotations

import math

import pytest
from test_report import run, write_runs

from selfsup.report import comparisons, tables

# Student's sleep data (Cushny and Peebles; Student 1908): extra hours of sleep of 10
# patients under two drugs. The textbook paired t test gives a mean difference of 1.58
# hours, 95% CI [0.7001, 2.4599] (R: t.test(extra ~ group, data = sleep, paired = TRUE)).
SLEEP_DIFFERENCES = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4]


def test_paired_t_interval_of_the_textbook_example():
    mean, low, high = comparisons.paired_t_interval(SLEEP_DIFFERENCES)
    assert mean == pytest.approx(1.58)
    assert low == pytest.approx(0.7001142, abs=1e-6)
    assert high == pytest.approx(2.4598858, abs=1e-6)


def test_one_seed_has_no_interval_and_no_verdict():
    mean, low, high = comparisons.paired_t_interval([0.03])
    assert mean == 0.03 and math.isnan(low) and math.isnan(high)
    assert comparisons.verdict(low, high) == comparisons.NO_VERDICT


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.01, 0.05, "better"), (-0.05, -0.01, "worse"), (-0.01, 0.05, "not distinguishable")],
)
def test_verdict(low, high, expected):
    assert comparisons.verdict(low, high) == expected


def _runs(tmp_path, rows):
    return tables.collect(write_runs(tmp_path, rows))


def test_differences_are_paired_by_seed(tmp_path):
    # Seeds differ a lot (the labeled draw), the method is 2 points above supervised in
    # every one: paired, that is a clear gain; unpaired, the spread would swamp it.
    rows = []
    for seed, base in ((1, 0.60), (2, 0.70), (3, 0.80)):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("rotation", "finetune", 100, seed, base + 0.02),
        ]
    rows += [run("rotation", "linear", 100, seed, 0.9 - 0.1 * seed) for seed in (1, 2, 3)]
    paired = comparisons.against(_runs(tmp_path, rows[::-1]), tables.SUPERVISED)
    finetune = paired[paired.protocol == "finetune"].iloc[0]
    assert finetune.seeds == 3
    assert finetune.difference == pytest.approx(0.02)
    assert finetune.ci_low == pytest.approx(0.02) and finetune.ci_high == pytest.approx(0.02)
    assert finetune.verdict == "better"
    # linear: 0.8, 0.7, 0.6 against 0.6, 0.7, 0.8: differences +0.2, 0, -0.2.
    linear = paired[paired.protocol == "linear"].iloc[0]
    assert linear.difference == pytest.approx(0.0, abs=1e-12)
    assert linear.verdict == "not distinguishable"


def test_only_seeds_both_ran_are_paired(tmp_path):
    rows = [run("none", "supervised", 100, s, 0.5) for s in (1, 2)]
    rows += [run("rotation", "finetune", 100, s, 0.6) for s in (2, 3)]
    paired = comparisons.against(_runs(tmp_path, rows), tables.SUPERVISED)
    assert paired.iloc[0].seeds == 1 and paired.iloc[0].verdict == comparisons.NO_VERDICT


def test_tables_open_the_comparison_with_one_answer_per_budget(tmp_path):
    rows = []
    for seed, base in ((1, 0.60), (2, 0.70), (3, 0.80)):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("rotation", "finetune", 100, seed, base + 0.062),
            run("none", "supervised", 1000, seed, 0.8 + 0.01 * seed),
            run("rotation", "finetune", 1000, seed, 0.8 + 0.01 * (4 - seed)),
        ]
    runs = _runs(tmp_path, rows)
    markdown = tables.to_markdown(tables.summarize(runs), runs)
    assert markdown.startswith("With 100 labels, ")
    assert (
        "With 100 labels, rotation + finetune beats supervised by 6.2 points (95% CI [6.2, 6.2], 3 seeds)."
        in (markdown)
    )
    assert "With 1,000 labels, no classifier is distinguishable from supervised or better" in markdown
    assert "+6.20 [+6.20, +6.20] better" in markdown
    # Without supervised runs, no comparison.
    alone = _runs(tmp_path / "alone", [run("rotation", "linear", 100, 1, 0.5)])
    assert "paired" not in tables.to_markdown(tables.summarize(alone), alone)


def test_tables_also_answer_against_the_logistic_regression_on_pixels(tmp_path):
    rows = []
    for seed, base in ((1, 0.60), (2, 0.70), (3, 0.80)):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("none", "pixels_linear", 100, seed, base + 0.10),
            run("rotation", "finetune", 100, seed, base + 0.05),
        ]
    runs = _runs(tmp_path, rows)
    markdown = tables.to_markdown(tables.summarize(runs), runs)
    first, second = markdown.split("\n\n")[:2]
    # The pixels beat everything, supervised training among them: that is the answer.
    assert (
        first
        == "With 100 labels, pixels_linear beats supervised by 10.0 points (95% CI [10.0, 10.0], 3 seeds; "
        "unadjusted, one of 2 comparisons)."
    )
    assert second == (
        "With 100 labels, no classifier is distinguishable from pixels_linear or better; the best of the "
        "others is rotation + finetune, -5.0 points (95% CI [-5.0, -5.0], 3 seeds; unadjusted, one of 2 "
        "comparisons)."
    )
    assert (
        "Test accuracy minus supervised's" in markdown and "Test accuracy minus pixels_linear's" in markdown
    )
    assert "-10.00 [-10.00, -10.00] worse" in markdown  # supervised against the pixels


def test_the_reports_first_page_is_the_answers_in_valid_restructured_text(tmp_path):
    import jinja2
    from docutils.core import publish_parts

    rows = []
    for seed, base in ((1, 0.60), (2, 0.70), (3, 0.80)):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("none", "pixels_linear", 100, seed, base + 0.10),
            run("rotation", "finetune", 100, seed, base + 0.05),
        ]
    runs = _runs(tmp_path, rows)
    text = tables.answers_rst(runs, "demo", "Does rotation help {{ at all }}?")
    # As Snakemake makes the report's first page: Jinja first, then docutils.
    text = jinja2.Environment().from_string(text).render()
    html = publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["html_body"]
    assert "Study demo" in html and "Does rotation help {{ at all }}?" in html
    assert "Against supervised" in html and "Against pixels_linear" in html
    assert "With 100 labels, pixels_linear beats supervised by 10.0 points" in html
    alone = _runs(tmp_path / "alone", [run("rotation", "linear", 100, 1, 0.5)])
    assert "no comparison to answer" in tables.answers_rst(alone, "demo", "")


def test_accuracy_figure_adds_a_panel_of_paired_differences(tmp_path):
    import matplotlib.image

    from selfsup.report import figures

    rows = []
    for seed, base in ((1, 0.60), (2, 0.70), (3, 0.80)):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("rotation", "finetune", 100, seed, base + 0.05),
        ]
    runs = _runs(tmp_path, rows)
    summary = tables.summarize(runs)
    alone, both = tmp_path / "alone.png", tmp_path / "both.png"
    figures.accuracy_vs_labels(summary, "study", alone)
    figures.accuracy_vs_labels(summary, "study", both, paired=comparisons.against(runs, tables.SUPERVISED))
    assert matplotlib.image.imread(both).shape[1] > 1.7 * matplotlib.image.imread(alone).shape[1]


def _answer(tmp_path, rows) -> str:
    runs = _runs(tmp_path, rows)
    sentences = tables.answers(comparisons.against(runs, tables.SUPERVISED))
    assert len(sentences) == 1
    return sentences[0]


def test_the_answer_names_the_better_classifier_when_a_higher_mean_is_not_distinguishable(tmp_path):
    """A classifier above supervised in every seed is the answer, though another's mean is
    higher: that one's interval spans 0 (the first answer said none was better)."""
    rows = []
    for seed, base, steady, wild in (
        (1, 0.60, 0.020, 0.20),
        (2, 0.70, 0.022, -0.10),
        (3, 0.80, 0.024, 0.101),
    ):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("byol", "frozen", 100, seed, base + steady),
            run("simclr", "finetune", 100, seed, base + wild),
        ]
    answer = _answer(tmp_path, rows)
    assert answer.startswith(
        "With 100 labels, byol + frozen beats supervised by 2.2 points (95% CI [1.7, 2.7], 3 seeds; "
        "unadjusted, one of 2 comparisons). simclr + finetune is further above on average, +6.7 points, "
        "but its interval ["
    ), answer
    assert answer.endswith("] includes 0."), answer


def test_two_seeds_say_how_many_would_tell(tmp_path):
    rows = []
    for seed, base, gain in ((1, 0.60, 0.05), (2, 0.70, 0.03)):
        rows += [
            run("none", "supervised", 100, seed, base),
            run("rotation", "finetune", 100, seed, base + gain),
        ]
    answer = _answer(tmp_path, rows)
    assert "no classifier is distinguishable" in answer
    assert "Two seeds give an interval with one degree of freedom" in answer
    assert "about 3 seeds would separate a difference this size from 0 at this spread." in answer
    # The same mean and spread over 3 seeds does separate it; over 2 it does not.
    spread = math.sqrt(0.01**2 + 0.01**2)  # the two gains' sample standard deviation
    assert comparisons.seeds_needed(0.04, spread) == 3
    assert comparisons.paired_t_interval([0.04 - spread, 0.04, 0.04 + spread])[1] > 0
    assert comparisons.paired_t_interval([0.05, 0.03])[1] < 0
    assert comparisons.seeds_needed(0.0, spread) is None


def test_budget_all_says_the_interval_is_training_noise_only(tmp_path):
    rows = []
    for seed, base, gain in ((1, 0.60, 0.020), (2, 0.61, 0.021), (3, 0.60, 0.022)):
        for method, protocol, accuracy in (
            ("none", "supervised", base),
            ("rotation", "finetune", base + gain),
        ):
            rows.append({**run(method, protocol, 128, seed, accuracy), "budget": "all"})
    answer = _answer(tmp_path, rows)
    assert "beats supervised by 2.1 points" in answer
    assert "unadjusted" not in answer  # one comparison
    assert "the same labeled images at this budget, so the interval measures training noise only" in answer
    numbered = _answer(tmp_path / "numbered", [{**row, "budget": 128} for row in rows])
    assert "training noise" not in numbered
