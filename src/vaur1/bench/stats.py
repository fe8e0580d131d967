"""Per-file counts of a benchmark: what `vaur1 data stats` prints."""

from __future__ import annotations

from collections import Counter

from vaur1.bench import Bench
from vaur1.bench.schema import CLASSES
from vaur1.vocab import QA


def file_stats(bench: Bench, split: str) -> dict:
    samples = bench.split(split)
    report = bench.reports[split]
    roles = Counter(s.tag_role for s in samples)
    classes = Counter(s.anomaly_class for s in samples if s.anomaly_class is not None)
    order = {c: i for i, c in enumerate(CLASSES)}
    return {
        "rows": len(samples),
        QA: sum(s.has_qa for s in samples),
        "tag_positive": roles["positive"],
        "tag_normal": roles["normal"],
        "tag_missing": roles["missing"],
        "classes": {c: classes[c] for c in sorted(classes, key=order.__getitem__)},
        "reasoning_format": dict(Counter(s.reasoning_format for s in samples).most_common()),
        "sources": dict(Counter(s.source for s in samples).most_common()),
        "cleaning": list(report.cleaning),
        "warnings": list(report.warnings),
        "skipped": dict(report.skipped),
        "repairs": dict(report.repairs),
        "problems": list(report.problems),
    }


def bench_stats(bench: Bench) -> dict:
    """`{"files": {"<file name>": {...}}}`, keyed by the file's name."""
    return {"files": {bench.reports[split].file: file_stats(bench, split) for split in bench.reports}}
