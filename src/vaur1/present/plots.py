"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed).

Each function takes plain data read from run directories and returns one PNG, or None when there
is nothing to draw.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from vaur1.vocab import MEAN_ACCURACY, MODE_LABELS, SCORES

plt.switch_backend("Agg")  # before any figure exists; no display needed

NONE_LABEL = "(none)"  # no readable class in the output


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def iou_histogram(ious: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes | None:
    """IoU of TAG positives: one panel per mode, one step histogram per run. ious[run][mode] -> values."""
    modes = [m for m in MODE_LABELS if any(ious[run].get(m) for run in ious)]
    if not modes:
        return None
    figure, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 3.2), squeeze=False)
    bins = np.linspace(0, 1, 11)
    for axis, mode in zip(axes[0], modes, strict=True):
        for run, by_mode in ious.items():
            values = by_mode.get(mode)
            if values:
                axis.hist(values, bins=bins, histtype="step", linewidth=1.8, label=f"{run} (n={len(values)})")
        axis.set_title(f"TAG IoU, {MODE_LABELS[mode]}")
        axis.set_xlabel("IoU with the true interval")
        axis.set_ylabel("videos")
        axis.legend(fontsize=7)
    return _png(figure)


def interval_timeline(
    videos: Sequence[str],
    truth: Mapping[str, tuple[float, float]],
    predicted: Mapping[str, Mapping[str, tuple[float, float] | None]],
) -> bytes | None:
    """True intervals (grey) and predicted ones (one colour per mode) for a few videos.

    predicted[mode][video] is an interval, or None when the output gave none (drawn as a cross).
    """
    if not videos:
        return None
    modes = list(predicted)
    figure, axis = plt.subplots(figsize=(8, 0.55 * len(videos) + 1.2))
    colours = {"direct": "tab:blue", "think": "tab:orange"}
    height = 0.8 / (len(modes) + 1)
    for row, video in enumerate(videos):
        start, end = truth[video]
        axis.barh(
            row, end - start, left=start, height=height, color="0.6", label="true" if row == 0 else None
        )
        for slot, mode in enumerate(modes, start=1):
            interval = predicted[mode].get(video)
            y = row + slot * height
            label = MODE_LABELS.get(mode, mode) if row == 0 else None
            if interval is None:
                axis.plot([start], [y], marker="x", color=colours.get(mode, "k"), label=label)
            else:
                width = max(interval[1] - interval[0], 0.05)
                axis.barh(
                    y, width, left=interval[0], height=height, color=colours.get(mode, "k"), label=label
                )
    axis.set_yticks(range(len(videos)), [v if len(v) <= 28 else v[:25] + "..." for v in videos], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlim(left=0)
    axis.set_xlabel("seconds")
    axis.set_title("TAG: predicted against true intervals (x: no interval given)")
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def confusion_matrix(pairs: Mapping[str, Sequence[tuple[str, str | None]]]) -> bytes | None:
    """Class confusion, one panel per mode: rows true class, columns predicted (or none)."""
    modes = [m for m in pairs if pairs[m]]
    if not modes:
        return None
    truths = sorted({t for m in modes for t, _ in pairs[m]})
    predictions = sorted({p for m in modes for _, p in pairs[m] if p is not None} | set(truths))
    columns = [*predictions, NONE_LABEL]
    size = max(4.0, 0.45 * len(columns) + 2)
    figure, axes = plt.subplots(1, len(modes), figsize=(size * len(modes), size * 0.8), squeeze=False)
    for axis, mode in zip(axes[0], modes, strict=True):
        counts = np.zeros((len(truths), len(columns)), dtype=int)
        for truth, prediction in pairs[mode]:
            counts[
                truths.index(truth), columns.index(prediction if prediction is not None else NONE_LABEL)
            ] += 1
        axis.imshow(counts, cmap="Blues")
        for (i, j), value in np.ndenumerate(counts):
            if value:
                colour = "white" if value > counts.max() / 2 else "black"
                axis.text(j, i, str(value), ha="center", va="center", fontsize=7, color=colour)
        axis.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
        axis.set_yticks(range(len(truths)), truths, fontsize=7)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"CLS confusion, {MODE_LABELS.get(mode, mode)}")
    figure.tight_layout()
    return _png(figure)


# Panels of a training log, each on its own axis: (title, series keys or a key prefix, band).
# A band is (low, high) keys around the first series, or ("std", key) for mean +- that std.
CURVE_PANELS: tuple[tuple[str, tuple[str, ...], tuple[str, str] | None], ...] = (
    ("loss", ("loss", "val_loss"), None),
    ("reward (mean +- std over completions)", ("reward",), ("std", "reward_std")),
    ("reward per task", ("reward/",), None),
    ("KL to the reference", ("kl",), None),
    ("entropy (nats)", ("entropy",), None),
    (
        "completion length (tokens; band: min-max)",
        ("completions/mean_length",),
        ("completions/min_length", "completions/max_length"),
    ),
    ("learning rate", ("learning_rate",), None),
    ("seconds per phase", ("time/",), None),
    ("validation", (MEAN_ACCURACY, *SCORES[MEAN_ACCURACY]), None),
)


def _series(records: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    points = sorted(
        (r["step"], r[key])
        for r in records
        if isinstance(r.get("step"), (int, float))
        and isinstance(r.get(key), (int, float))
        and not isinstance(r.get(key), bool)
    )
    return [p[0] for p in points], [p[1] for p in points]


def training_curves(records: Sequence[Mapping], title: str) -> bytes | None:
    """A training log's loss, rewards (overall with its std band, and per task), KL, entropy,
    completion length, learning rate, time per phase and validation values against the step, each on
    its own axis; panels without data are left out."""
    keys = sorted({k for r in records for k in r})
    panels = []
    for panel_title, wanted, band in CURVE_PANELS:
        names = [k for k in keys for w in wanted if (k.startswith(w) if w.endswith("/") else k == w)]
        names = [n for n in names if len(_series(records, n)[0]) > 0]
        if names:
            panels.append((panel_title, names, band))
    if not panels:
        return None
    columns = 2
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(10, 2.6 * rows), squeeze=False)
    for axis, (panel_title, names, band) in zip(axes.flat, panels, strict=False):
        for name in names:
            steps, values = _series(records, name)
            axis.plot(steps, values, label=name, linewidth=1.3)
        if band is not None:
            steps, values = _series(records, names[0])
            if band[0] == "std":
                band_steps, spread = _series(records, band[1])
                if band_steps == steps:
                    axis.fill_between(
                        steps,
                        [v - d for v, d in zip(values, spread, strict=True)],
                        [v + d for v, d in zip(values, spread, strict=True)],
                        alpha=0.2,
                    )
            else:
                low_steps, low = _series(records, band[0])
                high_steps, high = _series(records, band[1])
                if low_steps == high_steps == steps:
                    axis.fill_between(steps, low, high, alpha=0.2)
        axis.set_title(panel_title, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _png(figure)
