"""What GRPO and SFT training share: seeding, the optimizer and learning-rate schedule builders, and
the guard that skips steps with a NaN or infinite loss.

    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, num_training_steps=cfg.run.max_steps)
    guard = BadStepGuard(cfg.run.max_bad_steps)
    ...
    if not guard.check(distributed.finite_on_all_processes(accelerator, loss), step):
        optimizer.zero_grad(); continue          # skipped; raises TrainingAborted after N in a row
"""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import torch

from vaur1.errors import ConfigError, VaurError
from vaur1.train.config import OptimConfig

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; matrices and embeddings decay, biases and norms do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (is everything frozen?)")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas, eps=cfg.eps)


def lr_factor(step: int, cfg: OptimConfig, num_training_steps: int) -> float:
    """The learning-rate multiplier after `step` optimizer steps (transformers' schedule shapes)."""
    warmup = cfg.warmup(num_training_steps)
    if step < warmup:
        return step / max(1, warmup)
    if cfg.lr_scheduler == "constant":
        return 1.0
    progress = (step - warmup) / max(1, num_training_steps - warmup)
    if cfg.lr_scheduler == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, num_training_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then constant, linear or cosine decay to 0 at `num_training_steps`; step once per update.

    Under accelerate, prepare it with `Accelerator(step_scheduler_with_optimizer=False)` or register it
    with `register_for_checkpointing` instead of preparing it: a prepared scheduler otherwise steps
    once per process on every call.
    """
    if num_training_steps < 1:
        raise ConfigError(f"num_training_steps must be >= 1, got {num_training_steps}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, num_training_steps))


class TrainingAborted(VaurError):
    """Too many optimizer steps in a row had a NaN or infinite loss."""


class BadStepGuard:
    """Skips steps whose loss (or gradient norm) is not finite; aborts after `max_bad_steps` in a row.

    Feed it a value that is the same on every process (see `finite_on_all_processes`), so that all
    processes skip together. Its counters go into the checkpoint.
    """

    def __init__(self, max_bad_steps: int) -> None:
        if max_bad_steps < 1:
            raise ConfigError(f"max_bad_steps must be >= 1, got {max_bad_steps}")
        self.max_bad_steps = max_bad_steps
        self.streak = 0
        self.total = 0

    def check(self, value: float | torch.Tensor | bool, step: int) -> bool:
        """True when the step may go on. A bool is taken as "finite"; a number or tensor is tested."""
        finite = value if isinstance(value, bool) else bool(torch.isfinite(torch.as_tensor(value)).all())
        if finite:
            self.streak = 0
            return True
        self.streak += 1
        self.total += 1
        if self.streak >= self.max_bad_steps:
            raise TrainingAborted(
                f"step {step}: the loss was NaN or infinite in {self.streak} steps in a row "
                f"(max_bad_steps={self.max_bad_steps}); stopping. Lower the learning rate or check the data"
            )
        logger.warning(
            "step %d: non-finite loss, skipping the update (%d in a row; the run stops at %d)",
            step,
            self.streak,
            self.max_bad_steps,
        )
        return False

    def state_dict(self) -> dict[str, int]:
        return {"streak": self.streak, "total": self.total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.streak = int(state["streak"])
        self.total = int(state["total"])
