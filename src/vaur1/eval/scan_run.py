"""`eval run --scan`: the benchmark's videos scanned too, scored at the frame level beside the paper's
metrics, overall and per source.

The videos are those of the TAG items (one per video): their intervals are the frame labels (a TAG
positive is anomalous over its interval, a normal video nowhere), the VAD literature's protocol on
UCF-Crime's test set. Each scan is appended to RUN_DIR/scans.jsonl with its item's key as it ends, so
a killed run continues; a video that cannot be read is recorded with its error, counted, and left
out of the frame metrics.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError, VaurError, VideoError
from vaur1.eval.config import EvalConfig
from vaur1.eval.scan import scan_video
from vaur1.eval.scan_eval import score_against
from vaur1.files import read_jsonl
from vaur1.layout import EvalRun
from vaur1.vocab import TAG


def scan_items(examples: list[Example]) -> list[Example]:
    """The videos a scan covers: the TAG items (their intervals label the frames)."""
    items = [example for example in examples if example.task == TAG]
    if not items:
        raise ConfigError("scan: the frame labels come from the TAG intervals; add tag to data.tasks")
    return items


def known_intervals(example: Example) -> list[tuple[float, float]]:
    """A TAG item's anomaly interval as frame labels: none for a normal video."""
    interval = example.interval
    return [interval] if interval is not None and interval[1] > interval[0] else []


def recorded_scans(run: EvalRun) -> dict[str, dict[str, Any]]:
    return {scan["item"]: scan for scan in read_jsonl(run.scans)} if run.scans.exists() else {}


def check_recorded(cfg: EvalConfig, run: EvalRun) -> None:
    """Refuse to add scans to scans made with other windows or threshold."""
    for scan in recorded_scans(run).values():
        for key in ("window", "stride", "threshold"):
            if key in scan and scan[key] != getattr(cfg.scan, key):
                raise VaurError(
                    f"{run.scans} holds scans made with scan.{key}={scan[key]}, this run has "
                    f"{getattr(cfg.scan, key)}; give another --out, or remove {run.scans} to scan again"
                )


def scan_run(cfg: EvalConfig, examples: list[Example], run: EvalRun, generator, on_progress=None) -> int:
    """Scan every TAG video not yet in RUN/scans.jsonl; the number scanned now."""
    check_recorded(cfg, run)
    done = recorded_scans(run)
    pending = [item for item in scan_items(examples) if item.key not in done]
    roots = cfg.data.roots()
    for number, item in enumerate(pending, start=1):
        try:
            scan = scan_video(roots.resolve(item), generator, cfg.video, cfg.scan, cfg.prompts)
        except VideoError as err:
            scan = {"video": item.video, "error": str(err)}
        with run.scans.open("a", encoding="utf-8") as handle:
            handle.write(
                json.dumps({"item": item.key, "source": item.source, **scan}, ensure_ascii=False) + "\n"
            )
        if on_progress is not None:
            on_progress(number, len(pending))
    return len(pending)


def scan_metrics(cfg: EvalConfig, examples: list[Example], run: EvalRun) -> dict[str, Any]:
    """Frame AUC / AP and video AUC of the run's scans, overall and per source, with the counts."""
    done = recorded_scans(run)
    groups: dict[str, list[tuple[dict, list]]] = defaultdict(list)
    unscanned = unreadable = 0
    for item in scan_items(examples):
        scan = done.get(item.key)
        if scan is None or "error" in scan:
            unscanned += scan is None
            unreadable += scan is not None
            continue
        for group in ("all", item.source):
            groups[group].append((scan, known_intervals(item)))

    def score(pairs: list[tuple[dict, list]]) -> dict[str, Any]:
        scans, truths = [p[0] for p in pairs], [p[1] for p in pairs]
        return score_against(scans, truths, cfg.scan.frame_rate, cfg.resamples, cfg.bootstrap_seed)

    return {
        "window": cfg.scan.window,
        "stride": cfg.scan.stride,
        "threshold": cfg.scan.threshold,
        "videos": len(scan_items(examples)),
        "unscanned": unscanned,
        "unreadable": unreadable,
        "all": score(groups.pop("all", [])),
        "by_source": {source: score(pairs) for source, pairs in sorted(groups.items())},
    }
