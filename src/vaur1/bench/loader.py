"""Read VAU-Bench CSVs (the official 13-column schema) into typed samples.

Every row either becomes a `Sample` or is skipped with a reason; every repair (an answer cell
that holds the option text, a UCF class name mapped to the VAU vocabulary) is counted. Both end
up in a `LoadReport` per file, so nothing is dropped or changed silently. With ``strict=True``
the first problem raises `BenchFormatError` naming the file, line and column.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from vaur1.bench.reasoning import parse_reasoning
from vaur1.bench.schema import (
    COLUMNS,
    FILE_SOURCES,
    LETTERS,
    NORMAL,
    SOURCE_PREFIXES,
    SOURCES,
    Sample,
    normalize_class,
)
from vaur1.errors import BenchFormatError, ConfigError

# Cleaning rules that change which rows a task scores. None is on by default: the default is the paper's
# protocol (TAG positives MSAD 120, ECVA 402, UCF-Crime 124), and a rule that is on is named wherever
# the numbers it changes are shown (`data stats`, metrics.json, the report).
CLASS_INTERVAL_CONFLICTS = "class_interval_conflicts"
CLEANING_RULES: dict[str, str] = {
    CLASS_INTERVAL_CONFLICTS: "an interval that contradicts the class (a Normal video with an anomaly interval, "
    "an anomalous one with (0, 0)) is read as missing: the row leaves TAG",
}

MAX_EXAMPLES = 20  # problem lines kept per reason in a report; the counts are always complete
# No annotation cell comes near this (the longest Reasoning cell in the released files is ~3,000
# characters); a longer one is a broken quote swallowing the rows after it, skipped as one row.
MAX_CELL_CHARS = 65_536
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _allow_large_cells() -> None:
    """The csv module stops at 128 KB cells and then parses the rest of the cell as rows; read any
    cell whole (it is then skipped as one row by MAX_CELL_CHARS)."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


@dataclass
class LoadReport:
    """What happened to each row of one file."""

    file: str
    rows_read: int = 0
    loaded: int = 0
    skipped: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # first lines of each skip reason
    cleaning: list[str] = field(default_factory=list)  # the cleaning rules applied (CLEANING_RULES)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "cleaning": list(self.cleaning),
            "rows_read": self.rows_read,
            "loaded": self.loaded,
            "skipped": dict(self.skipped),
            "repairs": dict(self.repairs),
            "warnings": list(self.warnings),
            "problems": list(self.problems),
        }


def check_cleaning(rules: Iterable[str]) -> frozenset[str]:
    """The named cleaning rules as a set; ConfigError naming an unknown one."""
    rules = frozenset(rules)
    unknown = sorted(rules - set(CLEANING_RULES))
    if unknown:
        raise ConfigError(f"unknown cleaning rule {unknown[0]!r} (rules: {', '.join(CLEANING_RULES)})")
    return rules


class _RowError(Exception):
    def __init__(self, reason: str, column: str, detail: str):
        super().__init__(detail)
        self.reason, self.column, self.detail = reason, column, detail


def _cell(value: str) -> str | None:
    """`-1` and empty cells are "not available"."""
    value = value.strip()
    return None if value in ("", "-1", "-1.0") else value


def _time(row: dict[str, str], column: str) -> float:
    raw = row[column].strip()
    try:
        value = float(raw)
    except ValueError:
        raise _RowError("bad_time", column, f"non-numeric time {raw!r}") from None
    if not math.isfinite(value):
        raise _RowError("bad_time", column, f"non-finite time {raw!r}")
    return value


def _video_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise _RowError("bad_video_name", "Video Name", "empty video name")
    if "/" in name or "\\" in name or ".." in name:
        raise _RowError("bad_video_name", "Video Name", f"video name {name[:80]!r} holds a path")
    if any(ord(c) < 32 for c in name):
        raise _RowError("bad_video_name", "Video Name", f"video name {name[:80]!r} holds a control character")
    if len(name.encode("utf-8", "surrogateescape")) > 255:  # no filesystem has longer file names
        raise _RowError(
            "bad_video_name", "Video Name", f"video name of {len(name)} characters: {name[:40]!r}..."
        )
    return name


def source_of(name: str, file_stem: str, default_source: str | None) -> tuple[str, str]:
    """(source, file name on disk) from a Video Name's prefix or the file it came from."""
    for prefix, source in SOURCE_PREFIXES.items():
        if name.startswith(prefix):
            return source, name[len(prefix) :]
    if file_stem in FILE_SOURCES:
        return FILE_SOURCES[file_stem], name
    return default_source or "custom", name


_LETTER_LEAD = re.compile(r"^\(?([A-Da-d])\s*[.):]")


