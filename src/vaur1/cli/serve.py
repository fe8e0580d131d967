"""`vaur1 serve [--model [NAME=]PATH ...] [--port 7860]`: the analysis of an uploaded video in a browser."""

from __future__ import annotations

import argparse

from rich.console import Console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a web page: pick a model, upload a video, read its analysis",
        description="Serves a page where a person picks a model, uploads a video and sees the same view as "
        "`vaur1 analyze --out`. Each model loads once, on its first video. Needs vaur1[serve].",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="[NAME=]PATH",
        help="a checkpoint to offer (repeat for several); default: the demo's model",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--mode", choices=("direct", "think"), default="think", help="prompt mode (default think)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="per prompt (default 1024)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from vaur1.analyze import AnalyzeOptions, default_model
    from vaur1.errors import VaurError
    from vaur1.model.load import hide_transformers_progress
    from vaur1.video.spec import model_video_spec

    try:
        import uvicorn

        from vaur1.serve import build_app
    except ImportError as err:
        raise VaurError(
            f"vaur1 serve needs its web packages: pip install 'vaur1[serve]' ({err.name} is missing)"
        ) from None
    hide_transformers_progress()
    models = {}
    for given in args.model or [default_model()]:
        name, _, path = given.rpartition("=") if "=" in given else (Path(given).name, "", given)
        models[name or Path(path).name] = path
    options = AnalyzeOptions(mode=args.mode)
    options.sampling = replace(options.sampling, max_new_tokens=args.max_new_tokens)
    app = build_app(models, model_video_spec, options, device=args.device)
    Console(stderr=True).print(f"serving {', '.join(models)} on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
