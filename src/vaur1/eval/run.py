"""`vaur1 eval run` from end to end: inference, then metrics.json (the report is written by
`vaur1.present.evaluate`, which runs this with its report at the end).

    metrics = run_eval(load_eval_config(...))      # predict what is left, score
    metrics = score_run(cfg, examples, run_dir)    # score what predictions.jsonl holds

A run directory holds:
    config.yaml, run_info.json   the resolved config, versions, git revision, data file hashes
    predictions.jsonl            one line per (example, mode), see `vaur1.eval.predictions`
    metrics.json                 every task and mode: overall and per source, with 95% intervals
    sample_scores.jsonl          what each QA/TAG/CLS item scored (the report's plots read it)
    reasoning_scores.jsonl       each reasoning item's description, analysis and scores
    judge_cache.jsonl            the judge's verdicts, when a judge is configured
    report.md, report.html       tables and plots (`vaur1 report` for several runs side by side)

QA, TAG and CLS are scored by `vaur1.eval.metrics`, the functions `vaur1 eval metrics` uses, so
each task-and-mode block of metrics.json has exactly the keys `vaur1 eval metrics --json` prints.
An item without output (its video could not be read, or the run stopped before it) scores as
`missing`: it stays in every denominator, and its video is listed under `video_errors`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vaur1.bench import split_files
from vaur1.bench.tasks import Example
from vaur1.config import load_config, read_yaml, to_dict
from vaur1.console import ProgressBar
from vaur1.errors import ConfigError, VaurError
from vaur1.eval.config import EvalConfig, check_offline_scorer, load_examples
from vaur1.eval.infer import InferenceSummary, run_inference
from vaur1.eval.metrics import score_sample, summarize
from vaur1.eval.offline_scorer import OfflineScorer
from vaur1.eval.predictions import VIDEO_ERROR, item_key, read_predictions
from vaur1.eval.reasoning import score_reasoning
from vaur1.eval.scan_run import check_recorded, recorded_scans, scan_items, scan_metrics, scan_run
from vaur1.files import write_json, write_jsonl
from vaur1.layout import EvalRun
from vaur1.model.generators import Generator, check_backend, load_generator
from vaur1.runinfo import write_run_metadata
from vaur1.runlock import claim_run
from vaur1.video.roots import check_videos
from vaur1.vocab import REASONING, SCORED_TASKS, TASK_SPECS

MAX_LISTED = 50  # videos listed by name per problem; the counts are always complete

# What must not change between a run and its resumption: it decides what the predictions are.
RESUME_KEYS: tuple[str, ...] = (
    "model.name_or_path",
    "model.dtype",
    "data.bench",
    "video",
    "prompts",
    "sampling",
    "backend",
)

log = logging.getLogger("vaur1.eval")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def check_resumable(run_dir: Path, cfg: EvalConfig) -> None:
    """Refuse to add predictions to a run made with another model, data, VideoSpec, prompts or sampling."""
    run = EvalRun(run_dir)
    saved_path = run.config
    if not run.predictions.is_file() or not saved_path.is_file():
        return
    saved = _flatten(read_yaml(saved_path))
    current = _flatten(to_dict(cfg))
    for key in sorted(set(saved) | set(current)):
        if not any(key == k or key.startswith(f"{k}.") for k in RESUME_KEYS):
            continue
        if saved.get(key) != current.get(key):
            raise VaurError(
                f"{run_dir} holds predictions made with {key}={saved.get(key)!r}, this run has "
                f"{current.get(key)!r}; give another --out, or remove {run.predictions} to start over"
            )


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> EvalConfig:
    """The config a run was made with (its config.yaml), with dotted overrides applied."""
    path = EvalRun(run_dir).config
    if not path.is_file():
        raise VaurError(f"{run_dir}: not an eval run directory (no {path.name})")
    cfg = load_config(EvalConfig, path, overrides)
    cfg.validate()
    return cfg


def check_judge_key(cfg: EvalConfig) -> None:
    """Fail before inference, not after it, when the judge's API key is not in the environment."""
    judge = cfg.judge
    if judge is None or REASONING not in cfg.data.tasks or not judge.api_key_env:
        return
    if not os.environ.get(judge.api_key_env):
        raise VaurError(
            f"the judge's API key is not set: export {judge.api_key_env}=... (or judge later with "
            "vaur1 eval judge RUN_DIR; judge.api_key_env='' for an endpoint without a key)"
        )


