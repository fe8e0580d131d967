"""The demo's report: the comparison of the untrained, SFT and GRPO models on the test split, the
training budgets, then the standard report's tables and plots of the three evaluations.

Written as report.md (+ report_files/), report.html and report.json in the output folder
(`vaur1.layout.DemoRun.report`), and the first two tables on the console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaur1.config import to_dict
from vaur1.demo.config import DemoConfig, split_examples
from vaur1.present.pages import Table, write_pages
from vaur1.vocab import (
    ACCURACY,
    BINARY_ACCURACY,
    CLS,
    FALSE_ALARM_RATE,
    METRICS_BY_NAME,
    MIOU,
    MULTICLASS_ACCURACY,
    QA,
    RECALL_05,
    RECALL_07,
    TAG,
    Metric,
    metric_name,
)

REPORTED_STAGES = {"base": "eval_base", "sft": "eval_sft", "grpo": "eval_grpo"}
# The comparison table's rows; every value is in points (0-100).
HEADLINE: tuple[Metric, ...] = tuple(
    METRICS_BY_NAME[metric_name(task, key)]
    for task, key in (
        (QA, ACCURACY),
        (TAG, MIOU),
        (TAG, RECALL_05),
        # a constant interval scores ~51 mIoU on SynthVAU but ~20 R@0.7: R@0.7 tells placing from hedging
        (TAG, RECALL_07),
        (TAG, FALSE_ALARM_RATE),
        (CLS, MULTICLASS_ACCURACY),
        (CLS, BINARY_ACCURACY),
    )
)


def _label(metric: Metric) -> str:
    return f"{metric.task.upper()} {metric.label}"


def _headline(stages: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    return {
        name: {m.name: (blocks.get(m.task) or {}).get(m.key) for m in HEADLINE}
        for name, blocks in stages.items()
    }


def constant_answers(cfg: DemoConfig) -> dict[str, Any]:
    """The headline metrics on the test split of the best constant answer per task chosen on the train
    split (`vaur1.eval.baselines.best_constants`): what a model that ignores the video scores."""
    from vaur1.eval.baselines import best_constants, constant_label

    best = best_constants(split_examples(cfg, "test"), fit_on=split_examples(cfg, "train"), resamples=1)
    return {
        "label": constant_label("train"),
        "metrics": {m.name: best[m.task]["metrics"][m.key] for m in HEADLINE},
        "answers": {task: chosen["answers"] for task, chosen in best.items()},
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _paired_intervals(before: list[dict], after: list[dict], resamples: int) -> dict[str, list[float] | None]:
    """The 95% paired-bootstrap interval of each headline difference, over the test items."""
    from vaur1.eval.paired import paired_gain

    intervals = {}
    for metric in HEADLINE:
        gain = paired_gain([(before, after)], metric.name, resamples=resamples)
        intervals[metric.name] = None if gain is None else gain["ci"]
    return intervals


def budgets(cfg: DemoConfig, done: dict[str, dict]) -> dict[str, Any]:
    """What SFT and GRPO cost: optimizer steps, samples (and completions) seen, wall time."""
    sft, grpo = done["sft"], done["grpo"]
    return {
        "sft": {
            "steps": sft["steps"],
            "best_step": sft["best_step"],
            "samples": sft["samples"],
            "samples_to_best": sft["samples_to_best"],
            "validation_evaluations": len(sft["validation"]),
            "stopped_by": sft["stopped"],
            "seconds": sft["seconds"],
            "read_the_video": sft.get("read_the_video"),
            "constant_answer_cls": sft.get("constant_answer_cls"),
            "reading_level_cls": sft.get("reading_level_cls"),
        },
        "grpo": {
            "steps": grpo["steps"],
            "best_step": grpo["best_step"],
            "validation_evaluations": len(grpo["validation"]),
            "samples": grpo["samples"],
            "completions": grpo["completions"],
            "seconds": grpo["seconds"],
        },
    }


def write_demo_report(cfg: DemoConfig, done: dict[str, dict]) -> dict[str, Any]:
    """The report's three files in the output folder; returns report.json's content."""
    from vaur1.present import report as harness

    demo = cfg.run
    runs = [harness.load_run(demo.stage(stage), name) for name, stage in REPORTED_STAGES.items()]
    stages = {name: done[stage]["metrics"] for name, stage in REPORTED_STAGES.items()}
    scores = {run.name: run.sample_scores for run in runs}
    headline = _headline(stages)
    report = {
        "stages": stages,
        "headline": headline,
        "constant": constant_answers(cfg),
        "gains": {
            "grpo_over_sft": {k: _difference(v, headline["sft"][k]) for k, v in headline["grpo"].items()},
            "sft_over_base": {k: _difference(v, headline["base"][k]) for k, v in headline["sft"].items()},
            "grpo_over_sft_ci": _paired_intervals(scores["sft"], scores["grpo"], cfg.eval.resamples),
            "sft_over_base_ci": _paired_intervals(scores["base"], scores["sft"], cfg.eval.resamples),
        },
        "budgets": budgets(cfg, done),
        "sft_validation": done["sft"]["validation"],
        "grpo_validation": done["grpo"]["validation"],
        "times": {name: record["seconds"] for name, record in done.items()},
        "reused": [name for name, record in done.items() if record.get("reused")],
        "mode": cfg.mode,
        "config": to_dict(cfg),
        "runs": harness.report_json(runs)["runs"],
    }
    demo_tables = [comparison_table(report), budget_table(report), *harness.tables(runs)]
    write_pages(demo.report, demo_tables, harness.figures(runs), report)
    return report


def _points(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _interval(interval: list[float] | None) -> str:
    return "-" if interval is None else f"[{interval[0]:+.1f}, {interval[1]:+.1f}]"


def comparison_table(report: dict[str, Any]) -> Table:
    headline, gains = report["headline"], report["gains"]
    rows = [
        [
            _label(metric),
            _points(report["constant"]["metrics"][metric.name]),
            *(_points(headline[stage][metric.name]) for stage in ("base", "sft", "grpo")),
            _points(gains["sft_over_base"][metric.name], signed=True),
            _points(gains["grpo_over_sft"][metric.name], signed=True),
            _interval(gains["grpo_over_sft_ci"][metric.name]),
        ]
        for metric in HEADLINE
    ]
    unanswered = [_unanswered(report["stages"][stage]) for stage in ("base", "sft", "grpo")]
    rows.append(["missing / unreadable items", "-", *unanswered, "", "", ""])
    note = (
        f"Held-out SynthVAU test split, {report['mode']} prompts, greedy decoding; points (0-100). "
        "A missing or unreadable answer counts as wrong in every metric. "
        "The interval is the 95% paired-bootstrap interval of GRPO - SFT over the test items (both models "
        "answered the same items; it leaves out the variation between training seeds). "
        f"Constant: one answer for every clip, chosen on the train split ({_constant_answers(report)}): "
        "what a model that ignores the video scores. "
        "Per-source results with 95% intervals follow."
    )
    header = [
        "metric",
        report["constant"]["label"],
        "base",
        "SFT",
        "GRPO",
        "SFT - base",
        "GRPO - SFT",
        "95% interval",
    ]
    return Table("Untrained vs SFT vs GRPO after SFT", header, rows, note)


def _unanswered(blocks: dict[str, dict]) -> str:
    """Missing / unreadable answers over the scored tasks of one stage."""
    scored = [block for block in blocks.values() if isinstance(block, dict) and "unparsed" in block]
    return f"{sum(b['missing'] for b in scored)} / {sum(b['unparsed'] for b in scored)}"


def _constant_answers(report: dict[str, Any]) -> str:
    """Each task's constant answer as the model would have written it, per source."""
    from vaur1.eval.baselines import shown_answer

    return "; ".join(
        f"{task.upper()}: {', '.join(shown_answer(text) for text in answers.values())}"
        for task, answers in report["constant"]["answers"].items()
    )


