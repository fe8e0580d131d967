"""`predictions.jsonl`: one line per (example, mode), appended as batches finish, exactly once.

Every line is a JSON object in the format `vaur1 eval metrics` reads, plus what the run knows:

    {"key": "test/synth_0003.mp4/tag/think", "video": "synth_0003.mp4", "output": "<think>...",
     "task": "tag", "mode": "think", "split": "test", "source": "synth", "status": "ok",
     "seconds": 0.21, "decode_seconds": 0.01, "completion_tokens": 57, "truncated": false, "batch_size": 8}

A video that cannot be read gets `"status": "video_error"`, `"output": null` and the reason in
`"error"`; its items count as missing in every metric, never vanish from a denominator.

Exactly once: a line is written whole with one `write`, then flushed and fsynced, so a run killed
at any moment leaves complete lines plus at most one cut-off last line. Opening the store drops
that cut-off line, and the items of video errors (so a repaired video is tried again), and then
skips every key already present. An exclusive lock on the run directory keeps a second run from
writing into the same file at the same time.

A user's own predictions file (`vaur1 eval metrics --predictions FILE`) is read here too, by
`read_prediction_file`: one `{"video": ..., "output": ...}` object a line, where a malformed line is
counted and listed instead of stopping the read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.errors import VaurError
from vaur1.files import complete_lines, jsonl_line, write_bytes
from vaur1.layout import EvalRun
from vaur1.runlock import exclusive_lock, unlock

VIDEO_ERROR = "video_error"
MAX_LISTED_LINES = 20  # line numbers listed per problem kind; the counts are always complete


def item_key(example: Example, mode: str) -> str:
    """What a prediction is keyed by: the example's key (split/id/task) and the prompt mode."""
    return f"{example.key}/{mode}"


def _records(data: bytes, path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete records in `data`, and the byte length they span (a cut-off last line excluded)."""
    lines, complete = complete_lines(data)
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise VaurError(
                f"{path}:{number}: not a JSON line ({err or type(err).__name__}); the file was edited or corrupted"
            ) from None
        key = record.get("key") if isinstance(record, dict) else None
        if not isinstance(key, str):
            raise VaurError(f'{path}:{number}: a prediction without a "key"; not written by vaur1 eval run')
        if key in seen:
            raise VaurError(f"{path}:{number}: {key} was already predicted at line {seen[key]}")
        seen[key] = number
        records.append(record)
    return records, complete


def read_predictions(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The run's predictions by key, read-only; a cut-off last line is ignored."""
    path = EvalRun(run_dir).predictions
    if not path.is_file():
        return {}
    records, _ = _records(path.read_bytes(), path)
    return {record["key"]: record for record in records}


class PredictionStore:
    """The run's `predictions.jsonl`, opened for appending under an exclusive lock.

    with PredictionStore(run_dir) as store:
        todo = [item for item in items if item.key not in store.done]
        store.append([...])
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = EvalRun(run_dir).predictions
        self.done: dict[str, dict[str, Any]] = {}
        self.dropped_partial = False  # a cut-off line from a killed run was removed
        self.retried_video_errors = 0
        self._lock_handle = None
        self._handle = None

    def __enter__(self) -> PredictionStore:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_handle = exclusive_lock(
            EvalRun(self.run_dir).lock,
            f"{self.run_dir}: another vaur1 eval run is writing to this run directory",
        )
        try:
            self._repair()
            self._handle = self.path.open("ab")
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._release()

    def _release(self) -> None:
        if self._lock_handle is not None:
            unlock(self._lock_handle)
            self._lock_handle = None

    def _repair(self) -> None:
        """Load the finished records; rewrite the file without a cut-off line and video errors."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        records, complete = _records(data, self.path)
        self.dropped_partial = complete < len(data)
        kept = [r for r in records if r.get("status") != VIDEO_ERROR]
        self.retried_video_errors = len(records) - len(kept)
        if self.dropped_partial or self.retried_video_errors:
            write_bytes(self.path, b"".join(jsonl_line(r) for r in kept), durable=True)
        self.done = {r["key"]: r for r in kept}

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write each record as one line, durably, before returning."""
        if self._handle is None:
            raise VaurError("the prediction store is not open")
        for record in records:
            if record["key"] in self.done:
                raise VaurError(f"{record['key']}: predicted twice in one run")
        self._handle.write(b"".join(jsonl_line(r) for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        for record in records:
            self.done[record["key"]] = record


@dataclass
class PredictionFile:
    """A user's predictions file: raw outputs by video name, and what was wrong with its lines."""

    outputs: dict[str, str | None] = field(default_factory=dict)
    lines: int = 0
    unknown: list[int] = field(default_factory=list)
    duplicate: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)

    def report(self, matched: int, not_scored: int) -> dict:
        return {
            "lines": self.lines,
            "matched": matched,
            "not_scored_for_task": not_scored,
            "unknown_videos": {"count": len(self.unknown), "lines": self.unknown[:MAX_LISTED_LINES]},
            "duplicates": {"count": len(self.duplicate), "lines": self.duplicate[:MAX_LISTED_LINES]},
            "malformed": {
                "count": len(self.malformed),
                "lines": [{"line": n, "error": e} for n, e in self.malformed[:MAX_LISTED_LINES]],
            },
        }


def _user_prediction(record: Any) -> tuple[str, str | None]:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    video, output = record.get("video"), record.get("output", ...)
    if not isinstance(video, str) or not video:
        raise ValueError('"video" must be a non-empty string')
    if output is ...:
        raise ValueError('missing "output" (use null for a video the model gave no output for)')
    if output is not None and not isinstance(output, str):
        raise ValueError(f'"output" must be a string or null, got {type(output).__name__}')
    return video, output


def read_prediction_file(
    path: Path, known_videos: set[str], task: str | None = None, mode: str | None = None
) -> PredictionFile:
    """Read a predictions JSONL file; the first line of a video counts, later ones are duplicates.

    Lines whose "task" or "mode" field names another task or mode than `task` / `mode` are left out
    (a `vaur1 eval run` file holds every task and mode). A last line without its newline counts.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise VaurError(f"{path}: cannot read: {err.strerror}") from None
    lines, _ = complete_lines(data if data.endswith(b"\n") else data + b"\n")
    result = PredictionFile()
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as err:  # a JSONDecodeError or UnicodeDecodeError
            error: str | None = str(err)
            record = None
        else:
            error = None
        if isinstance(record, dict) and (
            (task is not None and record.get("task", task) != task)
            or (mode is not None and record.get("mode", mode) != mode)
        ):
            continue
        result.lines += 1
        try:
            if error is not None:
                raise ValueError(error)
            video, output = _user_prediction(record)
        except ValueError as err:
            result.malformed.append((number, str(err)))
            continue
        if video not in known_videos:
            result.unknown.append(number)
        elif video in result.outputs:
            result.duplicate.append(number)
        else:
            result.outputs[video] = output
    return result
