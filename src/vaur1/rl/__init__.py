"""Reinforcement fine-tuning: the GRPO loss maths (`vaur1.rl.loss`), model-independent and pure."""

from vaur1.rl.loss import (
    GroupAdvantages,
    GRPOLossConfig,
    completion_mask,
    entropy_from_logits,
    group_advantages,
    kl_k3,
    masked_mean,
    policy_loss,
    selective_log_softmax,
    truncated,
)

__all__ = [
    "GRPOLossConfig",
    "GroupAdvantages",
    "completion_mask",
    "entropy_from_logits",
    "group_advantages",
    "kl_k3",
    "masked_mean",
    "policy_loss",
    "selective_log_softmax",
    "truncated",
]