def run_eval(
    cfg: EvalConfig,
    generator: Generator | None = None,
    progress: bool = True,
    report: Callable[[Path], Any] | None = None,
) -> dict[str, Any]:
    """Predict every item not yet in the run directory, then write metrics.json; `report(run_dir)`
    is called after scoring, while the run's folder is still this job's."""
    cfg.validate()
    if not cfg.out:
        raise ConfigError("out: give the run directory (--out RUN_DIR)")
    run_dir = Path(cfg.out)
    if generator is None:
        check_backend(cfg.backend)
    if cfg.scores_reasoning_offline:
        check_offline_scorer()
    check_judge_key(cfg)
    examples, bench_rows = load_examples(cfg.data, cfg.splits)
    warn_skipped_rows(bench_rows)
    if not examples:
        raise VaurError(
            f"{cfg.data.bench}: no examples for tasks {', '.join(cfg.data.tasks)} in {cfg.data.split}"
        )
    # wrong video roots stop here; a few missing files are scored as video errors, in the denominators
    check_videos(examples, cfg.data.roots(), cfg.data.max_missing_videos)
    # the folder is this job's before anything in it is read or written: two runs on one --out would
    # otherwise pass each other's resume check and mix their settings
    with claim_run(run_dir, "eval"):
        check_resumable(run_dir, cfg)
        write_run_metadata(run_dir, cfg, split_files(cfg.data.bench, cfg.splits))
        if cfg.scan is not None and generator is None:  # one model for the items and the scans
            generator = load_generator(cfg.model, cfg.sampling, cfg.video, cfg.backend, cfg.vllm)
        inference = run_inference(cfg, examples, run_dir, generator, progress)
        if cfg.scan is not None:
            run_scans(cfg, examples, run_dir, generator, progress)
        metrics = score_run(cfg, examples, run_dir, inference, bench_rows)
        if report is not None:
            report(run_dir)
    if metrics["items"]["predicted"] == 0:
        raise VaurError(
            f"{run_dir}: no item was answered: all {metrics['items']['expected']} failed on their videos "
            "(listed under video_errors in metrics.json)"
        )
    return metrics


def run_scans(cfg: EvalConfig, examples: list[Example], run_dir: Path, generator, progress: bool) -> None:
    """`--scan`: every TAG video scanned into RUN_DIR/scans.jsonl (those already there kept)."""
    check_recorded(cfg, EvalRun(run_dir))
    recorded = recorded_scans(EvalRun(run_dir))
    videos = sum(1 for item in scan_items(examples) if item.key not in recorded)
    if videos == 0:
        return
    with ProgressBar(videos, enabled=progress, description="scan", unit="video") as bar:
        scan_run(cfg, examples, EvalRun(run_dir), generator, lambda done, _: bar.update(done))


def _prediction_report(task_examples: list[Example], records: dict[str, dict | None]) -> dict[str, Any]:
    """The `predictions` block of `vaur1 eval metrics`, for one task and mode of a run."""
    present = [r for r in records.values() if r is not None]
    errors = [r for r in present if r.get("status") == VIDEO_ERROR]
    return {
        "lines": len(present),
        "matched": len(present),
        "not_scored_for_task": 0,
        "unknown_videos": {"count": 0, "lines": []},
        "duplicates": {"count": 0, "lines": []},
        "malformed": {"count": 0, "lines": []},
        "video_errors": {"count": len(errors), "videos": sorted({r["video"] for r in errors})[:MAX_LISTED]},
        "not_run": len(task_examples) - len(present),
    }


def _video_errors(predictions: dict[str, dict]) -> dict[str, Any]:
    by_video: dict[tuple[str, str], dict[str, Any]] = {}
    for record in predictions.values():
        if record.get("status") != VIDEO_ERROR:
            continue
        entry = by_video.setdefault(
            (record["split"], record["video"]),
            {
                "video": record["video"],
                "split": record["split"],
                "source": record["source"],
                "path": record.get("path"),
                "reason": record.get("error"),
                "items": 0,
            },
        )
        entry["items"] += 1
    listed = sorted(by_video.values(), key=lambda e: (e["split"], e["video"]))
    return {"videos": len(listed), "items": sum(e["items"] for e in listed), "list": listed[:MAX_LISTED]}


def _timing(predictions: dict[str, dict], inference: InferenceSummary | None) -> dict[str, Any]:
    answered = [r for r in predictions.values() if r.get("status") == "ok"]
    seconds = sum(r.get("seconds", 0.0) for r in answered)
    timing: dict[str, Any] = {
        "answered": len(answered),
        "model_seconds": round(seconds, 3),
        "seconds_per_item": round(seconds / len(answered), 4) if answered else None,
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in answered),
        "truncated": sum(1 for r in answered if r.get("truncated")),
    }
    if inference is not None:
        timing["last_call"] = {**asdict(inference), "items_per_second": inference.items_per_second}
    return timing


