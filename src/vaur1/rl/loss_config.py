"""The GRPO loss options, with TRL 1.16's names, defaults and validity rules, and the adaptive entropy
bonus's state (`vaur1.rl.objectives` holds the maths they select)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from vaur1.errors import ConfigError
from vaur1.rl.loss import ADVANTAGE_ESTIMATORS, IS_MODES, SCALE_REWARDS, ImportanceSamplingMode, ScaleRewards
from vaur1.rl.objectives import LOSSES

ImportanceSamplingLevel = Literal["token", "sequence"]
LOG = logging.getLogger("vaur1.train")


# the parameters of the loss types that have their own, handed to the objective as `options`
LOSS_TYPE_OPTIONS = (
    "sapo_temperature_pos",
    "sapo_temperature_neg",
    "vespo_k_pos",
    "vespo_lambda_pos",
    "vespo_k_neg",
    "vespo_lambda_neg",
)


@dataclass
class GRPOLossConfig:
    """The loss options, with TRL 1.16's names and defaults (`beta=0.0` loads no reference model)."""

    # grpo (per-sequence mean), bnpo, dr_grpo, dapo (token mean over the step), luspo, cispo, sapo, vespo
    loss_type: str = "dapo"
    # how a group's rewards become advantages: grpo (r - group mean, scaled by scale_rewards), rloo
    # (leave-one-out baseline), gdpo (each reward normalised before the sum), or a registered one
    advantage_estimator: str = "grpo"
    beta: float = 0.0  # weight of the k3 KL to the reference model; 0: no reference model
    epsilon: float = 0.2  # clip width below 1 of the importance ratio
    epsilon_high: float | None = None  # clip width above 1 (cispo: the ratio's cap); null: epsilon
    delta: float | None = None  # two-sided clipping: cap the unclipped ratio at delta (> 1 + epsilon_high)
    # token: a ratio per token (GRPO); sequence: the length-normalised sequence ratio (GSPO)
    importance_sampling_level: ImportanceSamplingLevel = "token"
    scale_rewards: ScaleRewards = "group"  # divide advantages by the group's std, the batch's, or none
    num_iterations: int = 1  # optimizer steps per rollout (the ratio departs from 1 after the first)
    mask_truncated_completions: bool = False  # completions cut at max_completion_length train nothing
    use_bias_correction_kl: bool = True  # multiply the k3 KL by the importance ratio (TRL's default)
    # the KL then holds the policy near where it recently was rather than where it started
    sync_ref_model: bool = False  # mix the reference toward the policy during training (TR-DPO)
    ref_model_mixup_alpha: float = 0.6  # reference = alpha * policy + (1 - alpha) * reference
    ref_model_sync_steps: int = 512  # mix every this many optimizer steps
    sapo_temperature_pos: float = 1.0  # sapo: the gate's steepness for positive advantages
    sapo_temperature_neg: float = 1.05  # sapo: ... for negative advantages
    vespo_k_pos: float = 2.0  # vespo: gamma shape k for non-negative advantages
    vespo_lambda_pos: float = 3.0  # vespo: gamma rate lambda for non-negative advantages
    vespo_k_neg: float = 3.0  # vespo: k for negative advantages
    vespo_lambda_neg: float = 2.0  # vespo: lambda for negative advantages
    top_entropy_quantile: float = 1.0  # train only the tokens in this top share of entropy (1: all)
    entropy_coef: float = 0.0  # entropy bonus: subtract this times the mean token entropy
    use_adaptive_entropy: bool = False  # raise or lower entropy_coef each step to hold entropy_target
    entropy_coef_delta: float = 0.005  # adaptive: the step of entropy_coef
    entropy_coef_min: float = 0.0  # adaptive: its lower bound
    entropy_coef_max: float = 1.0  # adaptive: its upper bound
    entropy_target: float = 0.2  # adaptive: the bonus applies while the mean entropy is at most this
    off_policy_mask_threshold: float | None = None  # drop negative-advantage sequences this far off-policy
    # With vLLM rollouts: weight each token's loss by exp(trainer logp - vLLM's sampling logp), the
    # correction for the two engines' numerical gap (TRL's names, semantics and default mode)
    vllm_importance_sampling_correction: bool = True
    vllm_importance_sampling_mode: ImportanceSamplingMode = "token_truncate"  # or token_mask, sequence_*
    vllm_importance_sampling_clip_max: float | None = 3.0  # truncate (or mask) ratios above this
    vllm_importance_sampling_clip_min: float | None = None  # truncate (or mask) ratios below this
    vllm_importance_sampling_cap: float | None = None  # TRL's older name for clip_max; set, it wins

    def validate(self) -> None:
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ConfigError(
                f"loss.advantage_estimator: {self.advantage_estimator!r} is not one of "
                f"{', '.join(ADVANTAGE_ESTIMATORS)}"
            )
        if self.loss_type not in LOSSES:
            raise ConfigError(f"loss.loss_type: {self.loss_type!r} is not one of {', '.join(LOSSES)}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ConfigError(
                f"loss.scale_rewards: {self.scale_rewards!r} is not one of {', '.join(SCALE_REWARDS)}"
            )
        if self.importance_sampling_level not in ("token", "sequence"):
            raise ConfigError(
                f"loss.importance_sampling_level: {self.importance_sampling_level!r} is not token or sequence"
            )
        # TRL warns about these pairings; here they are errors, since the loss is then not the paper's
        if self.loss_type == "luspo" and self.importance_sampling_level != "sequence":
            raise ConfigError(
                "loss.loss_type luspo needs loss.importance_sampling_level: sequence (its paper's setup)"
            )
        # CISPO's epsilon_high caps the ratio itself, not its distance from 1: left at null it is epsilon
        # (0.2), which weighs every on-policy token's gradient by 0.2
        if self.loss_type == "cispo" and (self.epsilon_high is None or self.epsilon_high < 1):
            raise ConfigError(
                f"loss.loss_type cispo caps the importance ratio at loss.epsilon_high, which is "
                f"{self.epsilon_high} (null means epsilon); set a cap of at least 1 (ScaleRL uses 5.0)"
            )
        if self.loss_type == "vespo" and self.importance_sampling_level != "token":
            raise ConfigError(
                "loss.loss_type vespo computes its own sequence weight: keep importance_sampling_level token"
            )
        if self.loss_type == "vespo" and not self.vllm_importance_sampling_mode.startswith("token"):
            raise ConfigError("loss.loss_type vespo needs a token-level vllm_importance_sampling_mode")
        if self.importance_sampling_level == "sequence" and LOSSES[self.loss_type].aggregation in (
            "token_mean",
            "max_length",
            "step_tokens",
        ):
            LOG.warning(
                "loss: importance_sampling_level sequence with loss_type %s sums token terms, which weighs each "
                "sequence by its length; GSPO's setup is loss_type grpo",
                self.loss_type,
            )
        if self.beta < 0:
            raise ConfigError(f"loss.beta must be >= 0, got {self.beta}")
        if self.sync_ref_model and self.beta == 0:
            raise ConfigError(
                "loss.sync_ref_model needs loss.beta > 0: with beta 0 there is no reference model"
            )
        if not 0 < self.ref_model_mixup_alpha <= 1:
            raise ConfigError(
                f"loss.ref_model_mixup_alpha must be in (0, 1], got {self.ref_model_mixup_alpha}"
            )
        if self.ref_model_sync_steps < 1:
            raise ConfigError(f"loss.ref_model_sync_steps must be >= 1, got {self.ref_model_sync_steps}")
        if not 0 < self.epsilon < 1:
            raise ConfigError(f"loss.epsilon must be in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and self.epsilon_high <= 0:
            raise ConfigError(f"loss.epsilon_high must be > 0, got {self.epsilon_high}")
        if self.delta is not None and self.delta <= 1 + self.clip_high:
            raise ConfigError(
                f"loss.delta must exceed 1 + epsilon_high ({1 + self.clip_high}), got {self.delta}"
            )
        if self.num_iterations < 1:
            raise ConfigError(f"loss.num_iterations must be >= 1, got {self.num_iterations}")
        if not 0 < self.top_entropy_quantile <= 1:
            raise ConfigError(f"loss.top_entropy_quantile must be in (0, 1], got {self.top_entropy_quantile}")
        if self.entropy_coef < 0 or not 0 <= self.entropy_coef_min <= self.entropy_coef_max:
            raise ConfigError(
                "loss: need entropy_coef >= 0 and 0 <= entropy_coef_min <= entropy_coef_max, got "
                f"{self.entropy_coef}, {self.entropy_coef_min}, {self.entropy_coef_max}"
            )
        if min(self.sapo_temperature_pos, self.sapo_temperature_neg) <= 0:
            raise ConfigError("loss.sapo_temperature_pos and sapo_temperature_neg must be > 0")
        if self.off_policy_mask_threshold is not None and self.off_policy_mask_threshold < 0:
            raise ConfigError(
                f"loss.off_policy_mask_threshold must be >= 0, got {self.off_policy_mask_threshold}"
            )
        if self.vllm_importance_sampling_mode not in IS_MODES:
            raise ConfigError(
                f"loss.vllm_importance_sampling_mode: {self.vllm_importance_sampling_mode!r} is not one of "
                f"{', '.join(IS_MODES)}"
            )
        cap, low = self.importance_clip_max, self.vllm_importance_sampling_clip_min
        if (
            (cap is not None and cap <= 0)
            or (low is not None and low < 0)
            or (cap is not None and low is not None and low > cap)
        ):
            raise ConfigError(
                f"loss: vllm importance sampling needs 0 <= clip_min <= clip_max, got {low} and {cap}"
            )

    @property
    def importance_clip_max(self) -> float | None:
        cap = self.vllm_importance_sampling_cap
        return self.vllm_importance_sampling_clip_max if cap is None else cap

    @property
    def clip_high(self) -> float:
        """The upper clip width: `epsilon_high`, or `epsilon` when it is unset (TRL's rule)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    @property
    def uses_entropy_mask(self) -> bool:
        return self.top_entropy_quantile < 1.0

    def options(self) -> dict[str, float]:
        """The parameters of the loss types that have their own (sapo, vespo)."""
        return {name: float(getattr(self, name)) for name in LOSS_TYPE_OPTIONS}


@dataclass
class EntropyControl:
    """TRL's adaptive entropy bonus: after each optimizer step the coefficient moves by `delta` toward
    holding the mean token entropy at `target`; the bonus applies while the entropy is at most it."""

    coef: float
    adaptive: bool
    delta: float
    low: float
    high: float
    target: float
    last_entropy: float = math.inf

    def applied(self) -> float:
        if not self.adaptive:
            return self.coef
        return self.coef if self.last_entropy <= self.target else 0.0

    def update(self, world_entropy: float) -> None:
        if not self.adaptive:
            return
        if world_entropy <= self.target:
            self.coef = min(self.coef + self.delta, self.high)
        else:
            self.coef = max(self.coef - self.delta, self.low)
        self.last_entropy = world_entropy
