"""The policy objectives of the GRPO family, one registered function each, and `policy_loss`, which
composes them the way TRL 1.16's `GRPOTrainer._compute_loss` does (its names, defaults and order).

    loss, stats = policy_loss(logp, old_logp, ref_logp, advantages, mask, loss_type="cispo", ...)

A loss type is a surrogate (what each token contributes, given the importance ratio) plus an
aggregation (how token terms become one number):

    loss_type  surrogate                                    aggregation
    grpo       clipped ratio (PPO)                          mean over each sequence, then over sequences
    bnpo       clipped ratio                                mean over the micro-batch's tokens
    dr_grpo    clipped ratio                                sum / (sequences x max_completion_length)
    dapo       clipped ratio                                sum / the optimizer step's tokens (global)
    luspo      clipped ratio (sequence-level ratio)         sum over each sequence, mean over sequences
    cispo      clipped ratio as a detached weight of logp   sum / the optimizer step's tokens
    sapo       sigmoid-softened ratio                       as grpo
    vespo      gamma weight of the sequence ratio x logp    sum / the optimizer step's tokens

A new loss is one function and one `register_loss` call. Around the surrogate, in TRL's order:
`importance_sampling_level` (token, or sequence: GSPO's length-normalised sequence ratio), `delta`
(two-sided clipping: the unclipped ratio capped above), the off-policy sequence mask
(`off_policy_mask_threshold`, DeepSeek-V3.2), the high-entropy token mask (`top_entropy_quantile`), the
vLLM importance weights, the k3 KL (times the ratio with `use_bias_correction_kl`), and an entropy bonus
(`entropy_coef`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from vaur1.rl.loss import _per_sequence_mean, kl_k3, masked_mean


class SurrogateInputs(NamedTuple):
    coef: torch.Tensor  # importance ratio: (B, T) token level, (B, 1) sequence level
    log_ratio: torch.Tensor  # (B, T) logp - old_logp
    logp: torch.Tensor  # (B, T)
    advantages: torch.Tensor  # (B, 1) or (B, T)
    mask: torch.Tensor  # (B, T) float
    epsilon_low: float
    epsilon_high: float
    delta: float | None
    importance: torch.Tensor | None  # vLLM importance weights, (B, T) or (B, 1)
    options: dict[str, float]  # the loss's own parameters (sapo temperatures, vespo k and lambda)


Surrogate = Callable[[SurrogateInputs], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class LossDefinition:
    surrogate: Surrogate
    aggregation: str  # a key of AGGREGATIONS
    clip_stats: bool  # reports TRL's clip_ratio/* statistics
    applies_importance: bool = True  # multiplies the vLLM importance weights in (vespo uses them inside)


LOSSES: dict[str, LossDefinition] = {}


def register_loss(name: str, aggregation: str, clip_stats: bool = False, applies_importance: bool = True):
    """Register a surrogate function under `name` for `loss.loss_type`."""

    def register(surrogate: Surrogate) -> Surrogate:
        LOSSES[name] = LossDefinition(surrogate, aggregation, clip_stats, applies_importance)
        return surrogate

    return register


def clipped(inputs: SurrogateInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), r capped at `delta`."""
    coef_2 = torch.clamp(inputs.coef, 1 - inputs.epsilon_low, 1 + inputs.epsilon_high)
    coef_1 = inputs.coef if inputs.delta is None else torch.clamp(inputs.coef, max=inputs.delta)
    return -torch.min(coef_1 * inputs.advantages, coef_2 * inputs.advantages), {}


for _name, _aggregation in (
    ("grpo", "sequence_mean"),
    ("bnpo", "token_mean"),
    ("dr_grpo", "max_length"),
    ("dapo", "step_tokens"),
    ("luspo", "sequence_sum"),
):
    register_loss(_name, _aggregation, clip_stats=True)(clipped)