def warn_skipped_rows(bench_rows: dict[str, Any]) -> None:
    """One console line per file with malformed rows: the denominators below leave them out."""
    for rows in bench_rows.values():
        skipped = sum(rows["skipped"].values())
        if skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in rows["skipped"].items())
            log.warning(
                "%s: %d of %d rows skipped as malformed (%s); first: %s (data.strict=true stops there)",
                rows["file"],
                skipped,
                rows["rows_read"],
                reasons,
                rows["problems"][0] if rows["problems"] else "",
            )


def score_run(
    cfg: EvalConfig,
    examples: list[Example],
    run_dir: str | Path,
    inference: InferenceSummary | None = None,
    bench_rows: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json, sample_scores.jsonl and reasoning_scores.jsonl from the run's predictions.
    `bench_rows`: what happened to each split's CSV rows, recorded so that skipped rows are seen."""
    run_dir = Path(run_dir)
    expected = {item_key(e, mode) for e in examples for mode in cfg.modes}
    # predictions of tasks, modes or splits this config leaves out are kept in the file, not scored
    predictions = {k: r for k, r in read_predictions(run_dir).items() if k in expected}
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_task[example.task].append(example)
    offline = None
    if cfg.scores_reasoning_offline and by_task.get(REASONING):
        offline = OfflineScorer()
    tasks: dict[str, dict[str, Any]] = {}
    sample_lines: list[dict[str, Any]] = []
    reasoning_lines: list[dict[str, Any]] = []
    for task in cfg.data.tasks:
        task_examples = by_task.get(task, [])
        tasks[task] = {}
        for mode in cfg.modes:
            records = {e.key: predictions.get(item_key(e, mode)) for e in task_examples}
            outputs = {key: (r or {}).get("output") for key, r in records.items()}
            if task in SCORED_TASKS:
                scores = [score_sample(e, outputs[e.key]) for e in task_examples]
                block = summarize(task, scores, resamples=cfg.resamples, seed=cfg.bootstrap_seed)
                block["predictions"] = _prediction_report(task_examples, records)
                # each item's line holds the task's own fields (`TaskSpec.item_fields`), not the others' Nones
                fields = ("key", "source", "status", *TASK_SPECS[task].item_fields)
                sample_lines += [
                    {"task": task, "mode": mode, "video": e.id, **{name: getattr(s, name) for name in fields}}
                    for e, s in zip(task_examples, scores, strict=True)
                ]
            else:
                block, lines = score_reasoning(
                    task_examples, outputs, cfg.judge, offline, run_dir, cfg.resamples, cfg.bootstrap_seed
                )
                block["predictions"] = _prediction_report(task_examples, records)
                reasoning_lines += [{"mode": mode, **line} for line in lines]
            tasks[task][mode] = block
    metrics = {
        "run": {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": cfg.model.name_or_path,
            "bench": cfg.data.bench,
            "cleaning": list(cfg.data.cleaning),
            "splits": cfg.splits,
            "tasks": list(cfg.data.tasks),
            "modes": list(cfg.modes),
            "video_spec": cfg.video.describe(),
            "backend": cfg.backend,
            "batch_size": cfg.batch_size,
            "judge": cfg.judge.name if cfg.judge is not None else None,
            "offline_scorer": offline.name if offline is not None else None,
        },
        "items": {
            "expected": len(expected),
            "predicted": sum(1 for r in predictions.values() if r.get("status") != VIDEO_ERROR),
            "video_errors": sum(1 for r in predictions.values() if r.get("status") == VIDEO_ERROR),
        },
        "video_errors": _video_errors(predictions),
        "bench_rows": bench_rows or {},
        "timing": _timing(predictions, inference),
        "tasks": tasks,
    }
    if cfg.scan is not None:
        metrics["scan"] = scan_metrics(cfg, examples, EvalRun(run_dir))
    run = EvalRun(run_dir)
    write_jsonl(run.sample_scores, sample_lines)
    write_jsonl(run.reasoning_scores, reasoning_lines)
    write_json(run.metrics, metrics)
    return metrics


def rescore(
    run_dir: str | Path, overrides: list[str] | None = None, report: Callable[[Path], Any] | None = None
) -> dict[str, Any]:
    """Score a run again from its config and predictions (e.g. with a judge now), without the model;
    `report(run_dir)` is called after scoring, while the folder is still this job's."""
    cfg = load_run_config(run_dir, overrides)
    if cfg.scores_reasoning_offline:
        check_offline_scorer()
    examples, bench_rows = load_examples(cfg.data, cfg.splits)
    warn_skipped_rows(bench_rows)
    with claim_run(run_dir, "eval"):
        metrics = score_run(cfg, examples, run_dir, bench_rows=bench_rows)
        if report is not None:
            report(Path(run_dir))
    return metrics
