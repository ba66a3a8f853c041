"""selfsup.report.comparisons: paired intervals and verdicts, and the tables' answers."""

from __future__ import annotations

import math

import numpy as np
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
    assert "Two replicates give an interval with one degree of freedom" in answer
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


def test_wilson_interval_is_scipys():
    from scipy import stats

    for right, n in ((81, 100), (0, 20), (9990, 10000)):
        expected = stats.binomtest(right, n).proportion_ci(0.95, method="wilson")
        low, high = comparisons.wilson_interval(right, n)
        assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(
            expected.high, abs=1e-12
        )


def test_correct_images_round_trip_through_the_metrics_text():
    correct = np.random.default_rng(0).random(10_001) < 0.8
    text = comparisons.encode_correct(correct)
    assert len(text) == 2 * math.ceil(10_001 / 8)
    np.testing.assert_array_equal(comparisons.decode_correct(text, 10_001), correct)


def one_seed_pair(base_right: int, only_base: int, only_other: int, n: int = 1000):
    """Which of n test images a baseline and another classifier got right: both right on
    base_right - only_base, only the baseline on only_base, only the other on only_other."""
    base = np.zeros(n, bool)
    other = np.zeros(n, bool)
    both = base_right - only_base
    base[:base_right] = True
    other[:both] = True
    other[base_right : base_right + only_other] = True
    return base, other


def test_paired_test_interval_is_agresti_and_mins():
    base, other = one_seed_pair(900, only_base=10, only_other=70)
    difference, low, high = comparisons.paired_test_interval(base, other)
    assert difference == pytest.approx(0.06)
    # Agresti and Min (2005): the four cells + 0.5, n + 2; discordant 10.5 and 70.5.
    centre = 60 / 1002
    half = 1.959963985 * math.sqrt(81 - 60**2 / 1002) / 1002
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert 0.04 < low < high < 0.08
    # The same accuracies with the gain spread over many discordant images: wider.
    base, other = one_seed_pair(900, only_base=60, only_other=120)
    assert comparisons.paired_test_interval(base, other)[1] < low
    with pytest.raises(ValueError, match="paired test images differ"):
        comparisons.paired_test_interval(base, other[:10])


def _one_seed_runs(only_base: int, only_other: int):
    base, other = one_seed_pair(800, only_base, only_other)
    rows = []
    for method, protocol, correct in (("none", "supervised", base), ("rotation", "finetune", other)):
        rows.append(
            {
                **run(method, protocol, 100, 1, float(correct.mean())),
                "n_test": len(correct),
                "test_correct": comparisons.encode_correct(correct),
            }
        )
    return rows


def test_a_one_seed_study_gets_an_answer_from_its_test_images(tmp_path):
    """Study F has one seed: the answer used to be "1 seed: no interval"."""
    answer = _answer(tmp_path, _one_seed_runs(only_base=20, only_other=80))
    assert answer.startswith(
        "With 100 labels, rotation + finetune beats supervised by 6.0 points "
        "(95% CI over the test images [4.1, 7.9], 1 seed)."
    ), answer
    assert "leaves out the draw of the labels and training noise" in answer
    tied = _answer(tmp_path / "tied", _one_seed_runs(only_base=40, only_other=45))
    assert "no classifier is distinguishable from supervised or better" in tied
    # The table shows each one-seed run's accuracy with its Wilson interval.
    runs = _runs(tmp_path / "table", _one_seed_runs(only_base=20, only_other=80))
    markdown = tables.to_markdown(tables.summarize(runs), runs)
    low, high = comparisons.wilson_interval(860, 1000)
    assert f"86.00 [{100 * low:.1f}, {100 * high:.1f}]" in markdown
    assert "Agresti and Min's interval over the test images" in markdown


def test_draws_of_labels_pair_by_seed_and_draw(tmp_path):
    """One seed, three draws: three replicates, an interval, and the answer says so."""
    rows = []
    for draw, base, gain in ((1, 0.60, 0.020), (2, 0.70, 0.025), (3, 0.65, 0.030)):
        rows += [
            {**run("none", "supervised", 100, 1, base), "draw": draw},
            {**run("rotation", "finetune", 100, 1, base + gain), "draw": draw},
        ]
    paired = comparisons.against(_runs(tmp_path, rows), tables.SUPERVISED)
    assert paired.iloc[0].seeds == 3 and paired.iloc[0].draws == 3
    assert paired.iloc[0].difference == pytest.approx(0.025) and paired.iloc[0].verdict == "better"
    answer = _answer(tmp_path / "answer", rows)
    assert "1 seed x 3 draws of labels" in answer, answer
