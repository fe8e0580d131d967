"""GRPO's maths before the objective, as pure functions on tensors: no model, no I/O, no process group.

The option names and their meaning follow TRL 1.16's `GRPOConfig` / `GRPOTrainer`, so a TRL user finds
the same knobs here (the objectives themselves are `vaur1.rl.objectives`):

    mask = completion_mask(completion_ids, eos_ids)              # 1 up to and including the first EOS
    adv = group_advantages(rewards, group_size=G, scale_rewards="group").advantages
    weights = importance_weights(trainer_logp, vllm_logp, mask)  # the vLLM correction

`loss.advantage_estimator` picks one of `ADVANTAGE_ESTIMATORS` (grpo, gdpo, rloo); a new estimator is
one function of `AdvantageInputs` and one `register_advantage` call.

Deliberate differences from TRL, all in what is reported rather than what is optimised:
- `group_advantages` counts groups with zero reward std per group, also with `scale_rewards="batch"`
  (TRL then reports whether the whole batch's std is zero, which is 0 or 1 for the batch).
- Rewards must be finite. TRL turns NaN ("no reward function applied") into a zero advantage; vaur1
  scores every completion with its task's rewards, so a NaN here is a bug and raises.
- `completion_mask` and `truncated` accept several end-of-turn ids, so a completion that stops on
  `<|endoftext|>` instead of `<|im_end|>` is not left unmasked (the official VAU-R1 trainer's edge case).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch

# The masks are made where completions are generated; re-exported with the loss maths that use them.
from vaur1.model.generate import completion_mask as completion_mask
from vaur1.model.generate import truncated as truncated

ScaleRewards = Literal["group", "batch", "none"]
ImportanceSamplingMode = Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]

SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")
IS_MODES: tuple[str, ...] = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")

# Added to the std before dividing, as in TRL and the official VAU-R1 trainer.
ADVANTAGE_EPS = 1e-4


class GroupAdvantages(NamedTuple):
    advantages: torch.Tensor  # (N,) one per completion
    group_std: torch.Tensor  # (N / group_size,) reward std of each group (unbiased)
    frac_zero_std: torch.Tensor  # scalar: fraction of groups whose rewards are all equal


def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: ScaleRewards) -> GroupAdvantages:
    """Group-relative advantages: `r - mean(group)`, divided by a std chosen by `scale_rewards`.

    `rewards` is (N,), with the G completions of each prompt next to each other (N = prompts * G).
    - "group": divide by the group's std + 1e-4 (GRPO as published).
    - "batch": divide by the std of all N rewards + 1e-4 (robust to tiny-variance groups). Under
      several processes the caller gathers all rewards first, as TRL does, so the std is global.
    - "none": no division (Dr. GRPO).
    The std is unbiased (N-1), as `torch.std` in TRL and the official trainer; a group of one has std 0.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {scale_rewards!r}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (one per completion), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    if not torch.isfinite(rewards).all():
        raise ValueError(f"rewards must be finite, got {rewards.tolist()}")
    groups = rewards.view(-1, group_size)
    group_mean = groups.mean(dim=1)
    group_std = groups.std(dim=1) if group_size > 1 else torch.zeros_like(group_mean)
    advantages = rewards - group_mean.repeat_interleave(group_size)
    if scale_rewards == "group":
        advantages = advantages / (group_std.repeat_interleave(group_size) + ADVANTAGE_EPS)
    elif scale_rewards == "batch":
        batch_std = rewards.std() if rewards.numel() > 1 else torch.zeros_like(group_mean[0])
        advantages = advantages / (batch_std + ADVANTAGE_EPS)
    frac_zero_std = torch.isclose(group_std, torch.zeros_like(group_std)).float().mean()
    return GroupAdvantages(advantages, group_std, frac_zero_std)


