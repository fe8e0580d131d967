"""What a model that ignores the video scores: the trivial baselines of `vaur1.eval.metrics`, per source.

    result = blind_baselines(test_examples, fit_on=val_examples)
    result["tag"]["always_interval"]["metrics"]["miou"]        # the best constant interval's mIoU

A constant answer (an interval, a class) is chosen per source, on that source's examples of `fit_on`
(default: the scored examples themselves, which flatters the baseline): one interval for all of a
dataset's clips would mix MSAD's 15-second events with ECVA's minute-long ones. A source that
`fit_on` has no examples of gets no answer; its examples are left out of that baseline and named
in `unfitted_sources`, never scored against another source's answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.errors import VaurError
from vaur1.eval.metrics import BASELINES, RESAMPLES, SEED, baseline_outputs, compute_metrics


def blind_baselines(
    examples: Sequence[Example],
    fit_on: Sequence[Example] | None = None,
    tasks: Sequence[str] = tuple(BASELINES),
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, dict[str, Any]]:
    """{task: {kind: {"answers": {source: text}, "unfitted_sources": [...], "metrics": ...}}}."""
    fit_on = examples if fit_on is None else fit_on
    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        scored = [e for e in examples if e.task == task]
        if not scored:
            continue
        results[task] = {}
        for kind in BASELINES[task]:
            answers: dict[str, str] = {}
            unfitted: list[str] = []
            kept: list[Example] = []
            outputs: dict[str, str] = {}
            for source in sorted({e.source for e in scored}):
                here = [e for e in scored if e.source == source]
                fit = [e for e in fit_on if e.task == task and e.source == source]
                try:
                    texts = baseline_outputs(task, here, kind, fit_on=fit)
                except VaurError:  # nothing to choose an interval or a class from
                    unfitted.append(source)
                    continue
                answers[source] = texts[here[0].key]
                outputs.update(texts)
                kept.extend(here)
            results[task][kind] = {
                "answers": answers,
                "unfitted_sources": unfitted,
                "metrics": compute_metrics(task, kept, outputs, resamples, seed) if kept else None,
            }
    return results
