"""The SFT loop on video prompts: `vaur1 train sft --config FILE.yaml [key=value ...]`.

Each step takes one global batch, builds the conversations (the same prompts and VideoSpec as
GRPO and evaluation, then the target), and trains on the assistant's tokens only: the answer and
the end-of-turn token that closes it (`build_sft_inputs`; the official scripts also trained on
the prompt). The loss is the mean over every labelled token of the global batch, whatever the
number of processes and accumulation steps.

With a `validation` section the session validates every `validation.eval_steps` (see
`vaur1.train.validation`): greedy answers scored by the evaluation harness and, for SFT, `val_loss`,
the token cross-entropy of the targets on the validation split; the best model by
`validation.metric` is kept in `<output_dir>/best/`, and `validation.patience` stops the run early.

The output, `<output_dir>/final/` (and `best/`), is a Hugging Face model directory: the
`model.name_or_path` of a GRPO run, or the model of an evaluation.

Logged per step: `loss`, `tokens` (labelled tokens), `grad_norm`, `learning_rate`, `val_loss` and
the validation values (when validated), `skipped_samples`, `time/decode`, `time/update`,
`time/step` and `tokens_per_second` (labelled tokens per second).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from vaur1.bench.tasks import Example
from vaur1.model.inputs import IGNORE_INDEX, build_sft_inputs
from vaur1.model.logprobs import target_logprobs
from vaur1.prompts import build_messages, target_text
from vaur1.sft.config import SFTTrainConfig
from vaur1.train.build import open_session
from vaur1.train.distributed import even_shards
from vaur1.train.sampler import Item
from vaur1.train.session import Session, timed
from vaur1.video.dataset import LoadedExample, VideoDataset, video_loader
from vaur1.video.frames import DecodedVideo


def conversation(example: Example, cfg: SFTTrainConfig) -> list[dict]:
    """The prompt GRPO and evaluation send, then the target as the assistant's answer."""
    answer = {"role": "assistant", "content": target_text(example, cfg.target_mode)}
    return [*build_messages(example, cfg.prompt_mode, cfg.prompts), answer]


def collate(processor, examples: Sequence[Example], videos: Sequence[DecodedVideo], cfg: SFTTrainConfig):
    """One batch of conversations with videos of any lengths: left-padded inputs whose `labels` mark
    the assistant's tokens only."""
    return build_sft_inputs(processor, [conversation(example, cfg) for example in examples], videos)


def token_loss(model, inputs) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy in fp32, number of labelled tokens) of a batch from `collate`.

    Only the positions from the first labelled token on reach the output layer: the answer sits at
    the end of each row, and a video prompt's thousands of positions would otherwise cost a
    full-vocabulary row each. The output layer computes the targets' log-probs in fp32 without
    materialising the logits (`vaur1.model.logprobs`).
    """
    labels = inputs["labels"]
    labelled = labels != IGNORE_INDEX
    first = int(labelled.int().argmax(dim=1)[labelled.any(dim=1)].min())
    keep = labels.shape[1] - first + 1
    features = {key: value for key, value in inputs.items() if key != "labels"}
    with target_logprobs(model, labels[:, -(keep - 1) :], ignore_index=IGNORE_INDEX) as result:
        model(**features, logits_to_keep=keep, use_cache=False)
    return -result.logps.sum(), int(labelled.sum())


def validation_loss(session: Session, examples: list[Example]) -> float:
    """Mean token cross-entropy of the targets of `examples`, every process taking an equal share."""
    cfg: SFTTrainConfig = session.cfg  # type: ignore[assignment]
    accelerator = session.accelerator
    shard, padding = even_shards(examples, accelerator.process_index, accelerator.num_processes)
    weights = [1.0] * (len(shard) - padding) + [0.0] * padding  # padding runs, and counts for nothing
    model = accelerator.unwrap_model(session.model)
    was_training = model.training
    model.eval()
    loss, tokens = 0.0, 0.0
    dataset = VideoDataset(shard, cfg.data.roots(), session.decoder)
    batches = video_loader(dataset, batch_size=cfg.per_device_train_batch_size, loader=cfg.loader)
    position = 0
    with torch.no_grad(), accelerator.autocast():
        for batch in batches:
            batch_weights = weights[position : position + len(batch)]
            position += len(batch)
            loaded = [
                (item, w)
                for item, w in zip(batch, batch_weights, strict=True)
                if isinstance(item, LoadedExample)
            ]
            if not loaded:
                model(**session.filler_inputs(), logits_to_keep=1, use_cache=False)
                continue
            for item, weight in loaded:
                inputs = collate(session.processor, [item.example], [item.video], cfg)
                item_loss, item_tokens = token_loss(model, inputs.to(accelerator.device))
                loss += weight * float(item_loss)
                tokens += weight * item_tokens
    model.train(was_training)
    totals = session.reduce_sum({"loss": loss, "tokens": tokens})
    return totals["loss"] / max(totals["tokens"], 1.0)


def step_loss(session: Session, cfg: SFTTrainConfig, cycle: list[list[Item]]) -> dict[str, float]:
    """Forward and backward over this process's micro-batches, then the optimizer step."""
    accelerator = session.accelerator
    batches = [
        collate(session.processor, [i.example for i in items], [i.video for i in items], cfg).to(
            accelerator.device
        )
        if items
        else None
        for items in cycle
    ]
    local_tokens = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches if b is not None)
    tokens = session.reduce_sum({"tokens": local_tokens})["tokens"]
    normalizer = session.token_normalizer(tokens)
    objective = torch.zeros((), device=accelerator.device)
    summed = 0.0
    for inputs in batches:
        with accelerator.accumulate(session.model):
            if inputs is None:
                # every process takes part in each micro-step; an empty one adds nothing
                filler = session.filler_inputs()
                loss = session.model(**filler, logits_to_keep=1, use_cache=False).logits.sum() * 0.0
            else:
                batch_loss, _ = token_loss(session.model, inputs)
                summed += float(batch_loss.detach())
                loss = batch_loss / normalizer
            accelerator.backward(loss)
        objective += loss.detach() / cfg.gradient_accumulation_steps
    _, grad_norm = session.optimizer_step(objective)
    metrics = {"loss": session.reduce_sum({"loss": summed})["loss"] / max(tokens, 1.0), "tokens": tokens}
    if grad_norm is not None:
        metrics["grad_norm"] = grad_norm
    return metrics


def train(cfg: SFTTrainConfig) -> Path:
    """Run SFT as configured; returns `<output_dir>/final/` (a Hugging Face model directory)."""
    with open_session(cfg, kind="sft", mode=cfg.prompt_mode, validation_loss=validation_loss) as session:
        for cycle in session.cycles():
            started = time.perf_counter() - session.data_wait
            timings = {"decode": session.data_wait}
            with timed(timings, "update"):
                metrics = step_loss(session, cfg, cycle)
            seconds = time.perf_counter() - started
            metrics |= {f"time/{key}": value for key, value in timings.items()}
            metrics |= {"time/step": seconds, "tokens_per_second": metrics["tokens"] / max(seconds, 1e-9)}
            with timed(metrics, "time/validation"):
                validated = session.validate_if_due()
            if validated is not None:
                metrics |= {k: v for k, v in validated["values"].items() if v is not None}
            else:
                metrics.pop("time/validation")
            session.log(metrics)
            session.end_cycle()
        return session.finish()