def _nanstd(values: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """The unbiased std ignoring NaN (TRL's `nanstd`)."""
    mean = torch.nanmean(values, dim=dim, keepdim=True)
    count = (
        (~torch.isnan(values)).sum(dim=dim, keepdim=keepdim)
        if dim is not None
        else (~torch.isnan(values)).sum()
    )
    variance = torch.nanmean((values - mean) ** 2, dim=dim, keepdim=keepdim) * count / (count - 1)
    return torch.sqrt(variance)


def normalized_sum_advantages(parts: torch.Tensor, weights: torch.Tensor, group_size: int) -> GroupAdvantages:
    """GDPO's `normalize_then_sum` (TRL's `multi_objective_aggregation`): each reward normalised within
    its group, then weighted and summed, then the sums normalised over the whole batch.

    `parts` is (N, K): reward k of completion n, NaN where the reward does not apply; `weights` (N, K)
    each completion's task weights. A completion no reward applies to gets advantage 0. Under several
    processes the caller passes every process's completions.
    """
    if parts.shape != weights.shape or parts.dim() != 2 or parts.shape[0] % group_size:
        raise ValueError(
            f"parts {tuple(parts.shape)} and weights {tuple(weights.shape)} for groups of {group_size}"
        )
    unscorable = torch.isnan(parts).all(dim=1)
    grouped = parts.view(-1, group_size, parts.shape[1])
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = _nanstd(grouped, dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean_k)
    normalized = ((grouped - mean_k) / (std_k + ADVANTAGE_EPS)).view(-1, parts.shape[1])
    rewards = (normalized * weights).nansum(dim=1)
    rewards[unscorable] = torch.nan
    std = _nanstd(rewards) if rewards.numel() > 1 else torch.zeros(())
    advantages = torch.nan_to_num((rewards - torch.nanmean(rewards)) / (std + ADVANTAGE_EPS), nan=0.0)
    group_std = (
        _nanstd(rewards.view(-1, group_size), dim=1) if group_size > 1 else torch.zeros(parts.shape[0])
    )
    frac_zero_std = torch.isclose(torch.nan_to_num(group_std), torch.zeros_like(group_std)).float().mean()
    return GroupAdvantages(advantages, group_std, frac_zero_std)


class AdvantageInputs(NamedTuple):
    """What an advantage estimator sees: the global batch's rewards, the G of a prompt side by side."""

    rewards: torch.Tensor  # (N,) each completion's weighted reward
    parts: torch.Tensor  # (N, K) each reward function's score, NaN where it does not apply
    weights: torch.Tensor  # (N, K) each completion's task weight of those rewards
    group_size: int
    scale_rewards: ScaleRewards


AdvantageEstimator = Callable[[AdvantageInputs], GroupAdvantages]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_advantage(name: str) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Register an advantage estimator under `name` for `loss.advantage_estimator`."""

    def register(estimator: AdvantageEstimator) -> AdvantageEstimator:
        ADVANTAGE_ESTIMATORS[name] = estimator
        return estimator

    return register


@register_advantage("grpo")
def grpo_advantages(inputs: AdvantageInputs) -> GroupAdvantages:
    """The weighted reward minus its group's mean, scaled as `scale_rewards` says (GRPO, Dr. GRPO)."""
    return group_advantages(inputs.rewards, inputs.group_size, inputs.scale_rewards)


@register_advantage("gdpo")
def gdpo_advantages(inputs: AdvantageInputs) -> GroupAdvantages:
    """GDPO: each reward normalised in its group before the weighted sum (TRL's normalize_then_sum)."""
    return normalized_sum_advantages(inputs.parts, inputs.weights, inputs.group_size)


@register_advantage("rloo")
def rloo_advantages(inputs: AdvantageInputs) -> GroupAdvantages:
    """RLOO (2402.14740): the reward minus the mean of the group's other G - 1 rewards, unscaled
    (verl's and EasyR1's `rloo`); `scale_rewards` does not apply. A group of one keeps its reward."""
    group_size = inputs.group_size
    centred = group_advantages(inputs.rewards, group_size, "none")
    if group_size == 1:
        return centred._replace(advantages=inputs.rewards.clone())
    return centred._replace(advantages=centred.advantages * group_size / (group_size - 1))


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1 >= 0.

    Unbiased for the KL when tokens are sampled from the policy, and zero where the two agree.
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the positions where `mask` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _per_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One mean per sequence, over sequences that have at least one token."""
    tokens = mask.sum(dim=1)
    keep = tokens > 0
    return (values * mask).sum(dim=1)[keep] / tokens[keep]


def importance_weights(
    trainer_logp: torch.Tensor,
    sampling_logp: torch.Tensor,
    mask: torch.Tensor,
    mode: ImportanceSamplingMode = "token_truncate",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
) -> torch.Tensor:
    """TRL's vLLM importance-sampling ratio: exp(trainer logp - sampler logp), per token (B, T) or per
    sequence (B, 1, the masked sum of the differences), clipped to [clip_min, clip_max] (`*_truncate`)
    or zeroed outside it (`*_mask`). Padding and tokens the sampler could not score (NaN) count as 1."""
    difference = torch.nan_to_num((trainer_logp - sampling_logp) * mask, nan=0.0)
    if mode.startswith("sequence"):
        difference = difference.sum(dim=-1, keepdim=True)
    ratio = torch.exp(difference)
    if mode.endswith("truncate"):
        if clip_min is None and clip_max is None:  # no bound set: the ratio as it is
            return ratio
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    low = -math.inf if clip_min is None else clip_min
    high = math.inf if clip_max is None else clip_max
    return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)
