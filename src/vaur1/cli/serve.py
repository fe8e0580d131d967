"""`vaur1 serve [--model [NAME=]PATH ...] [--port 7860]`: the analysis of an uploaded video in a browser."""

from __future__ import annotations

import argparse

from rich.console import Console

from vaur1.cli.scanning import add_scan_options, load_prompts, scan_config


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
    parser.add_argument("--port", type=_port, default=7860, help="port, 1-65535 (default 7860)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name requests may use besides loopback and --host (repeat; needed with --host 0.0.0.0)",
    )
    parser.add_argument(
        "--max-upload-gb", type=float, default=4.0, help="largest upload taken, in GB (default 4)"
    )
    parser.add_argument(
        "--queue", type=int, default=4, help="videos that may wait behind the one analysed (default 4)"
    )
    parser.add_argument(
        "--decode-timeout",
        type=float,
        default=300.0,
        help="seconds one video may take to decode (default 300)",
    )
    parser.add_argument(
        "--mode", choices=("direct", "think"), default="think", help="prompt mode (default think)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="per prompt (default 1024)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    add_scan_options(parser, automatic=False)
    parser.set_defaults(func=run_serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535)")
    return port


def run_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from vaur1.analyze import AnalyzeOptions, default_model
    from vaur1.errors import VaurError
    from vaur1.model.load import check_device
    from vaur1.video.decode import DecodeLimits
    from vaur1.video.spec import model_video_spec

    try:
        import uvicorn

        from vaur1.serve import ServeLimits, allowed_hosts, build_app
    except ImportError as err:
        raise VaurError(
            f"vaur1 serve needs its web packages: pip install 'vaur1[serve]' ({err.name} is missing)"
        ) from None
    models = {}
    for given in args.model or [default_model()]:
        name, _, path = given.rpartition("=") if "=" in given else (Path(given).name, "", given)
        models[name or Path(path).name] = path
    if args.max_upload_gb <= 0 or args.queue < 1 or args.decode_timeout <= 0:
        raise VaurError("--max-upload-gb and --decode-timeout must be positive, --queue at least 1")
    check_device(args.device, "--device")
    options = AnalyzeOptions(mode=args.mode, prompts=load_prompts(args.prompts))
    options.sampling = replace(options.sampling, max_new_tokens=args.max_new_tokens)
    limits = ServeLimits(
        max_upload_bytes=int(args.max_upload_gb * 1024**3),
        max_waiting=args.queue,
        decode=DecodeLimits(timeout_s=args.decode_timeout),
    )
    hosts = allowed_hosts(args.host, args.allow_host)
    app = build_app(
        models,
        model_video_spec,
        options,
        device=args.device,
        limits=limits,
        hosts=hosts,
        scan=scan_config(args),
    )
    Console(stderr=True).print(f"serving {', '.join(models)} on http://{args.host}:{args.port}/")
    # SIGTERM ends the server within seconds: requests still waiting for a model are cut after 3 s,
    # and the worker thread, a daemon, ends with the process
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3)
    return 0
