"""Reinforcement fine-tuning with GRPO on video prompts.

`loss` holds the loss maths as pure tensor functions (exported here); `config` the typed training
config; `rollout` sampling and scoring G completions per prompt; `trainer` the loop.
"""

from vaur1.rl.loss import (
    GroupAdvantages,
    GRPOLossConfig,
    completion_mask,
    group_advantages,
    kl_k3,
    masked_mean,
    policy_loss,
    truncated,
)

__all__ = [
    "GRPOLossConfig",
    "GroupAdvantages",
    "completion_mask",
    "group_advantages",
    "kl_k3",
    "masked_mean",
    "policy_loss",
    "truncated",
]
