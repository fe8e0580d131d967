"""The reasoning task scored: the model's description and analysis, by the VAU-Eval judge and/or
the offline MiniLM + ROUGE-L scorer, each under its own name.

The reasoning prompt asks for one answer, `Description: ... Analysis: ...` (one turn instead of
the official script's two, so that the video is encoded once and the item batches like any
other). `reasoning_parts` splits that answer; without the headings the whole answer is the
description and the analysis is empty, which the judge sees as it is.

An item without output (its video could not be read, or the run stopped before it) is never sent
to a scorer: the judge lists it as unscored, the offline scorer as missing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.eval.bootstrap import mean_interval
from vaur1.eval.judge import DIMENSIONS, JudgeConfig, JudgeRequest, JudgeResult, aggregate, judge_many
from vaur1.eval.offline_scorer import METRICS as OFFLINE_METRICS
from vaur1.eval.offline_scorer import OfflineScore, OfflineScorer, summarize_offline
from vaur1.layout import EvalRun
from vaur1.parse import parse_completion

_DESCRIPTION = re.compile(r"\bdescription\s*:", re.IGNORECASE)
_ANALYSIS = re.compile(r"\banalysis\s*:", re.IGNORECASE)


def reasoning_parts(output: str) -> tuple[str, str]:
    """(description, analysis) from a reasoning answer, read through the one parser."""
    answer = parse_completion(output).answer or ""
    analysis_at = _ANALYSIS.search(answer)
    head = answer[: analysis_at.start()] if analysis_at else answer
    analysis = answer[analysis_at.end() :].strip() if analysis_at else ""
    description_at = _DESCRIPTION.search(head)
    description = head[description_at.end() :] if description_at else head
    return description.strip(), analysis


def _judge_summary(results: Sequence[JudgeResult], judge: str, resamples: int, seed: int) -> dict[str, Any]:
    summary = aggregate(results, judge).to_dict()
    scored = [r for r in results if r.status == "scored"]
    summary["ci"] = {
        "mean_total": mean_interval([float(r.total or 0) for r in scored], resamples, seed),
        **{d: mean_interval([float(r.scores[d]) for r in scored], resamples, seed) for d in DIMENSIONS},
    }
    return summary


def _offline_summary(scores: Sequence[OfflineScore], missing: list[str], resamples: int, seed: int) -> dict:
    summary = summarize_offline(scores)
    summary["missing"] = len(missing)
    summary["missing_ids"] = missing
    summary["ci"] = {
        m: mean_interval([v for v in (getattr(s, m) for s in scores) if v is not None], resamples, seed)
        for m in OFFLINE_METRICS
    }
    return summary


def _by_source(examples: Sequence[Example], summarize) -> dict[str, Any]:
    return {source: summarize(source) for source in sorted({e.source for e in examples})}


def score_reasoning(
    examples: Sequence[Example],
    outputs: dict[str, str | None],
    judge: JudgeConfig | None,
    offline: OfflineScorer | None,
    run_dir: str | Path,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the metrics block of one mode, one record per example) for reasoning examples.

    `outputs` maps example keys to raw outputs; absent or None is no output. The judge's cache
    defaults to `run_dir/judge_cache.jsonl`, so a rerun asks only about what changed.
    """
    answered = [e for e in examples if outputs.get(e.key) is not None]
    missing = [e.key for e in examples if outputs.get(e.key) is None]
    parts = {e.key: reasoning_parts(outputs[e.key] or "") for e in answered}
    requests = [JudgeRequest.from_example(e, *parts[e.key]) for e in answered]
    block: dict[str, Any] = {"n": len(examples), "answered": len(answered), "missing": len(missing)}
    source_of = {e.key: e.source for e in examples}
    judged: dict[str, JudgeResult] = {}
    if judge is not None:
        if judge.cache_path is None:
            judge = replace(judge, cache_path=str(EvalRun(run_dir).judge_cache))
        results = judge_many(requests, judge)
        results += [
            JudgeResult(key, "unscored", error="no model output (see predictions.jsonl)", judge=judge.name)
            for key in missing
        ]
        judged = {r.sample_id: r for r in results}
        block["judge"] = _judge_summary(results, judge.name, resamples, seed)
        block["judge"]["by_source"] = _by_source(
            examples,
            lambda source: _judge_summary(
                [r for r in results if source_of[r.sample_id] == source], judge.name, resamples, seed
            ),
        )
    offline_scores: dict[str, OfflineScore] = {}
    if offline is not None:
        scores = offline.score_many(requests)
        offline_scores = {s.sample_id: s for s in scores}
        block["offline"] = _offline_summary(scores, missing, resamples, seed)
        block["offline"]["by_source"] = _by_source(
            examples,
            lambda source: _offline_summary(
                [s for s in scores if source_of[s.sample_id] == source],
                [k for k in missing if source_of[k] == source],
                resamples,
                seed,
            ),
        )
    records = []
    for example in examples:
        description, analysis = parts.get(example.key, (None, None))
        judged_one, scored_one = judged.get(example.key), offline_scores.get(example.key)
        records.append(
            {
                "key": example.key,
                "source": example.source,
                "description": description,
                "analysis": analysis,
                "judge": judged_one.to_dict() if judged_one else None,
                "offline": scored_one.to_dict() if scored_one else None,
            }
        )
    return block, records