@register_loss("cispo", "step_tokens")
def cispo(inputs: SurrogateInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CISPO (MiniMax-M1): the ratio, capped at epsilon_high and detached, weighs the log-prob's gradient;
    no token's gradient is ever clipped away."""
    weight = torch.clamp(inputs.coef, max=inputs.epsilon_high).detach()
    clipped_share = ((inputs.coef > inputs.epsilon_high) & (inputs.advantages > 0)).to(inputs.logp.dtype)
    return -weight * inputs.advantages * inputs.logp, {"cispo_clip_ratio": clipped_share}


@register_loss("sapo", "sequence_mean")
def sapo(inputs: SurrogateInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SAPO: a sigmoid gate around ratio 1 in place of the hard clip, steeper for negative advantages."""
    temperature = torch.where(
        inputs.advantages > 0, inputs.options["sapo_temperature_pos"], inputs.options["sapo_temperature_neg"]
    )
    return -torch.sigmoid(temperature * (inputs.coef - 1)) * 4 / temperature * inputs.advantages, {}


@torch.no_grad()
def gamma_weights(
    advantages: torch.Tensor,
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    importance: torch.Tensor | None,
    k_pos: float,
    lambda_pos: float,
    k_neg: float,
    lambda_neg: float,
) -> torch.Tensor:
    """VESPO's phi(w) = e^lambda w^k e^(-lambda w) of the sequence ratio w (with the vLLM correction folded
    in), computed in log space and detached: (B, 1)."""
    lower = math.log(1e-8)
    sequence_log_ratio = torch.sum(torch.clamp(log_ratio, -20.0, 20.0) * mask, dim=-1, keepdim=True)
    if importance is not None:
        sequence_log_ratio = sequence_log_ratio + torch.sum(
            torch.clamp(torch.log(importance), lower, 20.0), dim=-1, keepdim=True
        )
    log_w = torch.clamp(sequence_log_ratio, lower, 20.0)
    nonnegative = advantages >= 0
    k = torch.where(nonnegative, k_pos, k_neg)
    lam = torch.where(nonnegative, lambda_pos, lambda_neg).clamp(min=1e-4)
    return torch.exp(lam + k * log_w - lam * torch.exp(log_w)).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


@register_loss("vespo", "step_tokens", applies_importance=False)
def vespo(inputs: SurrogateInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VESPO: the log-prob's gradient weighted by a gamma function of the sequence's importance ratio."""
    o = inputs.options
    phi = gamma_weights(
        inputs.advantages,
        inputs.log_ratio,
        inputs.mask,
        inputs.importance,
        o["vespo_k_pos"],
        o["vespo_lambda_pos"],
        o["vespo_k_neg"],
        o["vespo_lambda_neg"],
    )
    return -phi * inputs.advantages * inputs.logp, {"vespo/phi_seq_mean": phi}


# ---- aggregations: per-token terms -> one loss; `scaled`: divided by gradient accumulation --------


def _sequence_mean(per_token: torch.Tensor, mask: torch.Tensor, **_: Any) -> torch.Tensor:
    return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()


def _token_mean(per_token: torch.Tensor, mask: torch.Tensor, **_: Any) -> torch.Tensor:
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def _max_length(
    per_token: torch.Tensor, mask: torch.Tensor, max_completion_length: int, **_: Any
) -> torch.Tensor:
    return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)


def _step_tokens(
    per_token: torch.Tensor, mask: torch.Tensor, num_items_in_batch: Any, **_: Any
) -> torch.Tensor:
    normalizer = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
    return (per_token * mask).sum() / normalizer.to(device=mask.device, dtype=mask.dtype).clamp(min=1.0)


def _sequence_sum(per_token: torch.Tensor, mask: torch.Tensor, **_: Any) -> torch.Tensor:
    return (per_token * mask).sum(dim=-1).mean()


