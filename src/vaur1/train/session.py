"""A training session: everything the GRPO and SFT loops share around their own step, written once.

    with Session(cfg, kind="grpo", steps_per_cycle=1) as session:
        for cycle in session.cycles():           # one global batch: this process's micro-batches
            for items in cycle:                  # `Item`s (example + decoded video); may be empty
                with session.accelerator.accumulate(session.model):
                    session.accelerator.backward(loss_of(items))
            session.optimizer_step(loss)          # clip, NaN guard, update, schedule: step += 1
            session.log({...})
            session.end_cycle()                   # a checkpoint every `run.save_steps`
        session.finish()                          # <output_dir>/final/: an HF model dir + processor

Opening a session builds the `Accelerator` (gradient accumulation, bf16 mixed precision), seeds,
loads the model through `load_model` (LoRA, frozen vision tower, gradient checkpointing without
re-entrant checkpointing), builds and prepares optimizer and schedule, writes the run metadata,
and resumes from a checkpoint when `run.resume` finds one.

Data: every cycle takes the next global batch from a `DataOrder` (the same on every process);
the process of rank r gets slots r, r + world, r + 2 world, ... split into
`gradient_accumulation_steps` micro-batches of `per_device_train_batch_size`. Worker processes
decode ahead through the frame cache. A video that fails is recorded in `skipped.jsonl` and left
out, never replaced: its micro-batch comes out shorter, or empty. An empty micro-batch still runs
a forward and backward pass on `filler_inputs` (a black clip) with zero weight, because every
process must take part in the gradient all-reduce (and, under ZeRO-3 or FSDP, in every forward).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vaur1.bench.tasks import Example, shuffle_options
from vaur1.data import DataConfig
from vaur1.errors import ConfigError
from vaur1.model.load import ModelConfig, load_model
from vaur1.prompts import PromptConfig
from vaur1.runinfo import write_run_metadata
from vaur1.train.checkpoint import (
    HF_DIR,
    TrainerState,
    export_hf_model,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from vaur1.train.common import (
    BadStepGuard,
    OptimConfig,
    RunConfig,
    build_optimizer,
    build_scheduler,
    finite_on_all_processes,
    set_seed,
)
from vaur1.train.data_order import DataOrder
from vaur1.train.logging import MetricsLogger, ProgressBar, setup_console_logging
from vaur1.video.cache import CacheConfig, CachedDecoder
from vaur1.video.dataset import LoadedExample, LoaderConfig, Skip, SkipLog, VideoDataset
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec, write_model_spec

log = logging.getLogger("vaur1.train")

FINAL_DIR = "final"
VIDEO_SPEC_FILE = "video_spec.txt"
STOP_KEY = "stopped"  # TrainerState.extra: why the loop ended before its last step
# What an empty micro-batch runs on: a black clip (`filler_video`) and a one-character question.
FILLER_CONVERSATION: list[dict] = [
    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "."}]}
]


@dataclass
class SessionConfig:
    """The options GRPO and SFT share; their configs extend this one. TRL's names at the top level."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    video: VideoSpec = field(default_factory=VideoSpec)
    cache: CacheConfig = field(default_factory=CacheConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    per_device_train_batch_size: int = 1  # prompts (videos) per process per micro-batch
    gradient_accumulation_steps: int = 1
    bf16: bool = False  # bf16 mixed precision (autocast); the weights' dtype is model.dtype
    gradient_checkpointing: bool = False  # generation keeps its KV cache all the same
    # QA options in a new order (the answer letter moved with them) every time an example is drawn,
    # from (run.seed, draw number): the same on every process and after a resume
    shuffle_options: bool = False
    # the training mix: each named task's examples this many times per epoch (others once), e.g.
    # {qa: 3} for a task the model learns last; every repeat is drawn as a sample of its own
    task_repeats: dict[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        if self.per_device_train_batch_size < 1:
            raise ConfigError(
                f"per_device_train_batch_size must be at least 1, got {self.per_device_train_batch_size}"
            )
        if self.gradient_accumulation_steps < 1:
            raise ConfigError(
                f"gradient_accumulation_steps must be at least 1, got {self.gradient_accumulation_steps}"
            )
        if self.model.gradient_checkpointing:
            raise ConfigError(
                "set gradient_checkpointing at the top level of a training config, not in model"
            )
        if self.model.device is not None or self.model.device_map is not None:
            raise ConfigError(
                "model.device and model.device_map are for inference; in training accelerate places the "
                "model (one device per process)"
            )
        self.model.validate()
        self.data.validate()
        for task, times in self.task_repeats.items():
            if task not in self.data.tasks:
                raise ConfigError(
                    f"task_repeats: {task!r} is not one of data.tasks ({', '.join(self.data.tasks)})"
                )
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise ConfigError(f"task_repeats.{task} must be a whole number of at least 1, got {times!r}")
        self.video.validate()
        self.cache.validate()
        self.loader.validate()
        self.prompts.validate()
        self.optim.validate()
        self.run.validate()


@dataclass(frozen=True)
class Item:
    """One training example with its frames, and its slot in the step's global batch (which does not
    depend on the number of processes)."""

    slot: int
    example: Example
    video: DecodedVideo


def data_files(data: DataConfig) -> list[Path]:
    """The annotation files a run reads, for the run metadata's hashes."""
    bench = Path(data.bench)
    return [bench] if bench.is_file() else sorted(bench.glob(f"{data.split}.csv"))


def filler_video(processor_factor: int, temporal_patch: int) -> DecodedVideo:
    """A black clip of the smallest size the processor takes: the stand-in for an empty micro-batch."""
    frames = np.zeros((temporal_patch, processor_factor, processor_factor, 3), dtype=np.uint8)
    return DecodedVideo(
        path="<filler>",
        frames=frames,
        timestamps=[float(i) for i in range(temporal_patch)],
        indices=list(range(temporal_patch)),
        fps=1.0,
        num_frames_total=temporal_patch,
        duration=float(temporal_patch),
        height=processor_factor,
        width=processor_factor,
    )


class _SlotDataset(Dataset):
    """`VideoDataset` items keyed by (slot, sample index), returned with their key."""

    def __init__(self, videos: VideoDataset) -> None:
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int, LoadedExample | Skip]:
        slot, index = key
        return slot, index, self.videos[index]


class _StepSampler:
    """This process's micro-batches of (slot, sample index), cycle after cycle, from a copy of the
    run's `DataOrder` (the loader runs ahead; the run's own order advances as cycles are consumed)."""

    def __init__(
        self,
        order: DataOrder,
        cycles: int,
        global_batch: int,
        rank: int,
        world: int,
        per_device: int,
        accumulation: int,
    ) -> None:
        self.start = order.state_dict()
        self.cycles = cycles
        self.global_batch = global_batch
        self.rank, self.world = rank, world
        self.per_device, self.accumulation = per_device, accumulation

    def __len__(self) -> int:
        return self.cycles * self.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = DataOrder(self.start["num_samples"], self.start["seed"], self.start["shuffle"])
        order.load_state_dict(self.start)
        for _ in range(self.cycles):
            indices = order.next_indices(self.global_batch)
            mine = [(slot, indices[slot]) for slot in range(self.rank, self.global_batch, self.world)]
            for micro in range(self.accumulation):
                yield mine[micro * self.per_device : (micro + 1) * self.per_device]


def _as_list(items: list) -> list:
    return items


class Session:
    """The accelerator, model, optimizer, schedule, data, logs and checkpoints of one training run.

    `steps_per_cycle` optimizer steps use each global batch (GRPO's `num_iterations`; 1 for SFT).
    """

    def __init__(self, cfg: SessionConfig, kind: str, steps_per_cycle: int = 1) -> None:
        from accelerate import Accelerator
        from transformers.utils import logging as hf_logging

        cfg.validate()
        self.cfg = cfg
        self.kind = kind
        self.steps_per_cycle = steps_per_cycle
        self.run_dir = Path(cfg.run.output_dir)
        self.accelerator = accelerator = Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision="bf16" if cfg.bf16 else "no",
            step_scheduler_with_optimizer=False,
            # without a GPU, accelerate only forms a process group (gloo) when told to use the CPU
            cpu=not torch.accelerator.is_available(),
        )
        self.is_main = accelerator.is_main_process
        setup_console_logging(self.is_main)
        # transformers' "Loading weights" / "Writing model shards" bars would break into the training
        # progress bar at every checkpoint.
        hf_logging.disable_progress_bar()
        set_seed(cfg.run.seed)

        self.examples = [
            example for example in cfg.data.load() for _ in range(cfg.task_repeats.get(example.task, 1))
        ]
        if not self.examples:
            raise ConfigError(
                f"{cfg.data.bench} ({cfg.data.split}): no examples for tasks {', '.join(cfg.data.tasks)}"
            )
        resume_from = resolve_resume(cfg.run.resume, self.run_dir)
        self.global_batch = (
            cfg.per_device_train_batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps
        )
        steps_per_epoch = math.ceil(len(self.examples) / self.global_batch) * steps_per_cycle
        self.total_steps = cfg.run.max_steps or cfg.run.num_epochs * steps_per_epoch

        model_cfg = replace(
            cfg.model, gradient_checkpointing=cfg.gradient_checkpointing, device=str(accelerator.device)
        )
        model, self.processor = load_model(model_cfg)
        self._check_video_spec()
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, num_training_steps=self.total_steps)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.model.train()

        self.state = TrainerState(
            data=DataOrder(len(self.examples), seed=cfg.run.seed), guard=BadStepGuard(cfg.run.max_bad_steps)
        )
        if self.is_main:
            write_run_metadata(self.run_dir, cfg, data_files(cfg.data))
            (self.run_dir / VIDEO_SPEC_FILE).write_text(cfg.video.describe() + "\n", encoding="utf-8")
            log.info(
                "%s: %d examples, %d steps of %d prompts, video %s",
                kind,
                len(self.examples),
                self.total_steps,
                self.global_batch,
                cfg.video.describe(),
            )
        accelerator.wait_for_everyone()
        if resume_from is not None:
            load_checkpoint(accelerator, resume_from, self.state)
            log.info("resumed from %s at step %d", resume_from, self.state.step)
        self._last_saved = self.state.step
        self._cycle_start = self.state.step

        self.decoder = CachedDecoder.from_config(cfg.video, cfg.cache)
        self.skips = SkipLog(self.run_dir)
        self.metrics = MetricsLogger(
            self.run_dir, tensorboard=cfg.run.tensorboard, enabled=self.is_main, start_step=self.state.step
        )
        self.progress = ProgressBar(
            self.total_steps, start_step=self.state.step, enabled=self.is_main, description=kind
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

    def _loader(self, cycles: int) -> DataLoader:
        accelerator = self.accelerator
        sampler = _StepSampler(
            self.state.data,
            cycles,
            self.global_batch,
            accelerator.process_index,
            accelerator.num_processes,
            self.cfg.per_device_train_batch_size,
            self.cfg.gradient_accumulation_steps,
        )
        videos = VideoDataset(self.examples, self.cfg.data.roots(), self.decoder)
        workers = self.cfg.loader.num_workers
        return DataLoader(
            _SlotDataset(videos),
            batch_sampler=sampler,
            num_workers=workers,
            prefetch_factor=self.cfg.loader.prefetch_factor if workers > 0 else None,
            collate_fn=_as_list,
            # its own generator: starting an iterator draws a worker seed, which from the global
            # generator would shift the rollouts of a resumed run against an uninterrupted one
            generator=torch.Generator().manual_seed(self.cfg.run.seed),
        )

    def cycles(self) -> Iterator[list[list[Item]]]:
        """Global batches until the last step (or a stop): this process's micro-batches of each.

        The run's data position advances as each cycle is handed out, so a checkpoint taken after
        the cycle continues with the next one.
        """
        remaining = math.ceil((self.total_steps - self.state.step) / self.steps_per_cycle)
        if remaining <= 0 or self.stopped:
            return
        batches = iter(self._loader(remaining))
        while self.state.step < self.total_steps and not self.stopped:
            waited = time.perf_counter()
            first_draw = self.state.data.samples_seen
            expected = self.state.data.next_indices(self.global_batch)
            cycle = []
            for _ in range(self.cfg.gradient_accumulation_steps):
                items = []
                for slot, index, loaded in next(batches):
                    if expected[slot] != index:
                        raise RuntimeError(
                            f"data loader out of step: slot {slot} has {index}, not {expected[slot]}"
                        )
                    if isinstance(loaded, Skip):
                        self.skips.record(loaded)
                        continue
                    items.append(Item(slot, self._augment(loaded.example, first_draw + slot), loaded.video))
                cycle.append(items)
            self.data_wait = time.perf_counter() - waited
            self._cycle_start = self.state.step
            yield cycle

    def _augment(self, example: Example, draw: int) -> Example:
        if not self.cfg.shuffle_options:
            return example
        return shuffle_options(example, np.random.default_rng([self.cfg.run.seed, draw]))

    def filler_inputs(self):
        """Model inputs for an empty micro-batch: one black clip and a one-character prompt."""
        from vaur1.model.inputs import build_inputs, processor_factor, temporal_patch

        video = filler_video(processor_factor(self.processor), temporal_patch(self.processor))
        return build_inputs(self.processor, [FILLER_CONVERSATION], [video]).to(self.accelerator.device)

    # ---- cross-process arithmetic --------------------------------------------------------------

    def reduce_sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed over all processes (one all-reduce)."""
        keys = sorted(values)
        tensor = torch.tensor(
            [float(values[k]) for k in keys], device=self.accelerator.device, dtype=torch.float64
        )
        summed = self.accelerator.reduce(tensor, reduction="sum").tolist()
        return dict(zip(keys, summed, strict=True))

    def gather(self, values: list) -> list:
        """Every process's list, concatenated in rank order (a copy of `values` on a single process)."""
        from accelerate.utils import gather_object

        return list(gather_object(list(values)))

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
        finite = finite_on_all_processes(self.accelerator, loss.detach().reshape(-1))
        finite = finite and (norm is None or math.isfinite(norm))
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
        record = {
            **metrics,
            "learning_rate": self._step_learning_rate,
            **self.reduce_sum({"skipped_samples": self.skips.count}),
        }
        if step % self.cfg.run.logging_steps == 0 or step == self.total_steps:
            self.metrics.log(step, record)
        every = self.cfg.run.log_completions_every
        if samples and every and step % every == 0:
            self.metrics.log_samples(step, samples)
        shown = {key: record[key] for key in ("loss", "reward") if key in record}
        self.progress.update(step, shown)

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
            self.run_dir,
            self.state,
            model=self.model,
            processor=self.processor,
            save_total_limit=self.cfg.run.save_total_limit,
        )
        self._last_saved = self.state.step
        if self.is_main:
            write_model_spec(self.cfg.video, path / HF_DIR)
        return path

    @property
    def stopped(self) -> bool:
        return STOP_KEY in self.state.extra

    def stop(self, reason: str) -> None:
        """End the run after this cycle; a resumed run stays stopped."""
        self.state.extra[STOP_KEY] = reason
        log.info("stopping at step %d: %s", self.state.step, reason)

    def export(self, name: str) -> Path:
        """`<output_dir>/<name>/`: the current model as a Hugging Face model dir with the processor,
        replaced atomically. Call on every process."""
        target = self.run_dir / name
        tmp = target.with_name(f"{name}.tmp")
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        export_hf_model(self.accelerator, self.model, tmp, processor=self.processor)
        if self.is_main:
            write_model_spec(self.cfg.video, tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        self.accelerator.wait_for_everyone()
        return target

    def finish(self) -> Path:
        """Checkpoint the last step (if not yet saved) and export `<output_dir>/final/`."""
        if self._last_saved != self.state.step:
            self.save()
        final = self.export(FINAL_DIR)
        if self.is_main:
            log.info("step %d: model exported to %s", self.state.step, final)
        return final

    def close(self) -> None:
        self.progress.__exit__(None, None, None)
        self.metrics.close()

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
