"""Rewards for GRPO: named functions `(completion, example) -> float in [0, 1] | None`.

A reward returns None where it does not apply (another task, or the example lacks the target it
needs) and never raises, whatever the string. All of them read the completion through
`vaur1.parse`, the parser the metrics use too, in its tagged reading: accuracy, IoU and class are
paid only for an answer inside `<answer>` and an interval inside `<glue>`; the metrics apply the same
rules (`answer_score`, `interval_score`, `class_score`) to a lenient reading.

    format         strict `<think>..</think><answer>..</answer>` (+ a valid `<glue>` for TAG)
    format_direct  strict `<answer>..</answer>` (+ a valid `<glue>` for TAG), no think block
    accuracy       QA: the option letter; TAG: the Anomaly/Normal label the answer states
                   (or, when it states none, that its interval implies)
    iou            TAG: IoU with a positive; 1 when video and prediction are both normal
                   (`[-1, -1]`); 0 for any other mix
    class          CLS: the 20-way class
    iou_boundary   TAG: IoU scaled down by how far each boundary is off (Time-R1)
    consistency    TAG: answer and interval agree (Normal with [-1, -1], Anomaly with [s, e], s < e)
    think_length   shaping: 1 inside a band of think-block words, falling off outside it

`score` gives the weighted sum of the rewards a `RewardConfig` names for the example's task, and
each of those rewards unweighted; the defaults are the paper's: qa format + accuracy, tag format +
accuracy + iou, cls format + class, all weight 1.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError, VaurError
from vaur1.parse import (
    NO_ANOMALY,
    Interval,
    Reading,
    answer_text,
    extract_class,
    extract_letter,
    extract_tag_label,
    glue_text,
    is_strict_format,
    parse_completion,
    parse_interval,
    tag_prediction,
)
from vaur1.vocab import ANOMALY, CLS, NORMAL, QA, SCORED_TASKS, TAG, TASK_SPECS

RewardFn = Callable[[str, Example], float | None]


def temporal_iou(a: Interval, b: Interval) -> float:
    """IoU of two intervals; 0 when their union is empty."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return min(1.0, inter / union) if union > 0 else 0.0  # min: float rounding can pass 1


def format_reward(completion: str, example: Example) -> float | None:
    if example.task not in SCORED_TASKS:
        return None
    return float(is_strict_format(completion, example.task, "think"))


def format_direct_reward(completion: str, example: Example) -> float | None:
    if example.task not in SCORED_TASKS:
        return None
    return float(is_strict_format(completion, example.task, "direct"))


# ---- the correctness rules, under either reading of a completion --------------------------
#
# Metrics score with `reading="lenient"`, rewards with `reading="tagged"` (see `vaur1.parse`): the
# rule is one function, only what it may read differs.


def answer_score(completion: str, example: Example, reading: Reading = "tagged") -> float | None:
    """QA: the option letter is right; TAG: the Anomaly/Normal label is right; else None."""
    parsed = parse_completion(completion)
    if example.task == QA:
        if example.answer is None:
            return None
        return float(extract_letter(answer_text(parsed, reading), example.options) == example.answer)
    if example.task == TAG:
        return float(tag_prediction(parsed, reading) == example.tag_answer)
    return None


def interval_score(
    completion: str,
    example: Example,
    reading: Reading = "tagged",
    overlap: Callable[[Interval, Interval], float] = temporal_iou,
) -> float | None:
    """TAG: overlap with a positive; 1 when video and prediction are both normal (`[-1, -1]`)."""
    if example.task != TAG or example.interval is None:
        return None
    predicted = parse_interval(glue_text(parse_completion(completion), reading))
    if example.is_normal:
        return float(predicted == NO_ANOMALY)
    if predicted is None or predicted == NO_ANOMALY:
        return 0.0
    return overlap(predicted, example.interval)


def class_score(completion: str, example: Example, reading: Reading = "tagged") -> float | None:
    """CLS: the 20-way class is right."""
    if example.task != CLS or example.anomaly_class is None:
        return None
    return float(extract_class(answer_text(parse_completion(completion), reading)) == example.anomaly_class)


def accuracy_reward(completion: str, example: Example) -> float | None:
    return answer_score(completion, example, "tagged")


def iou_reward(completion: str, example: Example) -> float | None:
    return interval_score(completion, example, "tagged")


def boundary_iou(predicted: Interval, target: Interval) -> float:
    """Time-R1's IoU x (1 - |start error| / T) x (1 - |end error| / T).

    Time-R1 takes T as the video's duration, which an Example does not carry; T here is the span
    covering both intervals, which keeps each factor in [0, 1] and makes the penalty scale-free.
    """
    span = max(predicted[1], target[1]) - min(predicted[0], target[0])
    if span <= 0:
        return 0.0
    start_factor = max(0.0, 1 - abs(predicted[0] - target[0]) / span)
    end_factor = max(0.0, 1 - abs(predicted[1] - target[1]) / span)
    return temporal_iou(predicted, target) * start_factor * end_factor


