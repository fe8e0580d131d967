"""`vaur1 analyze VIDEO|FOLDER ... [--model PATH] [--json]`: videos through the model's TAG, CLS and
reasoning prompts, the model loaded once."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vaur1.cli.scanning import add_scan_options, load_prompts, scan_config, scan_with_progress
from vaur1.cli.video import add_spec_options, spec_from_args
from vaur1.console import output_console
from vaur1.vocab import BACKENDS, CLS, HF, MODES, REASONING, TAG


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="videos in: anomaly, class, interval, description and reasoning out",
        description="Runs the TAG, CLS and reasoning prompts on each video (or each video of a folder), with "
        "the VideoSpec, prompts and parser of evaluation, loading the model once. Without --model, the model "
        "the demo ends with (runs/demo/grpo/best) is used when it exists.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument("--model", help="checkpoint directory or Hub id (default: the demo's model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--mode", choices=MODES, default="think", help="prompt mode (default think)")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="per prompt (default 1024)")
    parser.add_argument("--backend", choices=BACKENDS, default=HF, help="hf (transformers, default) or vllm")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument(
        "--out",
        type=Path,
        help="also write OUT/<video>.html: the frames, the interval on a timeline, the answers",
    )
    add_scan_options(parser)
    add_spec_options(parser)
    parser.set_defaults(func=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vaur1.analyze import AnalyzeOptions, analyze_frames, default_model, expand_videos
    from vaur1.errors import VaurError
    from vaur1.eval.scan import needs_scan
    from vaur1.model.generators import load_generator
    from vaur1.model.load import ModelConfig
    from vaur1.video.decode import decode, probe
    from vaur1.video.spec import read_model_spec

    videos = expand_videos(args.videos)
    model = ModelConfig(name_or_path=args.model or default_model(), device=args.device)
    spec = spec_from_args(args, base=read_model_spec(model.name_or_path))
    options = AnalyzeOptions(mode=args.mode, prompts=load_prompts(args.prompts))
    options.sampling = replace(options.sampling, max_new_tokens=args.max_new_tokens)
    options.sampling.validate()
    scan = scan_config(args)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    generator = None
    results, failed = [], 0
    for number, video in enumerate(videos, start=1):
        try:
            scanned = args.scan
            if scanned is None:  # the video's length decides, read only when it has to
                duration = probe(video).duration
                scanned = needs_scan(duration, spec, scan.window)
                if scanned:
                    err.print(
                        f"{video.name}: {duration:.0f} s is longer than one pass of the VideoSpec covers at "
                        f"a window's spacing: scanned in windows of {scan.window:g} s every {scan.stride:g} s "
                        "(--no-scan: one pass)"
                    )
            if generator is None:
                with err.status("loading the model"):
                    generator = load_generator(model, options.sampling, spec, args.backend)
            if scanned:
                result = scan_with_progress(
                    video, generator, spec, scan, options.prompts, err, number, len(videos)
                )
            else:
                # a spinner on a terminal (stderr, so that --json stays clean); nothing when piped
                with err.status(f"analyzing {video.name} ({number} of {len(videos)})"):
                    frames = decode(video, spec)
                    result = analyze_frames(frames, model, spec, options, generator=generator)
        except VaurError as error:
            if len(videos) == 1:
                raise
            err.print(f"[bold red]error:[/] {error}")
            failed += 1
            continue
        results.append(result)
        if args.out is not None:
            write_scan_page(result, spec, args.out) if scanned else write_page(result, frames, args.out)
        if not args.json:
            print_scan(result) if scanned else print_result(result)
    if args.json:
        print(json.dumps(results[0] if len(videos) == 1 else results, indent=2, ensure_ascii=False))
    return 2 if failed else 0


def write_scan_page(result: dict, spec, out: Path) -> Path:
    """OUT/<video>.html for a scan: the score over time, the events and a strip of each event's frames."""
    from vaur1.files import write_text
    from vaur1.present.scan_page import event_frames, scan_page

    out.mkdir(parents=True, exist_ok=True)
    page = scan_page(result, event_frames(result["video"], spec, result))
    return write_text(out / f"{Path(result['video']).stem}.html", page)


def print_scan(result: dict) -> None:
    """The events of a scan, one row each, under a line that says what was scanned."""
    scored = [w for w in result["windows"] if w["score"] is not None]
    table = Table(title=f"{result['video']}: {len(result['events'])} event(s)")
    for column in ("event", "start", "end", "class", "score", "windows"):
        table.add_column(column)
    for index, event in enumerate(result["events"], start=1):
        table.add_row(
            str(index),
            f"{event['start']:.1f} s",
            f"{event['end']:.1f} s",
            event["class"] or "-",
            f"{event['score']:.3f}",
            str(event["windows"]),
        )
    console = output_console()
    console.print(table)
    highest = max((w["score"] for w in scored), default=None)
    console.print(
        f"{len(result['windows'])} windows of {result['window']:g} s every {result['stride']:g} s over "
        f"{result['duration']:.0f} s: {len(scored)} scored"
        + (f", highest score {highest:.3f}" if highest is not None else "")
        + f", {result['skipped_windows']} not decodable (threshold {result['threshold']:g})",
        highlight=False,
        markup=False,
    )


def write_page(result: dict, frames, out: Path) -> Path:
    from vaur1.files import write_text
    from vaur1.present.gallery import analysis_page

    out.mkdir(parents=True, exist_ok=True)
    return write_text(out / f"{Path(frames.path).stem}.html", analysis_page(result, frames))


def print_result(result: dict) -> None:
    """One table per video; a field the parser could not read shows the model's raw output instead."""
    table = Table(title=result["video"], show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    from rich.markup import escape

    raw = {task: escape(text.strip()[:500]) for task, text in result["raw"].items()}
    unreadable = "[red]unreadable[/], the model said: {}"
    readable = {True: "yes", False: "no", None: unreadable.format(raw[TAG])}
    shown = {
        "anomaly": readable[result["anomaly"]],
        "class": escape(result["class"] or "") or unreadable.format(raw[CLS]),
        "interval": "-" if result["interval"] is None else "{:.1f} s - {:.1f} s".format(*result["interval"]),
        "description": escape(result["description"] or "-"),
        REASONING: escape(result[REASONING] or "") or unreadable.format(raw[REASONING]),
    }
    for key, value in shown.items():
        table.add_row(key, value)
    output_console().print(table)