def budget_table(report: dict[str, Any]) -> Table:
    sft, grpo = report["budgets"]["sft"], report["budgets"]["grpo"]
    rows = [
        [
            "optimizer steps",
            f"{sft['steps']} (best at {sft['best_step']})",
            f"{grpo['steps']} (best at {grpo['best_step']})",
        ],
        ["samples seen", f"{sft['samples']} ({sft['samples_to_best']} to the best)", str(grpo["samples"])],
        ["completions sampled", "-", str(grpo["completions"])],
        ["wall time (s)", f"{sft['seconds']:.0f}", f"{grpo['seconds']:.0f}"],
    ]
    note = (
        f"SFT stopped by {sft['stopped_by']} after {sft['validation_evaluations']} validation evaluations "
        "on the val split (stopping once neither the mean of QA accuracy, TAG mIoU and CLS accuracy nor the "
        "validation loss improves); GRPO starts from SFT's best-scoring checkpoint, so "
        "GRPO's model has seen both budgets. GRPO runs all its steps and keeps its best-scoring checkpoint "
        f"of {grpo['validation_evaluations']} on the same split. Wall times include the validation evaluations."
    )
    if sft["read_the_video"] is False:
        # SFT stages finished before the level was recorded lack it
        needed = (
            "" if sft.get("reading_level_cls") is None else f" (it needed {sft['reading_level_cls']:.1f}%)"
        )
        note += (
            f" WARNING: SFT's validation CLS accuracy never beat the best constant answer "
            f"({sft['constant_answer_cls']:.1f}%) beyond chance{needed}: "
            "SFT did not learn to tell the clips apart before its step cap, "
            "so GRPO - SFT compares against a blind model and shows no fair gain; raise sft.run.max_steps."
        )
    return Table("Training budgets", ["", "SFT (to early stop)", "GRPO (after SFT)"], rows, note)


def print_comparison(report: dict[str, Any], pages: Path) -> None:
    """The comparison and budget tables on standard output, then where the report is: the demo's
    last words. `pages` is the report's path without its suffix (report.md, .html and .json)."""
    from rich.table import Table as RichTable

    from vaur1.console import output_console

    console = output_console(highlight=False, soft_wrap=True)
    for table in (comparison_table(report), budget_table(report)):
        shown = RichTable(*table.header, title=table.title, caption=table.note)
        for row in table.rows:
            shown.add_row(*row)
        console.print(shown)
    html, markdown = pages.with_name(pages.name + ".html"), pages.with_name(pages.name + ".md")
    console.print(f"report: {html} (also {markdown.name} and {pages.name}.json there)")
