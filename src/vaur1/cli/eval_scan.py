"""`vaur1 eval scan --model M --recordings DIR --out OUT`: long recordings scanned and scored against
their known events (frame-level AUC / AP, video AUC, event recall / precision)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vaur1.cli.scanning import add_scan_options, load_prompts, scan_config
from vaur1.cli.video import add_spec_options, spec_from_args
from vaur1.console import output_console
from vaur1.vocab import BACKENDS, HF


def register_scan(commands: argparse._SubParsersAction) -> None:
    scan = commands.add_parser(
        "scan",
        help="scan long recordings and score them as anomaly-detection papers do (frame AUC / AP)",
        description="Scans every video of RECORDINGS/videos (or --videos) in windows and scores the window "
        "scores and events against RECORDINGS/events.csv (`vaur1 data synth --long` writes both): frame-level "
        "ROC-AUC and AP at 1 instant per second with 95%% intervals over videos, video-level AUC, and event "
        "recall / precision at IoU 0.3 and 0.5. OUT/scans.jsonl gets each scan as it ends (a rerun continues "
        "with the videos not yet scanned); OUT/scan_metrics.json the numbers.",
    )
    scan.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    scan.add_argument("--recordings", type=Path, required=True, help="a folder with videos/ and events.csv")
    scan.add_argument("--events", type=Path, help="the events table (default RECORDINGS/events.csv)")
    scan.add_argument(
        "--out", type=Path, required=True, help="the folder for scans.jsonl and scan_metrics.json"
    )
    scan.add_argument(
        "--max-new-tokens", type=int, default=64, help="per prompt (direct answers; default 64)"
    )
    scan.add_argument("--backend", choices=BACKENDS, default=HF, help="hf (transformers, default) or vllm")
    scan.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    add_scan_options(scan, automatic=False)
    add_spec_options(scan)
    scan.set_defaults(func=run_scan_command)


def run_scan_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vaur1.analyze import expand_videos
    from vaur1.bench.synth_long import EVENTS_CSV, read_events
    from vaur1.cli.scanning import progress_bar
    from vaur1.eval.config import EVAL_DEFAULTS
    from vaur1.eval.scan_eval import SCAN_METRICS_JSON, SCANS_JSONL, scan_recordings, score_scans
    from vaur1.files import write_text
    from vaur1.model.generate import SamplingConfig
    from vaur1.model.generators import load_generator
    from vaur1.model.load import ModelConfig
    from vaur1.video.spec import read_model_spec

    table = read_events(args.events or args.recordings / EVENTS_CSV)
    videos = expand_videos([args.recordings / "videos"])
    model = ModelConfig(name_or_path=args.model, device=args.device)
    spec = spec_from_args(args, base=read_model_spec(model.name_or_path))
    cfg = scan_config(args)
    sampling = replace(SamplingConfig(**EVAL_DEFAULTS["sampling"]), max_new_tokens=args.max_new_tokens)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with err.status("loading the model"):
        generator = load_generator(model, sampling, spec, args.backend)
    args.out.mkdir(parents=True, exist_ok=True)
    with progress_bar(err) as progress:

        def on_video(video: Path, number: int, total: int):
            task = progress.add_task(f"{video.name} ({number} of {total}): windows", total=None)
            return lambda done, windows: progress.update(task, completed=done, total=windows)

        scans = scan_recordings(
            videos, table, generator, spec, cfg, args.out / SCANS_JSONL, load_prompts(args.prompts), on_video
        )
    metrics = {
        "model": args.model,
        "recordings": str(args.recordings),
        "window": cfg.window,
        "stride": cfg.stride,
        "threshold": cfg.threshold,
        "spec": spec.describe(),
        **score_scans(scans, table, cfg.frame_rate),
    }
    write_text(args.out / SCAN_METRICS_JSON, json.dumps(metrics, indent=2) + "\n")
    print_metrics(metrics)
    return 0


def _with_ci(metrics: dict, key: str) -> str:
    value, interval = metrics.get(key), metrics.get(f"{key}_ci")
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def print_metrics(metrics: dict) -> None:
    table = Table(
        title=f"{metrics['videos']} recordings scanned ({metrics['window']:g} s windows every {metrics['stride']:g} s)"
    )
    table.add_column("metric")
    table.add_column("value", overflow="fold")
    table.add_row("frame AUC", _with_ci(metrics, "frame_auc"))
    table.add_row("frame AP", _with_ci(metrics, "frame_ap"))
    table.add_row("video AUC", _with_ci(metrics, "video_auc"))
    for iou in ("overlap", 0.3, 0.5):
        recall, precision = metrics[f"recall@{iou}"], metrics[f"precision@{iou}"]
        table.add_row(
            "events overlapping" if iou == "overlap" else f"events at IoU {iou}",
            f"recall {'-' if recall is None else f'{recall:.2f}'}, precision {'-' if precision is None else f'{precision:.2f}'}",
        )
    table.add_row(
        "counted",
        f"{metrics['instants']} instants ({metrics['anomalous_instants']} anomalous, {metrics['uncovered_instants']} "
        f"not covered), {metrics['known_events']} known and {metrics['predicted_events']} predicted events, "
        f"{metrics['skipped_windows']} windows not decodable",
    )
    output_console().print(table)
