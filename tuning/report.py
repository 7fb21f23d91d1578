"""The evaluation report as markdown: pure functions from ``Evaluation``s to tables and text.

``render_report`` writes ``report.md`` (models, in-distribution, OOD and shift tables, the paper's
Tables S1–S3 layouts, the figures); ``summary_table`` is what ``ovatune run`` and ``evaluate`` print.
Nothing here reads or writes a store: ``tuning.evaluate`` gathers, ``tuning.evaluation_log`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.comparison import Comparison, Interval, Spread
from evaluation.metrics import MEASURES
from evaluation.replicate_summary import OOD_SCORES, ReplicateSummary
from evaluation.runner import Evaluation
from search_spaces import SearchSpace
from trainables.losses import LOSSES
from tuning.champion import common_selection_metric, selection_metric
from tuning.fan_out import ModelKey


@dataclass(frozen=True)
class EvaluatedModel:
    """One evaluated model, the same record from fan-out to the report and the MLflow run: a loss's
    selected model (its registered version, serving info and searched hyperparameters), or one of
    its replicates (its MLflow run)."""

    key: ModelKey  # its loss, and its replicate number (None: the loss's selected model)
    evaluation: Evaluation
    version: Any = None  # the selected model's MLflow ModelVersion
    info: dict[str, Any] = field(default_factory=dict)  # the selected model's serving.json
    hyperparameters: dict[str, str] = field(default_factory=dict)  # the selected model's trial's searched values
    run_id: str | None = None  # a replicate's MLflow run


@dataclass
class Measured:
    """What one evaluation measured: what the report renders and the MLflow evaluation run records.

    Attributes:
        space: the experiment.
        sweep: the sweep whose models were evaluated, or None for the champions.
        models: every evaluated model, the selected ones in the losses' order, then the replicates
            (only of losses with at least two).
        intervals: loss -> metric -> its interval over the test examples.
        comparisons: the differences between the losses, paired over the test examples.
        importance: loss -> hyperparameter -> its fANOVA importance (None: too few trials).
        summary: everything over the replicates' seeds (None without replicates).
    """

    space: SearchSpace
    sweep: str | None
    models: list[EvaluatedModel]
    intervals: dict[str, dict[str, Interval]]
    comparisons: list[Comparison]
    importance: dict[str, dict[str, float] | None]
    summary: ReplicateSummary | None = None

    @property
    def selected(self) -> dict[str, EvaluatedModel]:
        """loss -> its selected model (the champion, or the version ``evaluate --sweep`` names)."""
        return {m.key.loss: m for m in self.models if m.key.replicate is None}

    @property
    def evaluations(self) -> dict[str, Evaluation]:
        """loss -> its selected model's ``Evaluation``."""
        return {loss: m.evaluation for loss, m in self.selected.items()}


def summary_rows(evaluations: dict[str, Evaluation]) -> list[dict]:
    """One row per loss: the numbers the CLI prints and the report's first table holds."""
    rows = []
    for loss, ev in evaluations.items():
        row = {"loss": loss, "train_accuracy": ev.train_accuracy, **{f"test_{k}": v for k, v in ev.test.items()}}
        for name, values in ev.ood.items():
            row[f"{name}_auroc"] = values["auroc"]
            row[f"{name}_mean_confidence"] = values["mean_confidence"]
        rows.append(row)
    return rows


def format_table(rows: list[dict], columns: list[str], headers: list[str]) -> str:
    """A markdown table (also readable as plain text)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row[c] if isinstance(row[c], str) else f"{row[c]:.4f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(evaluations: dict[str, Evaluation]) -> str:
    """The compact comparison printed at the end of ``ovatune run``.

    Per OOD set it shows the AUROC and the mean confidence there: on the toy problem's far rings
    the latter is the paper's Figure 1 as numbers.
    """
    ood_names = list(next(iter(evaluations.values())).ood)
    columns = ["loss", "test_accuracy", "test_ece", "test_nll", "train_accuracy"]
    headers = ["loss", "test acc", "ECE", "NLL", "train acc"]
    for name in ood_names:
        columns += [f"{name}_auroc", f"{name}_mean_confidence"]
        headers += [f"AUROC {name}", f"conf {name}"]
    return format_table(summary_rows(evaluations), columns, headers)


def accuracy_paper_table(evaluations: dict[str, Evaluation]) -> str:
    """Test accuracy (%) and ECE per loss, laid out as the paper's Table S1."""
    rows = [{"loss": LOSSES[loss].title, "accuracy": f"{100 * ev.test['accuracy']:.2f}", "ece": f"{ev.test['ece']:.3f}"}
            for loss, ev in evaluations.items()]  # fmt: skip
    return format_table(rows, ["loss", "accuracy", "ece"], ["Loss function", "Test Accuracy", "Test ECE"])


