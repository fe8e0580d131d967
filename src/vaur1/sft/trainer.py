"""The SFT loop on video prompts: `vaur1 train sft --config FILE.yaml [key=value ...]`.

Each step takes one global batch, builds the conversations (the same prompts and VideoSpec as
GRPO and evaluation, then the target), and trains on the assistant's tokens only: the answer and
the end-of-turn token that closes it (`build_sft_inputs`; the official scripts also trained on
the prompt). The loss is the mean over every labelled token of the global batch, whatever the
number of processes and accumulation steps.

With `val_data` and `eval_steps`, the validation loss is computed every `eval_steps`; the best
model so far is kept in `<output_dir>/best/` (step and loss in `best.json`), and with
`early_stopping_patience` the run stops after that many evaluations without improvement.

The output, `<output_dir>/final/` (and `best/`), is a Hugging Face model directory: the
`model.name_or_path` of a GRPO run, or the model of an evaluation.

Logged per step: `loss`, `tokens` (labelled tokens), `grad_norm`, `learning_rate`, `val_loss`
(when evaluated), `skipped_samples`, `time/decode`, `time/update`, `time/step` and
`tokens_per_second` (labelled tokens per second).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from vaur1.bench.tasks import Example
from vaur1.model.inputs import IGNORE_INDEX, build_sft_inputs
from vaur1.prompts import build_messages, target_text
from vaur1.sft.config import SFTTrainConfig
from vaur1.train.session import Item, Session, timed
from vaur1.video.dataset import VideoDataset, iter_batches, video_loader
from vaur1.video.frames import DecodedVideo
from vaur1.video.roots import VideoRoots

log = logging.getLogger("vaur1.train")

BEST_DIR = "best"
BEST_FILE = "best.json"


def conversation(example: Example, cfg: SFTTrainConfig) -> list[dict]:
    """The prompt GRPO and evaluation send, then the target as the assistant's answer."""
    answer = {"role": "assistant", "content": target_text(example, cfg.target_mode)}
    return [*build_messages(example, cfg.prompt_mode, cfg.prompts), answer]


def collate(processor, examples: Sequence[Example], videos: Sequence[DecodedVideo], cfg: SFTTrainConfig):
    """One batch of conversations with videos of any lengths: left-padded inputs whose `labels` mark
    the assistant's tokens only."""
    return build_sft_inputs(processor, [conversation(example, cfg) for example in examples], videos)


def token_loss(model, inputs) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy, number of labelled tokens) of a batch from `collate`.

    Only the positions from the first labelled token on get logits: the answer sits at the end of
    each row, and a video prompt's thousands of positions would otherwise cost a full-vocabulary
    row each.
    """
    labels = inputs["labels"]
    labelled = labels != IGNORE_INDEX
    first = int(labelled.int().argmax(dim=1)[labelled.any(dim=1)].min())
    keep = labels.shape[1] - first + 1
    features = {key: value for key, value in inputs.items() if key != "labels"}
    logits = model(**features, logits_to_keep=keep, use_cache=False).logits[:, :-1]
    targets = labels[:, -(keep - 1) :]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, int(labelled.sum())


def evaluate(session: Session, cfg: SFTTrainConfig, examples: list[Example], roots: VideoRoots) -> float:
    """Mean token cross-entropy of the targets of `examples`, spread over the processes."""
    accelerator = session.accelerator
    shard = examples[accelerator.process_index :: accelerator.num_processes]
    model = accelerator.unwrap_model(session.model)
    was_training = model.training
    model.eval()
    loss, tokens = 0.0, 0
    dataset = VideoDataset(shard, roots, session.decoder)
    batches = video_loader(dataset, batch_size=cfg.per_device_train_batch_size, loader=cfg.loader)
    # a forked generator: validating (the loader draws a seed) must not change the training run
    with torch.no_grad(), accelerator.autocast(), torch.random.fork_rng(devices=[]):
        for batch in iter_batches(batches, session.skips):
            inputs = collate(session.processor, [b.example for b in batch], [b.video for b in batch], cfg)
            batch_loss, batch_tokens = token_loss(model, inputs.to(accelerator.device))
            loss, tokens = loss + float(batch_loss), tokens + batch_tokens
    model.train(was_training)
    totals = session.reduce_sum({"loss": loss, "tokens": tokens})
    return totals["loss"] / max(totals["tokens"], 1.0)


def keep_best(session: Session, cfg: SFTTrainConfig, val_loss: float) -> None:
    """Export `best/` when the validation loss improved; stop when it has not for `patience` evaluations."""
    extra = session.state.extra
    step = session.state.step
    if "best_val_loss" not in extra or val_loss < extra["best_val_loss"]:
        extra.update(best_val_loss=val_loss, best_step=step, evals_since_best=0)
        session.export(BEST_DIR)
        if session.is_main:
            record = {"step": step, "val_loss": val_loss}
            (session.run_dir / BEST_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")
        return
    extra["evals_since_best"] += 1
    patience = cfg.early_stopping_patience
    if patience is not None and extra["evals_since_best"] >= patience:
        session.stop(
            f"the validation loss has not improved for {patience} evaluations "
            f"(best {extra['best_val_loss']:.4f} at step {extra['best_step']})"
        )


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
    with Session(cfg, kind="sft") as session:
        val = cfg.val_data
        val_examples = val.load() if val is not None else []
        for cycle in session.cycles():
            started = time.perf_counter() - session.data_wait
            timings = {"decode": session.data_wait}
            with timed(timings, "update"):
                metrics = step_loss(session, cfg, cycle)
            if val is not None and cfg.eval_steps and session.state.step % cfg.eval_steps == 0:
                metrics["val_loss"] = evaluate(session, cfg, val_examples, val.roots())
                keep_best(session, cfg, metrics["val_loss"])
            seconds = time.perf_counter() - started
            metrics |= {f"time/{key}": value for key, value in timings.items()}
            metrics |= {"time/step": seconds, "tokens_per_second": metrics["tokens"] / max(seconds, 1e-9)}
            session.log(metrics)
            session.end_cycle()
        if "best_step" in session.state.extra and session.is_main:
            extra = session.state.extra
            log.info(
                "best model: step %d, validation loss %.4f, in %s",
                extra["best_step"],
                extra["best_val_loss"],
                session.run_dir / BEST_DIR,
            )
        return session.finish()
