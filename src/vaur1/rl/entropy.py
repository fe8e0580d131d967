"""The entropy terms of a GRPO step: TRL's high-entropy token mask, its threshold over every process's
tokens, and the entropy bonus's coefficient, kept across steps and checkpoints."""

from __future__ import annotations

import math

import torch

from vaur1.rl.loss_config import EntropyControl, GRPOLossConfig
from vaur1.rl.objectives import high_entropy_mask
from vaur1.rl.rollout import Rollout
from vaur1.train.session import Session

ENTROPY_KEY = "entropy_control"  # TrainerState.extra: the adaptive entropy coefficient and last entropy


def saved_control(control: EntropyControl) -> dict:
    """The controller's state as the checkpoint keeps it (JSON has no infinity)."""
    last = control.last_entropy
    return {"coef": control.coef, "last_entropy": last if math.isfinite(last) else None}


def entropy_control(session: Session, loss_cfg: GRPOLossConfig) -> EntropyControl:
    """The entropy bonus's coefficient, as the last optimizer step (or the resumed checkpoint) left it."""
    saved = session.state.extra.get(ENTROPY_KEY) or {}
    last = saved.get("last_entropy")
    return EntropyControl(
        coef=saved.get("coef", loss_cfg.entropy_coef),
        adaptive=loss_cfg.use_adaptive_entropy,
        delta=loss_cfg.entropy_coef_delta,
        low=loss_cfg.entropy_coef_min,
        high=loss_cfg.entropy_coef_max,
        target=loss_cfg.entropy_target,
        last_entropy=math.inf if last is None else last,
    )


def high_entropy_tokens(
    session: Session, loss_cfg: GRPOLossConfig, rollout: Rollout, entropies: torch.Tensor
) -> torch.Tensor | None:
    """`top_entropy_quantile`'s token mask, its threshold taken over every process's tokens of this
    micro-batch (all processes run the same number of micro-batches, fillers included)."""
    if not loss_cfg.uses_entropy_mask:
        return None
    mine = [] if rollout.filler else entropies.detach()[rollout.loss_mask.bool()].float().tolist()
    pool = torch.tensor(session.gather(mine), dtype=torch.float32, device=entropies.device)
    return high_entropy_mask(entropies.detach(), rollout.loss_mask, loss_cfg.top_entropy_quantile, pool)