def ood_paper_table(dataset: str, evaluations: dict[str, Evaluation]) -> str:
    """AUROC / AUPRC per OOD set and loss, laid out as the paper's Tables S2 and S3."""
    ood_names = list(next(iter(evaluations.values())).ood)
    rows = [{"d_in": dataset, "loss": LOSSES[loss].title,
             **{n: f"{ev.ood[n]['auroc']:.4f} / {ev.ood[n]['auprc']:.4f}" for n in ood_names}}
            for loss, ev in evaluations.items()]  # fmt: skip
    headers = ["D_in", "Loss function"] + [f"D_ood = {n}: AUROC / AUPRC" for n in ood_names]
    return format_table(rows, ["d_in", "loss", *ood_names], headers)


def shift_table(evaluations: dict[str, Evaluation]) -> str:
    """One row per (corruption, loss): accuracy / ECE at each intensity, the numbers behind the box plots."""
    corruptions = dict.fromkeys(r["corruption"] for ev in evaluations.values() for r in ev.shift)
    rows = []
    for corruption in corruptions:
        for loss, ev in evaluations.items():
            at = {r["intensity"]: r for r in ev.shift if r["corruption"] == corruption}
            cells = {str(i): f"{at[i]['accuracy']:.3f} / {at[i]['ece']:.3f}" for i in ev.shift_levels if i}
            rows.append({"corruption": corruption, "loss": loss, **cells})
    intensities = [str(i) for i in next(ev for ev in evaluations.values() if ev.shift).shift_levels if i]
    return format_table(
        rows, ["corruption", "loss", *intensities], ["corruption", "loss"] + [f"intensity {i}" for i in intensities]
    )


