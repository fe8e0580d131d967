"""A reward of your own for vaur1: TAG answers that hedge with a long interval earn less.

IoU pays a prediction for overlapping the anomaly, and a long interval overlaps most anomalies a
little; this reward pays the share of the predicted interval that lies inside the annotated one, so
`[0, 60]` around a 5-second fight scores 1/12 however much it overlaps. Use it next to the built-in
rewards, with a weight of its own:

    vaur1 train grpo --config qwen2_5_vl_3b/tag \\
        rewards.custom.interval_precision=interval_precision:interval_precision \\
        'rewards.tag={format: 1, accuracy: 1, iou: 1, interval_precision: 0.5}'

    vaur1 rewards --task tag --input completions.jsonl --config rewards.yaml   # score outputs with it

Run either from this folder (vaur1 imports a reward module from the current folder or PYTHONPATH). A
reward takes the completion and the example (`vaur1.bench.tasks.Example`: task, interval, answer,
anomaly class, ...) and returns a number, or None where it does not apply (other tasks, normal
videos); an exception in it stops training with its name, the sample and the error.
"""

from __future__ import annotations

from vaur1.bench.tasks import Example
from vaur1.parse import NO_ANOMALY, parse_completion, parse_interval


def interval_precision(completion: str, example: Example) -> float | None:
    if example.task != "tag" or example.interval is None or example.is_normal:
        return None
    parsed = parse_completion(completion)
    predicted = parse_interval(parsed.glue) if parsed.glue_tagged else None  # the answer format only
    if predicted is None or predicted == NO_ANOMALY or predicted[1] <= predicted[0]:
        return 0.0
    start, end = example.interval
    inside = max(0.0, min(end, predicted[1]) - max(start, predicted[0]))
    return inside / (predicted[1] - predicted[0])
