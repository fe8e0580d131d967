"""Parse the `Reasoning` column from either stored format into its six fields."""

from __future__ import annotations

import ast
import bisect
import re

from vaur1.bench.schema import REASONING_FIELDS, Reasoning, ReasoningFormat

_FIELD_SLOTS = {name.lower(): i for i, name in enumerate(REASONING_FIELDS)}
_KNOWN = "|".join(re.escape(name) for name in REASONING_FIELDS)
# `### Field: value` is the stored format, but some rows drop the colon (`### Location The ...`)
# or the hashes (`Key Evidence - ...`); both are accepted for the six known field names only.
# Possessive quantifiers and one start per run of `#` keep every pattern linear in the cell's length
# (a cell of 30,000 `#` took 68 s with plain ones).
_HEADINGS = (
    re.compile(rf"(?<!#)#{{2,}}+\s*+({_KNOWN})\s*+:?", re.IGNORECASE),
    re.compile(r"(?<!#)#{2,}+\s*+([^:#]*+):"),
    re.compile(rf"(?<![#\w])({_KNOWN})\s*+(?:-|:)\s", re.IGNORECASE),
)


def _headings(text: str) -> list[re.Match]:
    """Heading matches in text order; an earlier pattern wins where two overlap."""
    starts: list[int] = []  # accepted matches, sorted and disjoint: starts and ends in the same order
    found: list[re.Match] = []
    for pattern in _HEADINGS:
        for match in pattern.finditer(text):
            if not match.group(1).strip():
                continue
            at = bisect.bisect_left(starts, match.end())  # accepted matches starting before its end
            if at and found[at - 1].end() > match.start():
                continue
            starts.insert(at, match.start())
            found.insert(at, match)
    return found


def _flatten(value: object) -> str:
    """Cell values come as str, list or dict; join them into one readable string."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return "; ".join(_flatten(v) for v in value if _flatten(v))
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def _build(pairs: list[tuple[str, str]]) -> tuple[Reasoning, list[str]]:
    slots = [""] * len(REASONING_FIELDS)
    extra: list[str] = []
    for name, value in pairs:
        index = _FIELD_SLOTS.get(name.strip().lower())
        if index is None:
            extra.append(f"{name.strip()}: {value}")
        elif slots[index]:
            slots[index] = f"{slots[index]} {value}"
        else:
            slots[index] = value
    if extra:
        # Extra headings (e.g. "### Answer") are kept with the conclusion rather than dropped.
        slots[-1] = " ".join(s for s in [slots[-1], *extra] if s)
    return Reasoning(*slots), [name for name, _ in pairs if name.strip().lower() not in _FIELD_SLOTS]


def parse_reasoning(text: str | None) -> tuple[Reasoning | None, ReasoningFormat | str, list[str]]:
    """Return (reasoning, format, extra heading names). Format is markdown, dict, text or missing."""
    if text is None or not text.strip() or text.strip() == "-1":
        return None, "missing", []
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
        if isinstance(value, dict):
            reasoning, extra = _build([(str(k), _flatten(v)) for k, v in value.items()])
            return reasoning, "dict", extra
    headings = _headings(stripped)
    if headings:
        pairs = []
        for i, match in enumerate(headings):
            end = headings[i + 1].start() if i + 1 < len(headings) else len(stripped)
            pairs.append((match.group(1), stripped[match.end() : end].strip()))
        reasoning, extra = _build(pairs)
        return reasoning, "markdown", extra
    return Reasoning("", "", "", stripped, "", ""), "text", []
