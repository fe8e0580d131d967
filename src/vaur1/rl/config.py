"""`GRPOTrainConfig`: everything a GRPO run reads, one typed tree loaded from YAML.

    cfg = load_config(GRPOTrainConfig, "configs/grpo/tiny_cpu.yaml", ["run.max_steps=2"])

The shared sections (model, data, video, cache, loader, prompts, optim, run) and the top-level
batch knobs come from `SessionConfig`. The GRPO knobs keep TRL 1.16's names: `num_generations`
(G), `max_completion_length`, and in `loss` `loss_type`, `beta`, `epsilon`, `epsilon_high`,
`scale_rewards`, `num_iterations`, `mask_truncated_completions`. One difference from TRL:
`per_device_train_batch_size` counts prompts, each sampled G times (TRL counts completions).

`sampling` holds temperature, top_p, top_k and repetition_penalty; the number of samples and
their length come from `num_generations` and `max_completion_length` only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from vaur1.errors import ConfigError
from vaur1.model.generate import SamplingConfig
from vaur1.model.vllm_engine import VllmConfig
from vaur1.rewards import RewardConfig
from vaur1.rl.loss_config import GRPOLossConfig
from vaur1.rl.temporal import TemporalConfig
from vaur1.train.config import SessionConfig
from vaur1.vocab import BACKENDS, HF, SCORED_TASKS, VLLM, Backend, Mode, check_mode

LOG = logging.getLogger("vaur1.train")

# The format reward each prompt mode asks for; the other one would score every completion 0.
FORMAT_REWARD: dict[str, str] = {"think": "format", "direct": "format_direct"}
_SAMPLING_DEFAULTS = SamplingConfig()


@dataclass
class RolloutConfig:
    """What samples the completions: the policy through transformers, or a colocated vLLM engine."""

    # hf: transformers generate with the policy; vllm: a vLLM engine in the training process, fed the
    # policy's weights before every rollout (LoRA merged), with loss.vllm_importance_sampling_* correcting
    # the gap between its log-probs and the trainer's
    backend: Backend = HF
    vllm: VllmConfig = field(default_factory=VllmConfig)  # the engine's settings with backend vllm
    temporal: TemporalConfig = field(default_factory=TemporalConfig)  # Video-R1's T-GRPO
    # DAPO's dynamic sampling: groups whose rewards are all equal leave the step, and further prompts
    # (a global batch a round) are sampled until it has as many informative groups as prompts
    dynamic_sampling: bool = False
    max_rounds: int = 4  # dynamic sampling: at most this many rounds of sampling per step

    def validate(self) -> None:
        self.temporal.validate()
        if self.max_rounds < 1:
            raise ConfigError(f"rollout.max_rounds must be at least 1, got {self.max_rounds}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"rollout.backend: {self.backend!r} is not hf or vllm")
        self.vllm.validate()


@dataclass
class GRPOTrainConfig(SessionConfig):
    mode: Mode = "think"  # the prompts' answer format: think block then answer, or answer only
    rewards: RewardConfig = field(default_factory=RewardConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    loss: GRPOLossConfig = field(default_factory=GRPOLossConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    num_generations: int = 8  # G: completions per prompt
    max_completion_length: int = 512  # new tokens per completion
    # Draw each prompt's G samples from a generator seeded by (run.seed, step, slot in the global
    # batch): rollouts then do not depend on how prompts are spread over processes or batched.
    seed_rollouts_per_prompt: bool = False
    # Score each prompt's G completions in one row, the prompt computed once (`vaur1.model.shared_prefix`):
    # the same log-probs and gradients for a fraction of the work. Used with sdpa and eager attention;
    # flash-attention takes no block mask and keeps one row per completion.
    shared_prefix: bool = True

    def validate(self) -> None:
        super().validate()
        check_mode(self.mode)
        unrewarded = [task for task in self.data.tasks if task not in SCORED_TASKS]
        if unrewarded:
            raise ConfigError(
                f"data.tasks: {unrewarded[0]} has no GRPO rewards (rewarded tasks: {', '.join(SCORED_TASKS)})"
            )
        if self.num_generations < 2:
            raise ConfigError(
                f"num_generations must be at least 2 (advantages compare samples), got {self.num_generations}"
            )
        if self.max_completion_length < 1:
            raise ConfigError(f"max_completion_length must be at least 1, got {self.max_completion_length}")
        if self.sampling.num_return_sequences not in (
            _SAMPLING_DEFAULTS.num_return_sequences,
            self.num_generations,
        ):
            raise ConfigError("sampling.num_return_sequences: set num_generations instead")
        if self.sampling.max_new_tokens not in (
            _SAMPLING_DEFAULTS.max_new_tokens,
            self.max_completion_length,
        ):
            raise ConfigError("sampling.max_new_tokens: set max_completion_length instead")
        if self.sampling.seed is not None:
            raise ConfigError(
                "sampling.seed: rollouts are seeded from run.seed (see seed_rollouts_per_prompt)"
            )
        if not self.sampling.do_sample:
            raise ConfigError("sampling.do_sample must be true: GRPO compares G different samples per prompt")
        self.sampling_config().validate()
        self.rewards.validate()
        truncated_sampler = self.sampling.top_k > 0 or self.sampling.top_p < 1
        if (
            self.rollout.backend == VLLM
            and self.loss.vllm_importance_sampling_correction
            and truncated_sampler
        ):
            LOG.warning(
                "vLLM samples from the top_k / top_p truncated distribution: the importance ratio weighs each "
                "token's loss by the policy's mass inside it (the sampler is the behaviour policy, as in TRL "
                "and verl); sampling.top_k: 0 and top_p: 1 make it measure the engines' gap alone"
            )
        if self.rewards.overlong_buffer_len >= self.max_completion_length:
            raise ConfigError(
                f"rewards.overlong_buffer_len {self.rewards.overlong_buffer_len} must be below max_completion_length "
                f"{self.max_completion_length}"
            )
        wrong_format = FORMAT_REWARD["direct" if self.mode == "think" else "think"]
        for task in self.data.tasks:
            if wrong_format in self.rewards.weights(task):
                raise ConfigError(
                    f"rewards.{task}.{wrong_format}: {self.mode} prompts are scored by "
                    f"{FORMAT_REWARD[self.mode]}, not {wrong_format}"
                )
        self.loss.validate()
        gdpo = self.rewards.multi_objective_aggregation == "normalize_then_sum"
        if gdpo and self.loss.advantage_estimator not in ("grpo", "gdpo"):
            raise ConfigError(
                "rewards.multi_objective_aggregation normalize_then_sum is the gdpo advantage estimator: it does "
                f"not combine with loss.advantage_estimator {self.loss.advantage_estimator}"
            )
        if self.loss.sync_ref_model and self.model.lora.enabled:
            raise ConfigError(
                "loss.sync_ref_model mixes full weights into the reference: it needs full fine-tuning, not "
                "model.lora (as in TRL)"
            )
        self.rollout.validate()

    @property
    def advantage_estimator(self) -> str:
        """The registered estimator that turns rewards into advantages; TRL's normalize_then_sum is gdpo."""
        if self.rewards.multi_objective_aggregation == "normalize_then_sum":
            return "gdpo"
        return self.loss.advantage_estimator

    def sampling_config(self) -> SamplingConfig:
        """The sampling options with G and the completion length filled in."""
        return replace(
            self.sampling,
            num_return_sequences=self.num_generations,
            max_new_tokens=self.max_completion_length,
        )