def _answer(raw: str | None, options: tuple[str, ...] | None, report: LoadReport, strict: bool) -> str | None:
    if raw is None:
        return None
    if raw in LETTERS:
        return raw
    if raw.upper() in LETTERS:
        report.repairs["answer_letter_case"] += 1
        return raw.upper()
    lead = _LETTER_LEAD.match(raw)
    if lead:
        report.repairs["answer_text_to_letter"] += 1
        return lead.group(1).upper()
    if options:
        for letter, option in zip(LETTERS, options, strict=True):
            if raw.lower() == option.strip().lower():
                report.repairs["answer_text_to_letter"] += 1
                return letter
    if strict:
        raise _RowError(
            "bad_answer", "Correct Option", f"answer {raw[:60]!r} is neither a letter A-D nor an option text"
        )
    report.repairs["unreadable_answer_to_missing"] += 1
    report.warnings.append(f"answer {raw!r} is neither a letter nor an option text: no QA for this row")
    return None


def _interval(
    start: float, end: float, line: int, name: str, report: LoadReport, strict: bool
) -> tuple[float, float] | None:
    if start == -1 and end == -1:
        return None
    if start == 0 and end == 0:
        return (0.0, 0.0)
    if strict and (start < 0 or end < 0 or end <= start):
        raise _RowError("bad_interval", "End Time", f"invalid interval ({start}, {end})")
    if start < 0 or end < 0 or end < start:
        report.repairs["invalid_interval_to_missing"] += 1
        report.warnings.append(f"line {line}: {name}: invalid interval ({start}, {end}) read as missing")
        return None
    if end == start:
        report.repairs["empty_interval_to_missing"] += 1
        report.warnings.append(f"line {line}: {name}: empty interval ({start}, {end}) read as missing")
        return None
    return (start, end)


def _contradicts(anomaly_class: str | None, interval: tuple[float, float] | None) -> bool:
    """A Normal class with an anomaly interval, or an anomaly class with the normal interval (0, 0)."""
    if anomaly_class is None or interval is None:
        return False
    return (anomaly_class == NORMAL) != (interval == (0.0, 0.0))


def _parse_row(
    row: dict[str, str],
    line: int,
    split: str,
    default_source: str | None,
    report: LoadReport,
    strict: bool,
    cleaning: frozenset[str],
) -> Sample:
    name = _video_name(row["Video Name"])
    source, video = source_of(name, split, default_source)
    start, end = _time(row, "Start Time"), _time(row, "End Time")

    raw_class = _cell(row["Anomaly Class"])
    anomaly_class = None
    if raw_class is not None:
        anomaly_class = normalize_class(raw_class)
        if anomaly_class is None:
            raise _RowError("unknown_class", "Anomaly Class", f"unknown class {raw_class!r}")
        if anomaly_class != raw_class:
            report.repairs[f"class {raw_class} -> {anomaly_class}"] += 1

    option_cells = [_cell(row[f"Option {i}"]) for i in range(1, 5)]
    options = tuple(option_cells) if all(o is not None for o in option_cells) else None
    answer = _answer(_cell(row["Correct Option"]), options, report, strict)

    reasoning, reasoning_format, extra = parse_reasoning(_cell(row["Reasoning"]))
    if extra:
        report.repairs["reasoning_extra_heading_to_conclusion"] += 1

    interval = _interval(start, end, line, name, report, strict)
    if _contradicts(anomaly_class, interval):
        if CLASS_INTERVAL_CONFLICTS in cleaning:
            # the row leaves TAG, so that TAG and CLS tell the same story about the video
            report.repairs[f"{CLASS_INTERVAL_CONFLICTS}: interval read as missing"] += 1
            report.warnings.append(
                f"line {line}: {name}: class {anomaly_class} with interval {interval}: interval read as "
                f"missing ({CLASS_INTERVAL_CONFLICTS})"
            )
            interval = None
        else:
            # the paper scores TAG by the interval and CLS by the class, whatever the other says
            report.warnings.append(
                f"line {line}: {name}: class {anomaly_class} with interval {interval}: TAG scores the "
                f"interval, CLS the class (the paper's protocol; cleaning rule {CLASS_INTERVAL_CONFLICTS} "
                "leaves the row out of TAG)"
            )

    return Sample(
        id=name,
        split=split,
        source=source,
        video=video,
        question=_cell(row["Question"]),
        options=options,  # type: ignore[arg-type]
        answer=answer,
        key_objects=_cell(row["Key Object"]),
        description=_cell(row["Description"]),
        reasoning=reasoning,
        reasoning_format=reasoning_format,  # type: ignore[arg-type]
        anomaly_class=anomaly_class,
        interval=interval,
        line=line,
    )