def render_report(measured: Measured, figure_names: list[str], importance: str | None = None) -> str:
    """The markdown report: the models (champions, or with a sweep that sweep's best), what the
    data resolve between the losses (over seeds and test examples where there are replicates, else
    over the test examples), the tables (with their intervals; with replicates, every table over
    seeds), the hyperparameter importance table (``importance``, markdown) when there is one, then
    the figures (``figure_names``)."""
    space, sweep, selected = measured.space, measured.sweep, measured.selected
    evaluations, intervals = measured.evaluations, measured.intervals
    comparisons, replicates = measured.comparisons, measured.summary
    common = common_selection_metric([model.version for model in selected.values()], space)
    by = f"validation `{common}`" if common else "the validation metric each sweep selected by (see the table)"
    if sweep is None:
        what = (f"The champion of each loss: the best version so far by {by}; champions may come from "
                "different sweeps.")  # fmt: skip
    else:
        what = (f"The best model of each loss in sweep `{sweep}` (by {by}), champions or not: evaluating them "
                "moved no alias.")  # fmt: skip
    lines = [
        f"# ovatune report: {space.name}" + (f", sweep {sweep}" if sweep else ""),
        "",
        space.description,
        "",
        what,
        "",
        *(_opening(replicates, comparisons, len(next(iter(evaluations.values())).test_labels))),
        "## Champions" if sweep is None else "## Models",
        "",
        "| loss | registered model | sweep | trial | selected by (validation) | promotion | hyperparameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for loss, model in selected.items():
        version = model.version
        chosen = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(model.hyperparameters.items()))
        metric = selection_metric(version, space)
        value = float(version.tags.get(metric, "nan"))
        lines.append(
            f"| {loss} | `{version.name}` v{version.version} | `{version.tags.get('sweep')}` | "
            f"{version.tags.get('trial_number')} | `{metric}` {value:.4f} | {version.tags.get('promotion', '')} | {chosen} |"
        )
    lines += [
        "",
        "## In distribution (test split)",
        "",
        "NLL and Brier are computed on the probabilities renormalised to sum to 1 (one-vs-all "
        "probabilities need not); accuracy, ECE (15 bins) and confidence use them as they are.",
        "",
        format_table(
            summary_rows(evaluations),
            ["loss", "train_accuracy", "test_accuracy", "test_ece", "test_nll", "test_brier", "test_mean_confidence"],
            ["loss", "train acc", "test acc", "ECE", "NLL", "Brier", "mean confidence"],
        ),  # fmt: skip
    ]
    if intervals:
        lines += ["", "With 95% intervals over the test examples (bootstrap; one trained model per loss):", "",
                  interval_table(intervals)]  # fmt: skip
    lines += ["", "As the paper's Table S1 (accuracy in %):", "", accuracy_paper_table(evaluations)]
    ood_names = list(next(iter(evaluations.values())).ood)
    if ood_names:
        lines += ["", "## Out of distribution", "", "OOD is the positive class, scored by 1 − max_k p_k.", ""]
        rows = [{"loss": loss, **{f"{n}_{k}": ev.ood[n][k] for n in ood_names for k in ("auroc", "auprc", "mean_confidence")}}
                for loss, ev in evaluations.items()]  # fmt: skip
        columns = [f"{n}_{k}" for n in ood_names for k in ("auroc", "auprc", "mean_confidence")]
        headers = [f"{n} {k.replace('_', ' ')}" for n in ood_names for k in ("AUROC", "AUPRC", "mean_confidence")]
        lines.append(format_table(rows, ["loss"] + columns, ["loss"] + headers))
        lines += ["", "As the paper's Tables S2/S3:", "", ood_paper_table(space.dataset, evaluations)]
    if any(ev.shift for ev in evaluations.values()):
        lines += ["", "## Under shift (mean over corruptions)", ""]
        rows = []
        levels = next(ev for ev in evaluations.values() if ev.shift).shift_levels  # 0 (the clean test set), 1..5
        for loss, ev in evaluations.items():
            row = {"loss": loss}
            for level in levels:
                at = [r for r in ev.shift if r["intensity"] == level]
                row[f"acc{level}"] = float(np.mean([r["accuracy"] for r in at]))
                row[f"ece{level}"] = float(np.mean([r["ece"] for r in at]))
            rows.append(row)
        lines.append(format_table(rows, ["loss"] + [f"acc{i}" for i in levels] + [f"ece{i}" for i in levels],
                                  ["loss"] + [f"acc {i or 'test'}" for i in levels] + [f"ECE {i or 'test'}" for i in levels]))  # fmt: skip
        lines += ["", f"### Every corruption (accuracy / ECE at intensities {levels[1]}-{levels[-1]})", "",
                  shift_table(evaluations)]  # fmt: skip
    if replicates:
        lines += ["", *replicate_section(space.dataset, replicates)]
    if comparisons:
        lines += ["", "## Differences between the losses (paired over the test examples)", "",
                  "Each row is metric(a) − metric(b) on the same test examples with its 95% bootstrap interval; "
                  "**resolved** where the interval excludes 0.", "", comparison_table(comparisons)]  # fmt: skip
    if importance:
        lines += ["", "## Hyperparameter importance (fANOVA over each model's sweep)", "",
                  "The share of the selection metric's variance over the sweep's finished trials that each "
                  "sampled hyperparameter explains (Optuna's `FanovaImportanceEvaluator`).", "", importance]  # fmt: skip
    lines += ["", "## Figures", ""]
    lines += [f"### {name.replace('_', ' ')}\n\n![{name}](figures/{name}.png)\n" for name in figure_names]
    return "\n".join(lines) + "\n"


