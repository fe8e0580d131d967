"""`vaur1 plan --config FILE [key=value ...]`: the per-GPU memory of an SFT, GRPO or eval run before launch.

vaur1 plan --config qwen2_5_vl_3b/tag --gpus 8 --gpu-memory 80GB --engine zero3
vaur1 plan --config my_eval.yaml --video clip.mp4 --json
"""

from __future__ import annotations

import argparse
import json
import re

from rich.table import Table

from vaur1.console import output_console

ENGINE_NAMES = ("ddp", "zero2", "zero3", "zero3_offload", "fsdp")
JOB_KEYS = {  # top-level keys only that job's config has (SFT: a training config without GRPO's)
    "grpo": ("num_generations", "max_completion_length", "loss", "rewards", "seed_rollouts_per_prompt"),
    "eval": ("modes", "batch_size", "backend", "judge", "out"),
    "sft": ("target", "per_device_train_batch_size", "gradient_accumulation_steps", "optim", "run", "bf16"),
}
UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def memory_size(text: str) -> float:
    """`80GB`, `80`, `79.6GiB` -> bytes (a bare number is GB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size such as 80GB or 79.6GiB")
    return float(match.group(1)) * (UNITS[unit] if unit else 1e9)


def frame_size(text: str) -> tuple[int, int]:
    """`1280x720` -> (height, width)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not match or 0 in (int(match.group(1)), int(match.group(2))):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame size such as 1280x720")
    return int(match.group(2)), int(match.group(1))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="per-GPU memory of a training or eval config before launch, and what would make it fit",
        description="Estimate the per-GPU memory of an SFT, GRPO or eval config (weights, gradients, optimizer "
        "states, reference model, KV cache, visual tokens, activations) from the model's shapes, offline for "
        "the shipped architectures; say whether it fits and the cheapest change that would make it fit.",
    )
    parser.add_argument("--config", required=True, help="a config file or a shipped config name")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    parser.add_argument("--job", choices=tuple(JOB_KEYS), help="the config's job (default: from its keys)")
    parser.add_argument("--gpus", type=int, default=1, help="processes (GPUs) the run is launched on")
    parser.add_argument(
        "--gpu-memory",
        type=memory_size,
        default=80e9,
        help="memory per GPU, e.g. 80GB or 24GiB (default 80GB)",
    )
    parser.add_argument(
        "--engine", choices=ENGINE_NAMES, default="ddp", help="the accelerate config's engine"
    )
    parser.add_argument(
        "--device",
        choices=("gpu", "cpu"),
        default="gpu",
        help="plan a GPU run (adds the CUDA runtime) or a CPU run (peak above the process's start)",
    )
    parser.add_argument("--video", action="append", metavar="FILE", help="plan for these videos (repeatable)")
    parser.add_argument(
        "--video-size",
        type=frame_size,
        default=(720, 1280),
        help="WxH of videos the plan cannot see (1280x720)",
    )
    parser.add_argument(
        "--video-seconds",
        type=float,
        help="length of videos the plan cannot see (default: the spec's worst case)",
    )
    parser.add_argument(
        "--scan",
        action="store_true",
        help="eval: also plan scanning long videos (the config's scan settings, else the defaults)",
    )
    parser.add_argument(
        "--gpu-kind",
        default="h100",
        help="the GPU a scan's speed is estimated for: h100 (default), h200, a100 or l40s",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.set_defaults(func=run_plan)


def detect_job(data: dict) -> str:
    from vaur1.errors import ConfigError

    found = [job for job, keys in JOB_KEYS.items() if any(key in data for key in keys)]
    if found[:2] == ["grpo", "eval"]:
        raise ConfigError("the config has keys of both grpo and eval; pass --job")
    if not found:
        raise ConfigError("cannot tell whether the config is for grpo, sft or eval from its keys; pass --job")
    return found[0]


def run_plan(args: argparse.Namespace) -> int:
    import importlib

    from vaur1.cli.config import JOBS
    from vaur1.config import config_data, from_dict
    from vaur1.errors import VaurError
    from vaur1.plan import make_plan

    if args.gpus < 1:
        raise VaurError(f"--gpus: need at least 1, got {args.gpus}")
    data = config_data(args.config, args.overrides)
    job = args.job or detect_job(data)
    module, name = JOBS[job]
    cfg = from_dict(getattr(importlib.import_module(module), name), data)  # validated there
    plan = make_plan(
        job,
        cfg,
        gpus=args.gpus,
        memory_bytes=args.gpu_memory,
        engine=args.engine,
        device=args.device,
        files=args.video,
        size=args.video_size,
        seconds=args.video_seconds,
        scan=args.scan,
        gpu_kind=args.gpu_kind,
    )
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        show(plan)
    return 0


def gib(value: float | None) -> str:
    return "?" if value is None else f"{value / 2**30:.2f} GiB"


def show(plan: dict) -> None:
    console = output_console(highlight=False)
    console.print(
        f"[bold]{plan['job']}[/] with {plan['model']}: {plan['parameters'] / 1e9:.2f} B parameters "
        f"({plan['vision_parameters'] / 1e9:.2f} B vision), {plan['trainable_parameters'] / 1e9:.3f} B trainable, "
        f"{plan['dtype']}"
    )
    mean = plan["visual_tokens_mean"]
    console.print(
        f"videos: {plan['visual_tokens_per_video']} visual tokens at most"
        + (f" ({mean:.0f} on average)" if mean is not None else "")
        + f" [{plan['videos']}]; {plan['sequences_per_micro_batch']} sequence(s) of "
        f"{plan['sequence_tokens']} tokens per micro-batch"
        + (
            f"; scored as {plan['shared_prefix_rows']} row(s) of {plan['shared_prefix_tokens']} tokens, "
            "each prompt shared by its completions"
            if plan["shared_prefix_rows"]
            else ""
        ),
        markup=False,
    )
    table = Table(
        title=f"per {plan['device'].upper()} with {plan['engine']} on {plan['gpus']} process(es), "
        f"peak in {plan['peak_phase']}"
    )
    table.add_column("component")
    table.add_column("memory", justify="right")
    for key, value in plan["per_gpu_bytes"].items():
        if value or key == "total":
            table.add_row(f"[bold]{key}[/]" if key == "total" else key, gib(value))
    console.print(table)
    others = ", ".join(
        f"{name} {gib(row['total'])}{'' if row['fits'] else ' (no)'}" for name, row in plan["engines"].items()
    )
    console.print(f"engines: {others}", markup=False)
    verdict = "[green]fits[/]" if plan["fits"] else "[red]does not fit[/]"
    console.print(f"{verdict} in {gib(plan['memory_bytes'])}")
    for number, change in enumerate(plan["suggestions"]):
        lead = "cheapest change that fits" if number == 0 else "also fits"
        console.print(f"  {lead}: {change['change']} ({gib(change['total'])}): {change['how']}", markup=False)
    if not plan["fits"] and not plan["suggestions"]:
        console.print("  no single change makes it fit: combine them, or use GPUs with more memory")
    scan = plan["scan"]
    if scan is not None:
        console.print(
            f"scan: windows of {scan['window']:g} s every {scan['stride']:g} s, {scan['visual_tokens_per_window']} "
            f"visual tokens each, {scan['windows_per_call']} per call: {gib(scan['peak_bytes'])} at the peak; "
            f"about {scan['video_minutes_per_minute_estimate']:.0f} video-minutes per minute on one "
            f"{scan['gpu'].upper()} (a roofline estimate, not measured)",
            markup=False,
        )
    cache = plan["frame_cache"]
    if cache["bytes"] is not None:
        line = f"frame cache: {cache['bytes'] / 1e9:.1f} GB for {cache['videos']} videos (cache.max_gb {cache['limit_bytes'] / 1e9:g})"
        console.print(line if cache["fits"] else f"[yellow]{line}: it will evict and decode again[/]")
