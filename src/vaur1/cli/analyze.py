"""`vaur1 analyze VIDEO [--model PATH] [--json]`: one video through the model's TAG, CLS and reasoning prompts."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from vaur1.cli.video import add_spec_options, spec_from_args
from vaur1.vocab import MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="one video in: anomaly, class, interval, description and reasoning out",
        description="Runs the TAG, CLS and reasoning prompts on one video, with the VideoSpec, prompts and "
        "parser of evaluation. Without --model, the model the demo ends with (runs/demo/grpo/best) is used when it exists.",
    )
    parser.add_argument("video", metavar="VIDEO")
    parser.add_argument("--model", help="checkpoint directory or Hub id (default: the demo's model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--mode", choices=MODES, default="think", help="prompt mode (default think)")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="per prompt (default 1024)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    add_spec_options(parser)
    parser.set_defaults(func=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vaur1.analyze import AnalyzeOptions, analyze_video, default_model
    from vaur1.model.load import ModelConfig, hide_transformers_progress
    from vaur1.video.spec import read_model_spec

    hide_transformers_progress()
    model = ModelConfig(name_or_path=args.model or default_model(), device=args.device)
    spec = spec_from_args(args, base=read_model_spec(model.name_or_path))
    options = AnalyzeOptions(mode=args.mode)
    options.sampling = replace(options.sampling, max_new_tokens=args.max_new_tokens)
    options.sampling.validate()
    result = analyze_video(args.video, model, spec, options)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    table = Table(title=result["video"], show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    shown = {
        "anomaly": {True: "yes", False: "no", None: "unreadable"}[result["anomaly"]],
        "class": result["class"] or "unreadable",
        "interval": "-" if result["interval"] is None else "{:.1f} s - {:.1f} s".format(*result["interval"]),
        "description": result["description"] or "-",
        "reasoning": result["reasoning"] or "-",
    }
    for key, value in shown.items():
        table.add_row(key, value)
    Console().print(table)
    return 0
