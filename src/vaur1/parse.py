"""The one parser of model outputs, shared by the rewards and the metrics.

Lenient extraction reads what a model answered; a strict check (`is_strict_format`) says whether
it answered in exactly the requested format. Nothing here raises on any string.

Two readings (`Reading`), one rule each, used everywhere:
    lenient  metrics (`vaur1 eval`, validation, lmms-eval): the answer and the interval may come
             from the text outside think blocks when their tags are missing, as the official
             VAU-R1 scorers read a response.
    tagged   rewards and `vaur1 analyze`: only an `<answer>` block is an answer and only a
             `<glue>` block an interval; anything else is unreadable, never a guess.

Blocks
    `<think>`, `<answer>` and `<glue>` tags are found whatever their case or inner whitespace
    (`< Answer >`). A block runs from its opening tag to the next closing tag of the same name,
    or, when never closed (a truncated generation), to the next tag or the end of the text.
    A `</think>` with no opening tag before it closes a think block that starts the text (as
    when the chat template opens `<think>` in the prompt).
Answer
    The first `<answer>` block outside every think block. Without an `<answer>` tag (direct-mode
    outputs may be a bare `B` or `Fighting`), the answer is the text outside think and glue
    blocks. Text inside `<think>` is never read as an answer.
Interval
    The first `<glue>` block outside think blocks; without a `<glue>` tag, the first interval
    in the text outside think blocks. Written `[s, e]`, `(s, e)`, `s - e` or `s to e`, each time
    in seconds (an `s`/`sec`/`seconds` unit is allowed) or as `mm:ss` / `hh:mm:ss`.
    `[-1, -1]` means "no anomaly" (`NO_ANOMALY`); any other interval must have 0 <= s <= e,
    else it is unreadable.
Letter
    A QA option letter only as a standalone token at the start of the answer, followed by
    `.`, `)`, `:` or the end (`B`, `(B)`, `B. The man...`, `Answer: B`); so the article in
    `A man falls` is not option A. Otherwise the answer must be the exact text of an option
    (case, spacing and a final period aside), optionally after its letter.
Class
    The first class name in the answer, via `normalize_class` (case, spaces, underscores and
    the UCF synonyms such as `Road Accidents`).
TAG label
    The first of: a negated anomaly word ("no anomaly", "nothing abnormal") -> Normal;
    "anomaly"/"anomalous"/"abnormal" or "not normal" -> Anomaly; "normal" -> Normal; a leading
    yes/no; a class name. `tag_prediction` falls back on the interval when the answer states
    none: `[-1, -1]` is Normal, s < e is Anomaly.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass
from typing import Literal

from vaur1.bench.schema import LETTERS, normalize_class
from vaur1.vocab import ANOMALY, NORMAL, TAG, says_anomaly

MAX_CHARS = 100_000  # longer text is cut here; a 1024-token completion is well under 10k characters
NO_ANOMALY: tuple[float, float] = (-1.0, -1.0)

Interval = tuple[float, float]
TagLabel = Literal["Anomaly", "Normal"]
TAG_LABELS: tuple[TagLabel, TagLabel] = (ANOMALY, NORMAL)  # TAG's two answers
ANSWER_OPEN = "<answer>"  # how an answer block opens in the format the prompts ask for

# possessive: `<` and 20,000 spaces took 38 s with two adjacent plain `\s*`
_TAG = re.compile(r"<\s*+(/?)\s*+(think|answer|glue)\s*+>", re.IGNORECASE)


@dataclass(frozen=True)
class Completion:
    """What a model output says, block by block."""

    think: str | None  # the first think block, stripped; None without a think tag
    answer: str | None  # the answer text, stripped; None when empty
    answer_tagged: bool  # the answer came from an <answer> block
    glue: str | None  # where the interval is read from: a <glue> block or the text outside think
    glue_tagged: bool


@dataclass(frozen=True)
class _Tag:
    start: int
    end: int
    name: str
    closing: bool
    exact: bool  # written exactly `<name>` / `</name>`


def _tags(text: str) -> list[_Tag]:
    found = []
    for match in _TAG.finditer(text):
        closing, name = match.group(1) == "/", match.group(2).lower()
        exact = match.group(0) == f"<{'/' if closing else ''}{name}>"
        found.append(_Tag(match.start(), match.end(), name, closing, exact))
    return found


def _closing_indices(tags: list[_Tag]) -> dict[str, list[int]]:
    indices: dict[str, list[int]] = {"think": [], "answer": [], "glue": []}
    for i, tag in enumerate(tags):
        if tag.closing:
            indices[tag.name].append(i)
    return indices


def _block_end(tags: list[_Tag], closings: dict[str, list[int]], i: int, text_length: int) -> tuple[int, int]:
    """(content end, block end) of the block opened by tags[i]."""
    later = closings[tags[i].name]
    j = bisect.bisect_right(later, i)
    if j < len(later):
        closing = tags[later[j]]
        return closing.start, closing.end
    following = tags[i + 1].start if i + 1 < len(tags) else text_length
    return following, following


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    """Whether position falls in one of the sorted, disjoint spans."""
    j = bisect.bisect_right(spans, (position, math.inf)) - 1
    return j >= 0 and spans[j][0] <= position < spans[j][1]


def _think_spans(tags: list[_Tag], closings: dict[str, list[int]], text_length: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i, tag in enumerate(tags):
        if tag.name != "think" or _inside(tag.start, spans):
            continue
        if not tag.closing:
            spans.append((tag.start, _block_end(tags, closings, i, text_length)[1]))
        elif not spans:  # a closing tag before any opening one: the text began inside <think>
            spans.append((0, tag.end))
    return spans


def _first_block(text: str, name: str, skip: list[tuple[int, int]]) -> tuple[str, tuple[int, int]] | None:
    """(content, (start, end)) of the first `name` block that opens outside the skipped spans."""
    tags = _tags(text)
    closings = _closing_indices(tags)
    for i, tag in enumerate(tags):
        if tag.name == name and not tag.closing and not _inside(tag.start, skip):
            content_end, block_end = _block_end(tags, closings, i, len(text))
            return text[tag.end : content_end], (tag.start, block_end)
    return None


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    kept, position = [], 0
    for start, end in sorted(spans):
        if start >= position:
            kept.append(text[position:start])
        position = max(position, end)
    kept.append(text[position:])
    return " ".join(kept)


def _clean(text: str) -> str | None:
    """Strip stray tags and outer whitespace; None for nothing left."""
    text = _TAG.sub(" ", text).strip()
    return text or None


# Rewards parse the same completion once per reward; a small cache makes that one parse.
@functools.lru_cache(maxsize=1024)
def parse_completion(text: str) -> Completion:
    """Split a model output into think, answer and interval text (see the module docstring)."""
    text = text[:MAX_CHARS]
    tags = _tags(text)
    thinks = _think_spans(tags, _closing_indices(tags), len(text))
    think = None
    if thinks:
        think = _clean(text[thinks[0][0] : thinks[0][1]]) or ""
    answer_block = _first_block(text, "answer", thinks)
    glue_block = _first_block(text, "glue", thinks)
    if answer_block is not None:
        content = answer_block[0]
        inner_glue = _first_block(content, "glue", [])
        answer = _clean(_cut(content, [inner_glue[1]] if inner_glue else []))
    else:
        answer = _clean(_cut(text, thinks + ([glue_block[1]] if glue_block else [])))
    glue = _clean(glue_block[0]) if glue_block is not None else _clean(_cut(text, thinks))
    return Completion(
        think=think,
        answer=answer,
        answer_tagged=answer_block is not None,
        glue=glue,
        glue_tagged=glue_block is not None,
    )


# ---- two readings of a completion ----------------------------------------------------------
#
# Metrics read leniently, as the official VAU-R1 scorers do (they fall back on the whole response
# when a tag is missing): a direct answer written `B` or `Fighting` without tags still counts.
# Rewards and `vaur1 analyze` read only the answer format: the `<answer>` block and the `<glue>`
# block. A policy paid for text outside the format would learn to skip it, and a page that shows
# a guess read from free text (a random model's noise names a class sooner or later) misleads.
Reading = Literal["lenient", "tagged"]
READINGS: tuple[Reading, ...] = ("lenient", "tagged")


def answer_text(completion: Completion, reading: Reading) -> str | None:
    """The answer to read: lenient, `completion.answer`; tagged, only an `<answer>` block's text."""
    return completion.answer if reading == "lenient" or completion.answer_tagged else None


