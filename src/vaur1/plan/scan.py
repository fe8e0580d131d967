"""What scanning a long video (`eval run --scan`, `vaur1 analyze --scan`) costs: the memory of one
model call, from the same arithmetic as every plan, and a throughput estimate.

The throughput is a roofline estimate, not a measurement: each call of `batch` windows runs three
prefills per window (the TAG and CLS prompts, and the TAG prompt again for P(anomaly)) of its visual
and text tokens, about 2 x parameters FLOPs per token at PREFILL_UTILISATION of the GPU's dense bf16
peak, the vision tower once per prompt, and then DIRECT_ANSWER_TOKENS decoding steps, each reading
the weights once at DECODE_UTILISATION of the memory bandwidth. A window advances the scan by the
stride, so video seconds per second = windows per second x stride.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vaur1.errors import ConfigError
from vaur1.eval.scan_config import ScanConfig
from vaur1.plan.memory import estimate
from vaur1.plan.videos import survey
from vaur1.plan.workload import TEXT_TOKENS, Model, workload

# dense bf16 FLOP/s and memory bandwidth (bytes/s) from the vendors' data sheets
GPU_KINDS: dict[str, tuple[float, float]] = {
    "h100": (989e12, 3.35e12),
    "h200": (989e12, 4.8e12),
    "a100": (312e12, 2.0e12),
    "l40s": (362e12, 0.864e12),
}
PREFILL_UTILISATION = 0.4  # a share of peak that batched prefills of a few thousand tokens reach
DECODE_UTILISATION = 0.7  # a share of bandwidth that decoding steps reach
DIRECT_ANSWER_TOKENS = 24  # a direct TAG answer with its interval, and the end of turn
PROMPTS_PER_WINDOW = 3


def scan_plan(cfg: Any, model: Model, size: tuple[int, int], gpu: str, runtime: int) -> dict[str, Any]:
    """The scan's memory per call and estimated speed for an `EvalConfig` (its `scan`, or the defaults)."""
    if gpu not in GPU_KINDS:
        raise ConfigError(f"GPU kind {gpu!r}: the scan's speed is estimated for {', '.join(GPU_KINDS)}")
    scan = cfg.scan or ScanConfig()
    window = survey(cfg.video, cfg.data, None, size, scan.window)
    tokens = window.tokens(cfg.video)
    work = replace(workload("eval", cfg, model, tokens), prompts=PROMPTS_PER_WINDOW * scan.batch)
    memory = estimate(work, "ddp", 1).total + runtime
    flops_per_second, bandwidth = GPU_KINDS[gpu]
    text_parameters = model.shapes.parameters - model.shapes.vision_parameters
    prompts = PROMPTS_PER_WINDOW * scan.batch
    patches = tokens * model.shapes.merge**2
    prefill = prompts * (
        2 * text_parameters * (tokens + TEXT_TOKENS) + 2 * model.shapes.vision_parameters * patches
    )
    decode_step = model.shapes.parameters * work.weight_bytes / (bandwidth * DECODE_UTILISATION)
    seconds = prefill / (flops_per_second * PREFILL_UTILISATION) + DIRECT_ANSWER_TOKENS * decode_step
    windows_per_second = scan.batch / seconds
    return {
        "window": scan.window,
        "stride": scan.stride,
        "windows_per_call": scan.batch,
        "visual_tokens_per_window": tokens,
        "peak_bytes": memory,
        "gpu": gpu,
        "seconds_per_call_estimate": seconds,
        "video_minutes_per_minute_estimate": windows_per_second * scan.stride,
    }
