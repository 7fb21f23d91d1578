"""The report's tables, from evaluations made by hand."""

import dataclasses

import numpy as np

from evaluation.comparison import Comparison, Interval
from evaluation.metrics import MEASURES
from evaluation.runner import Evaluation
from tuning.report import (
    accuracy_paper_table,
    column_legend,
    comparison_table,
    findings,
    interval_table,
    near_chance,
    ood_paper_table,
    shift_table,
)


def _evaluation(loss: str, auroc: float) -> Evaluation:
    shift = [{"corruption": c, "intensity": i, "accuracy": 1 - i / 10, "ece": i / 100 + (c == "fog") / 2}
             for c in ("fog", "snow") for i in range(6)]  # fmt: skip
    return Evaluation(
        loss=loss,
        test={"accuracy": 0.90164, "ece": 0.0786},
        train_accuracy=1.0,
        test_probs=np.zeros((0, 2)),
        test_labels=np.zeros(0),
        ood={"cifar100": {"auroc": auroc, "auprc": 0.75871}, "svhn": {"auroc": 0.642, "auprc": 0.77794}},
        shift=shift,
    )


def test_ood_table_has_the_layout_of_tables_s2_and_s3():
    table = ood_paper_table(
        "cifar10", {"softmax": _evaluation("softmax", 0.80031), "ova_dm": _evaluation("ova_dm", 0.7669)}
    )
    lines = table.splitlines()
    assert lines[0] == "| D_in | Loss function | D_ood = cifar100: AUROC / AUPRC | D_ood = svhn: AUROC / AUPRC |"
    assert lines[2] == "| cifar10 | Crossentropy | 0.8003 / 0.7587 | 0.6420 / 0.7779 |"
    assert lines[3] == "| cifar10 | One-vs-all DM | 0.7669 / 0.7587 | 0.6420 / 0.7779 |"


def test_shift_table_lists_every_corruption_and_intensity():
    lines = shift_table({"softmax": _evaluation("softmax", 0.8), "dm": _evaluation("dm", 0.8)}).splitlines()
    assert len(lines) == 2 + 2 * 2  # header, rule, (fog, snow) × (softmax, dm)
    assert (
        lines[2] == "| fog | softmax | 0.900 / 0.510 | 0.800 / 0.520 | 0.700 / 0.530 | 0.600 / 0.540 | 0.500 / 0.550 |"
    )
    assert lines[5].startswith("| snow | dm | 0.900 / 0.010 |")


def test_the_shift_tables_and_figure_follow_the_intensities_measured():
    # the intensities are one fact (trainables.data.INTENSITIES); what reads the measurements takes
    # them from the measurements, where `range(1, 6)` was typed in five places
    from evaluation.figures import shift_boxplots

    three = {loss: dataclasses.replace(ev, shift=[r for r in ev.shift if r["intensity"] <= 3])
             for loss, ev in (("softmax", _evaluation("softmax", 0.8)), ("dm", _evaluation("dm", 0.8)))}  # fmt: skip
    lines = shift_table(three).splitlines()
    assert lines[0] == "| corruption | loss | intensity 1 | intensity 2 | intensity 3 |"
    assert lines[2] == "| fog | softmax | 0.900 / 0.510 | 0.800 / 0.520 | 0.700 / 0.530 |"
    figure = shift_boxplots(three)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["Test", "1", "2", "3"]


def test_accuracy_table_has_the_layout_of_table_s1():
    lines = accuracy_paper_table({"ova": _evaluation("ova", 0.8)}).splitlines()
    assert lines == ["| Loss function | Test Accuracy | Test ECE |", "|---|---|---|", "| One-vs-all | 90.16 | 0.079 |"]


def test_findings_name_the_better_loss_per_metric_and_what_is_not_resolved():
    comparisons = [
        Comparison("accuracy", "softmax", "dm", Interval(-0.03, -0.05, -0.01)),  # dm higher: better
        Comparison("accuracy", "softmax", "ova", Interval(0.01, -0.02, 0.04)),  # straddles 0
        Comparison("ece", "softmax", "dm", Interval(0.02, 0.01, 0.03)),  # softmax higher ECE: dm better
        Comparison("ece", "softmax", "ova", Interval(-0.02, -0.03, -0.01)),  # softmax lower ECE: softmax better
    ]
    lines = findings(comparisons, examples=360)
    assert lines[0].startswith("**What the 360 test examples resolve** (95%, paired bootstrap")
    assert "- accuracy: **dm** better than softmax; not resolved: softmax vs ova" in lines
    assert "- ECE: **dm** better than softmax; **softmax** better than ova" in lines
    assert "- NLL: " in lines and "- Brier: " in lines  # every compared metric gets its line
    table = comparison_table(comparisons).splitlines()
    assert table[2] == "| accuracy | softmax − dm | -0.0300 [-0.0500, -0.0100] | **resolved**: dm better |"
    assert table[3] == "| accuracy | softmax − ova | +0.0100 [-0.0200, +0.0400] | not resolved |"


def test_the_interval_table_shows_each_metric_with_its_interval():
    intervals = {"ova": {m: Interval(0.5, 0.4, 0.6) for m in MEASURES}}
    header, _, row = interval_table(intervals).splitlines()
    assert header == "| loss | accuracy | ECE | NLL | Brier |"
    assert row == "| ova | " + " | ".join(["0.5000 [0.4000, 0.6000]"] * len(MEASURES)) + " |"


def test_a_model_near_chance_is_flagged_and_a_good_one_is_not():
    good, poor = _evaluation("dm", 0.9), _evaluation("ova_dm", 0.5)
    good.test_probs, poor.test_probs = np.zeros((1, 10)), np.zeros((1, 10))  # 10 classes: chance 0.1
    poor.test = {**poor.test, "accuracy": 0.097}
    warnings = near_chance({"dm": good, "ova_dm": poor})
    assert warnings == ["ova_dm: test accuracy 0.097 is near chance (0.100 for 10 classes): it learned little; "
                        "try more --trials or --epochs"]  # fmt: skip


def test_the_column_legend_explains_every_ood_column():
    legend = column_legend({"dm": _evaluation("dm", 0.9)})
    assert legend[0].startswith("test acc, ECE (15 bins), NLL")
    assert [line.split(":")[0] for line in legend[1:]] == ["AUROC cifar100", "AUROC svhn"]
