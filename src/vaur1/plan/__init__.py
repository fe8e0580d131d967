"""`vaur1 plan`: whether a config fits in memory before it is launched, and what would make it fit.

    plan = make_plan("grpo", cfg, gpus=8, memory_bytes=80e9)     # cfg: a loaded GRPOTrainConfig
    plan["fits"], plan["per_gpu_bytes"]["total"], plan["suggestions"][0]["change"]

The maths is in `vaur1.plan.memory`, the config-to-shapes step in `vaur1.plan.workload`, the videos
in `vaur1.plan.videos`. A change is suggested in the order of how little it alters the experiment:
first what only costs time (gradient checkpointing, a sharding engine, more GPUs), then what trains
less (a frozen vision tower, LoRA), last what shows the model less (fewer frames, fewer pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vaur1.model.load import LoraConfig
from vaur1.plan.memory import ENGINES, Engine, Estimate, Job, Workload, estimate
from vaur1.plan.scan import scan_plan
from vaur1.plan.videos import REFERENCE_SIZE, VideoSurvey, survey
from vaur1.plan.workload import Model, describe_model, trainable_parameters, workload
from vaur1.video.spec import VideoSpec

GPU_RUNTIME_BYTES = 600 * 2**20  # CUDA context, cuBLAS workspaces and kernels, per GPU process
# On a CPU: the modeling code, tokenizer and processor that load with the model (after the run's memory
# baseline) and the kernels' first-call state, measured at 126-153 MiB beside a tiny model's weights
CPU_RUNTIME_BYTES = 150 * 2**20
MORE_GPUS = (2, 4, 8, 16, 32, 64)
ENGINE_CONFIGS = {
    "ddp": "accelerate/ddp",
    "zero2": "accelerate/zero2",
    "zero3": "accelerate/zero3",
    "zero3_offload": "accelerate/zero3_offload",
    "fsdp": "accelerate/fsdp",
}


@dataclass(frozen=True)
class Setting:
    """What is planned: a workload on an engine, with the spec its videos are sampled at."""

    work: Workload
    spec: VideoSpec
    engine: Engine
    gpus: int


def make_plan(
    job: Job,
    cfg: Any,
    gpus: int = 1,
    memory_bytes: float = 80e9,
    engine: Engine = "ddp",
    device: str = "gpu",
    files: list[str] | None = None,
    size: tuple[int, int] = REFERENCE_SIZE,
    seconds: float | None = None,
    scan: bool = False,
    gpu_kind: str = "h100",
) -> dict[str, Any]:
    """The plan of a loaded config (`GRPOTrainConfig`, `SFTTrainConfig` or `EvalConfig`) as one dict; for
    an eval config with a scan (or `scan`), the scan's memory per call and estimated speed too."""
    model = describe_model(cfg.model)
    videos = survey(cfg.video, cfg.data, files, size, seconds)
    start = Setting(workload(job, cfg, model, videos.tokens(cfg.video), device), cfg.video, engine, gpus)
    runtime = GPU_RUNTIME_BYTES if device == "gpu" else CPU_RUNTIME_BYTES
    chosen = estimate(start.work, engine, gpus)
    total = chosen.total + runtime
    breakdown = {**chosen.breakdown(), "runtime": runtime}
    breakdown["total"] = breakdown.pop("total") + runtime
    cache_bytes = videos.cache_bytes(cfg.video)
    scanning = job == "eval" and (scan or cfg.scan is not None)
    return {
        "scan": scan_plan(cfg, model, size, gpu_kind, runtime) if scanning else None,
        "job": job,
        "model": model.source,
        "dtype": str(model.dtype).removeprefix("torch."),
        "parameters": model.shapes.parameters,
        "vision_parameters": model.shapes.vision_parameters,
        "trainable_parameters": start.work.trainable,
        "visual_tokens_per_video": start.work.visual_tokens,
        "visual_tokens_mean": videos.tokens_mean(cfg.video),
        "videos": videos.basis,
        "sequence_tokens": start.work.prompt_tokens + start.work.new_tokens,
        "sequences_per_micro_batch": start.work.rows,
        # GRPO's log-prob passes with the shared prefix: one row per prompt group, of this many tokens
        "shared_prefix_rows": start.work.scored_rows if start.work.packs_groups else None,
        "shared_prefix_tokens": start.work.scored_sequence if start.work.packs_groups else None,
        "engine": engine,
        "gpus": gpus,
        "device": device,
        "memory_bytes": int(memory_bytes),
        "peak_phase": chosen.peak_phase,
        "per_gpu_bytes": breakdown,
        "fits": total <= memory_bytes,
        "engines": {
            name: _summary(estimate(start.work, name, gpus), runtime, memory_bytes)
            for name in ENGINES
            if job != "eval" or name == "ddp"
        },
        "suggestions": []
        if total <= memory_bytes
        else suggestions(start, model, cfg, videos, runtime, memory_bytes),
        "frame_cache": {
            "videos": videos.videos,
            "bytes": cache_bytes,
            "limit_bytes": cfg.cache.max_bytes,
            "fits": None if cache_bytes is None else cache_bytes <= cfg.cache.max_bytes,
        },
    }


