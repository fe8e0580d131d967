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

import math
from collections.abc import Sequence
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError, VaurError
from vaur1.eval.bootstrap import RESAMPLES, SEED
from vaur1.eval.metrics import BASELINES, baseline_outputs, compute_metrics


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


def best_constant_class(baselines: dict[str, Any]) -> str:
    """The CLS baseline kind (always Normal, always the most common anomaly) of higher accuracy."""
    return max(baselines["cls"], key=lambda kind: baselines["cls"][kind]["metrics"]["multiclass_accuracy"])


def constant_class_accuracy(examples: Sequence[Example]) -> float:
    """The CLS accuracy of the best constant answer on `examples`, in points: the most common class's
    share. A model that scores no better on CLS does not tell the clips apart."""
    baselines = blind_baselines(examples, tasks=["cls"], resamples=1)
    if "cls" not in baselines:
        raise VaurError("a constant CLS answer needs CLS examples")
    return baselines["cls"][best_constant_class(baselines)]["metrics"]["multiclass_accuracy"]


def reading_level(constant: float, n: int, alpha: float = 0.05) -> float:
    """The CLS accuracy, in points, from which a model has read the video: the least that beats the
    best constant answer (`constant` points of `n` clips) with a one-sided binomial p-value of at most
    `alpha`. One clip above the constant is chance: on 54 val clips a blind SFT scored 37.0 against
    33.3 once, and that single evaluation would have let patience stop it."""
    share = constant / 100
    for right in range(n + 1):
        if right / n <= share:
            continue
        p_value = sum(math.comb(n, k) * share**k * (1 - share) ** (n - k) for k in range(right, n + 1))
        if p_value <= alpha:
            return 100 * right / n
    raise ConfigError(
        f"{n} CLS clips cannot show a model beating the best constant answer ({constant:.1f}%) "
        "beyond chance: validate on more clips"
    )
