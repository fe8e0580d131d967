"""The GRPO loop on video prompts: `vaur1 train grpo --config FILE.yaml [key=value ...]`.

TRL's GRPOTrainer runs video prompts but computes its log-probs without the video (its policy,
old and reference passes get no `pixel_values_videos`), so vaur1 owns the step. Each cycle takes one global batch of prompts and:

1. rollout: samples G completions per prompt (`vaur1.rl.rollout.collect`) and scores each with
   its own task's rewards;
2. advantages from group statistics over the whole global batch (`scale_rewards`);
3. old log-probs (only when `num_iterations` > 1) and reference log-probs (only when beta > 0:
   the policy with its LoRA adapter disabled, or a frozen copy loaded from `model.name_or_path`),
   all on the rollout's own video tensors;
4. `num_iterations` optimizer steps, each over every micro-batch with gradient accumulation,
   through `vaur1.rl.loss.policy_loss` (TRL 1.16's loss types, clipping and k3 KL);
5. logs per optimizer step; validation when due (`vaur1.train.validation`); a checkpoint when the
   cycle crossed a multiple of `save_steps`.

Logged per step (metrics.jsonl): `loss`, `reward`, `reward_std`, `reward/<task>`,
`rewards/<name>/mean|std` (over completions the reward applies to), `frac_reward_zero_std`,
`completions/mean_length|min_length|max_length|clipped_ratio`, `kl`, `entropy`, TRL's
`clip_ratio/*`, `grad_norm`, `learning_rate`, `skipped_samples`, and where the time went:
`time/decode` (waiting for frames), `time/rollout` (generation), `time/weight_push` (the policy's
weights into the vLLM engine, with `rollout.backend: vllm`, which also logs TRL's
`sampling/sampling_logp_difference/*` and `sampling/importance_sampling_ratio/*`), `time/scoring` (rewards and
advantages), `time/reference` (the old and reference log-prob passes), `time/update` (forward,
backward and optimizer step) and `time/step` (all of it), plus
`tokens_per_second` (completion tokens trained per second of the whole step) and
`rollout_tokens_per_second` (tokens generated per second of generation, summed over processes).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from vaur1.model.generators import HFGenerator, VllmGenerator
from vaur1.model.shared_prefix import shares_prefix
from vaur1.model.vllm_engine import policy_weights
from vaur1.rl import dynamic, temporal
from vaur1.rl.config import GRPOTrainConfig
from vaur1.rl.entropy import ENTROPY_KEY, entropy_control, high_entropy_tokens, saved_control
from vaur1.rl.loss import ADVANTAGE_ESTIMATORS, AdvantageInputs
from vaur1.rl.objectives import policy_loss
from vaur1.rl.reference import Reference, completion_logps
from vaur1.rl.rollout import Rollout, collect, filler_rollout, rollout_seed
from vaur1.rl.vllm_rollout import corrects_sampling, rollout_engine, sampling_correction
from vaur1.train.build import open_session
from vaur1.train.distributed import policy_for_generation
from vaur1.train.sampler import Item
from vaur1.train.session import Session, timed
from vaur1.vocab import VLLM

LOG = logging.getLogger("vaur1.train")

SAMPLES_PER_LOG = 8  # completions written to samples.jsonl when completions are logged


@dataclass
class Batch:
    """A rollout and what its update needs: advantages, and the old and reference log-probs."""

    rollout: Rollout
    advantages: torch.Tensor  # (rows,)
    old_logps: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    importance: torch.Tensor | None = None  # vLLM rollouts: the importance-sampling weights of the loss


def roll(
    session: Session, cfg: GRPOTrainConfig, policy, items: list[Item], step: int, engine=None
) -> Rollout:
    """Sample and score one micro-batch with `policy` (from `policy_for_generation`), or with `engine`
    holding its weights; the filler prompt when it is empty."""
    sampling = cfg.sampling_config()
    if not items:
        return filler_rollout(policy, session.processor, session.filler_inputs(), sampling)
    seeds = [rollout_seed(cfg.run.seed, step, item.slot) for item in items]
    examples, videos = [item.example for item in items], [item.video for item in items]
    generator = (
        HFGenerator(policy, session.processor, sampling)
        if engine is None
        else VllmGenerator(engine, session.processor, sampling)
    )

    def sample_on(videos: list, sampling) -> Rollout:
        return collect(
            generator,
            examples,
            videos,
            mode=cfg.mode,
            prompts=cfg.prompts,
            sampling=sampling,
            rewards=cfg.rewards,
            device=session.accelerator.device,
            seeds=seeds if cfg.seed_rollouts_per_prompt else None,
            mask_truncated_completions=cfg.loss.mask_truncated_completions,
        )

    rollout = sample_on(videos, sampling)
    rollout.slots = [item.slot for item in items]
    if cfg.rollout.temporal.enabled:  # Video-R1's T-GRPO: G / 2 more on each prompt's shuffled frames
        mixed = [temporal.shuffled(video, seed) for video, seed in zip(videos, seeds, strict=True)]
        other = sample_on(mixed, replace(sampling, num_return_sequences=max(1, cfg.num_generations // 2)))
        temporal.apply(rollout, other, cfg.rewards.weights, cfg.rollout.temporal)
    return rollout


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def rollout_metrics(
    rows: list[dict[str, Any]], cfg: GRPOTrainConfig, frac_zero_std: float
) -> dict[str, float]:
    """Reward and completion statistics over every completion of the global batch."""
    totals = [row["reward"] for row in rows]
    metrics: dict[str, float] = {
        "prompts": len(rows) / cfg.num_generations,
        "reward": statistics.fmean(totals),
        "reward_std": _std(totals),
    }
    for task in sorted({row["task"] for row in rows}):
        metrics[f"reward/{task}"] = statistics.fmean(row["reward"] for row in rows if row["task"] == task)
    names = sorted({name for row in rows for name, value in row["parts"].items() if value is not None})
    for name in names:
        values = [row["parts"][name] for row in rows if row["parts"].get(name) is not None]
        metrics[f"rewards/{name}/mean"] = statistics.fmean(values)
        metrics[f"rewards/{name}/std"] = _std(values)
    lengths = [row["length"] for row in rows]
    metrics |= {
        "frac_reward_zero_std": frac_zero_std,
        "completions/mean_length": statistics.fmean(lengths),
        "completions/min_length": min(lengths),
        "completions/max_length": max(lengths),
        "completions/clipped_ratio": statistics.fmean(float(row["truncated"]) for row in rows),
    }
    return metrics


def advantages_of(rows: list[dict[str, Any]], cfg: GRPOTrainConfig):
    """Group advantages of the global batch's rows, by the configured estimator."""
    names = sorted({name for row in rows for name in row["parts"]})
    weights = [cfg.rewards.weights(row["task"]) for row in rows]
    inputs = AdvantageInputs(
        rewards=torch.tensor([row["reward"] for row in rows], dtype=torch.float32),
        parts=torch.tensor(
            [[math.nan if row["parts"].get(n) is None else row["parts"][n] for n in names] for row in rows]
        ),
        weights=torch.tensor([[w.get(n, 0.0) for n in names] for w in weights]),
        group_size=cfg.num_generations,
        scale_rewards=cfg.loss.scale_rewards,
    )
    return ADVANTAGE_ESTIMATORS[cfg.advantage_estimator](inputs)


