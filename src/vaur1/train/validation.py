"""Validation inside a training run: the standard evaluation harness on a validation split every
`eval_steps`, the best model kept by a named score, and early stopping by patience.

    validation:
      split: val                  # the training bench's val split (or `bench:` another one)
      eval_steps: 200             # and at the last step
      metric: mean_accuracy       # best/ is the model with the best value of this
      patience: 3                 # stop after 3 validations in a row that improved none of
      patience_metrics: [mean_accuracy, val_loss]     # (default: the metric alone)
      patience_after_reading: true                    # count only once the model reads the video

Each validation generates greedy answers in the trainer's prompt mode (the same prompts, VideoSpec
and parser as `vaur1 eval run`, on the live model, every process answering an equal share), writes
them as an evaluation run in `validation/step-<N>/` and appends a record (step, metrics, score,
val_loss) to `validation.jsonl`. SFT also reports `val_loss`, the token cross-entropy of its targets
on the validation split. A better score exports `best/` with `best.json`.

Why patience may look at more than one signal, and wait for reading: a tiny model gives the same
answer to every clip for hundreds of steps before it reads the video, and such constant answers
score well (a constant interval has a TAG mIoU of ~51 on SynthVAU), so a score alone can stop
training before it has learnt anything while its loss still falls; and a model whose CLS accuracy
has not beaten the best constant answer beyond chance (`vaur1.eval.baselines.reading_level`) has
not read the video yet, so its stalled validations are not counted against it.

Validation runs on every process in lockstep and draws nothing from the training run's random
generators, so a run with validation trains exactly as one without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError
from vaur1.layout import TrainRun
from vaur1.train.config import SessionConfig, ValidationConfig
from vaur1.vocab import (
    CLS,
    MULTICLASS_ACCURACY,
    SCORED_TASKS,
    VAL_LOSS,
    higher_is_better,
    score_metrics,
    score_value,
    task_metrics,
)

log = logging.getLogger("vaur1.train")

RECORDS_KEY = "validation"  # TrainerState.extra: every validation record so far
BEST_KEY = "best"  # TrainerState.extra: the best record


def improved(name: str, value: float | None, best: float | None) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value > best if higher_is_better(name) else value < best


def should_stop(records: Sequence[dict[str, Any]], cfg: ValidationConfig, reading: float | None) -> bool:
    """True once the last `patience` validations improved none of the watched values on the best
    before them, counting only from the first validation that read the video when `reading` is set."""
    patience = cfg.patience
    if patience is None or len(records) <= patience:
        return False
    if reading is not None:
        first = first_reading(records, reading)
        if first is None or len(records) - 1 - first < patience:
            return False
    before, recent = records[:-patience], records[-patience:]
    for name in cfg.watched:
        best = None
        for record in before:
            if improved(name, record["values"].get(name), best):
                best = record["values"][name]
        if any(improved(name, record["values"].get(name), best) for record in recent):
            return False
    return True


def first_reading(records: Sequence[dict[str, Any]], level: float) -> int | None:
    """The index of the first validation whose CLS accuracy reached `level`, if any."""
    return next(
        (
            i
            for i, r in enumerate(records)
            if (r["metrics"].get(CLS) or {}).get(MULTICLASS_ACCURACY, -1) >= level
        ),
        None,
    )


@dataclass
class ValidationCallbacks:
    """What a validation needs from the run it validates, given as functions so that the validator
    holds no session: the live model, exporting best/, stopping the run, and SFT's target loss."""

    model: Callable[[], tuple[Any, Any]]  # the (wrapped) training model and its processor, now
    export_best: Callable[[], Any]  # export the current model as best/ (every process calls it)
    stop: Callable[[str], None]  # end the run after this cycle, for the reason given
    loss: Callable[[list[Example]], float] | None = None  # the SFT targets' loss on examples


