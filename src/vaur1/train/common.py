"""What GRPO and SFT training share: the optimizer and run options, seeding, the optimizer and
learning-rate schedule builders, and the guard that skips steps with a NaN or infinite loss.

    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, num_training_steps=cfg.run.max_steps)
    guard = BadStepGuard(cfg.run.max_bad_steps)
    ...
    if not guard.check(finite_on_all_processes(accelerator, loss), step):
        optimizer.zero_grad(); continue          # skipped; raises TrainingAborted after N in a row
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from vaur1.errors import ConfigError, VaurError

logger = logging.getLogger(__name__)

LrScheduler = Literal["constant", "linear", "cosine"]


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule. Defaults are TRL's GRPO defaults (lr 1e-6, linear decay)."""

    learning_rate: float = 1e-6  # AdamW's peak learning rate
    weight_decay: float = 0.0  # decoupled weight decay of matrices and embeddings (not biases and norms)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment decay rates
    eps: float = 1e-8  # AdamW's epsilon
    max_grad_norm: float | None = 1.0  # clip the gradient norm to this; null: no clipping
    lr_scheduler: LrScheduler = "linear"  # constant, linear or cosine decay to 0 at the last step
    warmup_steps: int = 0  # steps of linear warm-up from 0 (or set warmup_ratio)
    warmup_ratio: float = 0.0  # warm-up as a share of all steps

    def validate(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must lie in [0, 1), got {self.betas}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(
                f"max_grad_norm must be positive (or null for no clipping), got {self.max_grad_norm}"
            )
        if self.warmup_steps < 0 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_steps must be >= 0 and warmup_ratio in [0, 1)")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError("set warmup_steps or warmup_ratio, not both")

    def warmup(self, num_training_steps: int) -> int:
        """Warm-up length in optimizer steps (`warmup_ratio` rounds up, as in transformers)."""
        return self.warmup_steps or math.ceil(self.warmup_ratio * num_training_steps)


@dataclass
class RunConfig:
    """Where a run writes, how long it lasts, and how often it checkpoints and logs.

    `max_steps` (optimizer steps) wins over `num_epochs` when set. `resume` is "auto" (continue from
    the latest checkpoint in `output_dir`, if any), "never" (refuse an `output_dir` that already holds
    checkpoints) or the path of one checkpoint directory.
    """

    output_dir: str = "runs/default"  # the run directory: config, logs, checkpoints, final/ and best/
    seed: int = 42  # seeds data order, option shuffling, initial sampling and dropout
    max_steps: int | None = None  # optimizer steps; null: num_epochs over the data
    num_epochs: int = 1  # passes over the training examples, when max_steps is null
    save_steps: int = 100  # a full-state checkpoint every N steps
    save_total_limit: int | None = 3  # checkpoints kept (oldest removed); null: all
    resume: str = "auto"  # auto (latest checkpoint in output_dir), never, or a checkpoint directory
    logging_steps: int = 1  # a metrics.jsonl record every N steps
    log_completions_every: int = 50  # sample completions to samples.jsonl every N steps (0: never)
    tensorboard: bool = False  # also write the metrics to output_dir/tensorboard
    max_bad_steps: int = 5  # stop after this many steps in a row with a NaN or infinite loss

    def validate(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 (or null to run num_epochs), got {self.max_steps}")
        if self.num_epochs < 1:
            raise ConfigError(f"num_epochs must be >= 1, got {self.num_epochs}")
        if self.save_steps < 1 or self.logging_steps < 1:
            raise ConfigError("save_steps and logging_steps must be >= 1")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(
                f"save_total_limit must be >= 1 (or null to keep all), got {self.save_total_limit}"
            )
        if self.log_completions_every < 0:
            raise ConfigError("log_completions_every must be >= 0 (0 logs no completions)")
        if self.max_bad_steps < 1:
            raise ConfigError(f"max_bad_steps must be >= 1, got {self.max_bad_steps}")
        if not self.resume:
            raise ConfigError("resume must be 'auto', 'never' or a checkpoint directory")


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


def finite_on_all_processes(accelerator: Any, value: torch.Tensor) -> bool:
    """True only if `value` is finite on every process (one small all-gather)."""
    flag = torch.isfinite(value.detach()).all().reshape(1).to(accelerator.device, torch.int32)
    return bool(accelerator.gather(flag).min().item())
