"""Assembling a training session from its parts, in the order a run needs them.

    with open_session(cfg, kind="grpo", mode="think", steps_per_cycle=2) as session:
        ...

`open_session` claims the output folder, then builds each part with a function of its own: the
examples (`training_examples`), where the run resumes from (`resume_point`), the model with its
engine, optimizer and schedule (`build_model`), the data spread over processes and micro-batches
(`build_data`), and the validator with its callbacks into the session. `Session` (in
`vaur1.train.session`) only runs steps on what it is given.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from vaur1.bench import split_files
from vaur1.bench.tasks import Example
from vaur1.console import setup_console_logging
from vaur1.errors import ConfigError, VaurError
from vaur1.files import jsonl_line, write_text
from vaur1.layout import Checkpoint, TrainRun
from vaur1.model.inputs import check_spec_fits
from vaur1.model.load import hide_transformers_progress, load_model
from vaur1.runinfo import write_run_metadata
from vaur1.runlock import RunClaim, claim_run
from vaur1.train import distributed, precision
from vaur1.train.checkpoint import TrainerState, check_resumed_config, load_checkpoint, resolve_resume
from vaur1.train.common import BadStepGuard, build_optimizer, build_scheduler, set_seed
from vaur1.train.config import SessionConfig
from vaur1.train.data_order import DataOrder
from vaur1.train.logging import MemoryMeter
from vaur1.train.sampler import StepData, filler_inputs
from vaur1.train.session import Session, SessionParts
from vaur1.train.validation import ValidationCallbacks, Validator
from vaur1.video.cache import CachedDecoder
from vaur1.video.dataset import Skip, VideoDataset
from vaur1.video.roots import check_videos

log = logging.getLogger("vaur1.train")

# SFT's loss of its targets on validation examples, computed with the session's live model
ValidationLoss = Callable[[Session, list[Example]], float]


@dataclass
class ModelParts:
    """The wrapped model and what steps it: the engine, the optimizer and its schedule."""

    model: Any
    processor: Any
    optimizer: Any
    scheduler: Any
    engine: str  # single, ddp, deepspeed or fsdp
    export_dtype: torch.dtype  # the dtype exports are written in: the checkpoint's own


def open_session(
    cfg: SessionConfig,
    kind: str,
    mode: str,
    steps_per_cycle: int = 1,
    validation_loss: ValidationLoss | None = None,
    draws_per_cycle: int = 1,
) -> Session:
    """A session ready for its first step. `steps_per_cycle` optimizer steps use each global batch
    (GRPO's `num_iterations`); `draws_per_cycle` global batches a cycle may draw (dynamic sampling);
    `mode` is the prompt mode validation answers in."""
    cfg.validate()
    accelerator = distributed.make_accelerator(cfg.gradient_accumulation_steps, cfg.bf16)
    setup_console_logging(accelerator.is_main_process)
    run = TrainRun(cfg.run.output_dir)
    claim = claim_output(run, accelerator)
    memory: MemoryMeter | None = None
    session: Session | None = None
    try:
        # transformers' "Loading weights" / "Writing model shards" bars would break into the training bar
        hide_transformers_progress()
        set_seed(cfg.run.seed)
        examples, missing = training_examples(cfg)
        resume_from = resume_point(cfg, run, accelerator)
        total_steps = cfg.run.max_steps or cfg.run.num_epochs * steps_per_cycle * math.ceil(
            len(examples)
            / (cfg.per_device_train_batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps)
        )
        memory = MemoryMeter(accelerator.device)
        parts = build_model(cfg, accelerator, total_steps)
        decoder, data = build_data(cfg, examples, accelerator)
        state = TrainerState(
            data=DataOrder(len(examples), seed=cfg.run.seed), guard=BadStepGuard(cfg.run.max_bad_steps)
        )
        accelerator.wait_for_everyone()
        if accelerator.num_processes > 1:
            # the model is built alike everywhere; from here each process draws its own random stream
            # (sampling noise, dropout), or every process would sample its completions with the same noise
            set_seed(cfg.run.seed + accelerator.process_index)
        if resume_from is not None:
            load_checkpoint(accelerator, resume_from, state)
            log.info("resumed from %s at step %d", resume_from, state.step)
        session = Session(
            SessionParts(
                cfg=cfg,
                kind=kind,
                accelerator=accelerator,
                run=run,
                claim=claim,
                model=parts.model,
                processor=parts.processor,
                optimizer=parts.optimizer,
                scheduler=parts.scheduler,
                engine=parts.engine,
                export_dtype=parts.export_dtype,
                decoder=decoder,
                data=data,
                state=state,
                resumed_from=Checkpoint(Path(resume_from)) if resume_from is not None else None,
                total_steps=total_steps,
                memory=memory,
                steps_per_cycle=steps_per_cycle,
                draws_per_cycle=draws_per_cycle,
            )
        )
        if cfg.validation.enabled:
            session.validator = build_validator(session, mode, validation_loss)
        if session.is_main:
            announce(session, len(examples), missing, resumed=resume_from is not None)
        accelerator.wait_for_everyone()
        return session
    except BaseException:
        # a run that could not start leaves the folder free for the next try, its trackers finished
        if session is not None:
            session.close()
        else:
            if memory is not None:
                memory.close()
            if claim is not None:
                claim.release()
        raise


def claim_output(run: TrainRun, accelerator: Any) -> RunClaim | None:
    """The output folder is this run's for its whole life, held by the main process; every process
    stops with the same one-line error when another job holds it or it is not a training folder."""
    claim, refused = None, None
    if accelerator.is_main_process:
        try:
            claim = claim_run(run.root, "train")
        except VaurError as err:
            refused = str(err)
    refused = distributed.broadcast(refused, accelerator)
    if refused is not None:
        raise VaurError(refused)
    return claim


def training_examples(cfg: SessionConfig) -> tuple[list[Example], list[Example]]:
    """(the examples to train on, repeats included; those whose video file is missing)."""
    examples = [example for example in cfg.data.load() for _ in range(cfg.task_repeats.get(example.task, 1))]
    if not examples:
        raise ConfigError(
            f"{cfg.data.bench} ({cfg.data.split}): no examples for tasks {', '.join(cfg.data.tasks)}"
        )
    # every video resolved before anything starts: wrong roots stop here, a few missing files are
    # left out of the data order and listed in skipped.jsonl
    return check_videos(examples, cfg.data.roots(), cfg.data.max_missing_videos)


def resume_point(cfg: SessionConfig, run: TrainRun, accelerator: Any) -> str | None:
    """The checkpoint to resume from, if any, chosen by the main process (which reads the checksums)
    for every process; a resumed run must be configured as the run it continues."""
    resume_from = distributed.broadcast(
        resolve_resume(cfg.run.resume, run.root) if accelerator.is_main_process else None, accelerator
    )
    if resume_from is not None:
        check_resumed_config(run, cfg)
    return resume_from


def build_model(cfg: SessionConfig, accelerator: Any, total_steps: int) -> ModelParts:
    """The model loaded for this process, held in the precision its engine needs, wrapped by the
    engine with its optimizer and schedule."""
    model_cfg = replace(
        cfg.model, gradient_checkpointing=cfg.gradient_checkpointing, device=str(accelerator.device)
    )
    model, processor = load_model(model_cfg)
    check_spec_fits(cfg.video, processor)
    engine = precision.engine_of(accelerator)
    master_weights = engine == "deepspeed" and precision.deepspeed_mixed_precision(accelerator)
    export_dtype = precision.hold_trainable_in_fp32(model, cfg.bf16, engine, master_weights)
    if engine == "deepspeed":
        distributed.configure_deepspeed(accelerator, cfg.per_device_train_batch_size, cfg.optim.max_grad_norm)
    elif engine == "fsdp":
        distributed.configure_fsdp(accelerator, model)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, num_training_steps=total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if engine == "fsdp":
        distributed.fsdp_make_root(model, filler_inputs(processor, accelerator.device))
    model.train()
    return ModelParts(model, processor, optimizer, scheduler, engine, export_dtype)


def build_data(
    cfg: SessionConfig, examples: list[Example], accelerator: Any
) -> tuple[CachedDecoder, StepData]:
    """The frame decoder and this process's share of every global batch."""
    decoder = CachedDecoder.from_config(cfg.video, cfg.cache)
    data = StepData(
        examples=examples,
        videos=VideoDataset(examples, cfg.data.roots(), decoder),
        loader=cfg.loader,
        rank=accelerator.process_index,
        world=accelerator.num_processes,
        per_device=cfg.per_device_train_batch_size,
        accumulation=cfg.gradient_accumulation_steps,
        seed=cfg.run.seed,
        shuffle_options=cfg.shuffle_options,
    )
    return decoder, data


def build_validator(session: Session, mode: str, validation_loss: ValidationLoss | None) -> Validator:
    """The session's validator, reaching the live model, best/ and the stop through callbacks."""
    callbacks = ValidationCallbacks(
        model=lambda: (session.model, session.processor),
        export_best=lambda: session.export(session.run.best),
        stop=session.stop,
        loss=functools.partial(validation_loss, session) if validation_loss is not None else None,
    )
    return Validator(
        session.cfg.validation,
        session.cfg,
        session.kind,
        mode,
        session.run,
        session.accelerator,
        session.state.extra,
        callbacks,
    )


def announce(session: Session, examples: int, missing: list[Example], resumed: bool) -> None:
    """The main process's record of the run's start: config.yaml (written once the resume checks and
    the load passed: it is what this run uses), the missing videos, the VideoSpec, one log line."""
    cfg = session.cfg
    write_run_metadata(session.run.root, cfg, split_files(cfg.data.bench, [cfg.data.split]))
    if missing and not resumed:
        roots = cfg.data.roots()
        lines = [Skip(e.key, str(roots.resolve(e)), "no such video file") for e in missing]
        with session.run.skipped.open("ab") as handle:
            handle.write(b"".join(jsonl_line(asdict(skip)) for skip in lines))
        log.warning(
            "%d samples have no video file: left out (listed in %s)", len(missing), session.run.skipped
        )
    write_text(session.run.video_spec, cfg.video.describe() + "\n")
    log.info(
        "%s: %d examples, %d steps of %d prompts, %s on %d process(es) (%s), video %s",
        session.kind,
        examples,
        session.total_steps,
        session.data.global_batch,
        session.engine,
        session.accelerator.num_processes,
        "bf16 autocast" if cfg.bf16 else "fp32",
        cfg.video.describe(),
    )