def _interval(interval: Interval, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{interval.estimate:{sign}.4f} [{interval.low:{sign}.4f}, {interval.high:{sign}.4f}]"


def interval_table(intervals: dict[str, dict[str, Interval]]) -> str:
    """One row per loss: each compared metric on the test split with its 95% interval."""
    rows = [{"loss": loss, **{m: _interval(by_metric[m]) for m in MEASURES}} for loss, by_metric in intervals.items()]
    return format_table(rows, ["loss", *MEASURES], ["loss", *(MEASURES[m].title for m in MEASURES)])


def comparison_table(comparisons: list[Comparison]) -> str:
    """One row per (metric, pair): the difference a − b, its interval, the better loss if resolved."""
    rows = [
        {"metric": MEASURES[c.metric].title, "pair": f"{c.a} − {c.b}", "difference": _interval(c.difference, signed=True),
         "verdict": f"**resolved**: {c.better} better" if c.better else "not resolved"}
        for c in comparisons
    ]  # fmt: skip
    return format_table(rows, ["metric", "pair", "difference", "verdict"], ["metric", "a − b", "difference [95%]", ""])


def _opening(replicates: ReplicateSummary | None, comparisons: list[Comparison] | None, examples: int) -> list[str]:
    """The findings over seeds where there are replicates of every loss, else over the test examples."""
    if replicates and replicates.comparisons:
        return findings(replicates.comparisons, examples, min(replicates.replicates.values()))
    return findings(comparisons, examples) if comparisons else []


def findings(comparisons: list[Comparison], examples: int, seeds: int | None = None) -> list[str]:
    """The report's opening lines: per metric, which loss is better than which at the 95% level,
    and which differences are not resolved (the numbers are in the differences table). ``seeds``:
    the comparisons are over that many replicates per loss as well as the test examples."""
    what = f"{seeds} seeds × {examples} test examples" if seeds else f"{examples} test examples"
    noise = ("paired over seeds and examples; the selected models themselves are not among the replicates"
             if seeds else "the noise of training another seed is not in these intervals")  # fmt: skip
    lines = [f"**What the {what} resolve** (95%, paired bootstrap; each of the {len(comparisons)} comparisons "
             f"at that level on its own, without a multiplicity correction; {noise}):", ""]  # fmt: skip
    for metric in MEASURES:
        rows = [c for c in comparisons if c.metric == metric]
        beaten: dict[str, list[str]] = {}
        for c in rows:
            if c.better:
                beaten.setdefault(c.better, []).append(c.b if c.better == c.a else c.a)
        text = "; ".join(f"**{winner}** better than {', '.join(losers)}" for winner, losers in beaten.items())
        unresolved = [f"{c.a} vs {c.b}" for c in rows if not c.better]
        if unresolved:
            text += ("; " if text else "") + "not resolved: " + ", ".join(unresolved)
        lines.append(f"- {MEASURES[metric].title}: {text}")
    return [*lines, ""]


def _spread(spread: Spread) -> str:
    """``mean ± sd [low, high]``."""
    return f"{spread.mean:.4f} ± {spread.sd:.4f} [{spread.interval.low:.4f}, {spread.interval.high:.4f}]"


def replicate_section(dataset: str, summary: ReplicateSummary) -> list[str]:
    """The report's tables over replicates: test, the paper's Table S1, OOD and Tables S2/S3, shift
    per intensity, and the differences between the losses paired over seeds and examples."""
    counts = ", ".join(f"{loss} {r}" for loss, r in summary.replicates.items())
    lines = [
        "## Over seeds: replicates of each model's configuration",
        "",
        f"Each configuration trained again with new seeds (initial weights and data order; the data split is the "
        f"experiment's): {counts} replicates. Cells are mean ± sd over the seeds [95% interval of the mean]. The "
        "test metrics' intervals are a two-way bootstrap over seeds and test examples; the OOD and shift ones "
        "are t intervals over the seeds (clipped to [0, 1]).",
        "",
        format_table(
            [{"loss": loss, "r": str(summary.replicates[loss]), **{m: _spread(s[m]) for m in MEASURES}}
             for loss, s in summary.test.items()],
            ["loss", "r", *MEASURES], ["loss", "seeds", *(MEASURES[m].title for m in MEASURES)],
        ),
        "",
        "As the paper's Table S1 (mean ± sd over seeds; accuracy in %):",
        "",
        format_table(
            [{"loss": LOSSES[loss].title,
              "accuracy": f"{100 * s['accuracy'].mean:.2f} ± {100 * s['accuracy'].sd:.2f}",
              "ece": f"{s['ece'].mean:.3f} ± {s['ece'].sd:.3f}"} for loss, s in summary.test.items()],
            ["loss", "accuracy", "ece"], ["Loss function", "Test Accuracy", "Test ECE"],
        ),
    ]  # fmt: skip
    ood_names = list(next(iter(summary.ood.values())))
    if ood_names:
        columns = [f"{n}|{k}" for n in ood_names for k in OOD_SCORES]
        rows = [{"loss": loss, **{f"{n}|{k}": _spread(by_set[n][k]) for n in ood_names for k in OOD_SCORES}}
                for loss, by_set in summary.ood.items()]  # fmt: skip
        headers = [f"{n} {k.replace('_', ' ').replace('auroc', 'AUROC').replace('auprc', 'AUPRC')}"
                   for n in ood_names for k in OOD_SCORES]  # fmt: skip
        lines += [
            "",
            "### Out of distribution, over seeds",
            "",
            format_table(rows, ["loss", *columns], ["loss", *headers]),
        ]
        paper = [{"d_in": dataset, "loss": LOSSES[loss].title,
                  **{n: f"{by_set[n]['auroc'].mean:.4f} ± {by_set[n]['auroc'].sd:.4f} / "
                        f"{by_set[n]['auprc'].mean:.4f} ± {by_set[n]['auprc'].sd:.4f}" for n in ood_names}}
                 for loss, by_set in summary.ood.items()]  # fmt: skip
        lines += ["", "As the paper's Tables S2/S3 (mean ± sd over seeds):", "",
                  format_table(paper, ["d_in", "loss", *ood_names],
                               ["D_in", "Loss function"] + [f"D_ood = {n}: AUROC / AUPRC" for n in ood_names])]  # fmt: skip
    if summary.shift:
        rows = [{"loss": loss, "metric": metric, **{str(level): _spread(at[metric]) for level, at in levels.items()}}
                for loss, levels in summary.shift.items() for metric in ("accuracy", "ece")]  # fmt: skip
        lines += ["", "### Under shift, over seeds (each seed's mean over corruptions)", "",
                  format_table(rows, ["loss", "metric", *(str(i) for i in range(6))],
                               ["loss", "metric", "test", *(f"intensity {i}" for i in range(1, 6))])]  # fmt: skip
    if summary.comparisons:
        lines += ["", "### Differences between the losses, paired over seeds and test examples", "",
                  "metric(a) − metric(b), averaged over the seeds, with its 95% two-way bootstrap interval; "
                  "**resolved** where the interval excludes 0.", "", comparison_table(summary.comparisons)]  # fmt: skip
    return lines


def replicate_summary_table(summary: ReplicateSummary) -> str:
    """The over-seeds comparison ``ovatune run`` and ``evaluate`` print after the selected models':
    the test metrics, then per OOD set the mean confidence there (toy2d's far rings: the paper's
    Figure 1 as numbers, over seeds)."""
    ood_names = list(next(iter(summary.ood.values())))
    rows = [{"loss": loss, "r": str(summary.replicates[loss]), **{m: _spread(s[m]) for m in MEASURES},
             **{f"conf {n}": _spread(summary.ood[loss][n]["mean_confidence"]) for n in ood_names}}
            for loss, s in summary.test.items()]  # fmt: skip
    columns = ["loss", "r", *MEASURES, *(f"conf {n}" for n in ood_names)]
    return format_table(rows, columns, ["loss", "seeds", *(MEASURES[m].title for m in MEASURES),
                                        *(f"conf {n}" for n in ood_names)])  # fmt: skip


NEAR_CHANCE = 1.5  # a model whose test accuracy is below this many times chance (1/K) learned little


def near_chance(evaluations: dict[str, Evaluation]) -> list[str]:
    """One warning per model whose test accuracy is near chance level (1/K for K classes)."""
    warnings = []
    for loss, ev in evaluations.items():
        chance = MEASURES["accuracy"].chance(ev.test_probs.shape[1])
        if ev.test["accuracy"] < NEAR_CHANCE * chance:
            warnings.append(f"{loss}: test accuracy {ev.test['accuracy']:.3f} is near chance ({chance:.3f} for "
                            f"{ev.test_probs.shape[1]} classes): it learned little; try more --trials or --epochs")  # fmt: skip
    return warnings


def column_legend(evaluations: dict[str, Evaluation]) -> list[str]:
    """What the printed table's columns mean, a line each."""
    lines = [
        "test acc, ECE (15 bins), NLL: on the test split (ECE and NLL: lower is better); train acc: training split"
    ]
    for name in next(iter(evaluations.values())).ood:
        lines.append(f"AUROC {name}: OOD detection by 1 − max p (higher is better); conf {name}: mean confidence "
                     "there (lower is better)")  # fmt: skip
    return lines
