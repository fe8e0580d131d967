"""`vaur1 model ...`: build tiny random models, describe checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from vaur1.console import output_console
from vaur1.errors import VaurError
from vaur1.vocab import ARCHITECTURES, ARCHS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="build tiny models, describe checkpoints")
    model = parser.add_subparsers(dest="model_command", required=True, metavar="COMMAND")

    tiny = model.add_parser("tiny", help="build a small random Qwen-VL model with tokenizer and processor")
    kind = tiny.add_mutually_exclusive_group(required=True)
    kind.add_argument("--arch", choices=ARCHS, help="a tiny model of this architecture")
    kind.add_argument(
        "--like",
        choices=ARCHITECTURES,
        help="a real architecture (its widths, heads, vocabulary and rotary layout) with fewer layers",
    )
    tiny.add_argument("--out", required=True, type=Path, help="directory to save it to (Hugging Face format)")
    tiny.add_argument(
        "--hidden-size", type=int, default=128, help="text and vision width (default 128; not with --like)"
    )
    tiny.add_argument("--layers", type=int, default=2, help="language model layers (default 2)")
    tiny.add_argument("--vision-depth", type=int, default=2, help="vision blocks with --like (default 2)")
    tiny.add_argument(
        "--full", action="store_true", help="with --like: every layer and block (the full-size model, random)"
    )
    tiny.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        default="bfloat16",
        help="weights' dtype with --like (default bfloat16, as published)",
    )
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

    from vaur1.model.info import checkpoint_info
    from vaur1.model.shipped import build_like_model
    from vaur1.model.tiny import build_tiny_model

    if args.full and not args.like:
        raise VaurError("--full builds a real architecture at full size: give it with --like")
    if args.like:
        build_like_model(
            args.like,
            out,
            layers=None if args.full else args.layers,
            vision_depth=None if args.full else args.vision_depth,
            dtype=args.dtype,
            seed=args.seed,
        )
    else:
        build_tiny_model(args.arch, out, hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed)
    summary = checkpoint_info(str(out))
    output_console().print(
        f"built {args.like or args.arch} in {out}: {summary['parameters']['total']:,} parameters, "
        f"vocabulary {summary['text']['vocab_size']}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from vaur1.model.info import checkpoint_info

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
    output_console().print(table)
    return 0


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