def score_cycle(session: Session, cfg: GRPOTrainConfig, rollouts: list[Rollout]) -> tuple[list[Batch], dict]:
    """Advantages over the global batch (all processes), and the rollout metrics."""
    local_rows = [
        {
            "task": task,
            "reward": float(reward),
            "parts": parts,
            "length": int(length),
            "truncated": bool(cut),
            "kept": kept,
        }
        for rollout in rollouts
        if not rollout.filler
        for task, reward, parts, length, cut, kept in zip(
            rollout.tasks,
            rollout.rewards.tolist(),
            rollout.reward_parts,
            rollout.lengths.tolist(),
            rollout.truncated.tolist(),
            rollout.kept.tolist() if rollout.kept is not None else [True] * rollout.rows,
            strict=True,
        )
    ]
    counts = session.gather([len(local_rows)])
    rows = session.gather(local_rows)
    prompts_temporal = session.gather([t for r in rollouts if not r.filler for t in (r.temporal or [])])
    offset = sum(counts[: session.accelerator.process_index])
    trained = [row for row in rows if row["kept"]]  # dynamic sampling leaves groups out
    if trained:
        grouped = advantages_of(trained, cfg)
        advantages = torch.zeros(len(rows))
        advantages[[i for i, row in enumerate(rows) if row["kept"]]] = grouped.advantages
        mine = advantages[offset : offset + len(local_rows)]
        metrics = rollout_metrics(rows, cfg, float(grouped.frac_zero_std))
        metrics |= temporal.metrics(prompts_temporal)
    else:
        mine, metrics = torch.zeros(len(local_rows)), ({} if not rows else rollout_metrics(rows, cfg, 1.0))
    batches = []
    for rollout in rollouts:
        if rollout.filler:
            advantages = torch.zeros(rollout.rows)
        else:
            advantages, mine = mine[: rollout.rows], mine[rollout.rows :]
        batches.append(Batch(rollout, advantages.to(rollout.rewards.device)))
    return batches, metrics


