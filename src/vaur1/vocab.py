"""The words vaur1 speaks in, defined once: tasks, prompt modes, metrics and the scores built on them.

Prompts, rewards, metrics, reports, the CLI, the trainers' validation and the demo all read these
names from here, so a task or a metric is added (or renamed) in one place.

    tasks    qa (multiple-choice QA), tag (temporal anomaly grounding), cls (classification),
             reasoning (free-text description and analysis)
    modes    direct (answer tags only) and think (a <think> block first): the paper's w/o and w/ think
    metrics  `task.key`, e.g. `tag.miou`; every value in points (0-100)
    scores   named aggregates of metrics, e.g. `mean_accuracy` for model selection
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vaur1.errors import ConfigError

# The Qwen-VL architectures (transformers' model_type) that vaur1 loads, trains and builds tiny copies of.
Arch = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
ARCHS: tuple[Arch, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
# The real checkpoints whose architectures ship with vaur1 (vaur1.model.shipped): name -> Hub id
ARCHITECTURES: dict[str, str] = {
    "qwen2_vl_2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2_vl_7b": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen2_5_vl_3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2_5_vl_7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen3_vl_2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen3_vl_4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3_vl_8b": "Qwen/Qwen3-VL-8B-Instruct",
}

Task = Literal["qa", "tag", "cls", "reasoning"]
TASKS: tuple[Task, ...] = ("qa", "tag", "cls", "reasoning")
# The tasks with a verifiable answer: GRPO rewards them, the harness scores them with metrics.
SCORED_TASKS: tuple[Task, ...] = ("qa", "tag", "cls")
TASK_TITLES: dict[str, str] = {
    "qa": "Multiple-choice QA: accuracy (%)",
    "tag": "Temporal anomaly grounding (%), TAG positives; false alarms over normal videos",
    "cls": "Anomaly classification (%): binary, 20-way, macro-F1",
    "reasoning": "Anomaly reasoning",
}

Mode = Literal["direct", "think"]
MODES: tuple[Mode, ...] = ("direct", "think")  # the paper's column order: w/o think, then w/ think
MODE_LABELS: dict[str, str] = {"direct": "w/o think", "think": "w/ think"}
# What an SFT target holds: the answer tags alone, or a chain of thought before them.
TargetMode = Literal["direct", "cot"]
TARGET_MODES: tuple[TargetMode, ...] = ("direct", "cot")


@dataclass(frozen=True)
class Metric:
    task: str
    key: str  # the key in a task block of metrics.json (`vaur1 eval metrics --json`)
    label: str  # how tables head it
    higher_is_better: bool = True

    @property
    def name(self) -> str:
        return f"{self.task}.{self.key}"


METRICS: tuple[Metric, ...] = (
    Metric("qa", "accuracy", "Acc"),
    Metric("tag", "miou", "mIoU"),
    Metric("tag", "r@0.3", "R@0.3"),
    Metric("tag", "r@0.5", "R@0.5"),
    Metric("tag", "r@0.7", "R@0.7"),
    Metric("tag", "false_alarm_rate", "False alarm", higher_is_better=False),
    Metric("cls", "binary_accuracy", "Bin. Acc"),
    Metric("cls", "multiclass_accuracy", "Multi Acc"),
    Metric("cls", "macro_f1", "Macro-F1"),
)
METRICS_BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}
# The one number per task that summaries lead with.
HEADLINE_METRICS: dict[str, str] = {"qa": "accuracy", "tag": "miou", "cls": "multiclass_accuracy"}

# Named scores: the mean of their metrics, for choosing checkpoints.
SCORES: dict[str, tuple[str, ...]] = {
    "mean_accuracy": ("qa.accuracy", "tag.miou", "cls.multiclass_accuracy"),
}
# The token cross-entropy of the SFT targets on the validation split (lower is better).
VAL_LOSS = "val_loss"


def task_metrics(task: str) -> tuple[Metric, ...]:
    return tuple(metric for metric in METRICS if metric.task == task)


def check_tasks(names: list[str] | tuple[str, ...], where: str = "tasks") -> None:
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        shown = unknown[0] if unknown else "none"
        raise ConfigError(f"{where}: unknown task {shown!r} (tasks: {', '.join(TASKS)})")


def check_mode(mode: str, where: str = "mode") -> None:
    if mode not in MODES:
        raise ConfigError(f"{where}: {mode!r} is not one of {', '.join(MODES)}")


def score_metrics(name: str) -> tuple[str, ...]:
    """The metrics a score or a single metric reads; ConfigError for an unknown name."""
    if name in SCORES:
        return SCORES[name]
    if name in METRICS_BY_NAME:
        return (name,)
    known = ", ".join([*SCORES, *METRICS_BY_NAME])
    raise ConfigError(f"unknown score {name!r} (scores: {known}, or {VAL_LOSS} for SFT)")


def higher_is_better(name: str) -> bool:
    if name == VAL_LOSS:
        return False
    if name in SCORES:
        return True
    return METRICS_BY_NAME[name].higher_is_better


def score_value(name: str, blocks: dict[str, dict]) -> float | None:
    """A score or metric from metrics.json task blocks ({task: block}); None when a part is missing."""
    values = []
    for metric in score_metrics(name):
        task, key = metric.split(".", 1)
        value = (blocks.get(task) or {}).get(key)
        if value is None:
            return None
        values.append(float(value))
    return sum(values) / len(values)