class RowReader:
    """Turns rows (the 13 columns as text) into samples, skipping and counting every bad one in a
    `LoadReport` (or raising `BenchFormatError` when strict): every loader, the CSV reader and the
    datasets-folder reader alike, runs these checks."""

    def __init__(self, where: str, split: str, strict: bool, cleaning: Iterable[str], name: str) -> None:
        self.where, self.split, self.strict = where, split, strict
        self.rules = check_cleaning(cleaning)
        self.report = LoadReport(file=name, cleaning=sorted(self.rules))
        self.samples: list[Sample] = []
        self.seen: set[str] = set()

    def fail(self, line: int, column: str, reason: str, detail: str) -> None:
        if self.strict:
            raise BenchFormatError(f"{self.where}:{line}: column {column!r}: {detail}")
        self.report.skipped[reason] += 1
        if sum(1 for p in self.report.problems if f"[{reason}]" in p) < MAX_EXAMPLES:
            self.report.problems.append(f"line {line} [{reason}] column {column!r}: {detail}")

    def add(
        self,
        row: dict[str, str],
        line: int,
        default_source: str | None = None,
        source: str | None = None,
        video: str | None = None,
    ) -> Sample | None:
        """The row's sample, or None when it was skipped. `source` and `video`: given by a loader that
        stores them (a datasets folder), checked like a CSV's."""
        try:
            sample = _parse_row(row, line, self.split, default_source, self.report, self.strict, self.rules)
            if source is not None and source not in SOURCES:
                raise _RowError(
                    "unknown_source",
                    "source",
                    f"unknown source {source[:40]!r} (sources: {', '.join(SOURCES)})",
                )
            if video is not None:
                sample = replace(sample, video=_video_name(video))
            if source is not None:
                sample = replace(sample, source=source)
        except _RowError as err:
            self.fail(line, err.column, err.reason, err.detail)
            return None
        if sample.id in self.seen:
            self.fail(line, "Video Name", "duplicate_video", f"{sample.id!r} appears twice")
            return None
        self.seen.add(sample.id)
        self.samples.append(sample)
        return sample

    def finish(self) -> tuple[list[Sample], LoadReport]:
        self.report.loaded = len(self.samples)
        return self.samples, self.report


def read_csv(
    path: str | Path,
    strict: bool = False,
    default_source: str | None = None,
    cleaning: Iterable[str] = (),
) -> tuple[list[Sample], LoadReport]:
    """Load one VAU-Bench CSV file. Skipped rows are counted in the report (or raise if strict).

    `cleaning`: names from `CLEANING_RULES` that change what is scored; none by default, which keeps
    the paper's protocol."""
    path = Path(path)
    rows = RowReader(str(path), path.stem, strict, cleaning, path.name)
    report, fail = rows.report, rows.fail
    try:
        # undecodable bytes become lone surrogates, so that exactly the rows holding them are skipped
        # (with their true line) instead of the decoder failing for a whole 8 KB block
        handle = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as err:
        raise BenchFormatError(f"{path}: cannot open: {err.strerror}") from None
    _allow_large_cells()
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise BenchFormatError(f"{path}: empty file, expected the header {', '.join(COLUMNS)}") from None
        except csv.Error as err:
            raise BenchFormatError(f"{path}:1: unreadable header: {err}") from None
        if any(_UNDECODABLE.search(h) for h in header):
            raise BenchFormatError(f"{path}:1: the header is not UTF-8 text")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise BenchFormatError(f"{path}:1: column {missing[0]!r}: missing from the header")
        position = {name: i for i, name in enumerate(header)}
        while True:
            first_line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                report.rows_read += 1
                fail(first_line, "Video Name", "unreadable_row", str(err))
                continue
            if not any(c.strip() for c in cells):
                continue
            report.rows_read += 1
            line = first_line
            if len(cells) != len(header):
                reason = "missing_column" if len(cells) < len(header) else "column_count"
                column = header[len(cells)] if len(cells) < len(header) else "(extra)"
                fail(line, column, reason, f"{len(cells)} cells, the header has {len(header)}")
                continue
            bad = next((i for i, c in enumerate(cells) if _UNDECODABLE.search(c)), None)
            if bad is not None:
                fail(line, header[bad], "undecodable_bytes", "bytes that are not UTF-8")
                continue
            large = next((i for i, c in enumerate(cells) if len(c) > MAX_CELL_CHARS), None)
            if large is not None:
                fail(line, header[large], "cell_too_large", f"a cell of {len(cells[large]):,} characters")
                continue
            rows.add({name: cells[i] for name, i in position.items()}, line, default_source)
    return rows.finish()