class Validator:
    """Runs validations for a training run and keeps the best model; every process calls it together.

    `training` is the run's config (its data, VideoSpec, prompts and seed), `extra` the trainer
    state's dict that holds the records and the best one (saved in checkpoints, restored on resume).
    """

    def __init__(
        self,
        cfg: ValidationConfig,
        training: SessionConfig,
        kind: str,
        mode: str,
        run: TrainRun,
        accelerator: Any,
        extra: dict[str, Any],
        callbacks: ValidationCallbacks,
    ) -> None:
        from vaur1.eval.baselines import constant_class_accuracy, reading_level

        self.cfg = cfg
        self.training = training
        self.mode = cfg.mode or mode
        self.run_dir = run
        self.accelerator = accelerator
        self.extra = extra
        self.callbacks = callbacks
        self.is_main = accelerator.is_main_process
        self.data = cfg.data(training.data)
        self.examples = self.data.load()
        if not self.examples:
            raise ConfigError(f"validation: no examples in {self.data.bench} ({self.data.split})")
        names = [cfg.metric, *cfg.patience_metrics]
        if VAL_LOSS in names and callbacks.loss is None:
            raise ConfigError(f"validation: {VAL_LOSS} is the loss of SFT targets; a {kind} run has none")
        self.generating = any(name != VAL_LOSS for name in names)
        self.scored = [e for e in self.examples if e.task in SCORED_TASKS]
        for name in names:
            if name == VAL_LOSS:
                continue
            missing = {m.split(".")[0] for m in score_metrics(name)} - {e.task for e in self.scored}
            if missing:
                raise ConfigError(
                    f"validation.metric {name}: no {', '.join(sorted(missing))} examples to score"
                )
        self.reading: float | None = None
        if cfg.patience_after_reading:
            cls = [e for e in self.examples if e.task == CLS]
            if not cls:
                raise ConfigError(
                    "validation.patience_after_reading needs CLS examples in the validation split"
                )
            self.constant = constant_class_accuracy(cls)
            self.reading = reading_level(self.constant, len(cls))

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.extra.setdefault(RECORDS_KEY, [])

    @property
    def best(self) -> dict[str, Any] | None:
        return self.extra.get(BEST_KEY)

    def due(self, before: int, after: int, total: int) -> bool:
        """Whether the optimizer steps from `before` to `after` crossed a multiple of eval_steps or the end."""
        every = self.cfg.eval_steps or 0
        return after // every > before // every or (after >= total > before)

    def run(self, step: int) -> dict[str, Any]:
        """Validate the current model at `step`; record it, keep it if best, and stop the run when
        patience ends."""
        device = self.accelerator.device
        devices = [device] if device.type == "cuda" else []
        loss = self.callbacks.loss
        # validation must not move the training run's generators (the loaders and greedy decoding draw)
        with torch.random.fork_rng(devices=devices):
            metrics = self._generate(step) if self.generating else {}
            val_loss = loss(self.examples) if loss is not None else None
        values = {name: score_value(name, metrics) for name in self._score_names()}
        if val_loss is not None:
            values[VAL_LOSS] = val_loss
        record = {"step": step, "values": values, "metrics": metrics, "score": values.get(self.cfg.metric)}
        if val_loss is not None:
            record[VAL_LOSS] = val_loss
        self.records.append(record)
        if self.is_main:
            from vaur1.files import jsonl_line

            with self.run_dir.validation.open("ab") as handle:
                handle.write(jsonl_line(record))
        self._keep_if_best(record)
        if should_stop(self.records, self.cfg, self.reading):
            best = self.best or {}
            self.callbacks.stop(
                f"no better {' or '.join(self.cfg.watched)} in {self.cfg.patience} validations "
                f"(best {self.cfg.metric} {best.get('score')} at step {best.get('step')})"
            )
        return record

    def _score_names(self) -> list[str]:
        return [name for name in dict.fromkeys([self.cfg.metric, *self.cfg.watched]) if name != VAL_LOSS]

    def _keep_if_best(self, record: dict[str, Any]) -> None:
        best = self.best
        if not improved(self.cfg.metric, record["score"], None if best is None else best["score"]):
            return
        self.extra[BEST_KEY] = {"step": record["step"], "metric": self.cfg.metric, "score": record["score"]}
        self.callbacks.export_best()
        if self.is_main:
            from vaur1.files import write_json

            write_json(self.run_dir.best_record, {**self.extra[BEST_KEY], "values": record["values"]})

    def _generate(self, step: int) -> dict[str, dict[str, Any]]:
        """The harness's task blocks ({task: block}) of greedy answers by the current model."""
        from vaur1.config import load_config
        from vaur1.eval.config import EVAL_DEFAULTS, EvalConfig
        from vaur1.eval.infer import iter_predictions, video_batches, work_items
        from vaur1.eval.predictions import PredictionStore
        from vaur1.eval.run import score_run
        from vaur1.model.generators import HFGenerator
        from vaur1.runinfo import write_run_metadata
        from vaur1.train.distributed import broadcast, even_shards, gather, policy_for_generation
        from vaur1.video.dataset import SkipLog

        training = self.training
        run = self.run_dir.validation_run(step)
        tasks = [task for task in self.data.tasks if task in SCORED_TASKS]
        eval_cfg = load_config(
            EvalConfig,
            defaults=EVAL_DEFAULTS,
            flags={
                "model.name_or_path": str(self.run_dir.root),
                "data": {**_plain(self.data), "tasks": tasks},
                "video": _plain(training.video),
                "cache": _plain(training.cache),
                "loader": _plain(training.loader),
                "prompts": _plain(training.prompts),
                "modes": [self.mode],
                "sampling.max_new_tokens": self.cfg.max_new_tokens,
                "batch_size": self.cfg.batch_size,
                "offline_scorer": False,
                "resamples": 1000,
                "bootstrap_seed": training.run.seed,
                "out": str(run.root),
            },
        )
        accelerator = self.accelerator
        items = work_items(self.scored, [self.mode])
        shard, padding = even_shards(items, accelerator.process_index, accelerator.num_processes)
        records: list[dict[str, Any]] = []
        model, processor = self.callbacks.model()
        with policy_for_generation(model, accelerator) as policy:
            generator = HFGenerator(policy, processor, eval_cfg.sampling)
            batches = video_batches(eval_cfg, shard)
            for batch in iter_predictions(generator, eval_cfg, shard, batches, SkipLog()):
                records.extend(batch)
        records = gather(records[: len(records) - padding])
        metrics = None
        if self.is_main:
            write_run_metadata(run.root, eval_cfg, [])
            with PredictionStore(run.root) as store:
                store.append(records)
            scored = score_run(eval_cfg, self.scored, run.root)
            # the headline values only: every record is kept in the trainer state and validation.jsonl
            metrics = {
                task: {m.key: scored["tasks"][task][self.mode][m.key] for m in task_metrics(task)}
                for task in tasks
            }
        return broadcast(metrics, accelerator)


def _plain(obj: Any) -> Any:
    from vaur1.config import to_dict

    return to_dict(obj)
