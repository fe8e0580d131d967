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

from vaur1.errors import ConfigError
from vaur1.train.config import OptimConfig, SessionConfig
from vaur1.vocab import Mode, TargetMode

Target = Literal["answer", "cot"]
# target -> (prompt mode, `vaur1.prompts.target_text` mode)
TARGETS: dict[str, tuple[Mode, TargetMode]] = {"answer": ("direct", "direct"), "cot": ("think", "cot")}


@dataclass
class SFTTrainConfig(SessionConfig):
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=2e-5))
    target: Target = "answer"  # answer: the answer tags alone; cot: a <think> block first
    mode: Mode | None = None  # the prompt mode; leave unset to follow the target (set, it must match)

    def validate(self) -> None:
        super().validate()
        if self.target not in TARGETS:
            raise ConfigError(f"target: {self.target!r} is not one of {', '.join(TARGETS)}")
        expected = TARGETS[self.target][0]
        if self.mode is not None and self.mode != expected:
            raise ConfigError(
                f"mode: {self.target} targets are trained on {expected} prompts, not {self.mode}"
            )

    @property
    def prompt_mode(self) -> Mode:
        return TARGETS[self.target][0]

    @property
    def target_mode(self) -> TargetMode:
        return TARGETS[self.target][1]
