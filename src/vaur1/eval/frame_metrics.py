"""Frame-level anomaly detection metrics, scored the way UCF-Crime and XD-Violence papers score them.

A scan gives each window of a video a score (P(anomaly), see `vaur1.eval.scan`). The video is read at
`rate` instants per second (1 by default), t_k = k / rate; instant k's score is the mean score of the
windows that cover it, and its label is 1 inside one of the video's annotated anomaly intervals, 0
elsewhere (a normal video is 0 throughout). ROC-AUC and average precision are then computed over
every instant of every video of a set together, as the VAD literature does; an instant no decoded
window covers (a stretch the decoder could not read) is left out and counted. The video-level AUC
ranks each video by its highest window score, with anomalous videos as positives.

AUC is the Mann-Whitney statistic (ties count half); AP is the step-wise sum of scikit-learn's
`average_precision_score`. The 95% intervals resample videos, not instants: the instants of one
video are not independent draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vaur1.eval.bootstrap import RESAMPLES, SEED, percent, percentile_interval

Interval = tuple[float, float]


@dataclass(frozen=True)
class VideoFrames:
    """One video's instants: labels (0/1) and scores (NaN where no decoded window covers them)."""

    labels: np.ndarray
    scores: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        return ~np.isnan(self.scores)


def frame_instants(duration: float, rate: float = 1.0) -> np.ndarray:
    """t_k = k / rate for every k with t_k inside [0, duration)."""
    return np.arange(int(np.ceil(duration * rate - 1e-9))) / rate


def frame_labels(duration: float, intervals: Sequence[Interval], rate: float = 1.0) -> np.ndarray:
    """1 at the instants inside an anomaly interval [start, end), 0 elsewhere."""
    times = frame_instants(duration, rate)
    labels = np.zeros(len(times), dtype=np.int8)
    for start, end in intervals:
        labels[(times >= start) & (times < end)] = 1
    return labels


def frame_scores(
    duration: float, windows: Sequence[tuple[float, float, float | None]], rate: float = 1.0
) -> np.ndarray:
    """Each instant's mean score over the (start, end, score) windows covering it; a window without a
    score (not decoded) covers nothing; NaN where none does."""
    times = frame_instants(duration, rate)
    total = np.zeros(len(times))
    count = np.zeros(len(times))
    for start, end, score in windows:
        if score is None:
            continue
        # the last window covers the video's end
        inside = (times >= start) & ((times < end) | (end >= duration))
        total[inside] += score
        count[inside] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties half; None without both classes."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    # average ranks over ties (1-based), vectorised: the bootstrap calls this a thousand times
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Sum over score thresholds (descending) of precision times the recall gained; None without positives."""
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    sorted_scores, sorted_labels = np.asarray(scores)[order], labels[order]
    # one threshold per distinct score: tied instants enter together
    last_of_tie = np.concatenate([np.flatnonzero(np.diff(sorted_scores)), [len(sorted_scores) - 1]])
    true_positives = np.cumsum(sorted_labels)[last_of_tie]
    predicted = last_of_tie + 1
    precision = true_positives / predicted
    recall_gained = np.diff(np.concatenate([[0], true_positives])) / positives
    return float(np.sum(precision * recall_gained))


def _pooled(videos: Sequence[VideoFrames]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([v.labels[v.covered] for v in videos]) if videos else np.zeros(0)
    scores = np.concatenate([v.scores[v.covered] for v in videos]) if videos else np.zeros(0)
    return labels, scores


def frame_metrics(
    videos: Sequence[VideoFrames],
    video_scores: Sequence[float],
    video_labels: Sequence[int],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict:
    """Frame AUC and AP and video AUC in points (0-100) with 95% intervals over resampled videos; the
    instants scored and those left uncovered."""
    rng = np.random.default_rng(seed)
    labels, scores = _pooled(videos)
    draws = [rng.integers(0, len(videos), size=len(videos)) for _ in range(resamples)] if videos else []

    def interval(statistic) -> list[float] | None:
        values = [value for draw in draws if (value := statistic(draw)) is not None]
        return percentile_interval(np.array(values)) if values else None

    def frame_statistic(function):
        def statistic(draw: np.ndarray) -> float | None:
            return function(*_pooled([videos[i] for i in draw]))

        return statistic

    video_scores_array = np.asarray(video_scores, dtype=float)
    video_labels_array = np.asarray(video_labels)

    def video_auc(draw: np.ndarray) -> float | None:
        return roc_auc(video_labels_array[draw], video_scores_array[draw])

    everything = np.arange(len(videos))
    return {
        "frame_auc": percent(roc_auc(labels, scores)),
        "frame_auc_ci": interval(frame_statistic(roc_auc)),
        "frame_ap": percent(average_precision(labels, scores)),
        "frame_ap_ci": interval(frame_statistic(average_precision)),
        "video_auc": percent(video_auc(everything)) if len(videos) else None,
        "video_auc_ci": interval(video_auc),
        "videos": len(videos),
        "instants": len(labels),
        "anomalous_instants": int(labels.sum()),
        "uncovered_instants": int(sum(int((~v.covered).sum()) for v in videos)),
    }


def interval_iou(a: Interval, b: Interval) -> float:
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return overlap / union if union > 0 else 0.0


def matched_events(predicted: Sequence[Interval], truth: Sequence[Interval], threshold: float) -> int:
    """How many known events a predicted event matches at IoU >= threshold (threshold 0: any overlap),
    each used once (pairs taken in order of IoU, highest first)."""
    pairs = sorted(
        ((interval_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
        reverse=True,
    )
    used_predicted, used_truth = set(), set()
    for iou, i, j in pairs:
        if iou < threshold or iou == 0:
            break
        if i not in used_predicted and j not in used_truth:
            used_predicted.add(i)
            used_truth.add(j)
    return len(used_truth)


def event_metrics(
    predicted: Sequence[Sequence[Interval]], truth: Sequence[Sequence[Interval]], thresholds=(0.0, 0.3, 0.5)
) -> dict:
    """Event recall (known events found) and precision (events that are known ones) in points, per IoU
    threshold (0: any overlap, keyed `overlap`), over videos whose predicted and known events are listed
    alike."""
    known = sum(len(t) for t in truth)
    found = sum(len(p) for p in predicted)
    result: dict = {"known_events": known, "predicted_events": found}
    for threshold in thresholds:
        matched = sum(matched_events(p, t, threshold) for p, t in zip(predicted, truth, strict=True))
        name = "overlap" if threshold == 0 else threshold
        result[f"recall@{name}"] = percent(matched / known) if known else None
        result[f"precision@{name}"] = percent(matched / found) if found else None
    return result
