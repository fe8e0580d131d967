"""Scans of long recordings scored against their known events: the VAD literature's frame-level
ROC-AUC and AP, the video-level AUC, and event recall / precision at IoU 0.3 and 0.5.

    scans = scan_recordings(videos, table, generator, spec, cfg, out / SCANS_JSONL)
    metrics = score_scans(scans, table)

`table` is `read_events(events.csv)` ({video: {"duration", "events"}}, `vaur1.bench.synth_long`).
Each finished scan is appended to SCANS_JSONL as it ends, so a killed run continues with the videos
it has not scanned. The frame-level rule (instants at 1 per second, the mean score of the windows
covering each) is `vaur1.eval.frame_metrics`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaur1.errors import VaurError
from vaur1.eval.bootstrap import RESAMPLES, SEED
from vaur1.eval.frame_metrics import VideoFrames, event_metrics, frame_labels, frame_metrics, frame_scores
from vaur1.eval.scan import scan_video
from vaur1.eval.scan_config import ScanConfig
from vaur1.files import read_jsonl
from vaur1.layout import EvalRun
from vaur1.prompts import PromptConfig
from vaur1.video.spec import VideoSpec

SCANS_JSONL = EvalRun.SCANS
SCAN_METRICS_JSON = "scan_metrics.json"


def scan_recordings(
    videos: list[Path],
    table: dict[str, dict],
    generator,
    spec: VideoSpec,
    cfg: ScanConfig,
    record: Path,
    prompts: PromptConfig | None = None,
    on_video: Callable[[Path, int, int], Callable[[int, int], None] | None] | None = None,
) -> list[dict[str, Any]]:
    """The scan of every video (those already in `record` read back, the others scanned and appended)."""
    names = {video.name for video in videos}
    for missing, where in (
        (sorted(names - set(table)), "have no row in the events table"),
        (sorted(set(table) - names), "are in the events table but not among the videos"),
    ):
        if missing:
            raise VaurError(f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} {where}")
    done = {Path(scan["video"]).name: scan for scan in read_jsonl(record)} if record.exists() else {}
    scans = []
    for number, video in enumerate(videos, start=1):
        if video.name not in done:
            progress = on_video(video, number, len(videos)) if on_video else None
            scan = scan_video(video, generator, spec, cfg, prompts, on_progress=progress)
            with record.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(scan, ensure_ascii=False) + "\n")
            done[video.name] = scan
        scans.append(done[video.name])
    return scans


def score_scans(scans: list[dict[str, Any]], table: dict[str, dict], rate: float = 1.0) -> dict[str, Any]:
    """Frame AUC / AP, video AUC and event recall / precision of the scans (see the module docstring)."""
    known = [[(start, end) for start, end, _ in table[Path(scan["video"]).name]["events"]] for scan in scans]
    return score_against(scans, known, rate)


def score_against(
    scans: list[dict[str, Any]],
    truths: list[list[tuple[float, float]]],
    rate: float = 1.0,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """The metrics of scans whose known anomaly intervals are `truths[i]` (empty: a normal video)."""
    frames, video_scores, video_labels, predicted, truth = [], [], [], [], []
    for scan, known in zip(scans, truths, strict=True):
        windows = [(w["start"], w["end"], w["score"]) for w in scan["windows"]]
        duration = float(scan["duration"])
        frames.append(VideoFrames(frame_labels(duration, known, rate), frame_scores(duration, windows, rate)))
        scored = [w["score"] for w in scan["windows"] if w["score"] is not None]
        video_scores.append(max(scored, default=0.0))
        video_labels.append(int(bool(known)))
        predicted.append([(event["start"], event["end"]) for event in scan["events"]])
        truth.append(known)
    return {
        **frame_metrics(frames, video_scores, video_labels, resamples, seed),
        **event_metrics(predicted, truth),
        "skipped_windows": sum(scan["skipped_windows"] for scan in scans),
        "rate": rate,
    }