def glue_text(completion: Completion, reading: Reading) -> str | None:
    """The interval text to read: lenient, `completion.glue`; tagged, only a `<glue>` block's text."""
    return completion.glue if reading == "lenient" or completion.glue_tagged else None


def strip_tags(text: str) -> str:
    """Text with every think/answer/glue tag removed, for putting free text inside a block."""
    return re.sub(r"\s{2,}", " ", _TAG.sub(" ", text)).strip()


# ---- option letters -------------------------------------------------------------------------

_LEAD_PHRASE = re.compile(
    r"^(?:(?:the|my)\s+)?(?:(?:correct|best|final|right)\s+)?(?:answer|option|choice)"
    r"(?:\s+is)?\s*[:\-]?\s*",
    re.IGNORECASE,
)
_DECORATION = " \t\n\r*_`\"'"


def _normalize_option(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(_DECORATION).rstrip(".").strip().lower()


def extract_letter(answer: str | None, options: tuple[str, ...] | None = None) -> str | None:
    """The option letter an answer names, or None (see the module docstring)."""
    if not answer:
        return None
    letters = LETTERS[: len(options)] if options else LETTERS
    text = re.sub(r"\s+", " ", answer[:MAX_CHARS]).strip(_DECORATION)
    option_keys = [_normalize_option(o) for o in options] if options else []
    if option_keys and _normalize_option(text) in option_keys:
        return letters[option_keys.index(_normalize_option(text))]
    text = _LEAD_PHRASE.sub("", text, count=1).strip(_DECORATION)
    lead = re.match(r"^[(\[]?\s*([A-Za-z])\s*(?:[)\].:]|$)", text)
    if lead and lead.group(1).upper() in letters:
        return lead.group(1).upper()
    if (named := re.match(r"^([A-Z])\s+is\b", text)) and named.group(1) in letters:
        return named.group(1)  # "B is correct"; the article "A" is never followed by "is"
    spaced = re.match(r"^([A-Z])\s+(.+)$", text)
    if spaced and spaced.group(1) in letters and option_keys:
        letter, rest = spaced.groups()
        if _normalize_option(rest) == option_keys[letters.index(letter)]:
            return letter
    return None


# ---- intervals ------------------------------------------------------------------------------

_TIME = r"(?<![\w.:])(-?(?:\d+:){0,2}\d+(?:\.\d+)?)(?:\s*(?:seconds|second|secs|sec|s)\b)?"
_INTERVAL = re.compile(
    rf"[\[(]\s*{_TIME}\s*,\s*{_TIME}\s*[\])]"
    rf"|{_TIME}\s*(?:-|–|—|\bto\b|\buntil\b|\btill\b)\s*{_TIME}",
    re.IGNORECASE,
)


def _seconds(token: str) -> float | None:
    negative = token.startswith("-")
    try:
        parts = [float(p) for p in token.lstrip("-").split(":")]
    except (ValueError, OverflowError):
        return None
    value = 0.0
    for part in parts:
        value = value * 60 + part
    value = -value if negative else value
    return value if math.isfinite(value) else None


def parse_interval(text: str | None) -> Interval | None:
    """The first interval in text: (s, e) with 0 <= s <= e, `NO_ANOMALY`, or None if unreadable."""
    if not text:
        return None
    match = _INTERVAL.search(text[:MAX_CHARS])
    if match is None:
        return None
    tokens = [g for g in match.groups() if g is not None]
    start, end = _seconds(tokens[0]), _seconds(tokens[1])
    if start is None or end is None:
        return None
    if start == end == -1:
        return NO_ANOMALY
    if start < 0 or end < start:
        return None
    return (start, end)


def format_interval(interval: Interval) -> str:
    """`[s, e]` with one decimal, or `[-1, -1]` for no anomaly: how prompts and targets write it."""
    if interval == NO_ANOMALY:
        return "[-1, -1]"
    return f"[{interval[0]:.1f}, {interval[1]:.1f}]"


# ---- classes and the TAG label --------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+")
_MAX_CLASS_WORDS = 3  # the longest name ("Medical Abnormality", "Road Accidents") has two words


def extract_class(answer: str | None) -> str | None:
    """The first VAU-Bench class named in the answer (a label of `CLASSES`), or None."""
    if not answer:
        return None
    words = _WORD.findall(answer[:MAX_CHARS])
    for i in range(len(words)):
        for size in range(min(_MAX_CLASS_WORDS, len(words) - i), 0, -1):
            label = normalize_class("".join(words[i : i + size]))
            if label is not None:
                return label
    return None


# A negation may stand up to two words before the anomaly word ("no obvious anomaly").
_LABEL_WORDS = re.compile(
    r"(?P<normal>\b(?:no|not|without|non|nothing)[\s-]+(?:[a-z]+\s+){0,2}?(?:anomal|abnormal)[a-z]*)"
    r"|(?P<anomaly>\bnot\s+normal\b|(?<![a-z])(?:anomal|abnormal)[a-z]*)"
    r"|(?P<plain_normal>(?<![a-z])normal(?![a-z]))",
    re.IGNORECASE,
)


def extract_tag_label(answer: str | None) -> TagLabel | None:
    """`Anomaly` or `Normal` as the answer states it ("no anomaly" is Normal), or None."""
    if not answer:
        return None
    text = answer[:MAX_CHARS]
    match = _LABEL_WORDS.search(text)
    if match is not None:
        return ANOMALY if match.lastgroup == "anomaly" else NORMAL
    yes_no = re.match(r"^\W*(yes|no)\b", text, re.IGNORECASE)
    if yes_no:
        return ANOMALY if yes_no.group(1).lower() == "yes" else NORMAL
    label = extract_class(text)
    if label is None:
        return None
    return ANOMALY if says_anomaly(label) else NORMAL


def tag_prediction(completion: Completion, reading: Reading = "lenient") -> TagLabel | None:
    """The TAG label of an output: stated in the answer, or else implied by its interval.

    Only `[-1, -1]` implies Normal and only s < e implies Anomaly; an empty `[x, x]` implies
    neither.
    """
    label = extract_tag_label(answer_text(completion, reading))
    if label is not None:
        return label
    interval = parse_interval(glue_text(completion, reading))
    if interval == NO_ANOMALY:
        return NORMAL
    if interval is not None and interval[1] > interval[0]:
        return ANOMALY
    return None


# ---- the strict format ----------------------------------------------------------------------

_STRICT_GLUE = re.compile(r"\[\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\]")
FormatMode = Literal["think", "direct"]


def _valid_strict_glue(content: str) -> bool:
    if _STRICT_GLUE.fullmatch(content.strip()) is None:
        return False
    return parse_interval(content) is not None


def is_strict_format(text: str, task: str, mode: FormatMode) -> bool:
    """Exactly `<think>T</think><answer>A</answer>` (think) or `<answer>A</answer>` (direct).

    Tags are lower case with no inner spaces, only whitespace may surround them, each block is
    non-blank and holds no other tag. TAG also needs `<glue>[s, e]</glue>` after the answer,
    with plain numbers and 0 <= s <= e, or `[-1, -1]`; other tasks must have no glue block.
    """
    if len(text) > MAX_CHARS:
        return False
    names = ["think", "answer"] if mode == "think" else ["answer"]
    if task == TAG:
        names.append("glue")
    tags = _tags(text)
    expected = [(name, closing) for name in names for closing in (False, True)]
    if [(t.name, t.closing) for t in tags] != expected or not all(t.exact for t in tags):
        return False
    gaps = [text[: tags[0].start]] + [
        text[tags[i].end : tags[i + 1].start] for i in range(1, len(tags) - 1, 2)
    ]
    gaps.append(text[tags[-1].end :])
    if any(gap.strip() for gap in gaps):
        return False
    contents = {tags[i].name: text[tags[i].end : tags[i + 1].start] for i in range(0, len(tags), 2)}
    if any(not content.strip() for content in contents.values()):
        return False
    return "glue" not in contents or _valid_strict_glue(contents["glue"])


@dataclass(frozen=True)
class VideoReading:
    """What a model's TAG and CLS answers (answer format only) say of one video."""

    anomaly: bool | None  # None: neither answer is readable on it
    anomaly_class: str | None
    interval: Interval | None  # in the video's seconds; None for no anomaly or no readable interval


def read_tag_and_class(tag_text: str, cls_text: str) -> VideoReading:
    """The one reading `vaur1 analyze` and a scan's windows share: the TAG answer says whether there is
    an anomaly (or, unreadable, the class answer does), the CLS answer which, the TAG `<glue>` when."""
    tag = parse_completion(tag_text)
    label = tag_prediction(tag, "tagged")
    anomaly_class = extract_class(answer_text(parse_completion(cls_text), "tagged"))
    anomaly = says_anomaly(label if label is not None else anomaly_class)
    interval = parse_interval(glue_text(tag, "tagged"))
    if anomaly is not True or interval is None or interval == NO_ANOMALY or interval[1] <= interval[0]:
        interval = None
    return VideoReading(anomaly, anomaly_class, interval)