def add_reference_logps(session: Session, cfg: GRPOTrainConfig, batches: list[Batch], reference) -> dict:
    """Old log-probs (for `num_iterations` > 1, and for vLLM's importance sampling) and reference
    log-probs (for beta > 0), no gradients; with vLLM rollouts, the importance weights and TRL's
    `sampling/*` metrics of the gap between the engines."""
    temperature = cfg.sampling.temperature
    with torch.no_grad(), session.accelerator.autocast():
        for batch in batches:
            if cfg.loss.num_iterations > 1 or corrects_sampling(cfg):
                batch.old_logps = completion_logps(
                    session.model, batch.rollout, temperature, shared_prefix=cfg.shared_prefix
                )[0]
            if reference is not None:
                batch.ref_logps = reference.logps(batch.rollout, temperature)
    return sampling_correction(session, cfg, batches) if corrects_sampling(cfg) else {}


def update(session: Session, cfg: GRPOTrainConfig, batches: list[Batch], normalizer: float) -> dict:
    """One optimizer step over every micro-batch of the cycle; returns the step's loss statistics."""
    accelerator = session.accelerator
    loss_cfg = cfg.loss
    control = entropy_control(session, loss_cfg)
    objective = torch.zeros((), device=accelerator.device)
    sums = {"tokens": 0.0, "entropy": 0.0, "bonus_entropy": 0.0, "bonus_tokens": 0.0}
    extremes: dict[str, list[float]] = {"clip_ratio/low_min": [], "clip_ratio/high_max": []}
    for batch in batches:
        rollout = batch.rollout
        with accelerator.accumulate(session.model), accelerator.autocast():
            logps, entropies = completion_logps(
                session.model,
                rollout,
                cfg.sampling.temperature,
                entropy=True,
                shared_prefix=cfg.shared_prefix,
            )
            entropy_mask = high_entropy_tokens(session, loss_cfg, rollout, entropies)
            loss, stats = policy_loss(
                logps,
                batch.old_logps,
                batch.ref_logps,
                batch.advantages,
                rollout.loss_mask,
                loss_type=loss_cfg.loss_type,
                epsilon=loss_cfg.epsilon,
                epsilon_high=loss_cfg.epsilon_high,
                beta=loss_cfg.beta,
                max_completion_length=cfg.max_completion_length,
                num_items_in_batch=normalizer,
                importance=batch.importance,
                importance_sampling_level=loss_cfg.importance_sampling_level,
                delta=loss_cfg.delta,
                use_bias_correction_kl=loss_cfg.use_bias_correction_kl,
                off_policy_mask_threshold=loss_cfg.off_policy_mask_threshold,
                sampling_logp=rollout.sampling_logps,
                entropy_mask=entropy_mask,
                entropies=entropies,
                entropy_coef=control.applied(),
                options=loss_cfg.options(),
            )
            if rollout.filler:
                loss = loss * 0.0
            accelerator.backward(loss)
        objective += loss.detach() / cfg.gradient_accumulation_steps
        # a filler adds nothing but its keys: every process must sum the same keys below, also one
        # whose micro-batches were all fillers (its clips skipped)
        tokens = 0.0 if rollout.filler else float(stats["tokens"])
        sums["tokens"] += tokens
        if not rollout.filler:
            sums["entropy"] += float((entropies * rollout.loss_mask).sum())
            effective = rollout.loss_mask if entropy_mask is None else rollout.loss_mask * entropy_mask
            sums["bonus_entropy"] += float((entropies * effective).sum())
            sums["bonus_tokens"] += float(effective.sum())
        for key, value in stats.items():
            if key in extremes:
                if not rollout.filler:
                    extremes[key].append(float(value))
            elif key not in ("policy_loss", "tokens"):  # the means: clip ratios, kl, cispo's, vespo's
                sums[key] = sums.get(key, 0.0) + float(value) * tokens
    _, grad_norm = session.optimizer_step(objective)

    totals = session.reduce_sum({**sums, "loss": float(objective)})
    bonus_tokens = totals.pop("bonus_tokens")
    bonus_entropy = totals.pop("bonus_entropy") / max(bonus_tokens, 1.0)
    bonus = bool(loss_cfg.entropy_coef or loss_cfg.use_adaptive_entropy)
    if bonus:
        control.update(bonus_entropy)  # the window-global entropy over the tokens the bonus acts on
        session.state.extra[ENTROPY_KEY] = saved_control(control)
    tokens = max(totals.pop("tokens"), 1.0)
    metrics = {"loss": totals.pop("loss") / accelerator.num_processes}
    metrics |= {key: value / tokens for key, value in totals.items()}
    if bonus:
        metrics["entropy_coef"] = control.coef  # TRL's name: the coefficient the next step applies
    for key, reduce in (("clip_ratio/low_min", min), ("clip_ratio/high_max", max)):
        values = session.gather(extremes[key])
        if values:
            metrics[key] = reduce(values)
    if grad_norm is not None:
        metrics["grad_norm"] = grad_norm
    return metrics


