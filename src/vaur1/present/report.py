"""Reports of one or more run directories: Markdown, a self-contained HTML page and report.json.

    paths = write_report(["runs/base/eval", "runs/grpo/eval"], "runs/report")
    # runs/report.md (+ runs/report_files/*.png), runs/report.html, runs/report.json

Tables follow the paper's layout (QA accuracy without and with think; TAG mIoU and R@0.3/0.5/0.7;
CLS binary and 20-way accuracy and macro-F1; the judge's CLS, KM, FLU, INF, FAC and total, or the
offline scorer under its own name), overall and per source, each value with its 95% interval;
runs are columns, side by side. With two or more eval runs, a table gives every run minus the
first on the same items, with a paired interval (`vaur1.eval.paired`). Plots: the IoU histogram,
predicted against true intervals for a few videos, the class confusion matrix, and reward curves
where a run has a training log (`metrics.jsonl` in the run directory, or in the training run its
model came from).

`stage_metrics(run_dir, mode)` returns a run's `qa`, `tag` and `cls` blocks with the keys of
`vaur1 eval metrics --json`, for callers that compare stages of a pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.errors import VaurError
from vaur1.eval.judge import DIMENSION_LABELS
from vaur1.eval.offline_scorer import METRICS as OFFLINE_METRICS
from vaur1.eval.offline_scorer import OFFLINE_SCORER_NAME
from vaur1.eval.paired import PER_ITEM, paired_gain
from vaur1.files import read_jsonl
from vaur1.layout import EvalRun, TrainRun, training_log_of_model
from vaur1.parse import NO_ANOMALY, parse_interval
from vaur1.present.pages import Table, write_pages
from vaur1.present.paper_tables import PaperTable, flat_cells, paper_tables, to_latex
from vaur1.vocab import (
    CLS,
    METRICS_BY_NAME,
    MODE_LABELS,
    MODES,
    REASONING,
    SCORED_TASKS,
    TAG,
    TASK_TITLES,
    task_metrics,
)

OFFLINE_LABELS = {
    "description_similarity": "Desc. MiniLM cos",
    "reasoning_similarity": "Analysis MiniLM cos",
    "description_rouge_l": "Desc. ROUGE-L",
    "reasoning_rouge_l": "Analysis ROUGE-L",
}
TIMELINE_VIDEOS = 10


@dataclass
class Run:
    """What a report reads from one run directory."""

    name: str
    path: Path
    metrics: dict[str, Any] | None = None  # metrics.json of an eval run
    sample_scores: list[dict[str, Any]] = field(default_factory=list)
    training_log: Path | None = None
    training_records: list[dict[str, Any]] = field(default_factory=list)

    def block(self, task: str, mode: str, source: str = "all") -> dict[str, Any] | None:
        block = ((self.metrics or {}).get("tasks", {}).get(task) or {}).get(mode)
        if block is None or source == "all":
            return block
        return block.get("by_source", {}).get(source)


def training_log_of(run_dir: Path, metrics: dict[str, Any] | None) -> Path | None:
    """The training log of the run itself, or of the training run its model lies in."""
    if TrainRun(run_dir).metrics.is_file():
        return TrainRun(run_dir).metrics
    model = (metrics or {}).get("run", {}).get("model")
    return training_log_of_model(model) if model else None


def load_run(run_dir: str | Path, name: str | None = None) -> Run:
    path = Path(run_dir)
    if not path.is_dir():
        raise VaurError(f"{path}: no such run directory")
    run = EvalRun(path)
    metrics = None
    if run.metrics.is_file():
        try:
            metrics = json.loads(run.metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise VaurError(f"{run.metrics}: cannot read: {err}") from None
        if not isinstance(metrics, dict) or not isinstance(metrics.get("run", {}), dict):
            raise VaurError(f"{run.metrics}: not a vaur1 metrics file (a JSON object with a 'run' object)")
    log = training_log_of(path, metrics)
    if metrics is None and log is None:
        raise VaurError(
            f"{path}: neither {run.metrics.name} (an eval run) nor {TrainRun(path).metrics.name} (a training log)"
        )
    return Run(
        name=name or path.name,
        path=path,
        metrics=metrics,
        sample_scores=read_jsonl(run.sample_scores),
        training_log=log,
        training_records=read_jsonl(log) if log is not None else [],
    )


def run_names(paths: list[Path]) -> list[str]:
    """Column names: the folder names, with parents added until they are unique."""
    depth = 1
    while True:
        # absolute, not resolved: a link is named as given, and a link loop is the loader's to report
        names = ["/".join(Path(os.path.abspath(p)).parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(Path(os.path.abspath(p)).parts) for p in paths):
            return names
        depth += 1


def stage_metrics(run_dir: str | Path, mode: str = "think") -> dict[str, dict[str, Any]]:
    """The run's `qa`, `tag` and `cls` blocks for one mode (those the run evaluated), with the keys
    of `vaur1 eval metrics --json`."""
    run = load_run(run_dir)
    if run.metrics is None:
        raise VaurError(f"{run_dir}: no {EvalRun(run_dir).metrics.name}; run vaur1 eval run first")
    if mode not in run.metrics["run"]["modes"]:
        raise VaurError(f"{run_dir}: evaluated in {', '.join(run.metrics['run']['modes'])} mode, not {mode}")
    return {task: run.block(task, mode) for task in SCORED_TASKS if run.block(task, mode) is not None}


# ---- tables ---------------------------------------------------------------------------------


def _value(value: float | None, interval: list[float] | None = None, digits: int = 2) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else text


def _sources(runs: list[Run]) -> list[str]:
    found = set()
    for run in runs:
        for modes in (run.metrics or {}).get("tasks", {}).values():
            for block in modes.values():
                found.update(block.get("by_source", {}))
    return ["all", *sorted(found)]


def _modes(runs: list[Run], task: str) -> list[str]:
    return [m for m in MODES if any(run.block(task, m) is not None for run in runs)]


def _count_cell(block: dict[str, Any] | None, task: str) -> str:
    if block is None:
        return "–"
    parts = [f"{block['n']}"]
    if task == TAG:
        parts[0] += f" + {block['n_normal']} normal"
    problems = [f"{block[k]} {k}" for k in ("missing", "unparsed") if block.get(k)]
    return parts[0] + (f" ({', '.join(problems)})" if problems else "")


def task_table(runs: list[Run], task: str) -> Table | None:
    modes = _modes(runs, task)
    if not modes:
        return None
    rows = []
    for source in _sources(runs):
        if not any(run.block(task, m, source) for run in runs for m in modes):
            continue
        for mode in modes:
            for metric in task_metrics(task):
                cells = []
                for run in runs:
                    block = run.block(task, mode, source)
                    cells.append("–" if block is None else _value(block[metric.key], block["ci"][metric.key]))
                rows.append([source, f"{metric.label} ({MODE_LABELS[mode]})", *cells])
            rows.append(
                [
                    source,
                    f"n ({MODE_LABELS[mode]})",
                    *[_count_cell(run.block(task, mode, source), task) for run in runs],
                ]
            )
    note = "Each cell: value [95% bootstrap interval]. Missing outputs (unreadable videos) count as wrong."
    return Table(TASK_TITLES[task], ["source", "metric", *[run.name for run in runs]], rows, note)


def _reasoning_part(run: Run, mode: str, source: str, part: str) -> dict[str, Any] | None:
    block = run.block(REASONING, mode)
    summary = (block or {}).get(part)
    if summary is None or source == "all":
        return summary
    return summary.get("by_source", {}).get(source)


def judge_table(runs: list[Run]) -> Table | None:
    modes = [m for m in _modes(runs, REASONING) if any(_reasoning_part(r, m, "all", "judge") for r in runs)]
    if not modes:
        return None
    judges = sorted({(run.metrics or {})["run"].get("judge") or "" for run in runs if run.metrics} - {""})
    rows = []
    for source in _sources(runs):
        for mode in modes:
            summaries = [_reasoning_part(run, mode, source, "judge") for run in runs]
            if not any(summaries):
                continue
            for dimension, label in DIMENSION_LABELS.items():
                rows.append(
                    [source, f"{label} ({MODE_LABELS[mode]})"]
                    + [
                        _value(s["means"].get(dimension), s["ci"].get(dimension)) if s else "–"
                        for s in summaries
                    ]
                )
            rows.append(
                [source, f"Total ({MODE_LABELS[mode]})"]
                + [_value(s["mean_total"], s["ci"].get("mean_total")) if s else "–" for s in summaries]
            )
            rows.append(
                [source, f"scored / unscored ({MODE_LABELS[mode]})"]
                + [f"{s['scored']} / {s['unscored']}" if s else "–" for s in summaries]
            )
    title = f"VAU-Eval (judge: {', '.join(judges)}): each dimension 0-10, total 0-50"
    note = "Means over scored samples; unscored samples are counted, never scored 0."
    return Table(title, ["source", "metric", *[run.name for run in runs]], rows, note)


def offline_table(runs: list[Run]) -> Table | None:
    modes = [m for m in _modes(runs, REASONING) if any(_reasoning_part(r, m, "all", "offline") for r in runs)]
    if not modes:
        return None
    rows = []
    for source in _sources(runs):
        for mode in modes:
            summaries = [_reasoning_part(run, mode, source, "offline") for run in runs]
            if not any(summaries):
                continue
            for metric in OFFLINE_METRICS:
                rows.append(
                    [source, f"{OFFLINE_LABELS[metric]} ({MODE_LABELS[mode]})"]
                    + [_value(s[metric], s["ci"].get(metric), digits=3) if s else "–" for s in summaries]
                )
            rows.append(
                [source, f"scored / missing ({MODE_LABELS[mode]})"]
                + [f"{s['samples']} / {s['missing']}" if s else "–" for s in summaries]
            )
    title = (
        f"Reasoning, offline scorer {OFFLINE_SCORER_NAME} (not VAU-Eval): similarity to the references, 0-1"
    )
    return Table(title, ["source", "metric", *[run.name for run in runs]], rows)


def _skipped_rows(bench_rows: dict[str, Any]) -> str:
    """Malformed CSV rows the loader skipped, per file: they are in no denominator."""
    parts = [
        f"{rows['file']}: {sum(rows['skipped'].values())} of {rows['rows_read']}"
        for rows in bench_rows.values()
        if rows["skipped"]
    ]
    return "; ".join(parts) or "0"


def overview_table(runs: list[Run]) -> Table:
    fields = (
        "model",
        "bench",
        "splits",
        "video_spec",
        "backend",
        "items",
        "video errors",
        "rows skipped",
        "s / item",
        "truncated",
    )
    if any((run.metrics or {}).get("run", {}).get("cleaning") for run in runs):
        fields = (*fields, "cleaning")  # a rule that changes what is scored is named where it was on
    rows = []
    for label in fields:
        cells = []
        for run in runs:
            metrics = run.metrics
            if metrics is None:
                cells.append("training log only")
                continue
            info, timing = metrics["run"], metrics["timing"]
            values = {
                "model": info["model"],
                "bench": info["bench"],
                "splits": ", ".join(info["splits"]),
                "video_spec": info["video_spec"],
                "backend": info["backend"],
                "items": f"{metrics['items']['predicted']} of {metrics['items']['expected']}",
                "video errors": f"{metrics['video_errors']['videos']} videos, {metrics['video_errors']['items']} items",
                "rows skipped": _skipped_rows(metrics.get("bench_rows", {})),
                "cleaning": ", ".join(info.get("cleaning") or []) or "none (the paper's protocol)",
                "s / item": _value(timing["seconds_per_item"], digits=3),
                "truncated": str(timing["truncated"]),
            }
            cells.append(values[label])
        rows.append([label, *cells])
    return Table("Runs", ["", *[run.name for run in runs]], rows)


def _items(run: Run, task: str, mode: str) -> list[dict[str, Any]]:
    return [r for r in run.sample_scores if r["task"] == task and r.get("mode") == mode]


def _paired_cell(reference: Run, run: Run, task: str, mode: str, metric: str) -> str:
    try:
        gain = paired_gain([(_items(reference, task, mode), _items(run, task, mode))], metric)
    except VaurError:
        return "other items"
    if gain is None:
        return "–"
    low, high = gain["ci"]
    return f"{gain['gain']:+.2f} [{low:+.2f}, {high:+.2f}]"


def paired_table(runs: list[Run]) -> Table | None:
    """Every later eval run minus the first, item by item: a difference with its paired 95% interval."""
    scored = [run for run in runs if run.sample_scores]
    if len(scored) < 2:
        return None
    reference, others = scored[0], scored[1:]
    rows = []
    for metric, (task, _) in PER_ITEM.items():
        for mode in _modes(scored, task):
            cells = [_paired_cell(reference, run, task, mode, metric) for run in others]
            if any(cell != "–" for cell in cells):
                rows.append([task.upper(), f"{METRICS_BY_NAME[metric].label} ({MODE_LABELS[mode]})", *cells])
    if not rows:
        return None
    note = (
        f"Each cell: the run's value minus {reference.name}'s [95% paired-bootstrap interval], over the same "
        "items. Pairing removes the noise the two runs share (items hard for both), so the interval is "
        "narrower than the per-run intervals suggest. 'other items': the runs scored different items."
    )
    header = ["task", "metric", *[f"{run.name} - {reference.name}" for run in others]]
    return Table(f"Paired differences against {reference.name} (points)", header, rows, note)


SCAN_ROWS = (("frame_auc", "Frame AUC"), ("frame_ap", "Frame AP"), ("video_auc", "Video AUC"))


def scan_table(runs: list[Run]) -> Table | None:
    """`eval run --scan`: frame-level detection, as anomaly-detection papers report it."""
    scanned = [(run.metrics or {}).get("scan") for run in runs]
    if not any(scanned):
        return None
    sources = ["all", *sorted({s for block in scanned if block for s in block["by_source"]})]
    rows = []
    for source in sources:
        for key, label in SCAN_ROWS:
            cells = []
            for block in scanned:
                part = (
                    None
                    if block is None
                    else (block["all"] if source == "all" else block["by_source"].get(source))
                )
                cells.append("–" if part is None else _value(part[key], part[f"{key}_ci"]))
            rows.append([source, label, *cells])
    counts = [
        "–"
        if block is None
        else f"{block['videos']} videos ({block['unreadable']} unreadable, {block['unscanned']} not scanned), "
        f"windows of {block['window']:g} s every {block['stride']:g} s"
        for block in scanned
    ]
    rows.append(["all", "scanned", *counts])
    note = (
        "Each video scanned in windows; an instant's score (scan.frame_rate instants a second, 1 by default) is "
        "the mean P(anomaly) of the windows covering it, its label 1 inside the TAG interval. Intervals resample "
        "videos."
    )
    return Table(
        "Frame-level anomaly detection (scan)", ["source", "metric", *[run.name for run in runs]], rows, note
    )


def video_error_table(runs: list[Run]) -> Table | None:
    rows = [
        [run.name, entry["split"], entry["video"], str(entry["items"]), entry["reason"] or ""]
        for run in runs
        for entry in (run.metrics or {}).get("video_errors", {}).get("list", [])
    ]
    if not rows:
        return None
    return Table(
        "Unreadable videos (their items count as missing)", ["run", "split", "video", "items", "reason"], rows
    )


def mismatch_table(runs: list[Run]) -> Table | None:
    """A warning, first in the report, when the compared eval runs were not tested alike: their
    numbers differ by more than the models then, and items compared pair by pair may not match."""
    evaluated = [run for run in runs if run.metrics is not None]
    if len(evaluated) < 2:
        return None

    def items(run: Run) -> str:
        keys = {f"{r['task']}/{r.get('mode')}/{r['key']}" for r in run.sample_scores if "key" in r}
        return f"{len(keys)} items, set {hashlib.sha256('|'.join(sorted(keys)).encode()).hexdigest()[:8]}"

    described = {
        "video spec": lambda run: run.metrics["run"]["video_spec"],
        "prompt modes": lambda run: ", ".join(run.metrics["run"]["modes"]),
        "splits": lambda run: ", ".join(run.metrics["run"]["splits"]),
        "benchmark": lambda run: str(run.metrics["run"]["bench"]),
        "cleaning rules": lambda run: ", ".join(run.metrics["run"].get("cleaning") or []) or "none",
        "scored items": items,
    }
    rows = []
    for label, describe in described.items():
        values = [describe(run) for run in evaluated]
        if len(set(values)) > 1:
            rows.append([label, *values])
    if not rows:
        return None
    return Table(
        "Warning: these runs were not evaluated alike",
        ["differs in", *[run.name for run in evaluated]],
        rows,
        note="Differences between their numbers mix the models with the settings below.",
    )


TRAIN_SPLIT = "train"


def _constant_block(best: dict[str, dict[str, Any]], modes: set[str]):
    def block(task: str, mode: str, source: str = "all") -> dict[str, Any] | None:
        metrics = (best.get(task) or {}).get("metrics") if mode in modes else None  # a constant has no mode
        if metrics is None or source == "all":
            return metrics
        return metrics.get("by_source", {}).get(source)

    return block


def constant_rows(run: Run) -> list[tuple[str, Any]]:
    """(label, block) rows of the best constant answer per task on the run's own items: the oracle
    (chosen on those items: the most a model that ignores the video could score) and, when the
    benchmark has a train split, the one chosen on it (what a blind model does score). None for a
    directory that is not an eval run."""
    from vaur1.eval.baselines import ORACLE, best_constants, constant_label
    from vaur1.eval.config import load_examples
    from vaur1.eval.run import load_run_config

    try:
        cfg = load_run_config(run.path)
        examples, _ = load_examples(cfg.data, cfg.splits)
    except VaurError:
        return []
    modes = set(cfg.modes)
    rows = [(constant_label(ORACLE), _constant_block(best_constants(examples, resamples=1), modes))]
    if TRAIN_SPLIT not in cfg.splits:
        try:
            train, _ = load_examples(cfg.data, [TRAIN_SPLIT])
        except VaurError:
            train = []
        if train:
            fitted = best_constants(examples, fit_on=train, resamples=1)
            rows.append((constant_label(TRAIN_SPLIT), _constant_block(fitted, modes)))
    return rows


def paper_layout(runs: list[Run], paper: bool = False) -> list[PaperTable]:
    evaluated = [run for run in runs if run.metrics is not None]
    names, blocks = [run.name for run in evaluated], [run.block for run in evaluated]
    for label, block in constant_rows(evaluated[0]) if evaluated else []:
        names, blocks = [*names, label], [*blocks, block]
    return paper_tables(names, blocks, paper)


def paper_layout_tables(papers: list[PaperTable]) -> list[Table]:
    found = []
    for paper_table in papers:
        header, rows, bold = flat_cells(paper_table)
        note = (
            "Best per column in bold. A missing or unreadable answer counts as wrong; the per-task tables "
            "below give how many there were."
        )
        found.append(Table(paper_table.title, header, rows, note=note, bold=bold))
    return found


def tables(runs: list[Run], papers: list[PaperTable] | None = None) -> list[Table]:
    """Every table of the report; `papers`: the paper-layout tables when already built (they load the
    runs' examples for the blind row), else built here."""
    papers = paper_layout(runs) if papers is None else papers
    found = [mismatch_table(runs), *paper_layout_tables(papers), overview_table(runs)]
    found += [task_table(runs, task) for task in SCORED_TASKS]
    found += [
        scan_table(runs),
        paired_table(runs),
        judge_table(runs),
        offline_table(runs),
        video_error_table(runs),
    ]
    return [t for t in found if t is not None]


# ---- plots ----------------------------------------------------------------------------------


def _interval(text: str | None) -> tuple[float, float] | None:
    interval = parse_interval(text)
    return None if interval is None or interval == NO_ANOMALY else interval


def figures(runs: list[Run]) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) for every plot the runs have data for."""
    from vaur1.present import plots

    found: list[tuple[str, str, bytes | None]] = []
    ious = {
        run.name: {
            mode: [
                s["iou"]
                for s in run.sample_scores
                if s["task"] == TAG and s["mode"] == mode and s["iou"] is not None
            ]
            for mode in MODES
        }
        for run in runs
    }
    found.append(("iou_histogram", "TAG IoU of anomalous videos", plots.iou_histogram(ious)))
    for index, run in enumerate(runs):
        stem = f"run{index + 1}"
        positives = [s for s in run.sample_scores if s["task"] == TAG and s["iou"] is not None]
        keys = sorted({s["key"] for s in positives})
        chosen = sorted(random.Random(0).sample(keys, min(TIMELINE_VIDEOS, len(keys))))
        truth = {s["key"]: _interval(s["target"]) for s in positives}
        predicted = {
            mode: {s["key"]: _interval(s["prediction"]) for s in positives if s["mode"] == mode}
            for mode in MODES
            if any(s["mode"] == mode for s in positives)
        }
        labels = {s["key"]: s["video"] for s in positives}
        timeline = plots.interval_timeline(
            [labels[k] for k in chosen],
            {labels[k]: truth[k] for k in chosen if truth[k] is not None},
            {mode: {labels[k]: by_key.get(k) for k in chosen} for mode, by_key in predicted.items()},
        )
        found.append((f"{stem}_timeline", f"{run.name}: predicted against true intervals", timeline))
        pairs = {
            mode: [
                (s["target"], s["prediction"])
                for s in run.sample_scores
                if s["task"] == CLS and s["mode"] == mode
            ]
            for mode in MODES
        }
        found.append(
            (f"{stem}_confusion", f"{run.name}: class confusion matrix", plots.confusion_matrix(pairs))
        )
        if run.training_records:
            curves = plots.training_curves(run.training_records, f"{run.name}: training ({run.training_log})")
            found.append((f"{stem}_training", f"{run.name}: training curves", curves))
    return [(stem, caption, png) for stem, caption, png in found if png is not None]


# ---- rendering ------------------------------------------------------------------------------


def report_json(runs: list[Run]) -> dict[str, Any]:
    return {
        "runs": [
            {
                "name": run.name,
                "path": str(run.path),
                "metrics": run.metrics,
                "training_log": str(run.training_log) if run.training_log else None,
                "training_steps": len(run.training_records),
            }
            for run in runs
        ]
    }


def paper_rows_apply(run_dirs: list[str | Path]) -> bool:
    """Whether any of the runs scored a test set the paper published numbers for (MSAD, UCF-Crime,
    ECVA); a SynthVAU run has no paper row to stand next to."""
    from vaur1.present.paper_results import SOURCES

    paths = [Path(p) for p in run_dirs]
    runs = [load_run(path, name) for path, name in zip(paths, run_names(paths), strict=True)]
    return bool(set(_sources(runs)) & set(SOURCES))


def write_report(run_dirs: list[str | Path], out: str | Path, paper: bool = False) -> dict[str, Path]:
    """Write OUT.md (+ OUT_files/*.png), OUT.html, OUT.json and OUT.tex; return their paths. With
    `paper`, the paper-layout tables also hold the VAU-R1 paper's published Qwen2.5-VL-3B rows."""
    if not run_dirs:
        raise VaurError("give at least one run directory")
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(path, name) for path, name in zip(paths, run_names(paths), strict=True)]
    papers = paper_layout(runs, paper)
    latex = [to_latex(table) for table in papers]
    return write_pages(out, tables(runs, papers), figures(runs), report_json(runs), latex)
