"""Batched, resumable inference: every (example, mode) of a run, predicted once, into predictions.jsonl.

    summary = run_inference(cfg, examples, run_dir)

Work items are ordered mode by mode and task by task, so that a batch holds prompts of one kind
(a think batch is not held up by direct ones, nor the other way round). Videos are decoded by
loader worker processes through the frame cache, a batch ahead of the model; each batch goes to
the generator as one call and its lines are appended as soon as it returns. Items already in
predictions.jsonl are skipped, and the model is not even loaded when nothing is left to do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.console import ProgressBar
from vaur1.eval.config import EvalConfig
from vaur1.eval.predictions import VIDEO_ERROR, PredictionStore, item_key
from vaur1.model.generators import Generation, Generator, load_generator
from vaur1.prompts import build_messages
from vaur1.video.cache import CachedDecoder
from vaur1.video.dataset import LoadedExample, Skip, SkipLog, VideoDataset, video_loader


@dataclass(frozen=True)
class WorkItem:
    example: Example
    mode: str

    @property
    def key(self) -> str:
        return item_key(self.example, self.mode)


@dataclass(frozen=True)
class InferenceSummary:
    items: int  # work items of the run
    already_done: int  # found in predictions.jsonl at the start
    predicted: int  # answered by the model in this call
    video_errors: int  # items whose video could not be read in this call
    seconds: float  # wall time of this call's batches, decoding waits included

    @property
    def items_per_second(self) -> float | None:
        done = self.predicted + self.video_errors
        return done / self.seconds if done and self.seconds > 0 else None


def work_items(examples: Sequence[Example], modes: Sequence[str]) -> list[WorkItem]:
    """Every example in every mode: mode by mode, then in the examples' (task-grouped) order."""
    return [WorkItem(example, mode) for mode in modes for example in examples]


def _record(item: WorkItem, **fields: Any) -> dict[str, Any]:
    example = item.example
    return {
        "key": item.key,
        "video": example.id,
        "task": example.task,
        "mode": item.mode,
        "split": example.split,
        "source": example.source,
        **fields,
    }


def predict_batch(
    generator: Generator, cfg: EvalConfig, items: Sequence[WorkItem], batch: Sequence[LoadedExample | Skip]
) -> list[dict[str, Any]]:
    """The prediction records of one loader batch (items[i] is batch[i]), in item order."""
    loaded = [
        (item, entry) for item, entry in zip(items, batch, strict=True) if isinstance(entry, LoadedExample)
    ]
    completions: dict[str, tuple[Generation, float]] = {}
    if loaded:
        started = time.perf_counter()
        conversations = [build_messages(item.example, item.mode, cfg.prompts) for item, _ in loaded]
        outputs = generator(conversations, [entry.video for _, entry in loaded])
        share = (time.perf_counter() - started) / len(loaded)
        completions = {item.key: (output, share) for (item, _), output in zip(loaded, outputs, strict=True)}
    records = []
    for item, entry in zip(items, batch, strict=True):
        if isinstance(entry, Skip):
            records.append(
                _record(item, output=None, status=VIDEO_ERROR, error=entry.reason, path=entry.video)
            )
            continue
        completion, seconds = completions[item.key]
        records.append(
            _record(
                item,
                output=completion.text,
                status="ok",
                seconds=round(seconds, 4),
                decode_seconds=round(entry.video.decode_seconds, 4),
                completion_tokens=completion.tokens,
                truncated=completion.truncated,
                batch_size=len(loaded),
            )
        )
    return records


def video_batches(cfg: EvalConfig, items: Sequence[WorkItem]) -> Iterator[list[LoadedExample | Skip]]:
    """The items' videos in batches of `cfg.batch_size`, decoded ahead by loader workers through the
    frame cache. Built before the model loads, so that a missing video folder fails at once and the
    workers (forked before any GPU is initialised) decode the first batches while the model loads."""
    decoder = CachedDecoder.from_config(cfg.video, cfg.cache)
    dataset = VideoDataset([item.example for item in items], cfg.data.roots(), decoder)
    return iter(video_loader(dataset, batch_size=cfg.batch_size, loader=cfg.loader))


def iter_predictions(
    generator: Generator,
    cfg: EvalConfig,
    items: Sequence[WorkItem],
    batches: Iterator[list[LoadedExample | Skip]],
    skip_log: SkipLog,
) -> Iterator[list[dict[str, Any]]]:
    """The prediction records of `items`, one list per batch of `batches` (from `video_batches`)."""
    position = 0
    for batch in batches:
        chunk = items[position : position + len(batch)]
        position += len(batch)
        for entry in batch:
            if isinstance(entry, Skip):
                skip_log.record(entry)
        yield predict_batch(generator, cfg, chunk, batch)


def run_inference(
    cfg: EvalConfig,
    examples: Sequence[Example],
    run_dir: str | Path,
    generator: Generator | None = None,
    progress: bool = True,
) -> InferenceSummary:
    """Predict every item not yet in the run's predictions.jsonl; `generator` defaults to cfg's backend."""
    items = work_items(examples, cfg.modes)
    with PredictionStore(run_dir) as store:
        pending = [item for item in items if item.key not in store.done]
        already_done = len(items) - len(pending)
        if not pending:
            return InferenceSummary(len(items), already_done, 0, 0, 0.0)
        batches = video_batches(cfg, pending)
        if generator is None:
            generator = load_generator(cfg.model, cfg.sampling, cfg.video, cfg.backend, cfg.vllm)
        predicted = errors = 0
        started = time.perf_counter()
        with ProgressBar(
            len(items), start_step=already_done, enabled=progress, description="eval", unit="prompt"
        ) as bar:
            for records in iter_predictions(generator, cfg, pending, batches, SkipLog()):
                store.append(records)
                errors += sum(1 for r in records if r["status"] == VIDEO_ERROR)
                predicted += sum(1 for r in records if r["status"] != VIDEO_ERROR)
                bar.update(already_done + predicted + errors, {"video errors": errors} if errors else None)
        return InferenceSummary(len(items), already_done, predicted, errors, time.perf_counter() - started)
