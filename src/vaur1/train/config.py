"""The training options GRPO and SFT share: the optimizer and its schedule, the run (output, length,
checkpoints, logs) and the session around them. Each field's comment is its help line in
`vaur1 config show`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from vaur1.data import DataConfig
from vaur1.errors import ConfigError
from vaur1.model.load import ModelConfig
from vaur1.prompts import PromptConfig
from vaur1.video.cache import CacheConfig
from vaur1.video.dataset import LoaderConfig
from vaur1.video.spec import VideoSpec
from vaur1.vocab import MEAN_ACCURACY, VAL_LOSS, check_mode, score_metrics

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
    # also send the metrics (and sample completions) to these trackers, through accelerate: tensorboard
    # (output_dir/tensorboard), mlflow (output_dir/mlruns unless MLFLOW_TRACKING_URI), wandb, trackio;
    # "all": every installed one; "none" or []: metrics.jsonl alone (TRL's report_to)
    report_to: list[str] = field(default_factory=list)
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
        allowed = ("tensorboard", "wandb", "trackio", "mlflow", "all", "none")
        for name in self.report_to:
            if name not in allowed:
                raise ConfigError(f"run.report_to: {name!r} is not one of {', '.join(allowed)}")


@dataclass
class ValidationConfig:
    """Periodic validation with the evaluation harness; off while `split` is unset."""

    split: str | None = None  # the split to validate on (e.g. val); null: no validation
    bench: str | None = None  # the benchmark that holds it; null: the training bench
    tasks: list[str] | None = None  # null: the training tasks
    max_per_task: int | None = None  # the first N examples of each task (quick runs)
    eval_steps: int | None = None  # validate every N optimizer steps, and at the last step
    # what best/ is chosen by: a score (mean_accuracy), a metric (tag.miou) or val_loss (SFT only)
    metric: str = MEAN_ACCURACY
    patience: int | None = None  # stop after N validations in a row that improved no patience metric
    patience_metrics: list[str] = field(default_factory=list)  # what patience watches; empty: the metric
    # patience counts only from the first validation whose CLS accuracy beats the best constant
    # answer beyond chance (a model that has not read the video yet is not stopped)
    patience_after_reading: bool = False
    mode: str | None = None  # the prompt mode of the answers; null: the trainer's own
    max_new_tokens: int = 1024  # per answer (direct answers need tens, think mode hundreds)
    batch_size: int = 8  # prompts per generate call

    @property
    def enabled(self) -> bool:
        return self.split is not None

    @property
    def watched(self) -> list[str]:
        return self.patience_metrics or [self.metric]

    def validate(self) -> None:
        if not self.enabled:
            return
        if self.eval_steps is None or self.eval_steps < 1:
            raise ConfigError(
                f"validation.eval_steps: give a number of steps of at least 1, got {self.eval_steps}"
            )
        for name in [self.metric, *self.patience_metrics]:
            if name != VAL_LOSS:
                score_metrics(name)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"validation.patience must be at least 1, got {self.patience}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("validation.max_new_tokens and validation.batch_size must be at least 1")
        if self.mode is not None:
            check_mode(self.mode, "validation.mode")

    def data(self, training: DataConfig) -> DataConfig:
        """The validation examples' data config: the training data's bench and video folders by default."""
        return replace(
            training,
            bench=self.bench or training.bench,
            split=self.split or "",
            tasks=list(self.tasks or training.tasks),
            max_per_task=self.max_per_task,
        )


@dataclass
class SessionConfig:
    """The options GRPO and SFT share; their configs extend this one. TRL's names at the top level."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    video: VideoSpec = field(default_factory=VideoSpec)
    cache: CacheConfig = field(default_factory=CacheConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    per_device_train_batch_size: int = 1  # prompts (videos) per process per micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    bf16: bool = False  # bf16 mixed precision (autocast); the weights' dtype is model.dtype
    gradient_checkpointing: bool = False  # recompute activations in backward; generation keeps its KV cache
    # QA options in a new order (the answer letter moved with them) every time an example is drawn,
    # from (run.seed, draw number): the same on every process and after a resume
    shuffle_options: bool = False
    # the training mix: each named task's examples this many times per epoch (others once), e.g.
    # {qa: 3} for a task the model learns last; every repeat is drawn as a sample of its own
    task_repeats: dict[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        if self.per_device_train_batch_size < 1:
            raise ConfigError(
                f"per_device_train_batch_size must be at least 1, got {self.per_device_train_batch_size}"
            )
        if self.gradient_accumulation_steps < 1:
            raise ConfigError(
                f"gradient_accumulation_steps must be at least 1, got {self.gradient_accumulation_steps}"
            )
        if self.model.gradient_checkpointing:
            raise ConfigError(
                "set gradient_checkpointing at the top level of a training config, not in model"
            )
        if self.model.device is not None or self.model.device_map is not None:
            raise ConfigError(
                "model.device and model.device_map are for inference; in training accelerate places the "
                "model (one device per process)"
            )
        self.model.validate()
        self.data.validate()
        for task, times in self.task_repeats.items():
            if task not in self.data.tasks:
                raise ConfigError(
                    f"task_repeats: {task!r} is not one of data.tasks ({', '.join(self.data.tasks)})"
                )
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise ConfigError(f"task_repeats.{task} must be a whole number of at least 1, got {times!r}")
        self.video.validate()
        self.cache.validate()
        self.loader.validate()
        self.prompts.validate()
        self.optim.validate()
        self.run.validate()
        self.validation.validate()
