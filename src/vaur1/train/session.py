"""A training session: what the GRPO and SFT loops share around their own step, composed of parts.

    with Session(cfg, kind="grpo", steps_per_cycle=1) as session:
        for cycle in session.cycles():           # one global batch: this process's micro-batches
            for items in cycle:                  # `Item`s (example + decoded video); may be empty
                with session.accelerator.accumulate(session.model):
                    session.accelerator.backward(loss_of(items))
            session.optimizer_step(loss)          # clip, NaN guard, update, schedule: step += 1
            session.log({...})
            session.validate_if_due()             # every validation.eval_steps: harness, best/, patience
            session.end_cycle()                   # a checkpoint every `run.save_steps`
        session.finish()                          # <output_dir>/final/: an HF model dir + processor

The parts: the `Accelerator` and the cross-process helpers (`vaur1.train.distributed`), the model
from `load_model`, the optimizer and schedule (`vaur1.train.common`), the data spread over processes
and micro-batches (`vaur1.train.sampler`), checkpoints (`vaur1.train.checkpoint`), logs
(`vaur1.train.logging`) and validation with best-model keeping and early stopping
(`vaur1.train.validation`). Every file the run writes is named by `vaur1.layout.TrainRun`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from vaur1.bench import split_files
from vaur1.config import to_dict
from vaur1.console import ProgressBar, setup_console_logging
from vaur1.errors import ConfigError, VaurError
from vaur1.files import jsonl_line, replace_dir, write_text
from vaur1.layout import TrainRun
from vaur1.model.load import hide_transformers_progress, load_model
from vaur1.runinfo import write_run_metadata
from vaur1.runlock import claim_run
from vaur1.train import distributed, precision
from vaur1.train.card import write_model_card
from vaur1.train.checkpoint import (
    Checkpoint,
    TrainerState,
    check_resumed_config,
    export_hf_model,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from vaur1.train.common import BadStepGuard, TrainingAborted, build_optimizer, build_scheduler, set_seed
from vaur1.train.config import SessionConfig
from vaur1.train.data_order import DataOrder
from vaur1.train.logging import MemoryMeter, MetricsLogger
from vaur1.train.sampler import Item, StepData, filler_inputs
from vaur1.train.validation import LossFn, Validator
from vaur1.video.cache import CachedDecoder
from vaur1.video.dataset import Skip, SkipLog, VideoDataset
from vaur1.video.roots import check_videos
from vaur1.video.spec import write_model_spec

log = logging.getLogger("vaur1.train")

STOP_KEY = "stopped"  # TrainerState.extra: why the loop ended before its last step
TRAINED_KEY = "trained_samples"  # TrainerState.extra: samples this process trained on, resumes included


class Session:
    """The accelerator, model, optimizer, schedule, data, logs, checkpoints and validation of one run.

    `steps_per_cycle` optimizer steps use each global batch (GRPO's `num_iterations`; 1 for SFT).
    `mode` is the prompt mode the trainer trains (validation answers in it); `validation_loss` is
    the SFT targets' loss on validation examples, where the trainer has one.
    """

    def __init__(
        self,
        cfg: SessionConfig,
        kind: str,
        mode: str,
        steps_per_cycle: int = 1,
        validation_loss: LossFn | None = None,
        draws_per_cycle: int = 1,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.draws_per_cycle = draws_per_cycle  # global batches a cycle may draw (dynamic sampling's rounds)
        self.kind = kind
        self.steps_per_cycle = steps_per_cycle
        self.run = TrainRun(cfg.run.output_dir)
        self.accelerator = accelerator = distributed.make_accelerator(
            cfg.gradient_accumulation_steps, cfg.bf16
        )
        self.is_main = accelerator.is_main_process
        setup_console_logging(self.is_main)
        # the output folder is this run's for its whole life, held by the main process; every process
        # stops with the same one-line error when another job holds it or it is not a training folder
        self.claim = None
        refused = None
        if self.is_main:
            try:
                self.claim = claim_run(self.run.root, "train")
            except VaurError as err:
                refused = str(err)
        refused = distributed.broadcast(refused, accelerator)
        if refused is not None:
            raise VaurError(refused)
        try:
            self._start(cfg, mode, steps_per_cycle, validation_loss)
        except BaseException:
            self.release_claim()  # a run that could not start leaves the folder free for the next try
            raise

    def release_claim(self) -> None:
        if self.claim is not None:
            self.claim.release()

    def _start(
        self, cfg: SessionConfig, mode: str, steps_per_cycle: int, validation_loss: LossFn | None
    ) -> None:
        """Everything a run needs before its first step: data, model and engine, optimizer, state."""
        accelerator = self.accelerator
        # transformers' "Loading weights" / "Writing model shards" bars would break into the training bar
        hide_transformers_progress()
        set_seed(cfg.run.seed)

        examples = [
            example for example in cfg.data.load() for _ in range(cfg.task_repeats.get(example.task, 1))
        ]
        if not examples:
            raise ConfigError(
                f"{cfg.data.bench} ({cfg.data.split}): no examples for tasks {', '.join(cfg.data.tasks)}"
            )
        # every video resolved before anything starts: wrong roots stop here, a few missing files are
        # left out of the data order and listed in skipped.jsonl
        examples, missing = check_videos(examples, cfg.data.roots(), cfg.data.max_missing_videos)
        # checksums are read once, by the main process; every process resumes from its choice
        resume_from = distributed.broadcast(
            resolve_resume(cfg.run.resume, self.run.root) if accelerator.is_main_process else None,
            accelerator,
        )
        if resume_from is not None:
            check_resumed_config(self.run, cfg)
        steps_per_epoch = math.ceil(
            len(examples)
            / (cfg.per_device_train_batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps)
        )
        self.total_steps = cfg.run.max_steps or cfg.run.num_epochs * steps_per_epoch * steps_per_cycle

        model_cfg = replace(
            cfg.model, gradient_checkpointing=cfg.gradient_checkpointing, device=str(accelerator.device)
        )
        self.memory = MemoryMeter(accelerator.device)
        model, self.processor = load_model(model_cfg)
        self._check_video_spec()
        self.engine = precision.engine_of(accelerator)
        master_weights = self.engine == "deepspeed" and precision.deepspeed_mixed_precision(accelerator)
        # the dtype exports are written in: the checkpoint's own, whatever the optimizer holds
        self.export_dtype = precision.hold_trainable_in_fp32(model, cfg.bf16, self.engine, master_weights)
        if self.engine == "deepspeed":
            distributed.configure_deepspeed(
                accelerator, cfg.per_device_train_batch_size, cfg.optim.max_grad_norm
            )
        elif self.engine == "fsdp":
            distributed.configure_fsdp(accelerator, model)
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, num_training_steps=self.total_steps)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        if self.engine == "fsdp":
            distributed.fsdp_make_root(self.model, self.filler_inputs())
        self.model.train()

        self.decoder = CachedDecoder.from_config(cfg.video, cfg.cache)
        self.data = StepData(
            examples=examples,
            videos=VideoDataset(examples, cfg.data.roots(), self.decoder),
            loader=cfg.loader,
            rank=accelerator.process_index,
            world=accelerator.num_processes,
            per_device=cfg.per_device_train_batch_size,
            accumulation=cfg.gradient_accumulation_steps,
            seed=cfg.run.seed,
            shuffle_options=cfg.shuffle_options,
        )
        self.state = TrainerState(
            data=DataOrder(len(examples), seed=cfg.run.seed), guard=BadStepGuard(cfg.run.max_bad_steps)
        )
        self.validator = (
            Validator(self, cfg.validation, mode, validation_loss) if cfg.validation.enabled else None
        )
        accelerator.wait_for_everyone()
        if accelerator.num_processes > 1:
            # the model is built alike everywhere; from here each process draws its own random stream
            # (sampling noise, dropout), or every process would sample its completions with the same noise
            set_seed(cfg.run.seed + accelerator.process_index)
        # weights kept in every checkpoint beside the accelerate state (name -> a function returning them);
        # their owners, built after this session, read them back from `resumed_from`
        self.extra_states: dict[str, Any] = {}
        self.resumed_from = Checkpoint(Path(resume_from)) if resume_from is not None else None
        if resume_from is not None:
            load_checkpoint(accelerator, resume_from, self.state)
            log.info("resumed from %s at step %d", resume_from, self.state.step)
        if self.is_main:
            # written once the resume checks and the load passed: config.yaml is what this run uses
            write_run_metadata(self.run.root, cfg, split_files(cfg.data.bench, [cfg.data.split]))
            if missing and resume_from is None:
                roots = cfg.data.roots()
                lines = [Skip(e.key, str(roots.resolve(e)), "no such video file") for e in missing]
                with self.run.skipped.open("ab") as handle:
                    handle.write(b"".join(jsonl_line(asdict(skip)) for skip in lines))
                log.warning(
                    "%d samples have no video file: left out (listed in %s)", len(missing), self.run.skipped
                )
            write_text(self.run.video_spec, cfg.video.describe() + "\n")
            log.info(
                "%s: %d examples, %d steps of %d prompts, %s on %d process(es) (%s), video %s",
                self.kind,
                len(examples),
                self.total_steps,
                self.data.global_batch,
                self.engine,
                accelerator.num_processes,
                "bf16 autocast" if cfg.bf16 else "fp32",
                cfg.video.describe(),
            )
        accelerator.wait_for_everyone()
        self._last_saved = self.state.step
        self._cycle_start = self.state.step

        self.skips = SkipLog()  # every process's skips reach skipped.jsonl through the main one (`log`)
        self._skips_logged = 0
        self.metrics = MetricsLogger(
            self.run,
            report_to=cfg.run.report_to,
            config=to_dict(cfg),
            enabled=self.is_main,
            start_step=self.state.step,
        )
        self.progress = ProgressBar(
            self.total_steps, start_step=self.state.step, enabled=self.is_main, description=self.kind
        )
        self._started = time.perf_counter()
        self.data_wait = 0.0  # seconds the last cycle waited for its frames
        self._step_learning_rate = float(self.scheduler.get_last_lr()[0])

    # ---- data ---------------------------------------------------------------------------------

    def _check_video_spec(self) -> None:
        from vaur1.model.inputs import processor_factor, temporal_patch

        factor, frames = processor_factor(self.processor), temporal_patch(self.processor)
        if (self.cfg.video.factor, self.cfg.video.temporal_patch) != (factor, frames):
            raise ConfigError(
                f"video.factor {self.cfg.video.factor} and video.temporal_patch {self.cfg.video.temporal_patch} "
                f"do not match the model's processor ({factor} and {frames}); set them to match"
            )

    @property
    def global_batch(self) -> int:
        return self.data.global_batch

    def cycles(self) -> Iterator[list[list[Item]]]:
        """Global batches until the last step (or a stop): this process's micro-batches of each."""
        remaining = math.ceil((self.total_steps - self.state.step) / self.steps_per_cycle)
        if remaining <= 0 or self.stopped:
            return
        batches = self.data.cycles(self.state.data, remaining * self.draws_per_cycle, self.skips)
        while self.state.step < self.total_steps and not self.stopped:
            waited = time.perf_counter()
            cycle = next(batches)
            self.data_wait = time.perf_counter() - waited
            self.state.extra[TRAINED_KEY] = self.state.extra.get(TRAINED_KEY, 0) + sum(map(len, cycle))
            self._cycle_start = self.state.step
            yield cycle

    def filler_inputs(self):
        """Model inputs for an empty micro-batch (see `vaur1.train.sampler`)."""
        return filler_inputs(self.processor, self.accelerator.device)

    # ---- cross-process arithmetic --------------------------------------------------------------

    def reduce_sum(self, values: dict[str, float]) -> dict[str, float]:
        return distributed.reduce_sum(self.accelerator, values)

    def gather(self, values: list) -> list:
        return distributed.gather(values)

    def token_normalizer(self, global_tokens: float) -> float:
        """What to divide a micro-batch's summed per-token loss by so that the optimizer step follows
        the mean over all `global_tokens` of the global batch.

        DDP averages gradients over processes and `accelerator.backward` divides each micro-batch
        loss by the accumulation steps, so the divisor is the token count over both.
        """
        return max(global_tokens, 1.0) / (
            self.accelerator.num_processes * self.cfg.gradient_accumulation_steps
        )

    # ---- steps, logs, checkpoints --------------------------------------------------------------

    def optimizer_step(self, loss: torch.Tensor) -> tuple[bool, float | None]:
        """Close an optimizer step after the last micro-batch's backward pass.

        Clips the gradients, then updates the weights and moves the schedule on, unless the loss or
        the gradient norm is NaN or infinite on any process: that step is skipped with a warning
        (`BadStepGuard`; the run aborts after `run.max_bad_steps` in a row), though it still counts
        as a step and its data as seen. Returns (updated, gradient norm before clipping).
        """
        max_norm = self.cfg.optim.max_grad_norm
        norm = None
        if max_norm is not None:
            # None under DeepSpeed, which clips inside its own step (`gradient_clipping`)
            clipped = self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
            norm = None if clipped is None else float(clipped)
        finite = distributed.finite_on_all_processes(self.accelerator, loss.detach().reshape(-1))
        finite = finite and (norm is None or math.isfinite(norm))
        if self.engine == "deepspeed":
            # the engine stepped inside the last backward, or skipped a step whose gradient norm was
            # not finite (its overflow check): the guard counts what it did
            finite = finite and self.model.was_step_applied()
        self.state.step += 1
        updated = self.state.guard.check(finite, self.state.step)
        self._step_learning_rate = float(self.scheduler.get_last_lr()[0])
        if updated:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad()
        return updated, norm

    def log(self, metrics: dict[str, Any], samples: list[dict[str, Any]] | None = None) -> None:
        """Metrics of the step just taken: to metrics.jsonl every `run.logging_steps`, to the bar always."""
        step = self.state.step
        fresh = self.gather([asdict(skip) for skip in self.skips.skips[self._skips_logged :]])
        self._skips_logged = self.skips.count
        if fresh and self.is_main:
            with self.run.skipped.open("ab") as handle:
                handle.write(b"".join(jsonl_line(skip) for skip in fresh))
        record = {
            **metrics,
            "learning_rate": self._step_learning_rate,
            **self.reduce_sum({"skipped_samples": self.skips.count}),
            "memory/peak_gib": round(self.memory.peak_bytes() / 2**30, 4),
        }
        if step % self.cfg.run.logging_steps == 0 or step == self.total_steps:
            self.metrics.log(step, record)
        every = self.cfg.run.log_completions_every
        if samples and every and step % every == 0:
            self.metrics.log_samples(step, samples)
        shown = {key: record[key] for key in ("loss", "reward") if key in record}
        self.progress.update(step, shown)

    def validate_if_due(self) -> dict[str, Any] | None:
        """Validate when the cycle's steps crossed a multiple of `validation.eval_steps` or reached the
        end; returns the validation record (log its values with the step), or None."""
        step = self.state.step
        if self.validator is None or not self.validator.due(self._cycle_start, step, self.total_steps):
            return None
        record = self.validator.run()
        if self.is_main:
            values = "  ".join(f"{k} {v:.4g}" for k, v in record["values"].items() if v is not None)
            log.info("step %d: validation %s", step, values)
        return record

    def end_cycle(self) -> None:
        """Checkpoint when the cycle's steps crossed a multiple of `run.save_steps`."""
        every = self.cfg.run.save_steps
        if self.state.step // every > self._cycle_start // every:
            self.save()

    def save(self) -> Path:
        self.state.elapsed_seconds += time.perf_counter() - self._started
        self._started = time.perf_counter()
        path = save_checkpoint(
            self.accelerator,
            self.run.root,
            self.state,
            model=self.model,
            processor=self.processor,
            save_total_limit=self.cfg.run.save_total_limit,
            export_dtype=self.export_dtype,
            extra_states={name: state_dict() for name, state_dict in self.extra_states.items()},
        )
        self._last_saved = self.state.step
        if self.is_main:
            write_model_spec(self.cfg.video, self.run.checkpoint(self.state.step).hf)
        return path

    @property
    def stopped(self) -> bool:
        return STOP_KEY in self.state.extra

    @property
    def stop_reason(self) -> str | None:
        return self.state.extra.get(STOP_KEY)

    def stop(self, reason: str) -> None:
        """End the run after this cycle; a resumed run stays stopped."""
        self.state.extra[STOP_KEY] = reason
        log.info("stopping at step %d: %s", self.state.step, reason)

    def export(self, target: Path) -> Path:
        """The current model as a Hugging Face model dir with the processor at `target`, replaced
        atomically. Call on every process."""
        tmp = target.with_name(f"{target.name}.tmp")
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        export_hf_model(self.accelerator, self.model, tmp, processor=self.processor, dtype=self.export_dtype)
        if self.is_main:
            write_model_spec(self.cfg.video, tmp)
            write_model_card(tmp, self.run.root)
            replace_dir(tmp, target)
        self.accelerator.wait_for_everyone()
        return target

    def finish(self) -> Path:
        """Checkpoint the last step (if not yet saved) and export `<output_dir>/final/`; a run that
        trained on no sample at all (every clip skipped) exports nothing and fails."""
        trained = self.reduce_sum({"trained": self.state.extra.get(TRAINED_KEY, 0)})["trained"]
        if trained == 0:
            raise TrainingAborted(
                f"no sample was trained: every clip was skipped (see {self.run.skipped}); nothing exported"
            )
        if self._last_saved != self.state.step:
            self.save()
        final = self.export(self.run.final)
        if self.is_main:
            log.info("step %d: model exported to %s", self.state.step, final)
            best = self.state.extra.get("best")
            if best is not None:
                log.info(
                    "best model: step %d, %s %.4g, in %s",
                    best["step"],
                    best["metric"],
                    best["score"],
                    self.run.best,
                )
        return final

    def close(self) -> None:
        self.progress.__exit__(None, None, None)
        self.metrics.close()
        self.memory.close()
        self.release_claim()

    def __enter__(self) -> Session:
        self.progress.__enter__()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds spent inside the block to `timings[key]`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started
