"""GRPO loss maths as pure functions on tensors: no model, no I/O, no process group.

The option names and their meaning follow TRL 1.16's `GRPOConfig` / `GRPOTrainer._compute_loss`, so a
TRL user finds the same knobs here:

    mask = completion_mask(completion_ids, eos_ids)              # 1 up to and including the first EOS
    adv = group_advantages(rewards, group_size=G, scale_rewards="group").advantages
    loss, stats = policy_loss(logp, old_logp, ref_logp, adv, mask, loss_type="dapo",
                              epsilon=0.2, epsilon_high=None, beta=0.04, max_completion_length=1024)

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
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from vaur1.errors import ConfigError

# The masks are made where completions are generated; re-exported with the loss maths that use them.
from vaur1.model.generate import completion_mask as completion_mask
from vaur1.model.generate import truncated as truncated

LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo"]
ScaleRewards = Literal["group", "batch", "none"]
ImportanceSamplingMode = Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]

LOSS_TYPES: tuple[str, ...] = ("grpo", "dr_grpo", "dapo", "bnpo")
SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")
IS_MODES: tuple[str, ...] = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")

# Added to the std before dividing, as in TRL and the official VAU-R1 trainer.
ADVANTAGE_EPS = 1e-4


@dataclass
class GRPOLossConfig:
    """The loss options, with TRL 1.16's names and defaults (`beta=0.0` loads no reference model)."""

    loss_type: LossType = "dapo"  # grpo (per-sequence mean), bnpo, dr_grpo or dapo (token mean over the step)
    beta: float = 0.0  # weight of the k3 KL to the reference model; 0: no reference model
    epsilon: float = 0.2  # clip width below 1 of the importance ratio
    epsilon_high: float | None = None  # clip width above 1; null: epsilon
    scale_rewards: ScaleRewards = "group"  # divide advantages by the group's std, the batch's, or none
    num_iterations: int = 1  # optimizer steps per rollout (the ratio departs from 1 after the first)
    mask_truncated_completions: bool = False  # completions cut at max_completion_length train nothing
    # With vLLM rollouts: weight each token's loss by exp(trainer logp - vLLM's sampling logp), the
    # correction for the two engines' numerical gap (TRL's names, semantics and default mode)
    vllm_importance_sampling_correction: bool = True
    vllm_importance_sampling_mode: ImportanceSamplingMode = "token_truncate"  # or token_mask, sequence_*
    vllm_importance_sampling_clip_max: float | None = 3.0  # truncate (or mask) ratios above this
    vllm_importance_sampling_clip_min: float | None = None  # truncate (or mask) ratios below this
    vllm_importance_sampling_cap: float | None = None  # TRL's older name for clip_max; set, it wins

    def validate(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"loss_type: {self.loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ConfigError(
                f"scale_rewards: {self.scale_rewards!r} is not one of {', '.join(SCALE_REWARDS)}"
            )
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if not 0 < self.epsilon < 1:
            raise ConfigError(f"epsilon must be in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and self.epsilon_high <= 0:
            raise ConfigError(f"epsilon_high must be > 0, got {self.epsilon_high}")
        if self.num_iterations < 1:
            raise ConfigError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.vllm_importance_sampling_mode not in IS_MODES:
            raise ConfigError(
                f"vllm_importance_sampling_mode: {self.vllm_importance_sampling_mode!r} is not one of "
                f"{', '.join(IS_MODES)}"
            )
        cap, low = self.importance_clip_max, self.vllm_importance_sampling_clip_min
        if (
            (cap is not None and cap <= 0)
            or (low is not None and low < 0)
            or (cap is not None and low is not None and low > cap)
        ):
            raise ConfigError(
                f"vllm importance sampling: need 0 <= clip_min <= clip_max, got {low} and {cap}"
            )

    @property
    def importance_clip_max(self) -> float | None:
        cap = self.vllm_importance_sampling_cap
        return self.vllm_importance_sampling_clip_max if cap is None else cap

    @property
    def clip_high(self) -> float:
        """The upper clip width: `epsilon_high`, or `epsilon` when it is unset (TRL's rule)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


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
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    low = -math.inf if clip_min is None else clip_min
    high = math.inf if clip_max is None else clip_max
    return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: LossType,
    epsilon: float,
    epsilon_high: float | None,
    beta: float,
    max_completion_length: int | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    gradient_accumulation_steps: int = 1,
    importance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped GRPO surrogate plus `beta` times the k3 KL, normalised by `loss_type`.

    Shapes: `logp`, `old_logp`, `ref_logp` and `mask` are (B, T) over completion tokens; `advantages`
    is (B,) (or (B, T)). Per token, with ratio r = exp(logp - old_logp):

        loss_t = -min(r * A, clip(r, 1 - epsilon, 1 + epsilon_high) * A) + beta * kl_k3(logp, ref_logp)

    and the normalisation is TRL's:
    - "grpo":    mean over each sequence's tokens, then mean over sequences (length-biased).
    - "bnpo":    sum over the micro-batch's tokens / their number.
    - "dr_grpo": sum over tokens / (B * max_completion_length).
    - "dapo":    sum over tokens / `num_items_in_batch`: the completion tokens of the whole optimizer
      step across all processes, divided by the number of processes (DDP averages gradients over
      processes and accumulation sums them, so this makes the step a global token mean). Defaults to
      this micro-batch's token count.
    "grpo", "bnpo" and "dr_grpo" are divided by `gradient_accumulation_steps`; "dapo" already is,
    through `num_items_in_batch`.

    `importance` ((B, T) or (B, 1), from `importance_weights`) multiplies the surrogate's per-token loss
    before the KL is added, as TRL does for vLLM rollouts.

    `old_logp=None` means a single update per rollout (`num_iterations=1`): the ratio is exactly 1 but
    still carries the gradient. `epsilon_high=None` means `epsilon`. `ref_logp` is required when
    beta > 0; given with beta = 0, the KL is only reported.

    Returns the loss to back-propagate and detached scalar stats: "policy_loss" (before accumulation
    scaling), "tokens", "kl" (token mean, when `ref_logp` is given) and TRL's clip ratios:
    "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean" (token means; low = ratio
    below 1 - epsilon with A < 0, high = above 1 + epsilon_high with A > 0), "clip_ratio/low_min" and
    "clip_ratio/high_max" (min / max over sequences of the per-sequence mean). Across processes,
    reduce the means weighted by "tokens", and the _min / _max keys by min / max.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    if logp.dim() != 2 or mask.shape != logp.shape:
        raise ValueError(
            f"logp and mask must both be (B, T); got {tuple(logp.shape)} and {tuple(mask.shape)}"
        )
    for name, other in (("old_logp", old_logp), ("ref_logp", ref_logp)):
        if other is not None and other.shape != logp.shape:
            raise ValueError(f"{name} has shape {tuple(other.shape)}, logp has {tuple(logp.shape)}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the frozen reference model's log-probs)")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    if advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"{advantages.shape[0]} advantages for {logp.shape[0]} completions")
    epsilon_low = epsilon
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    mask = mask.to(logp.dtype)

    if old_logp is None:
        old_logp = logp.detach()
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(ratio * advantages, clipped_ratio * advantages)
    if importance is not None:
        per_token_loss = per_token_loss * importance
    per_token_kl = kl_k3(logp, ref_logp) if ref_logp is not None else None
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl

    masked_sum = (per_token_loss * mask).sum()
    if loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = masked_sum / mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = masked_sum / (logp.size(0) * max_completion_length)
    else:
        normalizer = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
        loss = masked_sum / normalizer.to(device=logp.device, dtype=logp.dtype).clamp(min=1.0)
    unscaled = loss.detach()
    if loss_type != "dapo":
        loss = loss / gradient_accumulation_steps

    with torch.no_grad():
        low = ((ratio < 1 - epsilon_low) & (advantages < 0)).to(logp.dtype)
        high = ((ratio > 1 + epsilon_high) & (advantages > 0)).to(logp.dtype)
        region = torch.maximum(low, high)
        low_per_seq, high_per_seq = _per_sequence_mean(low, mask), _per_sequence_mean(high, mask)
        zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
        stats = {
            "policy_loss": unscaled,
            "tokens": mask.sum().detach(),
            "clip_ratio/low_mean": masked_mean(low, mask),
            "clip_ratio/high_mean": masked_mean(high, mask),
            "clip_ratio/region_mean": masked_mean(region, mask),
            "clip_ratio/low_min": low_per_seq.min() if low_per_seq.numel() else zero,
            "clip_ratio/high_max": high_per_seq.max() if high_per_seq.numel() else zero,
        }
        if per_token_kl is not None:
            stats["kl"] = masked_mean(per_token_kl.detach(), mask)
    return loss, stats
