"""Writing files whole or not at all, reading JSON lines, and hashing: the one place for each.

A writer writes a temporary file next to the target and renames it into place, so a reader (or a
run killed mid-write) never sees half a file. JSONL is split on newline bytes only: JSON escapes
every control character, but `str.splitlines` would also split inside a string holding U+2028,
U+2029 or other line breaks that JSON leaves as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_bytes(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Replace `path` with `data` atomically; with `durable`, fsync before the rename."""
    path = Path(path)
    temp = _temporary(path)
    try:
        with temp.open("wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def jsonl_line(record: Mapping[str, Any]) -> bytes:
    """One record as a JSONL line; NaN and infinities are refused (write them as null)."""
    return (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_jsonl(path: str | Path, records: list[Mapping[str, Any]], durable: bool = False) -> Path:
    return write_bytes(path, b"".join(jsonl_line(r) for r in records), durable=durable)


def replace_dir(source: str | Path, target: str | Path) -> Path:
    """Move the finished folder `source` to `target`, replacing what is there; the old one is renamed
    aside before the new one moves in, so a crash leaves one complete folder under one of the names."""
    source, target = Path(source), Path(target)
    if target.exists():
        stale = target.with_name(f"{target.name}.stale")
        if stale.exists():
            shutil.rmtree(stale)
        target.rename(stale)
        source.rename(target)
        shutil.rmtree(stale)
    else:
        source.rename(target)
    return target


def complete_lines(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(line number, line) for every newline-terminated line of `data`, and the bytes they span: a
    last line cut short (a writer killed mid-line) is left out."""
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].split(b"\n")[:-1]
    return [(number, line) for number, line in enumerate(lines, start=1)], complete


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, record) for each non-blank complete line; the record is None where the line is
    not a JSON object (a log line cut by a crash, or an edited file)."""
    lines, _ = complete_lines(Path(path).read_bytes())
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            record = None
        yield number, record if isinstance(record, dict) else None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a log file, lines that are not one skipped; [] when the file is absent."""
    if not Path(path).is_file():
        return []
    return [record for _, record in iter_jsonl(path) if record is not None]


def json_safe(value: Any) -> Any:
    """A value as JSON data: tensors and NumPy scalars become numbers, NaN and infinities None."""
    if hasattr(value, "numel") and callable(value.numel) and value.numel() != 1:
        raise TypeError(f"a metric must be a scalar, got a tensor of shape {tuple(value.shape)}")
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
