"""A training session: what the GRPO and SFT loops share around their own step, composed of parts.

    with open_session(cfg, kind="grpo", mode="think") as session:    # vaur1.train.build
        for cycle in session.cycles():           # one global batch: this process's micro-batches
            for items in cycle:                  # `Item`s (example + decoded video); may be empty
                with session.accelerator.accumulate(session.model):
                    session.accelerator.backward(loss_of(items))
            session.optimizer_step(loss)          # clip, NaN guard, update, schedule: step += 1
            session.log({...})
            session.validate_if_due()             # every validation.eval_steps: harness, best/, patience
            session.end_cycle()                   # a checkpoint every `run.save_steps`
        session.finish()                          # <output_dir>/final/: an HF model dir + processor

The parts, assembled by `vaur1.train.build`: the `Accelerator` and the cross-process helpers
(`vaur1.train.distributed`), the model from `load_model`, the optimizer and schedule
(`vaur1.train.common`), the data spread over processes and micro-batches (`vaur1.train.sampler`);
the session adds checkpoints (`vaur1.train.checkpoint`), logs (`vaur1.train.logging`) and runs the
validator (`vaur1.train.validation`). Every file the run writes is named by `vaur1.layout.TrainRun`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from vaur1.config import to_dict
from vaur1.console import ProgressBar
from vaur1.files import jsonl_line, replace_dir
from vaur1.layout import Checkpoint, TrainRun
from vaur1.runlock import RunClaim
from vaur1.train import distributed
from vaur1.train.card import write_model_card
from vaur1.train.checkpoint import TrainerState, export_hf_model, save_checkpoint
from vaur1.train.common import TrainingAborted
from vaur1.train.config import SessionConfig
from vaur1.train.logging import MemoryMeter, MetricsLogger
from vaur1.train.sampler import Item, StepData, filler_inputs
from vaur1.train.validation import Validator
from vaur1.video.cache import CachedDecoder
from vaur1.video.dataset import SkipLog
from vaur1.video.spec import write_model_spec

log = logging.getLogger("vaur1.train")

STOP_KEY = "stopped"  # TrainerState.extra: why the loop ended before its last step
TRAINED_KEY = "trained_samples"  # TrainerState.extra: samples this process trained on, resumes included


@dataclass
class SessionParts:
    """What a session runs on, built by `vaur1.train.build.open_session`."""

    cfg: SessionConfig
    kind: str  # grpo or sft: the progress bar's and the logs' name for the run
    accelerator: Any
    run: TrainRun
    claim: RunClaim | None  # the output folder's lock, held by the main process
    model: Any  # wrapped by the engine
    processor: Any
    optimizer: Any
    scheduler: Any
    engine: str  # single, ddp, deepspeed or fsdp
    export_dtype: torch.dtype  # the dtype exports are written in
    decoder: CachedDecoder
    data: StepData
    state: TrainerState
    resumed_from: Checkpoint | None
    total_steps: int
    memory: MemoryMeter
    steps_per_cycle: int = 1  # optimizer steps per global batch (GRPO's num_iterations)
    draws_per_cycle: int = 1  # global batches a cycle may draw (dynamic sampling's rounds)


class Session:
    """The steps, logs, checkpoints and validation of one run, on the parts it is given."""

    def __init__(self, parts: SessionParts) -> None:
        # every part is an attribute of the same name (session.model, session.state, ...)
        for name, value in vars(parts).items():
            setattr(self, name, value)
        self.is_main = parts.accelerator.is_main_process
        self.validator: Validator | None = None
        # weights kept in every checkpoint beside the accelerate state (name -> a function returning them);
        # their owners, built after this session, read them back from `resumed_from`
        self.extra_states: dict[str, Any] = {}
        self._last_saved = self._cycle_start = parts.state.step
        self.skips = SkipLog()  # every process's skips reach skipped.jsonl through the main one (`log`)
        self._skips_logged = 0
        self.metrics = MetricsLogger(
            parts.run,
            report_to=parts.cfg.run.report_to,
            config=to_dict(parts.cfg),
            enabled=self.is_main,
            start_step=parts.state.step,
        )
        self.progress = ProgressBar(
            parts.total_steps, start_step=parts.state.step, enabled=self.is_main, description=parts.kind
        )
        self._started = time.perf_counter()
        self.data_wait = 0.0  # seconds the last cycle waited for its frames
        self._step_learning_rate = float(parts.scheduler.get_last_lr()[0])

    def release_claim(self) -> None:
        if self.claim is not None:
            self.claim.release()

    # ---- data ---------------------------------------------------------------------------------

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
        record = self.validator.run(step)
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
