"""`SFTTrainConfig`: everything an SFT run reads, one typed tree loaded from YAML.

    cfg = load_config(SFTTrainConfig, "configs/sft/tiny_cpu.yaml", ["target=cot"])

`target` picks what the assistant learns to write, and with it the prompt:

    answer  the answer tags alone (`<answer>`, plus `<glue>` for TAG): the paper's SFT baseline,
            trained on `direct` prompts
    cot     a `<think>` block built from the annotation, then the answer: trained on `think`
            prompts, in exactly the format GRPO's prompts ask for and its parser reads
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vaur1.data import DataConfig
from vaur1.errors import ConfigError
from vaur1.prompts import Mode, TargetMode
from vaur1.train.common import OptimConfig
from vaur1.train.session import SessionConfig

Target = Literal["answer", "cot"]
# target -> (prompt mode, `vaur1.prompts.target_text` mode)
TARGETS: dict[str, tuple[Mode, TargetMode]] = {"answer": ("direct", "direct"), "cot": ("think", "cot")}


@dataclass
class SFTTrainConfig(SessionConfig):
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=2e-5))
    target: Target = "answer"
    mode: Mode | None = None  # the prompt mode; leave unset to follow the target (set, it must match)
    val_data: DataConfig | None = None  # validation examples (e.g. the val split), for eval_steps
    eval_steps: int | None = None  # validation loss every N steps; the best model is kept in best/
    early_stopping_patience: int | None = None  # stop after N evaluations without a better loss

    def validate(self) -> None:
        super().validate()
        if self.target not in TARGETS:
            raise ConfigError(f"target: {self.target!r} is not one of {', '.join(TARGETS)}")
        expected = TARGETS[self.target][0]
        if self.mode is not None and self.mode != expected:
            raise ConfigError(
                f"mode: {self.target} targets are trained on {expected} prompts, not {self.mode}"
            )
        if self.val_data is not None:
            self.val_data.validate()
        if self.eval_steps is not None:
            if self.eval_steps < 1:
                raise ConfigError(f"eval_steps must be at least 1, got {self.eval_steps}")
            if self.val_data is None:
                raise ConfigError("eval_steps needs val_data (e.g. the same bench with split: val)")
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ConfigError(
                    f"early_stopping_patience must be at least 1, got {self.early_stopping_patience}"
                )
            if self.eval_steps is None:
                raise ConfigError("early_stopping_patience needs eval_steps")

    @property
    def prompt_mode(self) -> Mode:
        return TARGETS[self.target][0]

    @property
    def target_mode(self) -> TargetMode:
        return TARGETS[self.target][1]
