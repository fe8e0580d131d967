"""The log-probs of a rollout's completions under a model, and the reference model the KL term is
measured against (TRL's `sync_ref_model`: mixed toward the policy every `ref_model_sync_steps` steps,
its weights then kept in every checkpoint so that a resumed run continues with the same reference)."""

from __future__ import annotations

from dataclasses import replace

import torch

from vaur1.errors import VaurError
from vaur1.layout import Checkpoint
from vaur1.model.load import LoraConfig, load_model, resolve_checkpoint
from vaur1.model.logprobs import target_logprobs
from vaur1.model.shared_prefix import pack_groups, shares_prefix, use_grouped_attention
from vaur1.rl.config import GRPOTrainConfig
from vaur1.rl.rollout import Rollout, video_features
from vaur1.train.distributed import fsdp_shard_frozen
from vaur1.train.session import Session

REFERENCE_STATE = "reference_model"  # the checkpoint file name of a mixed reference's weights


def completion_logps(
    model, rollout: Rollout, temperature: float, entropy: bool = False, shared_prefix: bool = True
):
    """Per-token log-probs (rows, L) in fp32 of the rollout's completions under `model`, from one forward
    pass over the rollout's prompts, videos and completions; with `entropy`, also each position's entropy.

    Logits are divided by the sampling temperature first, as in TRL: the log-probs are those of the
    distribution the completions were sampled from. The output layer runs in fp32 whatever the engine
    (`vaur1.model.logprobs`), so the ratio and the KL are not differences of bf16 numbers.

    With `shared_prefix` (and an attention kernel that takes a block mask) each prompt is computed
    once for its G completions (`vaur1.model.shared_prefix`); positions past a completion's end then
    hold 0, where the unshared pass holds the log-prob of the padding token (masked either way).
    """
    if shared_prefix and shares_prefix(model):
        use_grouped_attention(model)
        packed = pack_groups(
            model, rollout.inputs, rollout.completion_ids, rollout.completion_mask, rollout.num_generations
        )
        videos = {"video": video_features(model, rollout, per_row=False)}
        with target_logprobs(
            model, rollout.completion_ids, temperature, positions=packed.positions
        ) as result:
            model(**packed.inputs, mm_encoder_outputs=videos, logits_to_keep=0, use_cache=False)
        kept = rollout.completion_mask.bool()
        logps = result.logps.masked_fill(~kept, 0.0)
        entropies = result.entropies.masked_fill(~kept, 0.0) if entropy else None
        return logps, entropies
    length = rollout.completion_ids.shape[1]
    videos = {"video": video_features(model, rollout)}
    with target_logprobs(model, rollout.completion_ids, temperature) as result:
        model(**rollout.inputs, mm_encoder_outputs=videos, logits_to_keep=length + 1, use_cache=False)
    return result.logps, result.entropies if entropy else None


class Reference:
    """The policy that the KL term is measured against: the frozen starting policy, or with
    `loss.sync_ref_model` a copy mixed toward the policy every `ref_model_sync_steps` steps.

    LoRA on a full checkpoint: the policy itself with its adapter disabled (no second copy). Full
    fine-tuning (or LoRA continued from an adapter directory): a frozen copy loaded from
    `model.name_or_path`, which holds the starting weights even when the run resumes; a mixed copy is
    restored from the checkpoint instead.
    """

    def __init__(self, session: Session, cfg: GRPOTrainConfig) -> None:
        from accelerate.utils import DistributedType

        self.session = session
        self.model = None
        self.shared_prefix = cfg.shared_prefix
        self.sync_steps = cfg.loss.ref_model_sync_steps if cfg.loss.sync_ref_model else 0
        self.alpha = cfg.loss.ref_model_mixup_alpha
        distributed = session.accelerator.distributed_type
        sharded = distributed == DistributedType.FSDP or (session.engine == "deepspeed" and _zero3(session))
        if self.sync_steps and sharded:
            raise VaurError(
                "loss.sync_ref_model: the reference is mixed with one process, DDP or ZeRO-2, not under "
                "ZeRO-3 or FSDP (its sharded weights)"
            )
        if cfg.model.lora.enabled and resolve_checkpoint(cfg.model.name_or_path).adapter is None:
            return
        frozen = replace(
            cfg.model,
            lora=LoraConfig(enabled=False),
            freeze_vision=False,
            device=str(session.accelerator.device),
        )
        model, _ = load_model(frozen)
        model.requires_grad_(False)
        if distributed == DistributedType.DEEPSPEED:
            from trl.models.utils import prepare_deepspeed

            model = prepare_deepspeed(model, session.accelerator)
        elif distributed == DistributedType.FSDP:
            # TRL's prepare_fsdp shards only the root: the whole model would be gathered at once and
            # the vision tower could not be called on its own
            model = fsdp_shard_frozen(model, session.accelerator, session.filler_inputs())
        self.model = model
        if self.sync_steps:
            session.extra_states[REFERENCE_STATE] = self.state_dict
            if session.resumed_from is not None:
                self.load_state_dict(session.resumed_from)

    def state_dict(self) -> dict[str, torch.Tensor]:
        # cloned: safetensors refuses tensors that share memory (tied embeddings)
        return {
            name: tensor.detach().cpu().clone()
            for name, tensor in self._reference_module().state_dict().items()
        }

    def load_state_dict(self, checkpoint: Checkpoint) -> None:
        from safetensors.torch import load_file

        path = checkpoint.extra_state(REFERENCE_STATE)
        if not path.is_file():
            raise VaurError(f"{path}: missing; this checkpoint holds no mixed reference model to resume with")
        self._reference_module().load_state_dict(load_file(path))

    def _reference_module(self) -> torch.nn.Module:
        return getattr(self.model, "module", self.model)

    def sync_if_due(self, step: int) -> None:
        """TRL's SyncRefModelCallback: every `ref_model_sync_steps` steps, reference = alpha * policy +
        (1 - alpha) * reference, parameter by parameter (in the reference's dtype)."""
        if not self.sync_steps or step % self.sync_steps:
            return
        policy = dict(self.session.accelerator.unwrap_model(self.session.model).named_parameters())
        with torch.no_grad():
            for name, target in self._reference_module().named_parameters():
                target.mul_(1.0 - self.alpha).add_(policy[name].detach().to(target.dtype), alpha=self.alpha)

    def logps(self, rollout: Rollout, temperature: float) -> torch.Tensor:
        if self.model is not None:
            return completion_logps(self.model, rollout, temperature, shared_prefix=self.shared_prefix)[0]
        policy = self.session.accelerator.unwrap_model(self.session.model)
        with policy.disable_adapter():
            return completion_logps(policy, rollout, temperature, shared_prefix=self.shared_prefix)[0]


def _zero3(session: Session) -> bool:
    plugin = session.accelerator.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3
