"""GRPO with `rollout.backend: vllm`: the colocated engine, and the importance-sampling correction of
the gap between its log-probs and the trainer's (TRL's names, semantics and `sampling/*` metrics)."""

from __future__ import annotations

import statistics

from vaur1.model.load import resolve_checkpoint, resolve_dtype
from vaur1.rl.config import GRPOTrainConfig
from vaur1.rl.loss import importance_weights
from vaur1.train.session import Session
from vaur1.vocab import VLLM


def rollout_engine(session: Session, cfg: GRPOTrainConfig):
    """The colocated vLLM engine of `rollout.backend: vllm`, started from the run's checkpoint (its
    weights are replaced by the policy's before every rollout). Each process runs its own engine on
    its own shard of prompts, seeded apart so that their samples are independent."""
    from vaur1.model.vllm_engine import VllmEngine

    checkpoint = resolve_checkpoint(cfg.model.name_or_path)
    seed = cfg.run.seed + session.accelerator.process_index
    # the dtype the trainer loaded the weights in, by the same rule: vLLM's own "auto" would sample an
    # fp32 checkpoint in bf16 and the importance ratio would compare bf16 with fp32 log-probs
    dtype = resolve_dtype(cfg.model.dtype, checkpoint.model)
    return VllmEngine(checkpoint.model, session.processor, cfg.rollout.vllm, dtype=dtype, seed=seed)


def corrects_sampling(cfg: GRPOTrainConfig) -> bool:
    return cfg.rollout.backend == VLLM and cfg.loss.vllm_importance_sampling_correction


def sampling_correction(session: Session, cfg: GRPOTrainConfig, batches: list) -> dict:
    """Each batch's importance weights from the trainer's and vLLM's log-probs of the sampled tokens,
    and the gap's statistics over every process (TRL's metric names)."""
    loss = cfg.loss
    gaps, ratios = [], []
    for batch in batches:
        rollout = batch.rollout
        if rollout.sampling_logps is None:  # the filler, sampled by the policy itself
            continue
        mask = rollout.completion_mask.to(batch.old_logps.dtype)
        batch.importance = importance_weights(
            batch.old_logps,
            rollout.sampling_logps,
            mask,
            loss.vllm_importance_sampling_mode,
            loss.vllm_importance_sampling_clip_min,
            loss.importance_clip_max,
        )
        valid = mask.bool()
        gaps.extend((batch.old_logps - rollout.sampling_logps).abs()[valid].tolist())
        sequence = loss.vllm_importance_sampling_mode.startswith("sequence")
        ratios.extend((batch.importance.flatten() if sequence else batch.importance[valid]).tolist())
    gaps, ratios = session.gather(gaps), session.gather(ratios)
    if not gaps:
        return {}
    return {
        "sampling/sampling_logp_difference/mean": statistics.fmean(gaps),
        "sampling/sampling_logp_difference/max": max(gaps),
        "sampling/importance_sampling_ratio/min": min(ratios),
        "sampling/importance_sampling_ratio/mean": statistics.fmean(ratios),
        "sampling/importance_sampling_ratio/max": max(ratios),
    }
