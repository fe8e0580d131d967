"""`vaur1 model ...`: build tiny random models, describe checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vaur1.errors import VaurError

ARCH_CHOICES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="build tiny models, describe checkpoints")
    model = parser.add_subparsers(dest="model_command", required=True, metavar="COMMAND")

    tiny = model.add_parser("tiny", help="build a small random Qwen-VL model with tokenizer and processor")
    tiny.add_argument("--arch", required=True, choices=ARCH_CHOICES)
    tiny.add_argument("--out", required=True, type=Path, help="directory to save it to (Hugging Face format)")
    tiny.add_argument("--hidden-size", type=int, default=128, help="text and vision width (default 128)")
    tiny.add_argument("--layers", type=int, default=2, help="language model layers (default 2)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--force", action="store_true", help="write into a non-empty directory")
    tiny.set_defaults(func=run_tiny)

    info = model.add_parser("info", help="architecture, sizes and processor settings of a checkpoint")
    info.add_argument("path", help="checkpoint directory or Hub id")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=run_info)


def run_tiny(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise VaurError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise VaurError(f"{out}: directory is not empty (pass --force to write into it)")

    from transformers.utils import logging as hf_logging

    from vaur1.model.tiny import build_tiny_model

    hf_logging.disable_progress_bar()
    build_tiny_model(args.arch, out, hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed)
    summary = checkpoint_info(str(out))
    Console().print(
        f"built {args.arch} in {out}: {summary['parameters']['total']:,} parameters, "
        f"vocabulary {summary['text']['vocab_size']}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    summary = checkpoint_info(args.path)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    table = Table(title=str(args.path), show_header=False)
    table.add_column("field")
    table.add_column("value")
    for section, values in summary.items():
        if isinstance(values, dict):
            for key, value in values.items():
                table.add_row(f"{section}.{key}", _show(value))
        else:
            table.add_row(section, _show(values))
    Console().print(table)
    return 0


def checkpoint_info(name_or_path: str) -> dict[str, Any]:
    """What `vaur1 model info` shows, read from the config and processor (weights are not loaded)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vaur1.model.generate import vision_placeholder_ids
    from vaur1.model.inputs import processor_factor, temporal_patch
    from vaur1.model.load import count_parameters, load_config_of, resolve_checkpoint
    from vaur1.model.tiny import official_chat_template

    checkpoint = resolve_checkpoint(name_or_path)
    config = load_config_of(name_or_path)
    try:
        processor = AutoProcessor.from_pretrained(checkpoint.model, local_files_only=checkpoint.local)
    except (OSError, ValueError) as err:
        raise VaurError(f"{checkpoint.model}: cannot load the processor: {err}") from None
    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    counts = count_parameters(skeleton)
    text, vision = config.text_config, config.vision_config
    template = getattr(processor, "chat_template", None)
    official = official_chat_template(config.model_type)
    video_processor, image_processor = processor.video_processor, processor.image_processor
    return {
        "arch": config.model_type,
        "class": (config.architectures or ["?"])[0],
        "dtype": str(getattr(config, "dtype", None) or getattr(text, "dtype", "?")).removeprefix("torch."),
        "adapter": str(checkpoint.adapter) if checkpoint.adapter else None,
        "parameters": {"total": counts.total, "vision": counts.vision, "text": counts.text},
        "text": {
            "hidden_size": text.hidden_size,
            "layers": text.num_hidden_layers,
            "heads": text.num_attention_heads,
            "kv_heads": text.num_key_value_heads,
            "head_dim": getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
            "vocab_size": text.vocab_size,
            "mrope_section": (text.rope_parameters or {}).get("mrope_section"),
        },
        "vision": {
            "depth": vision.depth,
            "hidden_size": getattr(vision, "embed_dim", None) or vision.hidden_size,
            "heads": vision.num_heads,
            "patch_size": vision.patch_size,
            "temporal_patch_size": vision.temporal_patch_size,
        },
        "processor": {
            "class": type(processor).__name__,
            "factor": processor_factor(processor),
            "temporal_patch": temporal_patch(processor),
            "video_min_pixels": video_processor.size["shortest_edge"],
            "video_max_pixels": video_processor.size["longest_edge"],
            "video_budget": "all frames" if config.model_type == "qwen3_vl" else "per frame",
            "image_min_pixels": image_processor.size["shortest_edge"],
            "image_max_pixels": image_processor.size["longest_edge"],
            "vision_placeholder_ids": vision_placeholder_ids(processor),
            "chat_template": "official" if template == official else ("custom" if template else "none"),
        },
    }


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
