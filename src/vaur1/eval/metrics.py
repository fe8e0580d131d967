"""Per-task metrics from (example, raw model output or None) pairs.

    result = compute_metrics("tag", examples, outputs)     # outputs: {example.key: text or None}

Each sample is scored with the rules the rewards apply (`vaur1.rewards.answer_score`,
`interval_score`, `class_score`), read leniently as the official VAU-R1 scorers read a response
(an answer without its tags still counts; a reward pays only for the answer format):

    qa   accuracy: the option letter (the `accuracy` reward)
    tag  over positives (end > start): mIoU and R@0.3/0.5/0.7 (the `iou` reward); a missing
         output or an unreadable interval scores IoU 0 and is counted in `missing` / `unparsed`;
         `predicted_normal` counts positives answered `[-1, -1]`.
         Over normal videos: `false_alarm_rate`, the share whose output does not say Normal (its
         answer says Anomaly, or, without a label, it gives an interval; or it is missing or
         unreadable: no output is no correct "no alarm"). `missing` and `unparsed` count over
         positives and normal videos.
    cls  binary accuracy (Normal must be predicted Normal; any other class on an anomalous video
         is right), 20-way accuracy (the `class` reward) and macro-F1. Macro-F1 averages the
         per-class F1 over the classes present in the ground truth of the rows scored; a wrong,
         missing or unreadable prediction is a miss for the true class and, when it names a
         class, a false positive for that class.

No metric improves when an output is missing or unreadable: every denominator holds every item of
the split, and such an output is wrong on every metric. Every metric is in percent with two
decimals, overall and per source (`by_source`), with a seeded percentile-bootstrap 95% interval
(`ci`). `n` counts the rows a metric is computed over (for TAG, the positives; `n_normal` the normal
videos).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vaur1.bench.schema import NORMAL
from vaur1.bench.tasks import Example
from vaur1.errors import VaurError
from vaur1.eval.bootstrap import RESAMPLES, SEED, mean_with_ci, statistic_with_ci
from vaur1.parse import (
    NO_ANOMALY,
    extract_class,
    extract_letter,
    format_interval,
    parse_completion,
    parse_interval,
    tag_prediction,
)
from vaur1.rewards import answer_score, class_score, interval_score
from vaur1.vocab import (
    ACCURACY,
    BINARY_ACCURACY,
    CLS,
    FALSE_ALARM_RATE,
    MACRO_F1,
    MIOU,
    MULTICLASS_ACCURACY,
    QA,
    SCORED_TASKS,
    TAG,
    TASK_SPECS,
    says_anomaly,
)

RECALL_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)

Status = Literal["ok", "missing", "unparsed"]


@dataclass(frozen=True)
class SampleScore:
    """One example's score; the fields that do not apply to its task are None."""

    key: str
    source: str
    status: Status  # ok, missing (no output), unparsed (nothing readable in the output)
    target: str  # the ground truth as text: a letter, an interval, Normal, a class
    prediction: str | None  # what the parser read, written the same way
    correct: float | None = None  # qa: the letter; cls: the class
    binary_correct: float | None = None  # cls: normal vs anomalous
    iou: float | None = None  # tag positives
    false_alarm: float | None = None  # tag normal videos


def _status(output: str | None, prediction: str | None) -> Status:
    if output is None:
        return "missing"
    return "ok" if prediction is not None else "unparsed"


def binary_correct(target: str, prediction: str | None) -> bool:
    """Normal vs anomalous: Normal must be predicted Normal; any other class is right on an anomaly."""
    return says_anomaly(prediction) == says_anomaly(target)


def score_sample(example: Example, output: str | None) -> SampleScore:
    """Score one example's raw output; None (no output) scores like an empty one, as `missing`."""
    text = output if output is not None else ""
    parsed = parse_completion(text)
    common = {"key": example.key, "source": example.source}
    if example.task == QA:
        if example.answer is None:
            raise VaurError(f"{example.key}: no answer letter, not a QA example")
        letter = extract_letter(parsed.answer, example.options)
        return SampleScore(
            **common,
            status=_status(output, letter),
            target=example.answer,
            prediction=letter,
            correct=answer_score(text, example, "lenient"),
        )
    if example.task == TAG:
        if example.interval is None:
            raise VaurError(f"{example.key}: no interval, not a TAG example (missing intervals are left out)")
        if example.is_normal:
            label = tag_prediction(parsed)
            return SampleScore(
                **common,
                status=_status(output, label),
                target=NORMAL,
                prediction=label,
                # only an output that says Normal is right: a missing or unreadable one is no "no alarm"
                false_alarm=float(label != NORMAL),
            )
        interval = parse_interval(parsed.glue)
        shown = None if interval is None else format_interval(interval)
        return SampleScore(
            **common,
            status=_status(output, shown),
            target=format_interval(example.interval),
            prediction=shown,
            iou=interval_score(text, example, "lenient"),
        )
    if example.task == CLS:
        if example.anomaly_class is None:
            raise VaurError(f"{example.key}: no anomaly class, not a CLS example")
        label = extract_class(parsed.answer)
        return SampleScore(
            **common,
            status=_status(output, label),
            target=example.anomaly_class,
            prediction=label,
            correct=class_score(text, example, "lenient"),
            binary_correct=float(binary_correct(example.anomaly_class, label)),
        )
    raise VaurError(f"{example.key}: task {example.task!r} has no metrics (tasks: {', '.join(SCORED_TASKS)})")


