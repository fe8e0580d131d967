"""Prompts and SFT targets for every task, in one place.

    messages = build_messages(example, "think")            # chat messages for the processor
    target = target_text(example, "cot")                    # the assistant answer for SFT

Modes: `think` asks for `<think>...</think><answer>...</answer>` (plus `<glue>[s, e]</glue>` for
TAG); `direct` asks for the answer tags alone. Every template is a field of `PromptConfig`, so a
YAML config can replace any of them. Templates fill these placeholders:

    {question}  the QA question                 (qa)
    {options}   one `A. text` line per option   (qa)
    {letters}   `A, B, C or D`                  (qa)
    {classes}   the 20 class names, exactly as the parser reads them (cls)

Every prompt, target and parser agree on one convention: times in seconds with one decimal,
and `Normal` with `<glue>[-1, -1]</glue>` for a normal video.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from vaur1.bench.reasoning import parse_reasoning
from vaur1.bench.schema import CLASSES, LETTERS, REASONING_FIELDS
from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError, VaurError
from vaur1.parse import NO_ANOMALY, format_interval, strip_tags
from vaur1.vocab import CLS, MODES, QA, REASONING, TAG, TARGET_MODES, TASKS, Mode, TargetMode

QA_THINK = (
    "Answer the question about the video.\n"
    "Question: {question}\n"
    "Options:\n{options}\n"
    "First think step by step inside <think> </think>: what happens in the video and when (in seconds). "
    "Then give only the letter of the correct option ({letters}) inside <answer> </answer>.\n"
    "Format: <think> ... </think><answer> letter </answer>"
)
QA_DIRECT = (
    "Answer the question about the video.\n"
    "Question: {question}\n"
    "Options:\n{options}\n"
    "Give only the letter of the correct option ({letters}) inside <answer> </answer>, and nothing else.\n"
    "Format: <answer> letter </answer>"
)
TAG_THINK = (
    "Is there any anomaly in the video?\n"
    "First think step by step inside <think> </think>: what happens and when. "
    "Then answer Anomaly or Normal inside <answer> </answer>, and give the time period of the anomaly "
    "in seconds, with one decimal, inside <glue> </glue> as [start, end]. "
    "If the video is normal, answer Normal with <glue>[-1, -1]</glue>.\n"
    "Format: <think> ... </think><answer> Anomaly or Normal </answer><glue>[start, end]</glue>"
)
TAG_DIRECT = (
    "Is there any anomaly in the video?\n"
    "Answer Anomaly or Normal inside <answer> </answer>, and give the time period of the anomaly "
    "in seconds, with one decimal, inside <glue> </glue> as [start, end]. "
    "If the video is normal, answer Normal with <glue>[-1, -1]</glue>. Output nothing else.\n"
    "Format: <answer> Anomaly or Normal </answer><glue>[start, end]</glue>"
)
CLS_THINK = (
    "What type of anomaly appears in the video? If no anomaly appears, answer Normal.\n"
    "Choose one of these classes, written exactly as listed: {classes}.\n"
    "First think step by step inside <think> </think>. Then give the class inside <answer> </answer>.\n"
    "Format: <think> ... </think><answer> class </answer>"
)
CLS_DIRECT = (
    "What type of anomaly appears in the video? If no anomaly appears, answer Normal.\n"
    "Choose one of these classes, written exactly as listed: {classes}.\n"
    "Give only the class inside <answer> </answer>, and nothing else.\n"
    "Format: <answer> class </answer>"
)
_REASONING_TASK = (
    "You are analysing a video for anomalies: unusual, dangerous or criminal events. "
    "Ignore any text or watermarks in the video.\n"
)
REASONING_THINK = (
    f"{_REASONING_TASK}"
    "First think step by step inside <think> </think>. Then, inside <answer> </answer>, describe what "
    'happens in the video in a few sentences after "Description:", and explain whether and how an '
    'anomaly occurs, and why, after "Analysis:".\n'
    "Format: <think> ... </think><answer>Description: ... Analysis: ...</answer>"
)
REASONING_DIRECT = (
    f"{_REASONING_TASK}"
    'Inside <answer> </answer>, describe what happens in the video in a few sentences after "Description:", '
    'and explain whether and how an anomaly occurs, and why, after "Analysis:".\n'
    "Format: <answer>Description: ... Analysis: ...</answer>"
)

PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    QA: ("question", "options", "letters"),
    TAG: (),
    CLS: ("classes",),
    REASONING: (),
}
REQUIRED_PLACEHOLDERS: dict[str, tuple[str, ...]] = {QA: ("question", "options")}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class PromptConfig:
    """One template per (task, mode), and an optional system prompt.

    With `system` unset, no system message is sent and the chat template adds its own default
    (Qwen2/2.5-VL: "You are a helpful assistant."; Qwen3-VL: none).
    """

    qa_think: str = QA_THINK  # QA, think mode: {question}, {options}, {letters}
    qa_direct: str = QA_DIRECT  # QA, direct mode: {question}, {options}, {letters}
    tag_think: str = TAG_THINK  # temporal grounding, think mode
    tag_direct: str = TAG_DIRECT  # temporal grounding, direct mode
    cls_think: str = CLS_THINK  # classification, think mode: {classes}
    cls_direct: str = CLS_DIRECT  # classification, direct mode: {classes}
    reasoning_think: str = REASONING_THINK  # description and analysis, think mode
    reasoning_direct: str = REASONING_DIRECT  # description and analysis, direct mode
    system: str | None = None  # a system message; null: the chat template's default

    def validate(self) -> None:
        for f in fields(self):
            if f.name == "system":
                continue
            task = f.name.rsplit("_", 1)[0]
            template = getattr(self, f.name)
            used = set(_PLACEHOLDER.findall(template))
            unknown = sorted(used - set(PLACEHOLDERS[task]))
            if unknown:
                allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS[task]) or "none"
                raise ConfigError(
                    f"prompts.{f.name}: unknown placeholder {{{unknown[0]}}} (allowed: {allowed})"
                )
            missing = [p for p in REQUIRED_PLACEHOLDERS.get(task, ()) if p not in used]
            if missing:
                raise ConfigError(f"prompts.{f.name}: the template must contain {{{missing[0]}}}")
            if not template.strip():
                raise ConfigError(f"prompts.{f.name}: the template is empty")
        if self.system is not None and not self.system.strip():
            raise ConfigError("prompts.system: empty; leave it unset for the chat template's default")

    def template(self, task: str, mode: str) -> str:
        if task not in TASKS:
            raise VaurError(f"unknown task {task!r} (tasks: {', '.join(TASKS)})")
        if mode not in MODES:
            raise VaurError(f"unknown prompt mode {mode!r} (modes: {', '.join(MODES)})")
        return getattr(self, f"{task}_{mode}")


def _letters_text(count: int) -> str:
    letters = LETTERS[:count]
    return letters[0] if count == 1 else f"{', '.join(letters[:-1])} or {letters[-1]}"


def _values(example: Example) -> dict[str, str]:
    if example.task != QA:
        return {"classes": ", ".join(CLASSES)}
    if not example.question or not example.options:
        raise VaurError(f"{example.key}: a QA prompt needs a question and options")
    if len(example.options) > len(LETTERS):
        raise VaurError(
            f"{example.key}: {len(example.options)} options, at most {len(LETTERS)} are supported"
        )
    lines = "\n".join(f"{letter}. {option}" for letter, option in zip(LETTERS, example.options, strict=False))
    return {"question": example.question, "options": lines, "letters": _letters_text(len(example.options))}


def prompt_text(example: Example, mode: Mode, config: PromptConfig | None = None) -> str:
    """The user's text for one example: its task's template with the placeholders filled."""
    template = (config or PromptConfig()).template(example.task, mode)
    values = _values(example)
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def build_messages(example: Example, mode: Mode, config: PromptConfig | None = None) -> list[dict]:
    """Chat messages as the Qwen chat templates render them: optional system, then video and text."""
    config = config or PromptConfig()
    user = {
        "role": "user",
        "content": [{"type": "video"}, {"type": "text", "text": prompt_text(example, mode, config)}],
    }
    if config.system is None:
        return [user]
    return [{"role": "system", "content": [{"type": "text", "text": config.system}]}, user]


# ---- SFT targets ----------------------------------------------------------------------------


def _answer_tags(example: Example) -> str:
    if example.task == QA:
        if example.answer is None:
            raise VaurError(f"{example.key}: no answer letter for a QA target")
        return f"<answer>{example.answer}</answer>"
    if example.task == TAG:
        if example.interval is None:
            raise VaurError(
                f"{example.key}: no interval for a TAG target (missing intervals are not TAG examples)"
            )
        interval = NO_ANOMALY if example.is_normal else example.interval
        return f"<answer>{example.tag_answer}</answer><glue>{format_interval(interval)}</glue>"
    if example.task == CLS:
        if example.anomaly_class is None:
            raise VaurError(f"{example.key}: no anomaly class for a CLS target")
        return f"<answer>{example.anomaly_class}</answer>"
    return f"<answer>{_reasoning_answer(example)}</answer>"


def _sentence(text: str) -> str:
    text = strip_tags(text)
    return text if not text or text[-1] in ".!?" else f"{text}."


def _reasoning_answer(example: Example) -> str:
    parts = []
    if example.description:
        parts.append(f"Description: {_sentence(example.description)}")
    reasoning, _, _ = parse_reasoning(example.reasoning)
    if reasoning is not None:
        named = zip(REASONING_FIELDS, reasoning.fields(), strict=True)
        analysis = " ".join(f"{name}: {_sentence(value)}" for name, value in named if value)
        parts.append(f"Analysis: {analysis}")
    if not parts:
        raise VaurError(f"{example.key}: no description or reasoning for a reasoning target")
    return " ".join(parts)


def _think(example: Example) -> str:
    reasoning, _, _ = parse_reasoning(example.reasoning)
    # A reasoning answer holds the description itself; its <think> block keeps to the evidence.
    parts = [_sentence(example.description)] if example.description and example.task != REASONING else []
    if reasoning is not None:
        if reasoning.key_evidence:
            parts.append(f"Key evidence: {_sentence(reasoning.key_evidence)}")
        if reasoning.cause_effect:
            parts.append(f"Cause and effect: {_sentence(reasoning.cause_effect)}")
    parts = [p for p in parts if p]
    if not parts:
        raise VaurError(f"{example.key}: no description or reasoning to build a <think> block from")
    if example.task == TAG and example.interval is not None and not example.is_normal:
        start, end = example.interval
        parts.append(f"The anomaly lasts from {start:.1f} s to {end:.1f} s.")
    return " ".join(parts)


def target_text(example: Example, mode: TargetMode) -> str:
    """The assistant answer for SFT: `direct` the answer tags alone; `cot` a <think> block first.

    The <think> block is built from the annotation: the description (except for reasoning, whose
    answer holds it), the key evidence and the cause and effect, and for a TAG positive the
    interval. A `cot` target pairs with a `think` prompt, a `direct` target with a `direct`
    prompt; both pass `is_strict_format`. Annotation text is stripped of think/answer/glue tags.
    """
    if mode not in TARGET_MODES:
        raise VaurError(f"unknown target mode {mode!r} (modes: {', '.join(TARGET_MODES)})")
    answer = _answer_tags(example)
    if mode == "direct":
        return answer
    return f"<think>{_think(example)}</think>{answer}"


def sharegpt_record(
    example: Example, mode: Mode, target: TargetMode, video: str, config: PromptConfig | None = None
) -> dict:
    """One SFT example in LLaMA-Factory's ShareGPT-with-videos format: the prompt (its video as the
    `<video>` placeholder, where vaur1's messages put it) and the answer, with the video's path."""
    messages = [
        {
            "role": message["role"],
            "content": "".join(
                "<video>" if item["type"] == "video" else item["text"] for item in message["content"]
            ),
        }
        for message in build_messages(example, mode, config)
    ]
    messages.append({"role": "assistant", "content": target_text(example, target)})
    return {"messages": messages, "videos": [video]}