def iou_boundary_reward(completion: str, example: Example) -> float | None:
    return interval_score(completion, example, "tagged", boundary_iou)


def class_reward(completion: str, example: Example) -> float | None:
    return class_score(completion, example, "tagged")


def consistency_reward(completion: str, example: Example) -> float | None:
    if example.task != TAG:
        return None
    parsed = parse_completion(completion)
    label = extract_tag_label(answer_text(parsed, "tagged"))
    interval = parse_interval(glue_text(parsed, "tagged"))
    if label == NORMAL:
        return float(interval == NO_ANOMALY)
    if label == ANOMALY:
        return float(interval is not None and interval != NO_ANOMALY and interval[1] > interval[0])
    return 0.0


DEFAULT_THINK_MIN_WORDS = 16
DEFAULT_THINK_MAX_WORDS = 256


def think_length_reward(
    completion: str,
    example: Example,
    min_words: int = DEFAULT_THINK_MIN_WORDS,
    max_words: int = DEFAULT_THINK_MAX_WORDS,
) -> float | None:
    """1 for a think block of min..max words, linearly less below, and 0 at twice the maximum."""
    if example.task not in SCORED_TASKS:
        return None
    think = parse_completion(completion).think
    if think is None:
        return 0.0
    words = len(think.split())
    if words < min_words:
        return words / min_words
    if words > max_words:
        return max(0.0, 1 - (words - max_words) / max_words)
    return 1.0


REWARDS: dict[str, RewardFn] = {
    "format": format_reward,
    "format_direct": format_direct_reward,
    "accuracy": accuracy_reward,
    "iou": iou_reward,
    "class": class_reward,
    "iou_boundary": iou_boundary_reward,
    "consistency": consistency_reward,
    "think_length": think_length_reward,
}

# The tasks each reward can apply to (it may still return None for an example missing its target).
# Format and length rewards read no answer and apply to every scored task; the others are named by
# the tasks they score (`vaur1.vocab.TASK_SPECS`).
REWARD_TASKS: dict[str, tuple[str, ...]] = {
    name: SCORED_TASKS
    if name in ("format", "format_direct", "think_length")
    else tuple(task for task, spec in TASK_SPECS.items() if name in spec.rewards)
    for name in REWARDS
}


AGGREGATIONS: tuple[str, ...] = ("sum_then_normalize", "normalize_then_sum")

# ---- rewards of your own ----------------------------------------------------------------------

_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_NAME = re.compile(r"[A-Za-z_]\w*")


class RewardError(VaurError):
    """A reward of the user's failed or returned something that is not a reward: the step stops."""