# ---- aggregation ----------------------------------------------------------------------------


def _class_codes(
    targets: Sequence[str], predictions: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Targets and predictions as integer codes; a missing prediction is -1."""
    labels = sorted(set(targets) | {p for p in predictions if p is not None})
    code = {label: i for i, label in enumerate(labels)}
    target_codes = np.array([code[t] for t in targets], dtype=np.int64)
    prediction_codes = np.array([-1 if p is None else code[p] for p in predictions], dtype=np.int64)
    return target_codes, prediction_codes, len(labels)


def _macro_f1_codes(targets: np.ndarray, predictions: np.ndarray, num_labels: int) -> float:
    true_pos = np.bincount(targets[targets == predictions], minlength=num_labels)
    target_counts = np.bincount(targets, minlength=num_labels)  # TP + FN
    predicted_counts = np.bincount(predictions[predictions >= 0], minlength=num_labels)  # TP + FP
    present = target_counts > 0
    if not present.any():
        return 0.0
    return float(np.mean(2 * true_pos[present] / (target_counts[present] + predicted_counts[present])))


def macro_f1(targets: Sequence[str], predictions: Sequence[str | None]) -> float:
    """Mean F1 over the classes present in `targets`, as a fraction (not a percent)."""
    return _macro_f1_codes(*_class_codes(targets, predictions))


def _counts(scores: list[SampleScore]) -> dict[str, int]:
    statuses = Counter(s.status for s in scores)
    return {"missing": statuses["missing"], "unparsed": statuses["unparsed"]}


def _summary_qa(scores: list[SampleScore], rng: np.random.Generator, resamples: int) -> dict:
    accuracy, ci = mean_with_ci(np.array([s.correct for s in scores], dtype=float), rng, resamples)
    return {"n": len(scores), ACCURACY: accuracy, **_counts(scores), "ci": {ACCURACY: ci}}


def _summary_tag(scores: list[SampleScore], rng: np.random.Generator, resamples: int) -> dict:
    positives = [s for s in scores if s.iou is not None]
    normals = [s for s in scores if s.false_alarm is not None]
    ious = np.array([s.iou for s in positives], dtype=float)
    result: dict = {"n": len(positives)}
    ci: dict = {}
    result[MIOU], ci[MIOU] = mean_with_ci(ious, rng, resamples)
    for threshold in RECALL_THRESHOLDS:
        name = f"r@{threshold}"
        result[name], ci[name] = mean_with_ci((ious >= threshold).astype(float), rng, resamples)
    result.update(_counts(scores))  # over positives and normal videos: every TAG item of the split
    false_alarms = np.array([s.false_alarm for s in normals], dtype=float)
    result[FALSE_ALARM_RATE], ci[FALSE_ALARM_RATE] = mean_with_ci(false_alarms, rng, resamples)
    result["n_normal"] = len(normals)
    result["predicted_normal"] = sum(1 for s in positives if s.prediction == format_interval(NO_ANOMALY))
    result["ci"] = ci
    return result


def _summary_cls(scores: list[SampleScore], rng: np.random.Generator, resamples: int) -> dict:
    result: dict = {"n": len(scores)}
    ci: dict = {}
    binary = np.array([s.binary_correct for s in scores], dtype=float)
    multiclass = np.array([s.correct for s in scores], dtype=float)
    result[BINARY_ACCURACY], ci[BINARY_ACCURACY] = mean_with_ci(binary, rng, resamples)
    result[MULTICLASS_ACCURACY], ci[MULTICLASS_ACCURACY] = mean_with_ci(multiclass, rng, resamples)
    targets, predictions, num_labels = _class_codes(
        [s.target for s in scores], [s.prediction for s in scores]
    )
    result[MACRO_F1], ci[MACRO_F1] = statistic_with_ci(
        len(scores), lambda idx: _macro_f1_codes(targets[idx], predictions[idx], num_labels), rng, resamples
    )
    result.update(_counts(scores))
    result["ci"] = ci
    return result


_SUMMARIES = {QA: _summary_qa, TAG: _summary_tag, CLS: _summary_cls}


def summarize(task: str, scores: Sequence[SampleScore], resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The task's metrics over sample scores: overall, then per source (`by_source`)."""
    if task not in _SUMMARIES:
        raise VaurError(f"task {task!r} has no metrics (tasks: {', '.join(SCORED_TASKS)})")
    if resamples < 1:
        raise VaurError(f"resamples must be at least 1, got {resamples}")
    summary = _SUMMARIES[task]
    result = summary(list(scores), np.random.default_rng(seed), resamples)
    sources = sorted({s.source for s in scores})
    result["by_source"] = {
        source: summary([s for s in scores if s.source == source], np.random.default_rng(seed), resamples)
        for source in sources
    }
    return result


def compute_metrics(
    task: str,
    examples: Sequence[Example],
    outputs: Mapping[str, str | None],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict:
    """Metrics of one task; `outputs` maps `example.key` to the raw output (absent or None: missing)."""
    wrong = [e for e in examples if e.task != task]
    if wrong:
        raise VaurError(f"{wrong[0].key}: a {wrong[0].task} example among {task} examples")
    scores = [score_sample(e, outputs.get(e.key)) for e in examples]
    return summarize(task, scores, resamples=resamples, seed=seed)


# ---- trivial baselines ----------------------------------------------------------------------

BASELINES: dict[str, tuple[str, ...]] = {
    task: spec.baselines for task, spec in TASK_SPECS.items() if spec.scored
}
CONSTANT_INTERVAL_CANDIDATES = 65  # boundary quantiles tried by `best_constant_interval`


def best_constant_interval(examples: Sequence[Example]) -> tuple[float, float]:
    """The interval with the highest mean IoU over the TAG positives of `examples`, searched over
    pairs of their boundaries' quantiles (rounded to 0.1 s, as answers are): what a model that
    answers every clip alike can reach on TAG mIoU."""
    positives = [
        e.interval for e in examples if e.task == TAG and e.interval and e.interval[1] > e.interval[0]
    ]
    if not positives:
        raise VaurError("a constant interval needs at least one TAG example with an anomaly interval")
    targets = np.asarray(positives, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, CONSTANT_INTERVAL_CANDIDATES)
    candidates = np.unique(np.round(np.quantile(targets.ravel(), levels), 1))
    starts, ends = np.meshgrid(candidates, candidates, indexing="ij")
    keep = ends > starts
    starts, ends = starts[keep][:, None], ends[keep][:, None]
    overlap = np.clip(np.minimum(ends, targets[:, 1]) - np.maximum(starts, targets[:, 0]), 0.0, None)
    union = np.maximum(ends, targets[:, 1]) - np.minimum(starts, targets[:, 0])
    best = int(np.argmax((overlap / union).mean(axis=1)))
    return float(starts[best, 0]), float(ends[best, 0])


def baseline_outputs(
    task: str, examples: Sequence[Example], kind: str, fit_on: Sequence[Example] | None = None
) -> dict[str, str]:
    """Outputs of a trivial baseline, keyed like `compute_metrics` wants them.

    constant_letter  QA: the most common answer letter (A on the released files, which favour it heavily)
    always_normal    TAG: `Normal` with `[-1, -1]`; CLS: `Normal`
    always_interval  TAG: `Anomaly` with the best constant interval (`best_constant_interval`)
    always_anomaly   CLS: the most frequent anomaly class, every time

    The letter, the interval and the class are chosen on `fit_on` (default: `examples` themselves, an
    oracle that flatters the baseline; give a training split for a blind model's honest score).
    """
    if kind not in BASELINES.get(task, ()):
        known = ", ".join(f"{t}: {', '.join(k)}" for t, k in BASELINES.items())
        raise VaurError(f"no baseline {kind!r} for task {task!r} (baselines: {known})")
    fit_on = examples if fit_on is None else fit_on
    if kind == "constant_letter":
        letters = Counter(e.answer for e in fit_on if e.task == QA and e.answer is not None)
        if not letters:
            raise VaurError("constant_letter needs at least one QA example to pick a letter from")
        text = f"<answer>{letters.most_common(1)[0][0]}</answer>"
    elif kind == "always_normal":
        text = f"<answer>{NORMAL}</answer>" + ("<glue>[-1, -1]</glue>" if task == TAG else "")
    elif kind == "always_interval":
        text = f"<answer>Anomaly</answer><glue>{format_interval(best_constant_interval(fit_on))}</glue>"
    else:
        anomalies = Counter(e.anomaly_class for e in fit_on if e.anomaly_class not in (None, NORMAL))
        if not anomalies:
            raise VaurError("always_anomaly needs at least one anomalous example to pick a class from")
        text = f"<answer>{anomalies.most_common(1)[0][0]}</answer>"
    return {e.key: text for e in examples}