AGGREGATIONS: dict[str, tuple[Callable[..., torch.Tensor], bool]] = {
    "sequence_mean": (_sequence_mean, True),
    "token_mean": (_token_mean, True),
    "max_length": (_max_length, True),
    "step_tokens": (_step_tokens, False),  # num_items_in_batch already spans the accumulation window
    "sequence_sum": (_sequence_sum, True),
}


# ---- masks ----------------------------------------------------------------------------------------


def high_entropy_mask(
    entropies: torch.Tensor, mask: torch.Tensor, quantile: float, pool: torch.Tensor | None = None
) -> torch.Tensor:
    """Tokens whose entropy is at least the (1 - quantile) quantile of `pool` (every process's valid
    entropies of this micro-batch; default this one's): TRL's `top_entropy_quantile` mask, (B, T) bool."""
    pool = entropies[mask.bool()].float() if pool is None else pool
    if pool.numel() == 0:
        return torch.zeros_like(entropies, dtype=torch.bool)
    threshold = torch.quantile(pool, 1 - quantile)
    return ((entropies * mask.float()) >= threshold) & mask.bool()


def off_policy_mask(
    advantages: torch.Tensor,
    logp: torch.Tensor,
    sampling_logp: torch.Tensor,
    mask: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """DeepSeek-V3.2's off-policy sequence mask: a sequence with a negative advantage whose mean KL
    (sampler against policy) exceeds `threshold` is dropped. (B, 1), 1 = keep."""
    kl = torch.nan_to_num(sampling_logp - logp.detach(), nan=0.0)
    mean_kl = (kl * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    return ((advantages >= 0) | (mean_kl <= threshold)).to(mask.dtype)


def _statistic_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A token mean, or for one value per sequence ((B, 1), sequence level) the mean over sequences."""
    if values.shape[1] == 1:
        return values.mean()
    return masked_mean(values, mask)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str,
    epsilon: float,
    epsilon_high: float | None,
    beta: float,
    max_completion_length: int | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    gradient_accumulation_steps: int = 1,
    importance: torch.Tensor | None = None,
    importance_sampling_level: str = "token",
    delta: float | None = None,
    use_bias_correction_kl: bool = False,
    off_policy_mask_threshold: float | None = None,
    sampling_logp: torch.Tensor | None = None,
    entropy_mask: torch.Tensor | None = None,
    entropies: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    options: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of `loss_type` (see the module docstring) plus `beta` times the k3 KL, and its stats.

    Shapes: `logp`, `old_logp`, `ref_logp`, `sampling_logp`, `entropies`, `entropy_mask` and `mask` are
    (B, T) over completion tokens; `advantages` is (B,) or (B, T). `old_logp=None` means one update per
    rollout: the ratio is exactly 1 but carries the gradient. `epsilon_high=None` means `epsilon`.
    `importance` ((B, T) or (B, 1)) is the vLLM importance weight. `sampling_logp` is what the
    off-policy mask compares with (vLLM's log-probs; default `old_logp`). `entropy_coef` subtracts that
    times the mean entropy over the (entropy-masked) tokens. `options` holds a loss's own parameters.

    Returns the loss to back-propagate and detached scalar stats: "policy_loss" (before accumulation
    scaling), "tokens", "kl" (when `ref_logp` is given), TRL's clip ratios for the clipped losses
    ("clip_ratio/low_mean", "high_mean", "region_mean", and "low_min" / "high_max" over sequences),
    "cispo_clip_ratio", "vespo/phi_seq_mean". Across processes, reduce the means weighted by "tokens",
    and the _min / _max keys by min / max.
    """
    if loss_type not in LOSSES:
        raise ValueError(f"loss_type must be one of {', '.join(LOSSES)}, got {loss_type!r}")
    if importance_sampling_level not in ("token", "sequence"):
        raise ValueError(
            f"importance_sampling_level must be token or sequence, got {importance_sampling_level!r}"
        )
    if logp.dim() != 2 or mask.shape != logp.shape:
        raise ValueError(
            f"logp and mask must both be (B, T); got {tuple(logp.shape)} and {tuple(mask.shape)}"
        )
    for name, other in (("old_logp", old_logp), ("ref_logp", ref_logp), ("sampling_logp", sampling_logp)):
        if other is not None and other.shape != logp.shape:
            raise ValueError(f"{name} has shape {tuple(other.shape)}, logp has {tuple(logp.shape)}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the frozen reference model's log-probs)")
    definition = LOSSES[loss_type]
    if definition.aggregation == "max_length" and not max_completion_length:
        raise ValueError(f"loss_type={loss_type!r} needs max_completion_length")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    if advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"{advantages.shape[0]} advantages for {logp.shape[0]} completions")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    mask = mask.to(logp.dtype)

    if old_logp is None:
        old_logp = logp.detach()
    log_ratio = logp - old_logp
    if importance_sampling_level == "sequence":  # GSPO: the length-normalised sequence ratio
        log_weight = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    else:
        log_weight = log_ratio
    coef = torch.exp(log_weight)

    per_token_kl = None
    if ref_logp is not None:
        per_token_kl = kl_k3(logp, ref_logp)
        if use_bias_correction_kl:
            per_token_kl = per_token_kl * coef
    inputs = SurrogateInputs(
        coef, log_ratio, logp, advantages, mask, epsilon, epsilon_high, delta, importance, options or {}
    )
    per_token_loss, extra = definition.surrogate(inputs)
    if off_policy_mask_threshold is not None:
        reference = old_logp if sampling_logp is None else sampling_logp
        per_token_loss = per_token_loss * off_policy_mask(
            advantages, logp, reference, mask, off_policy_mask_threshold
        )
    if entropy_mask is not None:
        per_token_loss = per_token_loss * entropy_mask
    if importance is not None and definition.applies_importance:
        per_token_loss = per_token_loss * importance
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl

    aggregate, scaled = AGGREGATIONS[definition.aggregation]
    loss = aggregate(
        per_token_loss,
        mask,
        max_completion_length=max_completion_length,
        num_items_in_batch=num_items_in_batch,
    )
    unscaled = loss.detach()
    if scaled:
        loss = loss / gradient_accumulation_steps
    if entropy_coef and entropies is not None:
        effective = mask if entropy_mask is None else mask * entropy_mask
        mean_entropy = (entropies * effective).sum() / effective.sum().clamp(min=1.0)
        loss = loss - entropy_coef * mean_entropy / gradient_accumulation_steps

    with torch.no_grad():
        stats: dict[str, torch.Tensor] = {"policy_loss": unscaled, "tokens": mask.sum().detach()}
        if definition.clip_stats:
            ratio = coef if delta is None else torch.clamp(coef, max=delta)  # as TRL counts them
            low = ((ratio < 1 - epsilon) & (advantages < 0)).to(logp.dtype)
            high = ((ratio > 1 + epsilon_high) & (advantages > 0)).to(logp.dtype)
            region = torch.maximum(low, high)
            if low.shape[1] == 1:  # sequence level: one value per sequence already
                low_per_seq, high_per_seq = low.squeeze(1), high.squeeze(1)
            else:
                low_per_seq, high_per_seq = _per_sequence_mean(low, mask), _per_sequence_mean(high, mask)
            zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
            stats |= {
                "clip_ratio/low_mean": _statistic_mean(low, mask),
                "clip_ratio/high_mean": _statistic_mean(high, mask),
                "clip_ratio/region_mean": _statistic_mean(region, mask),
                "clip_ratio/low_min": low_per_seq.min() if low_per_seq.numel() else zero,
                "clip_ratio/high_max": high_per_seq.max() if high_per_seq.numel() else zero,
            }
        stats |= {key: _statistic_mean(value, mask) for key, value in extra.items()}
        if per_token_kl is not None:
            stats["kl"] = _statistic_mean(per_token_kl.detach(), mask)
    return loss, stats