def _import_user_module(name: str):
    """The module, from sys.path or else from the current folder: a console script's sys.path does not
    hold the folder it was started in, where a user's reward module usually lies."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        here = os.getcwd()
        if err.name != name.split(".")[0] or here in sys.path:
            raise
        sys.path.append(here)  # after everything else: never shadows an installed package
        return importlib.import_module(name)


@functools.lru_cache(maxsize=64)
def load_reward(target: str, name: str = "custom") -> RewardFn:
    """The function `package.module:function` names, guarded: an exception in it, or a value that is not
    a finite number or None, is a `RewardError` naming the reward, the sample and what went wrong."""
    if not _TARGET.fullmatch(target):
        raise ConfigError(f"rewards.custom.{name}: {target!r} is not package.module:function")
    module_name, _, attribute = target.partition(":")
    try:
        module = _import_user_module(module_name)
    except Exception as err:  # an import runs the user's module: whatever it raises is reported, once
        raise ConfigError(
            f"rewards.custom.{name}: cannot import {module_name} ({type(err).__name__}: {err})"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"rewards.custom.{name}: {module_name} has no function {attribute!r}")

    def reward(completion: str, example: Example) -> float | None:
        try:
            value = function(completion, example)
        except Exception as err:  # the user's code: any exception, named with the sample, stops the step
            raise RewardError(
                f"reward {name!r} ({target}) on {example.key}: {type(err).__name__}: {err}"
            ) from err
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RewardError(
                f"reward {name!r} ({target}) on {example.key}: returned {value!r}, not a finite number or None"
            )
        return float(value)

    reward.__name__ = name
    return reward


@dataclass
class RewardConfig:
    """Per-task reward weights (reward name -> weight), the think-length band, and rewards of your own
    (`custom`: name -> "package.module:function", weighted under qa/tag/cls like a built-in)."""

    qa: dict[str, float] = field(
        default_factory=lambda: {"format": 1.0, "accuracy": 1.0}
    )  # reward name -> weight for QA prompts
    tag: dict[str, float] = field(
        default_factory=lambda: {"format": 1.0, "accuracy": 1.0, "iou": 1.0}
    )  # reward name -> weight for TAG prompts
    cls: dict[str, float] = field(
        default_factory=lambda: {"format": 1.0, "class": 1.0}
    )  # reward name -> weight for CLS prompts
    think_min_words: int = DEFAULT_THINK_MIN_WORDS  # think_length: full reward from this many words
    think_max_words: int = (
        DEFAULT_THINK_MAX_WORDS  # think_length: full reward up to this many words, none at twice it
    )
    # rewards of your own: name -> "package.module:function"; the function takes (completion, example)
    # and returns a float (or None where it does not apply); weight it under qa/tag/cls by its name
    custom: dict[str, str] = field(default_factory=dict)
    # sum_then_normalize: advantages of the weighted sum (GRPO); normalize_then_sum: each reward
    # normalised in its group before the weighted sum, the sums normalised over the batch (GDPO)
    multi_objective_aggregation: str = "sum_then_normalize"
    # DAPO's overlong shaping: a completion longer than max_completion_length minus this buffer (tokens)
    # loses up to overlong_penalty_factor, linearly over the buffer; 0: off
    overlong_buffer_len: int = 0
    overlong_penalty_factor: float = 1.0  # the penalty at max_completion_length

    def validate(self) -> None:
        if self.multi_objective_aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"rewards.multi_objective_aggregation: {self.multi_objective_aggregation!r} is not one of "
                f"{', '.join(AGGREGATIONS)}"
            )
        for name, target in self.custom.items():
            if not _NAME.fullmatch(name) or name in REWARDS:
                raise ConfigError(
                    f"rewards.custom.{name}: a reward's name is an identifier that no built-in reward has "
                    f"({', '.join(REWARDS)})"
                )
            load_reward(str(target), name)
        known = [*REWARDS, *self.custom]
        for task in SCORED_TASKS:
            weights = getattr(self, task)
            if not weights:
                raise ConfigError(f"rewards.{task}: no rewards; give at least one (e.g. format: 1.0)")
            for name, weight in weights.items():
                if name not in known:
                    raise ConfigError(f"rewards.{task}.{name}: unknown reward (rewards: {', '.join(known)})")
                if name in REWARD_TASKS and task not in REWARD_TASKS[name]:
                    raise ConfigError(f"rewards.{task}.{name}: this reward does not apply to {task}")
                if not math.isfinite(weight):
                    raise ConfigError(f"rewards.{task}.{name}: weight must be a finite number, got {weight}")
        if self.overlong_buffer_len < 0 or not math.isfinite(self.overlong_penalty_factor):
            raise ConfigError(
                f"rewards: overlong_buffer_len must be >= 0 and overlong_penalty_factor finite, got "
                f"{self.overlong_buffer_len} and {self.overlong_penalty_factor}"
            )
        if not 0 < self.think_min_words <= self.think_max_words:
            raise ConfigError(
                "rewards: need 0 < think_min_words <= think_max_words, "
                f"got {self.think_min_words} and {self.think_max_words}"
            )

    def weights(self, task: str) -> dict[str, float]:
        if task not in SCORED_TASKS:
            raise VaurError(f"task {task!r} has no rewards (rewarded tasks: {', '.join(SCORED_TASKS)})")
        return dict(getattr(self, task))


OVERLONG = "overlong"  # the name the shaping term is logged under, next to the rewards


def overlong_penalty(length: int, max_length: int, buffer: int, factor: float) -> float:
    """DAPO's soft overlong punishment (verl's `overlong_buffer`): 0 up to max_length - buffer tokens,
    then falling linearly to -factor at max_length."""
    exceed = length - (max_length - buffer)
    return min(-exceed / buffer * factor, 0.0)


def reward_functions(config: RewardConfig | None = None) -> dict[str, RewardFn]:
    """The registry with the think-length band taken from config, and the config's own rewards."""
    config = config or RewardConfig()
    think_length = functools.partial(
        think_length_reward, min_words=config.think_min_words, max_words=config.think_max_words
    )
    custom = {name: load_reward(str(target), name) for name, target in config.custom.items()}
    return {**REWARDS, "think_length": think_length, **custom}


def applicable_rewards(
    completion: str, example: Example, config: RewardConfig | None = None
) -> dict[str, float]:
    """Every reward that applies to the example, by name."""
    values = {name: fn(completion, example) for name, fn in reward_functions(config).items()}
    return {name: value for name, value in values.items() if value is not None}


def score(
    completion: str, example: Example, config: RewardConfig | None = None
) -> tuple[float, dict[str, float | None]]:
    """(weighted total, each of the task's rewards by name, unweighted) for one completion.

    A reward that returns None (its target is missing from the example) adds nothing to the total.
    """
    config = config or RewardConfig()
    weights = config.weights(example.task)
    functions = reward_functions(config)
    parts = {name: functions[name](completion, example) for name in weights}
    total = sum(weights[name] * value for name, value in parts.items() if value is not None)
    return total, parts
