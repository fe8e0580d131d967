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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from vaur1.bench.tasks import Example
from vaur1.data import DataConfig
from vaur1.errors import ConfigError
from vaur1.vocab import (
    SCORED_TASKS,
    VAL_LOSS,
    check_mode,
    higher_is_better,
    score_metrics,
    score_value,
    task_metrics,
)

if TYPE_CHECKING:
    from vaur1.train.session import Session

log = logging.getLogger("vaur1.train")

LossFn = Callable[["Session", list[Example]], float]
RECORDS_KEY = "validation"  # TrainerState.extra: every validation record so far
BEST_KEY = "best"  # TrainerState.extra: the best record


@dataclass
class ValidationConfig:
    """Periodic validation with the evaluation harness; off while `split` is unset."""

    split: str | None = None  # the split to validate on (e.g. val); null: no validation
    bench: str | None = None  # the benchmark that holds it; null: the training bench
    tasks: list[str] | None = None  # null: the training tasks
    max_per_task: int | None = None  # the first N examples of each task (quick runs)
    eval_steps: int | None = None  # validate every N optimizer steps, and at the last step
    # what best/ is chosen by: a score (mean_accuracy), a metric (tag.miou) or val_loss (SFT only)
    metric: str = "mean_accuracy"
    patience: int | None = None  # stop after N validations in a row that improved no patience metric
    patience_metrics: list[str] = field(default_factory=list)  # what patience watches; empty: the metric
    # patience counts only from the first validation whose CLS accuracy beats the best constant
    # answer beyond chance (a model that has not read the video yet is not stopped)
    patience_after_reading: bool = False
    mode: str | None = None  # the prompt mode of the answers; null: the trainer's own
    max_new_tokens: int = 1024  # per answer (direct answers need tens, think mode hundreds)
    batch_size: int = 8  # prompts per generate call

    @property
    def enabled(self) -> bool:
        return self.split is not None

    @property
    def watched(self) -> list[str]:
        return self.patience_metrics or [self.metric]

    def validate(self) -> None:
        if not self.enabled:
            return
        if self.eval_steps is None or self.eval_steps < 1:
            raise ConfigError(
                f"validation.eval_steps: give a number of steps of at least 1, got {self.eval_steps}"
            )
        for name in [self.metric, *self.patience_metrics]:
            if name != VAL_LOSS:
                score_metrics(name)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"validation.patience must be at least 1, got {self.patience}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("validation.max_new_tokens and validation.batch_size must be at least 1")
        if self.mode is not None:
            check_mode(self.mode, "validation.mode")

    def data(self, training: DataConfig) -> DataConfig:
        """The validation examples' data config: the training data's bench and video folders by default."""
        return replace(
            training,
            bench=self.bench or training.bench,
            split=self.split or "",
            tasks=list(self.tasks or training.tasks),
            max_per_task=self.max_per_task,
        )


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
            if (r["metrics"].get("cls") or {}).get("multiclass_accuracy", -1) >= level
        ),
        None,
    )


