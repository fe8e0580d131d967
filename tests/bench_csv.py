"""Write small VAU-Bench CSVs for tests."""

from __future__ import annotations

import csv
from pathlib import Path

from vaur1.bench.schema import COLUMNS

MARKDOWN_REASONING = (
    "### Specific Anomaly Type: Fight ### Location: Street ### Key Evidence: two men punch "
    "### Detailed Explanation: a brawl ### Cause and Effect: dispute leads to injury ### Conclusion: fighting"
)


def row(**overrides: str) -> dict[str, str]:
    base = {
        "Video Name": "msad_Fighting_1.mp4",
        "Question": "What happens?",
        "Option 1": "Two men fight",
        "Option 2": "A car parks",
        "Option 3": "Nothing",
        "Option 4": "A dog runs",
        "Correct Option": "A",
        "Key Object": "men",
        "Description": "Two men fight on the street.",
        "Reasoning": MARKDOWN_REASONING,
        "Anomaly Class": "Fighting",
        "Start Time": "1.5",
        "End Time": "4.0",
    }
    base.update(overrides)
    return base


def write_csv(path: Path, rows: list[dict[str, str]], header: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in rows:
            writer.writerow([r.get(c, "") for c in header])
    return path
