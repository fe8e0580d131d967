"""A long video scanned into an anomaly timeline: windows, a score per window, events.

    result = scan_video("camera.mp4", generator, spec, ScanConfig(window=32, stride=16))
    result["windows"]   # [{start, end, score, anomaly, class, interval, error}, ...]
    result["events"]    # [{start, end, class, score}, ...]

The video is cut into windows of `window` seconds every `stride` seconds (`vaur1.video.windows`),
each sampled by the VideoSpec as a clip of its own. Every window goes through the TAG and CLS prompts
in direct mode, `batch` windows per model call, on either backend.

**The score** of a window is P(anomaly): the model's probability of answering `Anomaly` rather than
`Normal` to the TAG prompt, read where its answer starts. The assistant's turn is given the text
`<answer>` and the model's next-token logits for the first token of `Anomaly` and of `Normal` are
compared alone: P = softmax over those two logits, the rest of the vocabulary left out. transformers
and vLLM compute it from the same text and the same tokens (`label_probabilities` on either
generator), so a scan's scores agree across backends to their numerical precision.

**Events** are merged from the windows by one rule: a window whose score is at least `threshold` is
anomalous; anomalous windows that follow one another, with no window below the threshold between
them, form one event. An event spans the TAG intervals
its windows give (in video time, each inside its own window) from the earliest start to the latest
end, or the windows themselves where none gives one. Its class is the anomaly class most of its
windows name (a tie goes to the class with the higher summed score); its score is its highest
window score. A window that could not be decoded gets no score, breaks no event's run, and is counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.bench.schema import NORMAL
from vaur1.bench.tasks import Example
from vaur1.eval.scan_config import ScanConfig
from vaur1.parse import ANSWER_OPEN, TAG_LABELS, read_tag_and_class
from vaur1.prompts import PromptConfig, build_messages
from vaur1.video.decode import DEFAULT_LIMITS, DecodeLimits
from vaur1.video.spec import VideoSpec
from vaur1.video.windows import Window, WindowFrames, open_windows, scan_windows
from vaur1.vocab import CLS, TAG


def needs_scan(duration: float, spec: VideoSpec, window: float) -> bool:
    """Whether sampling the video whole spaces its frames wider than a scan window samples them: then
    a single pass of the spec would see the video more coarsely than the model was trained to."""
    if duration <= window:
        return False

    def spacing(seconds: float) -> float:  # of the spec's frames over a clip this long (30 fps source)
        return seconds / spec.frame_count(max(1, round(seconds * 30)), 30.0)

    return spacing(duration) > spacing(window) * 1.01


@dataclass
class _Window:
    window: Window
    score: float | None = None
    anomaly: bool | None = None
    anomaly_class: str | None = None
    interval: list[float] | None = None
    error: str | None = None
    raw: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "start": round(self.window.start, 3),
            "end": round(self.window.end, 3),
            "score": None if self.score is None else round(self.score, 6),
            "anomaly": self.anomaly,
            "class": self.anomaly_class,
            "interval": self.interval,
            "error": self.error,
            "raw": self.raw,
        }


def _read_window(item: _Window, tag_text: str, cls_text: str) -> None:
    reading = read_tag_and_class(tag_text, cls_text)
    item.anomaly, item.anomaly_class = reading.anomaly, reading.anomaly_class
    if reading.interval is not None:  # window seconds -> video seconds, inside the window
        start, end = (
            min(max(item.window.start + t, item.window.start), item.window.end) for t in reading.interval
        )
        item.interval = [round(start, 3), round(end, 3)] if end > start else None
    item.raw = {TAG: tag_text, CLS: cls_text}


def _score_batch(parts: list[WindowFrames], items: list[_Window], generator, prompts: PromptConfig) -> None:
    ready = [(part, item) for part, item in zip(parts, items, strict=True) if part.video is not None]
    for part, item in zip(parts, items, strict=True):
        item.error = part.error
    if not ready:
        return
    videos = [part.video for part, _ in ready]
    name = Path(videos[0].path).name
    tag = [build_messages(Example(task=TAG, id=name, video=name), "direct", prompts)] * len(ready)
    cls = [build_messages(Example(task=CLS, id=name, video=name), "direct", prompts)] * len(ready)
    completions = generator([*tag, *cls], [*videos, *videos])
    probabilities = generator.label_probabilities(tag, videos, ANSWER_OPEN, TAG_LABELS)
    for index, (_, item) in enumerate(ready):
        item.score = float(probabilities[index][0])
        _read_window(item, completions[index].text, completions[len(ready) + index].text)


def merge_events(windows: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """The events of scored windows, by the rule in the module docstring."""
    runs: list[list[dict[str, Any]]] = []
    open_run = False  # the previous scored window was anomalous
    for window in windows:
        if window["score"] is None:
            continue
        if window["score"] < threshold:
            open_run = False
            continue
        if open_run:
            runs[-1].append(window)
        else:
            runs.append([window])
        open_run = True
    events = []
    for run in runs:
        intervals = [w["interval"] for w in run if w["interval"]]
        spans = intervals or [[w["start"], w["end"]] for w in run]
        votes: dict[str, list[float]] = defaultdict(list)
        for w in run:
            if w["class"] and w["class"] != NORMAL:
                votes[w["class"]].append(w["score"])
        chosen = max(votes, key=lambda c: (len(votes[c]), sum(votes[c])), default=None)
        events.append(
            {
                "start": min(span[0] for span in spans),
                "end": max(span[1] for span in spans),
                "class": chosen,
                "score": max(w["score"] for w in run),
                "windows": len(run),
            }
        )
    return events


def scan_video(
    path: str | Path,
    generator,
    spec: VideoSpec,
    cfg: ScanConfig | None = None,
    prompts: PromptConfig | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The timeline of one video (see the module docstring); `on_progress(done, total)` after each batch."""
    cfg = cfg or ScanConfig()
    cfg.validate()
    prompts = prompts or PromptConfig()
    with open_windows(path, limits) as reader:  # the file opened and its frame table read once
        duration = reader.info.duration
        windows = scan_windows(duration, cfg.window, cfg.stride)
        items = [_Window(window) for window in windows]
        batch: list[WindowFrames] = []
        done = 0
        for part in reader.frames(spec, windows, cfg.batch):
            batch.append(part)
            if len(batch) == cfg.batch or done + len(batch) == len(windows):
                _score_batch(batch, items[done : done + len(batch)], generator, prompts)
                done += len(batch)
                batch = []
                if on_progress is not None:
                    on_progress(done, len(windows))
    records = [item.record() for item in items]
    return {
        "video": str(path),
        "duration": round(duration, 3),
        "window": cfg.window,
        "stride": cfg.stride,
        "threshold": cfg.threshold,
        "windows": records,
        "events": merge_events(records, cfg.threshold),
        "skipped_windows": sum(1 for item in items if item.error is not None),
    }
