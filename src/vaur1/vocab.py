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

# The generation backends: transformers' `generate`, or a vLLM engine (the same outputs).
Backend = Literal["hf", "vllm"]
HF: Backend = "hf"
VLLM: Backend = "vllm"
BACKENDS: tuple[Backend, ...] = (HF, VLLM)

Task = Literal["qa", "tag", "cls", "reasoning"]
QA: Task = "qa"
TAG: Task = "tag"
CLS: Task = "cls"
REASONING: Task = "reasoning"

# A video's two states: TAG's two answers; NORMAL is also the class of a video without an anomaly.
ANOMALY = "Anomaly"
NORMAL = "Normal"


def says_anomaly(label: str | None) -> bool | None:
    """Whether a predicted label (a TAG answer or a class) says there is an anomaly: any label but
    Normal does; None for no label."""
    return None if label is None else label != NORMAL


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
        return metric_name(self.task, self.key)


def metric_name(task: str, key: str) -> str:
    """A metric's name across tasks, `task.key` (`tag.miou`): how configs and tables refer to it."""
    return f"{task}.{key}"


# Metric keys: a key of a task block in metrics.json, the same in every task that has it.
ACCURACY = "accuracy"
MIOU = "miou"
RECALL_03, RECALL_05, RECALL_07 = "r@0.3", "r@0.5", "r@0.7"  # TAG: the share of positives at IoU >= t
RECALL_AT: dict[float, str] = {0.3: RECALL_03, 0.5: RECALL_05, 0.7: RECALL_07}
FALSE_ALARM_RATE = "false_alarm_rate"
BINARY_ACCURACY = "binary_accuracy"
MULTICLASS_ACCURACY = "multiclass_accuracy"
MACRO_F1 = "macro_f1"
MEAN_ACCURACY = "mean_accuracy"  # the named score checkpoints are chosen by


@dataclass(frozen=True)
class TaskSpec:
    """Everything vaur1 derives from a task's name: its table title, its metrics and the headline
    one, the constant answers it is compared with, what each scored item records, and the rewards
    that apply to it. The functions behind the names are registered by task in their owners
    (`vaur1.eval.metrics`, `vaur1.eval.baselines`, `vaur1.rewards`, `vaur1.prompts`)."""

    name: Task
    title: str
    metrics: tuple[Metric, ...] = ()  # empty: not scored by metrics (reasoning is judged)
    headline: str | None = None  # the one metric key summaries lead with
    baselines: tuple[str, ...] = ()  # constant answers reported beside a model
    item_fields: tuple[str, ...] = ()  # what sample_scores.jsonl holds for each item besides its key
    rewards: tuple[str, ...] = ()  # the task-specific rewards of `vaur1.rewards.REWARDS`

    @property
    def scored(self) -> bool:
        return bool(self.metrics)

    @property
    def headline_metric(self) -> Metric:
        return next(metric for metric in self.metrics if metric.key == self.headline)


TASK_SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            QA,
            "Multiple-choice QA: accuracy (%)",
            metrics=(Metric(QA, ACCURACY, "Acc"),),
            headline=ACCURACY,
            baselines=("constant_letter",),
            item_fields=("target", "prediction", "correct"),
            rewards=("accuracy",),
        ),
        TaskSpec(
            TAG,
            "Temporal anomaly grounding (%), TAG positives; false alarms over normal videos",
            metrics=(
                Metric(TAG, MIOU, "mIoU"),
                *(Metric(TAG, key, f"R@{t}") for t, key in RECALL_AT.items()),
                Metric(TAG, FALSE_ALARM_RATE, "False alarm", higher_is_better=False),
            ),
            headline=MIOU,
            baselines=("always_normal", "always_interval"),
            item_fields=("target", "prediction", "iou", "false_alarm"),
            rewards=("accuracy", "iou", "iou_boundary", "consistency"),
        ),
        TaskSpec(
            CLS,
            "Anomaly classification (%): binary, 20-way, macro-F1",
            metrics=(
                Metric(CLS, BINARY_ACCURACY, "Bin. Acc"),
                Metric(CLS, MULTICLASS_ACCURACY, "Multi Acc"),
                Metric(CLS, MACRO_F1, "Macro-F1"),
            ),
            headline=MULTICLASS_ACCURACY,
            baselines=("always_normal", "always_anomaly"),
            item_fields=("target", "prediction", "binary_correct", "correct"),
            rewards=("class",),
        ),
        TaskSpec(REASONING, "Anomaly reasoning", item_fields=("description", "analysis", "scores")),
    )
}

TASKS: tuple[Task, ...] = tuple(TASK_SPECS)
# The tasks with a verifiable answer: GRPO rewards them, the harness scores them with metrics.
SCORED_TASKS: tuple[Task, ...] = tuple(name for name, spec in TASK_SPECS.items() if spec.scored)
TASK_TITLES: dict[str, str] = {name: spec.title for name, spec in TASK_SPECS.items()}
METRICS: tuple[Metric, ...] = tuple(metric for spec in TASK_SPECS.values() for metric in spec.metrics)
METRICS_BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}
# The one number per task that summaries lead with.
HEADLINE_METRICS: dict[str, str] = {name: spec.headline for name, spec in TASK_SPECS.items() if spec.headline}
HEADLINES: tuple[Metric, ...] = tuple(spec.headline_metric for spec in TASK_SPECS.values() if spec.scored)

# Named scores: the mean of their metrics, for choosing checkpoints.
SCORES: dict[str, tuple[str, ...]] = {MEAN_ACCURACY: tuple(metric.name for metric in HEADLINES)}
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