def _summary(result: Estimate, runtime: int, memory_bytes: float) -> dict[str, Any]:
    total = result.total + runtime
    return {"total": total, "peak_phase": result.peak_phase, "fits": total <= memory_bytes}


def suggestions(
    start: Setting, model: Model, cfg: Any, videos: VideoSurvey, runtime: int, memory_bytes: float
) -> list[dict[str, Any]]:
    """The changes that each alone make `start` fit, least disruptive first."""
    found = []
    for change, how, setting in _candidates(start, model, cfg, videos, runtime, memory_bytes):
        total = estimate(setting.work, setting.engine, setting.gpus).total + runtime
        if total <= memory_bytes:
            found.append({"change": change, "how": how, "total": total})
    return found


def _candidates(start: Setting, model: Model, cfg: Any, videos: VideoSurvey, runtime: int, memory: float):
    work = start.work
    training = work.job != "eval"
    if training and not work.gradient_checkpointing:
        yield (
            "gradient checkpointing",
            "gradient_checkpointing=true",
            replace(start, work=replace(work, gradient_checkpointing=True)),
        )
    if training:
        for engine in ("zero2", "fsdp", "zero3", "zero3_offload"):
            if engine != start.engine:
                how = f"accelerate launch --config_file $(vaur1 config path {ENGINE_CONFIGS[engine]})"
                yield f"engine {engine}", how, replace(start, engine=engine)
        sharding = start.engine if start.engine in ("zero3", "fsdp", "zero3_offload") else "zero3"
        for gpus in MORE_GPUS:
            if gpus > start.gpus:
                more = replace(start, engine=sharding, gpus=gpus)
                if estimate(more.work, more.engine, gpus).total + runtime <= memory:
                    yield f"{gpus} GPUs with {sharding}", f"--num_processes {gpus}", more
                    break
    if training and work.vision_trains and not work.lora:
        frozen = replace(work, trainable=work.trainable - model.shapes.vision_parameters, vision_trains=False)
        yield "frozen vision tower", "model.freeze_vision=true", replace(start, work=frozen)
    if training and not work.lora:
        lora = LoraConfig(enabled=True)
        adapters = trainable_parameters(model, replace(cfg.model, lora=lora, freeze_vision=False))
        slim = replace(
            work,
            trainable=adapters,
            lora=True,
            lora_dropout=lora.dropout > 0,
            separate_reference=False,
            vision_trains=False,
        )
        yield f"LoRA (r={lora.r})", "model.lora.enabled=true", replace(start, work=slim)
    yield from _fewer_video_tokens(start, videos, runtime, memory)


def _fewer_video_tokens(start: Setting, videos: VideoSurvey, runtime: int, memory: float):
    """The most frames, then the largest pixel budget, that fit (each found by bisection)."""
    spec = start.spec

    def fits(candidate: VideoSpec) -> bool:
        work = replace(start.work, visual_tokens=videos.tokens(candidate))
        return estimate(work, start.engine, start.gpus).total + runtime <= memory

    if spec.num_frames is not None:
        key, low, high = "num_frames", spec.temporal_patch, spec.num_frames - 1
        make = lambda n: replace(spec, num_frames=n)  # noqa: E731
    else:
        key, low, high = "max_frames", spec.min_frames, spec.max_frames - 1
        make = lambda n: replace(spec, max_frames=n)  # noqa: E731
    best = _largest(low, high, lambda n: fits(make(n)))
    if best is not None:
        setting = replace(
            start, spec=make(best), work=replace(start.work, visual_tokens=videos.tokens(make(best)))
        )
        yield f"at most {best} frames", f"video.{key}={best}", setting
    unit = spec.factor**2 * spec.temporal_patch  # pixels per visual token of a frame pair
    budget = spec.total_pixels if spec.total_pixels is not None else spec.max_pixels
    key = "total_pixels" if spec.total_pixels is not None else "max_pixels"
    smaller = lambda units: replace(spec, **{key: units * unit})  # noqa: E731
    best = _largest(spec.min_pixels // unit + 1, budget // unit - 1, lambda units: fits(smaller(units)))
    if best is not None:
        candidate = smaller(best)
        setting = replace(
            start, spec=candidate, work=replace(start.work, visual_tokens=videos.tokens(candidate))
        )
        yield f"a {key} budget of {best * unit}", f"video.{key}={best * unit}", setting


def _largest(low: int, high: int, ok) -> int | None:
    """The largest n in [low, high] with ok(n), for ok monotone (true up to some n); None if none."""
    if high < low or not ok(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return low
