"""What a model that ignores the video scores: the trivial baselines of `vaur1.eval.metrics`, per source.

    result = blind_baselines(test_examples, fit_on=val_examples)
    result["tag"]["always_interval"]["metrics"]["miou"]        # the best constant interval's mIoU
    best = best_constants(test_examples, fit_on=train_examples)  # per task, the kind best on train

A constant answer has one definition, and its label says how it was chosen (`constant_label`):
on a training split (a blind model's honest score) or on the scored items themselves (the oracle).
The demo, the report and `vaur1 eval baselines` all build it here.

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
from vaur1.parse import parse_completion
from vaur1.vocab import CLS, HEADLINE_METRICS, MULTICLASS_ACCURACY

# `fit_on` left out: the constant answers are chosen on the very items they are scored on
ORACLE = "oracle"


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


def best_constants(
    examples: Sequence[Example],
    fit_on: Sequence[Example] | None = None,
    tasks: Sequence[str] = tuple(BASELINES),
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, dict[str, Any]]:
    """The best constant answer of each task, scored on `examples`: {task: {"kind", "answers",
    "unfitted_sources", "metrics"}}.

    Everything is chosen on `fit_on` alone: each kind's answer per source, and then the kind whose
    headline metric is highest there. With `fit_on` a training split this is what a blind model can
    score; without it (`fit_on` = `examples`, the oracle) it is the most one could score with hindsight.
    """
    fit_on = examples if fit_on is None else fit_on
    scored = blind_baselines(examples, fit_on, tasks, resamples, seed)
    fitted = scored if fit_on is examples else blind_baselines(fit_on, fit_on, tasks, resamples=1, seed=seed)
    best: dict[str, dict[str, Any]] = {}
    for task, kinds in scored.items():
        headline = HEADLINE_METRICS[task]

        def on_fit(kind: str, task: str = task, headline: str = headline) -> float:
            metrics = (fitted.get(task, {}).get(kind) or {}).get("metrics")
            return -1.0 if metrics is None or metrics[headline] is None else metrics[headline]

        kind = max(kinds, key=on_fit)
        best[task] = {"kind": kind, **kinds[kind]}
    return best


def shown_answer(text: str) -> str:
    """A constant answer as tables show it: the answer, and the interval when it has one."""
    parsed = parse_completion(text)
    return " ".join(part for part in (parsed.answer, parsed.glue if parsed.glue_tagged else None) if part)


def constant_label(chosen_on: str) -> str:
    """How every table names a constant-answer row: by where its answers were chosen."""
    if chosen_on == ORACLE:
        return "constant answer (oracle: chosen on the test items)"
    return f"constant answer (chosen on {chosen_on})"


def constant_class_accuracy(examples: Sequence[Example]) -> float:
    """The CLS accuracy of the best constant answer on `examples` (the oracle), in points. A model that
    scores no better on CLS does not tell the clips apart."""
    best = best_constants(examples, tasks=[CLS], resamples=1)
    if CLS not in best:
        raise VaurError("a constant CLS answer needs CLS examples")
    return best[CLS]["metrics"][MULTICLASS_ACCURACY]


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
