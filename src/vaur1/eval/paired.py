"""How much one model beats another on the same test items, with a paired bootstrap interval.

    gain = paired_gain([(sft_scores, grpo_scores)], "tag.miou")   # {"gain": 1.1, "ci": [-0.9, 3.0], "n": 240}

The inputs are `sample_scores.jsonl` records (one per scored item) of two evaluations of the same
examples. Both models answered the same items, so the difference is resampled item by item: the
interval is much narrower than the two metrics' own intervals suggest, because an item that is
hard for one model is usually hard for the other. With several groups (one per seed), the gain is
the mean of the groups' gains and every resample redraws the items of each group separately.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vaur1.errors import VaurError
from vaur1.eval.bootstrap import RESAMPLES, SEED, percent, percentile_interval
from vaur1.vocab import (
    ACCURACY,
    BINARY_ACCURACY,
    CLS,
    FALSE_ALARM_RATE,
    MIOU,
    MULTICLASS_ACCURACY,
    QA,
    RECALL_AT,
    TAG,
    metric_name,
)

Record = Mapping[str, Any]


def _at_least(threshold: float) -> Callable[[Record], float | None]:
    return lambda r: None if r["iou"] is None else float(r["iou"] >= threshold)


# metric (as in the headline tables) -> (task, the item's value; None: the item does not count)
PER_ITEM: dict[str, tuple[str, Callable[[Record], float | None]]] = {
    metric_name(QA, ACCURACY): (QA, lambda r: r["correct"]),
    metric_name(TAG, MIOU): (TAG, lambda r: r["iou"]),
    **{metric_name(TAG, key): (TAG, _at_least(threshold)) for threshold, key in RECALL_AT.items()},
    metric_name(TAG, FALSE_ALARM_RATE): (TAG, lambda r: r["false_alarm"]),
    metric_name(CLS, MULTICLASS_ACCURACY): (CLS, lambda r: r["correct"]),
    metric_name(CLS, BINARY_ACCURACY): (CLS, lambda r: r["binary_correct"]),
}


def _values(records: Sequence[Record], metric: str, side: str) -> dict[tuple[str, str], float]:
    task, value_of = PER_ITEM[metric]
    values: dict[tuple[str, str], float] = {}
    for record in records:
        if record["task"] != task:
            continue
        value = value_of(record)
        if value is None:
            continue
        item = (record["key"], record.get("mode", ""))
        if item in values:
            raise VaurError(f"{side}: item {item[0]} ({item[1]}) is scored twice")
        values[item] = float(value)
    return values


def _differences(before: Sequence[Record], after: Sequence[Record], metric: str) -> np.ndarray:
    old, new = _values(before, metric, "before"), _values(after, metric, "after")
    if old.keys() != new.keys():
        missing = [
            f"{len(items)} only {side} (e.g. {min(items)[0]} in {min(items)[1] or 'any'} mode)"
            for side, items in (("before", old.keys() - new.keys()), ("after", new.keys() - old.keys()))
            if items
        ]
        raise VaurError(
            f"{metric}: the two evaluations scored different items: {', '.join(missing)}; "
            "a paired difference needs the same test items"
        )
    items = sorted(old)
    return np.array([new[item] - old[item] for item in items], dtype=float)


def paired_gain(
    groups: Sequence[tuple[Sequence[Record], Sequence[Record]]],
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any] | None:
    """After minus before on `metric` in points: the mean over groups, with a 95% percentile-bootstrap
    interval that redraws each group's items. None when no group has an item the metric counts."""
    if metric not in PER_ITEM:
        raise VaurError(f"no paired difference for {metric!r} (metrics: {', '.join(PER_ITEM)})")
    if resamples < 1:
        raise VaurError(f"resamples must be at least 1, got {resamples}")
    differences = [d for d in (_differences(before, after, metric) for before, after in groups) if len(d)]
    if not differences:
        return None
    rng = np.random.default_rng(seed)
    draws = np.zeros(resamples)
    for group in differences:
        draws += group[rng.integers(0, len(group), size=(resamples, len(group)))].mean(axis=1)
    draws /= len(differences)
    return {
        "gain": percent(np.mean([group.mean() for group in differences])),
        "ci": percentile_interval(draws),
        "n": sum(len(group) for group in differences),
    }
