"""The VAU-Bench sample: one CSV row, typed, with the benchmark's conventions made explicit.

Intervals follow one convention everywhere in vaur1:
  * ``(0.0, 0.0)``  a normal video (how the released CSVs mark it),
  * ``None``        the interval is missing (``-1, -1`` in the CSV: anomalous, not annotated),
  * ``(s, e)`` with ``e > s``  a TAG positive, whatever the class says (the paper's protocol).
The TAG target for a normal video is ``Normal`` with ``<glue>[-1, -1]</glue>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from vaur1.vocab import NORMAL

COLUMNS: tuple[str, ...] = (
    "Video Name",
    "Question",
    "Option 1",
    "Option 2",
    "Option 3",
    "Option 4",
    "Correct Option",
    "Key Object",
    "Description",
    "Reasoning",
    "Anomaly Class",
    "Start Time",
    "End Time",
)

CLASSES: tuple[str, ...] = (
    "Abuse",
    "Agriculture",
    "Arrest",
    "Arson",
    "Assault",
    "Explosion",
    "Fighting",
    "Fire",
    "Food Safety",
    "Medical Abnormality",
    "Natural Hazard",
    NORMAL,
    "Object_falling",
    "People_falling",
    "Robbery",
    "Shooting",
    "Stealing",
    "Traffic_accident",
    "Vandalism",
    "Water_incident",
)
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")

# UCF-Crime's own class names that VAU-Bench merged into its vocabulary.
CLASS_SYNONYMS: dict[str, str] = {
    "burglary": "Stealing",
    "shoplifting": "Stealing",
    "roadaccidents": "Traffic_accident",
    "roadaccident": "Traffic_accident",
    "normalvideos": NORMAL,
}

SOURCES: tuple[str, ...] = ("msad", "ucf", "ecva", "synth")
SOURCE_PREFIXES: dict[str, str] = {f"{s}_": s for s in SOURCES}
# Test files carry no name prefix; their source comes from the file name.
FILE_SOURCES: dict[str, str] = {
    "test_msad": "msad",
    "test_ucf_crime": "ucf",
    "test_ucf": "ucf",
    "test_ecva": "ecva",
}

REASONING_FIELDS: tuple[str, ...] = (
    "Specific Anomaly Type",
    "Location",
    "Key Evidence",
    "Detailed Explanation",
    "Cause and Effect",
    "Conclusion",
)

TagRole = Literal["positive", "normal", "missing"]
ReasoningFormat = Literal["markdown", "dict", "missing"]


def class_key(text: str) -> str:
    """Case-, space- and underscore-insensitive key of a class name."""
    return re.sub(r"[\s_\-]+", "", text).lower()


_CLASS_BY_KEY: dict[str, str] = {class_key(c): c for c in CLASSES} | CLASS_SYNONYMS


def normalize_class(text: str) -> str | None:
    """The vocabulary label for a class name written any common way, or None if unknown."""
    return _CLASS_BY_KEY.get(class_key(text))


def is_normal(anomaly_class: str | None, interval: tuple[float, float] | None) -> bool:
    """Whether a video is normal: its interval decides when it has one, else its class.

    This is how the paper's protocol reads a row: TAG scores a video as a positive iff its interval
    has end > start (even the two ECVA test videos whose class is Normal), CLS scores the class. A TAG
    example carries the interval, the other tasks' examples do not, so prompts, rewards and metrics all
    ask this one question the same way. No interval and no class marks an anomalous video without
    timing (the UCF-Crime test rows whose annotations are all -1 but the times).
    """
    if interval is not None:
        return interval[1] <= interval[0]
    return anomaly_class == NORMAL


@dataclass(frozen=True)
class Reasoning:
    """The six fields of the annotated chain of thought."""

    anomaly_type: str
    location: str
    key_evidence: str
    explanation: str
    cause_effect: str
    conclusion: str

    def as_text(self) -> str:
        parts = zip(REASONING_FIELDS, self.fields(), strict=True)
        return " ".join(f"### {name}: {value}" for name, value in parts if value)

    def fields(self) -> tuple[str, ...]:
        return (
            self.anomaly_type,
            self.location,
            self.key_evidence,
            self.explanation,
            self.cause_effect,
            self.conclusion,
        )


@dataclass(frozen=True)
class Sample:
    """One benchmark video with all its annotations. Missing fields are None."""

    id: str  # the Video Name exactly as in the CSV (unique within a file)
    split: str  # the file stem: train, val, test_msad, ...
    source: str  # msad, ucf, ecva or synth
    video: str  # the file name on disk, prefix stripped
    question: str | None
    options: tuple[str, str, str, str] | None
    answer: str | None  # the correct option letter
    key_objects: str | None
    description: str | None
    reasoning: Reasoning | None
    reasoning_format: ReasoningFormat
    anomaly_class: str | None
    interval: tuple[float, float] | None
    line: int = 0  # line in the source file, for messages

    @property
    def tag_role(self) -> TagRole:
        if self.interval is None:
            return "missing"
        start, end = self.interval
        return "positive" if end > start else "normal"

    @property
    def has_qa(self) -> bool:
        return self.question is not None and self.options is not None and self.answer is not None