def samples_of(rollouts: list[Rollout]) -> list[dict[str, Any]]:
    """A few completions of this process's first real rollout, for samples.jsonl."""
    rollout = next((r for r in rollouts if not r.filler), None)
    if rollout is None:
        return []
    return [
        {
            "key": rollout.keys[row],
            "task": rollout.tasks[row],
            "prompt": rollout.prompts[row],
            "completion": rollout.texts[row],
            "reward": float(rollout.rewards[row]),
            "rewards": rollout.reward_parts[row],
        }
        for row in range(min(rollout.rows, SAMPLES_PER_LOG))
    ]


def train(cfg: GRPOTrainConfig) -> Path:
    """Run GRPO as configured; returns `<output_dir>/final/` (a Hugging Face model directory)."""
    draws = cfg.rollout.max_rounds if cfg.rollout.dynamic_sampling else 1
    with open_session(
        cfg, kind="grpo", mode=cfg.mode, steps_per_cycle=cfg.loss.num_iterations, draws_per_cycle=draws
    ) as session:
        reference = Reference(session, cfg) if cfg.loss.beta > 0 else None
        if cfg.shared_prefix and not shares_prefix(session.model):
            LOG.info("log-probs: one row per completion (the attention kernel takes no shared-prefix mask)")
        engine = rollout_engine(session, cfg) if cfg.rollout.backend == VLLM else None
        try:
            return _loop(session, cfg, reference, engine)
        finally:
            if engine is not None:
                engine.close()


def _loop(session: Session, cfg: GRPOTrainConfig, reference, engine) -> Path:
    """Every cycle of the run: rollouts, advantages, reference passes, updates, logs, checkpoints."""
    cycles = session.cycles()
    for cycle in cycles:
        started = time.perf_counter() - session.data_wait
        pushed = 0.0
        dynamic_metrics: dict[str, float] = {}
        # one gathering of the weights (ZeRO-3) for all of the cycle's generation, or for the push
        with policy_for_generation(session.model, session.accelerator) as policy:
            if engine is not None:
                pushed = engine.push_weights(policy_weights(policy))

            def roll_cycle(cycle: list, policy=policy) -> list[Rollout]:
                return [roll(session, cfg, policy, items, session.state.step, engine) for items in cycle]

            rollouts = roll_cycle(cycle)
            if cfg.rollout.dynamic_sampling:
                rollouts, dynamic_metrics = dynamic.refill(
                    session, cfg.rollout.max_rounds, roll_cycle, rollouts, cycles
                )
        if engine is not None:
            engine.sleep()  # on GPUs: the KV cache leaves room for the update
        timings = {
            "decode": session.data_wait,
            "rollout": sum(r.timings["rollout"] for r in rollouts),
            "scoring": sum(r.timings.get("scoring", 0.0) for r in rollouts),
        }
        if engine is not None:
            timings["weight_push"] = pushed
        with timed(timings, "scoring"):
            batches, cycle_metrics = score_cycle(session, cfg, rollouts)
        with timed(timings, "reference"):
            cycle_metrics |= add_reference_logps(session, cfg, batches, reference)
        real = [b.rollout for b in batches if not b.rollout.filler]
        counts = session.reduce_sum(
            {
                "trained": sum(float(r.loss_mask.sum()) for r in real),
                "generated_per_second": sum(float(r.lengths.sum()) for r in real)
                / max(timings["rollout"], 1e-9),
            }
        )
        normalizer = session.token_normalizer(counts["trained"])
        cycle_metrics["rollout_tokens_per_second"] = counts["generated_per_second"]
        cycle_metrics |= dynamic_metrics
        samples = samples_of(rollouts)
        iterations = min(cfg.loss.num_iterations, session.total_steps - session.state.step)
        for iteration in range(iterations):
            with timed(timings, "update"):
                step_metrics = update(session, cfg, batches, normalizer)
            if reference is not None:
                reference.sync_if_due(session.state.step)  # after the step, as TRL's on_step_end callback
            seconds = time.perf_counter() - started
            step_metrics |= {f"time/{key}": value for key, value in timings.items()}
            step_metrics |= {
                "time/step": seconds,
                "tokens_per_second": counts["trained"] / max(seconds, 1e-9),
            }
            if iteration == iterations - 1:
                with timed(step_metrics, "time/validation"):
                    validated = session.validate_if_due()
                if validated is None:
                    step_metrics.pop("time/validation")
                else:
                    step_metrics |= {k: v for k, v in validated["values"].items() if v is not None}
            session.log({**cycle_metrics, **step_metrics}, samples)
            # further iterations reuse the rollout: their time is the update alone
            started, timings, samples = time.perf_counter(), {}, None
        session.end_cycle()
    return session.finish()
