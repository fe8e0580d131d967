"""Rollouts: prompts with their videos -> G sampled completions each -> a reward for every completion.

    rollout = collect(HFGenerator(policy, processor, sampling), examples, videos, mode="think",
                      prompts=PromptConfig(), sampling=sampling, rewards=RewardConfig(), device=device)
    rollout.rewards        # (prompts * G,), prompt-major: prompt i owns rows i*G .. i*G+G-1
    rollout.inputs         # the prompts' text inputs repeated G times, the completions appended
    rollout.videos         # the prompts' video patches and grids, exactly as generation read them

Every log-prob forward pass (policy, old policy, reference) reads these: the same
`pixel_values_videos`, `video_grid_thw` and `second_per_grid_ts` that generation used, so
training sees exactly the video the samples were drawn from (`video_features` encodes each video
once and shares it among the prompt's G rows). Each completion is scored by its own example's
task rewards (`vaur1.rewards.score`), so one batch may mix QA, TAG and CLS prompts.

With `seeds`, prompt i is sampled alone (its padding stripped) from a generator seeded with
`seeds[i]`: its completions then depend on nothing but the prompt, the seed and the weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaur1.bench.tasks import Example
from vaur1.model.generate import SamplingConfig, end_of_turn_id, generate
from vaur1.model.generators import Generator
from vaur1.model.inputs import append_completions, build_inputs, repeat_inputs
from vaur1.prompts import Mode, PromptConfig, build_messages, prompt_text
from vaur1.rewards import OVERLONG, RewardConfig, overlong_penalty, score
from vaur1.rl.loss import truncated
from vaur1.video.frames import DecodedVideo

FILLER_TASK = "filler"


@dataclass
class Rollout:
    """G completions for each prompt of a micro-batch, with their rewards; rows are prompt-major."""

    inputs: Any  # BatchFeature: prompt text G times + completions (attention up to the end), no pixels
    videos: dict[str, torch.Tensor]  # pixel_values_videos and video_grid_thw of the prompts, one each
    completion_ids: torch.Tensor  # (rows, L)
    completion_mask: torch.Tensor  # (rows, L) 1 up to and including the end-of-turn token
    loss_mask: torch.Tensor  # the completion mask, with truncated rows zeroed if they are masked out
    truncated: torch.Tensor  # (rows,) bool: never ended its turn within max_completion_length
    rewards: torch.Tensor  # (rows,) float32: each row's weighted total
    reward_parts: list[dict[str, float | None]]  # each row's rewards by name (None: not applicable)
    tasks: list[str]  # each row's task
    keys: list[str]  # each row's example key
    prompts: list[str]  # each row's prompt text
    texts: list[str]  # each row's completion text
    num_generations: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds: rollout (generate), scoring (rewards)
    filler: bool = False  # a stand-in for an empty micro-batch: it trains nothing
    sampling_logps: torch.Tensor | None = None  # (rows, L) the sampler's log-probs, with vLLM rollouts
    # T-GRPO: each prompt's (ordered accuracy, shuffled accuracy, bonus applied)
    temporal: list[tuple[float, float, bool]] | None = None
    kept: torch.Tensor | None = None  # (rows,) bool, dynamic sampling: the rows the step trains
    slots: list[int] | None = None  # each prompt's slot in the step's global batch

    def drop_group(self, group: int) -> None:
        """Leave one prompt's G rows out of the step: they train nothing and count in no normalizer."""
        if self.kept is None:
            self.kept = torch.ones(self.rows, dtype=torch.bool)
            self.loss_mask = self.loss_mask.clone()  # it may be the completion mask itself
        rows = slice(group * self.num_generations, (group + 1) * self.num_generations)
        self.kept[rows] = False
        self.loss_mask[rows] = 0

    @property
    def rows(self) -> int:
        return int(self.completion_ids.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per completion, the end-of-turn token included."""
        return self.completion_mask.sum(dim=1)


def rollout_seed(seed: int, step: int, slot: int) -> int:
    """A sampling seed for one prompt from the run's seed, the step and the prompt's global slot."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1)[0])


def prompt_inputs(
    processor, examples: Sequence[Example], videos: Sequence[DecodedVideo], mode: Mode, prompts: PromptConfig
):
    """Left-padded inputs for the prompts of `examples`, each with its video."""
    return build_inputs(processor, conversations_of(examples, mode, prompts), videos)


def conversations_of(examples: Sequence[Example], mode: Mode, prompts: PromptConfig) -> list[list[dict]]:
    return [build_messages(example, mode, prompts) for example in examples]


def _assemble(
    processor, inputs, ids: torch.Tensor, mask: torch.Tensor, group: int, mask_truncated_completions: bool
) -> dict[str, Any]:
    cut = truncated(ids, end_of_turn_id(processor)).to(ids.device)
    loss_mask = mask * (~cut).unsqueeze(1).long() if mask_truncated_completions else mask
    text = {key: value for key, value in inputs.items() if key != "pixel_values_videos"}
    return {
        "inputs": append_completions(repeat_inputs(text, group), ids, mask),
        "videos": {key: inputs[key] for key in ("pixel_values_videos", "video_grid_thw")},
        "completion_ids": ids,
        "completion_mask": mask,
        "loss_mask": loss_mask,
        "truncated": cut,
        "num_generations": group,
    }


def collect(
    generator: Generator,
    examples: Sequence[Example],
    videos: Sequence[DecodedVideo],
    *,
    mode: Mode,
    prompts: PromptConfig,
    sampling: SamplingConfig,
    rewards: RewardConfig,
    device: torch.device | str = "cpu",
    seeds: Sequence[int] | None = None,
    mask_truncated_completions: bool = False,
) -> Rollout:
    """Sample `sampling.num_return_sequences` completions per example with `generator` (the policy
    through `HFGenerator`, or a vLLM engine holding its weights, which also gives its log-probs) and
    score each one; the rollout's tensors are on `device`, the trainer's."""
    processor = generator.processor
    conversations = conversations_of(examples, mode, prompts)
    inputs = build_inputs(processor, conversations, videos).to(device)
    group = sampling.num_return_sequences
    started = time.perf_counter()
    out = generator.sample(conversations, videos, sampling, seeds, inputs=inputs)
    ids, mask, texts = out.completion_ids.to(device), out.completion_mask.to(device), out.texts
    sampling_logps = None if out.logps is None else out.logps.to(device)
    generated = time.perf_counter()
    row_examples = [example for example in examples for _ in range(group)]
    scored = [score(text, example, rewards) for text, example in zip(texts, row_examples, strict=True)]
    if rewards.overlong_buffer_len:
        scored = shape_overlong(scored, mask.sum(dim=1).tolist(), sampling.max_new_tokens, rewards)
    row_prompts = [prompt_text(example, mode, prompts) for example in examples for _ in range(group)]
    return Rollout(
        **_assemble(processor, inputs, ids, mask, group, mask_truncated_completions),
        rewards=torch.tensor([total for total, _ in scored], dtype=torch.float32, device=device),
        reward_parts=[parts for _, parts in scored],
        tasks=[example.task for example in row_examples],
        keys=[example.key for example in row_examples],
        prompts=row_prompts,
        texts=texts,
        timings={"rollout": generated - started, "scoring": time.perf_counter() - generated},
        sampling_logps=sampling_logps,
    )


def shape_overlong(
    scored: list[tuple[float, dict]], lengths: list[int], max_length: int, rewards: RewardConfig
) -> list[tuple[float, dict]]:
    """Each completion's total with DAPO's overlong penalty added, the penalty logged as a part."""
    shaped = []
    for (total, parts), length in zip(scored, lengths, strict=True):
        penalty = overlong_penalty(
            int(length), max_length, rewards.overlong_buffer_len, rewards.overlong_penalty_factor
        )
        shaped.append((total + penalty, {**parts, OVERLONG: penalty}))
    return shaped


def video_features(model, rollout: Rollout, per_row: bool = True):
    """The vision tower's output for the rollout's videos, run once per prompt and shared by its G rows:
    what a forward pass over `rollout.inputs` takes as `mm_encoder_outputs={"video": ...}` (with
    `per_row=False`, each video once: what the shared-prefix pass takes).

    Encoding each video once instead of G times is the same computation, gradients included (they
    add up over the rows), for a G-th of the vision cost. `model` may be wrapped (DDP, PEFT).
    """
    while hasattr(model, "module"):  # DistributedDataParallel, DeepSpeed
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT: its LoRA layers sit inside the base model
        model = model.get_base_model()
    features = model.model.get_video_features(
        rollout.videos["pixel_values_videos"], rollout.videos["video_grid_thw"], return_dict=True
    )
    group = rollout.num_generations if per_row else 1
    features.pooler_output = tuple(video for video in features.pooler_output for _ in range(group))
    if getattr(features, "deepstack_features", None):  # Qwen3-VL: per-layer features of each video
        features.deepstack_features = [
            tuple(video for video in layer for _ in range(group)) for layer in features.deepstack_features
        ]
    return features


def filler_rollout(model, processor, inputs, sampling: SamplingConfig) -> Rollout:
    """A rollout of the filler prompt (see `vaur1.train.sampler`): sampled by the policy like any
    other, so that every process takes part in generation, but with zero rewards; the trainer gives it
    no weight."""
    group = sampling.num_return_sequences
    started = time.perf_counter()
    out = generate(model, processor, inputs, sampling)
    ids, mask, texts = out.completion_ids, out.completion_mask, out.texts
    rows = ids.shape[0]
    return Rollout(
        **_assemble(processor, inputs, ids, mask, group, False),
        rewards=torch.zeros(rows, dtype=torch.float32, device=ids.device),
        reward_parts=[{} for _ in range(rows)],
        tasks=[FILLER_TASK] * rows,
        keys=[FILLER_TASK] * rows,
        prompts=[""] * rows,
        texts=texts,
        timings={"rollout": time.perf_counter() - started},
        filler=True,
    )
