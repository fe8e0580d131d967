"""Reinforcement fine-tuning with GRPO on video prompts.

`loss` holds the maths before the objective (advantages, masks, the vLLM weights) and `objectives` the
registered losses of the GRPO family, all pure tensor functions (exported here); `loss_config` their
options; `config` the typed training config; `rollout` sampling and scoring G completions per prompt;
`trainer` the loop.
"""

from vaur1.rl.loss import (
    GroupAdvantages,
    completion_mask,
    group_advantages,
    kl_k3,
    masked_mean,
    truncated,
)
from vaur1.rl.loss_config import GRPOLossConfig
from vaur1.rl.objectives import LOSSES, policy_loss, register_loss

__all__ = [
    "LOSSES",
    "GRPOLossConfig",
    "GroupAdvantages",
    "completion_mask",
    "group_advantages",
    "kl_k3",
    "masked_mean",
    "policy_loss",
    "register_loss",
    "truncated",
]
