"""Video-R1's T-GRPO: does the model use the frames' order?

Each prompt is also sampled on its frames shuffled (G / 2 completions; the frames' timestamps stay as
they were, only their contents move, as Video-R1 permutes the video tensor). When the ordered group's
accuracy reaches `margin` times the shuffled group's, every ordered completion whose accuracy is above
`threshold` earns `bonus` on that reward: answers that need the frames in order are paid more. The
shuffled completions train nothing. For anomaly grounding this is the question whether the model uses
time at all. Logged: `temporal/ordered_accuracy`, `temporal/shuffled_accuracy`, `temporal/bonus_share`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from vaur1.errors import ConfigError
from vaur1.video.frames import DecodedVideo
from vaur1.vocab import CLS, QA, TAG

# The reward whose value a shuffled video should lower: each task's correctness.
TEMPORAL_REWARD: dict[str, str] = {QA: "accuracy", TAG: "iou", CLS: "class"}


@dataclass
class TemporalConfig:
    enabled: bool = False  # T-GRPO (Video-R1): also sample each prompt on shuffled frames, pay order
    bonus: float = 0.3  # added to the accuracy reward of correct ordered completions (Video-R1's alpha)
    margin: float = 0.8  # the ordered group's mean accuracy must reach this times the shuffled group's
    threshold: float = 0.1  # ordered completions whose accuracy exceeds this earn the bonus

    def validate(self) -> None:
        if self.bonus < 0 or self.margin <= 0:
            raise ConfigError(
                f"rollout.temporal: need bonus >= 0 and margin > 0, got {self.bonus}, {self.margin}"
            )


def temporal_bonus(
    ordered: torch.Tensor, shuffled: torch.Tensor, bonus: float, margin: float, threshold: float
) -> tuple[torch.Tensor, bool]:
    """One prompt's ordered accuracies with Video-R1's bonus applied, and whether it was."""
    if ordered.mean() >= margin * shuffled.mean():
        return torch.where(ordered > threshold, ordered + bonus, ordered), True
    return ordered, False


def shuffled(video: DecodedVideo, seed: int) -> DecodedVideo:
    """The same video with its frames in a random order (a fixed one for a given seed)."""
    order = np.random.default_rng(seed).permutation(len(video.frames))
    return replace(video, frames=video.frames[order])


def apply(rollout, shuffled_rollout, weights_of, cfg: TemporalConfig) -> None:
    """Add the bonus to `rollout`'s rewards in place (weighted like the reward it adds to), and record
    each prompt's (ordered accuracy, shuffled accuracy, bonus applied) in `rollout.temporal`."""
    group, other = rollout.num_generations, shuffled_rollout.num_generations
    results = []
    for prompt in range(rollout.rows // group):
        rows = range(prompt * group, (prompt + 1) * group)
        task = rollout.tasks[rows[0]]
        name = TEMPORAL_REWARD[task]
        values = [rollout.reward_parts[r].get(name) for r in rows]
        theirs = [
            shuffled_rollout.reward_parts[r].get(name) for r in range(prompt * other, (prompt + 1) * other)
        ]
        if any(v is None for v in values + theirs):
            continue  # the example lacks the target (e.g. a missing interval): nothing to compare
        ordered, shuffled_values = torch.tensor(values), torch.tensor(theirs)
        paid, applied = temporal_bonus(ordered, shuffled_values, cfg.bonus, cfg.margin, cfg.threshold)
        weight = weights_of(task).get(name, 0.0)
        for offset, row in enumerate(rows):
            added = float(paid[offset] - ordered[offset])
            rollout.reward_parts[row] = {**rollout.reward_parts[row], name: float(paid[offset])}
            rollout.rewards[row] += weight * added
        results.append((float(ordered.mean()), float(shuffled_values.mean()), applied))
    rollout.temporal = results
    rollout.timings["rollout"] += shuffled_rollout.timings["rollout"]


def metrics(prompts: list[tuple[float, float, bool]]) -> dict[str, float]:
    """The step's T-GRPO statistics over every process's prompts (none without T-GRPO)."""
    if not prompts:
        return {}
    return {
        "temporal/ordered_accuracy": float(np.mean([p[0] for p in prompts])),
        "temporal/shuffled_accuracy": float(np.mean([p[1] for p in prompts])),
        "temporal/bonus_share": float(np.mean([p[2] for p in prompts])),
    }