class Validator:
    """Runs validations for a session and keeps the best model; every process calls it together."""

    def __init__(self, session: Session, cfg: ValidationConfig, mode: str, loss: LossFn | None) -> None:
        from vaur1.eval.baselines import constant_class_accuracy, reading_level

        self.session = session
        self.cfg = cfg
        self.mode = cfg.mode or mode
        self.loss = loss
        self.data = cfg.data(session.cfg.data)
        self.examples = self.data.load()
        if not self.examples:
            raise ConfigError(f"validation: no examples in {self.data.bench} ({self.data.split})")
        names = [cfg.metric, *cfg.patience_metrics]
        if VAL_LOSS in names and loss is None:
            raise ConfigError(
                f"validation: {VAL_LOSS} is the loss of SFT targets; a {session.kind} run has none"
            )
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
            cls = [e for e in self.examples if e.task == "cls"]
            if not cls:
                raise ConfigError(
                    "validation.patience_after_reading needs CLS examples in the validation split"
                )
            self.constant = constant_class_accuracy(cls)
            self.reading = reading_level(self.constant, len(cls))

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.session.state.extra.setdefault(RECORDS_KEY, [])

    @property
    def best(self) -> dict[str, Any] | None:
        return self.session.state.extra.get(BEST_KEY)

    def due(self, before: int, after: int, total: int) -> bool:
        """Whether the optimizer steps from `before` to `after` crossed a multiple of eval_steps or the end."""
        every = self.cfg.eval_steps or 0
        return after // every > before // every or (after >= total > before)

    def run(self) -> dict[str, Any]:
        """Validate the current model; record it, keep it if best, and stop the run when patience ends."""
        session = self.session
        step = session.state.step
        devices = [session.accelerator.device] if session.accelerator.device.type == "cuda" else []
        # validation must not move the training run's generators (the loaders and greedy decoding draw)
        with torch.random.fork_rng(devices=devices):
            metrics = self._generate(step) if self.generating else {}
            val_loss = self.loss(session, self.examples) if self.loss is not None else None
        values = {name: score_value(name, metrics) for name in self._score_names()}
        if val_loss is not None:
            values[VAL_LOSS] = val_loss
        record = {"step": step, "values": values, "metrics": metrics, "score": values.get(self.cfg.metric)}
        if val_loss is not None:
            record[VAL_LOSS] = val_loss
        self.records.append(record)
        if session.is_main:
            from vaur1.files import jsonl_line

            with session.run.validation.open("ab") as handle:
                handle.write(jsonl_line(record))
        self._keep_if_best(record)
        if should_stop(self.records, self.cfg, self.reading):
            best = self.best or {}
            session.stop(
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
        self.session.state.extra[BEST_KEY] = {
            "step": record["step"],
            "metric": self.cfg.metric,
            "score": record["score"],
        }
        self.session.export(self.session.run.best)
        if self.session.is_main:
            from vaur1.files import write_json

            write_json(
                self.session.run.best_record,
                {**self.session.state.extra[BEST_KEY], "values": record["values"]},
            )

    def _generate(self, step: int) -> dict[str, dict[str, Any]]:
        """The harness's task blocks ({task: block}) of greedy answers by the current model."""
        from vaur1.config import load_config
        from vaur1.eval.config import EVAL_DEFAULTS, EvalConfig
        from vaur1.eval.generators import HFGenerator
        from vaur1.eval.infer import iter_predictions, video_batches, work_items
        from vaur1.eval.predictions import PredictionStore
        from vaur1.eval.run import score_run
        from vaur1.runinfo import write_run_metadata
        from vaur1.train.distributed import broadcast, even_shards, gather, policy_for_generation
        from vaur1.video.dataset import SkipLog

        session, cfg = self.session, self.session.cfg
        run = session.run.validation_run(step)
        tasks = [task for task in self.data.tasks if task in SCORED_TASKS]
        eval_cfg = load_config(
            EvalConfig,
            defaults=EVAL_DEFAULTS,
            flags={
                "model.name_or_path": str(session.run.root),
                "data": {**self._data_dict(), "tasks": tasks},
                "video": _plain(cfg.video),
                "cache": _plain(cfg.cache),
                "loader": _plain(cfg.loader),
                "prompts": _plain(cfg.prompts),
                "modes": [self.mode],
                "sampling.max_new_tokens": self.cfg.max_new_tokens,
                "batch_size": self.cfg.batch_size,
                "offline_scorer": False,
                "resamples": 1000,
                "bootstrap_seed": cfg.run.seed,
                "out": str(run.root),
            },
        )
        accelerator = session.accelerator
        items = work_items(self.scored, [self.mode])
        shard, padding = even_shards(items, accelerator.process_index, accelerator.num_processes)
        records: list[dict[str, Any]] = []
        with policy_for_generation(session.model, accelerator) as model:
            generator = HFGenerator(model, session.processor, eval_cfg.sampling)
            batches = video_batches(eval_cfg, shard)
            for batch in iter_predictions(generator, eval_cfg, shard, batches, SkipLog()):
                records.extend(batch)
        records = gather(records[: len(records) - padding])
        metrics = None
        if session.is_main:
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

    def _data_dict(self) -> dict[str, Any]:
        return _plain(self.data)


def _plain(obj: Any) -> Any:
    from vaur1.config import to_dict

    return to_dict(obj)
