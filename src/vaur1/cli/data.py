"""`vaur1 data ...`: inspect and generate benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vaur1.bench.loader import CLEANING_RULES
from vaur1.console import output_console
from vaur1.errors import ConfigError
from vaur1.layout import SYNTH_MANIFEST
from vaur1.vocab import MODES, QA


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect and generate benchmarks")
    data = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    stats = data.add_parser("stats", help="per-file counts of VAU-Bench CSVs (or a folder, or `vau-bench`)")
    stats.add_argument("paths", nargs="+", help="CSV files, folders with train/val/test_*.csv, or vau-bench")
    stats.add_argument("--json", action="store_true", help="print JSON instead of tables")
    stats.add_argument("--strict", action="store_true", help="stop at the first malformed row")
    stats.add_argument(
        "--clean",
        action="append",
        default=[],
        metavar="RULE",
        help="apply a cleaning rule that changes what is scored (off by default, which keeps the paper's "
        "protocol): " + "; ".join(f"{name}: {text}" for name, text in CLEANING_RULES.items()),
    )
    stats.set_defaults(func=run_stats)

    synth = data.add_parser("synth", help="generate SynthVAU, a synthetic benchmark in the VAU-Bench format")
    synth.add_argument("--out", required=True, help="folder for videos/, the CSVs and synthvau.json")
    synth.add_argument("--n", type=int, default=300, help="number of clips")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--split-ratio", default="0.8", help="0.8 (train/test) or 0.7,0.1,0.2 (train/val/test)"
    )
    synth.add_argument(
        "--size", type=_size, metavar="WxH", help="frame size (default 160x120; --long: 112x84, the demo's)"
    )
    synth.add_argument(
        "--duration",
        type=_seconds_range,
        default=(8.0, 16.0),
        metavar="A..B",
        help="clip length in s (8..16)",
    )
    synth.add_argument("--fps", type=int, default=8, help="frame rate of the clips")
    synth.add_argument(
        "--extra-test",
        type=int,
        default=0,
        metavar="M",
        help="M more clips for the test split alone (train and val stay those of the N split clips)",
    )
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    long = synth.add_argument_group(
        "long recordings",
        "--long writes camera recordings of --minutes each instead of clips: one scene without a cut, "
        "--events anomalies at known times with normal footage around them (the last recording normal "
        "throughout), listed in OUT/events.csv; for `vaur1 analyze --scan` and `vaur1 eval scan`.",
    )
    long.add_argument("--long", action="store_true", help="write long recordings instead of clips")
    long.add_argument("--recordings", type=int, default=2, help="how many (default 2)")
    long.add_argument("--minutes", type=float, default=10.0, help="length of each (default 10)")
    long.add_argument("--events", type=int, default=3, help="anomalies per recording (default 3)")
    synth.set_defaults(func=run_synth)

    export = data.add_parser(
        "export",
        help="write a benchmark as a Hugging Face DatasetDict, LLaMA-Factory ShareGPT SFT data, or lmms-eval tasks",
        description="datasets: one split per CSV with typed columns, for datasets.load_from_disk (and "
        "`vaur1 ... data.bench=OUT` reads it back). sharegpt: SFT examples (prompt with <video>, the "
        "answer target, the video path) per split, with a dataset_info.json for LLaMA-Factory. lmms-eval: "
        "the test splits and one task YAML per task and dataset (vau_bench_qa_msad, ...; tags vau_bench_qa, "
        "vau_bench_tag, vau_bench_cls), scored by vaur1's parser and metrics: lmms-eval --include_path OUT.",
    )
    export.add_argument("bench", metavar="BENCH", help="CSV file, folder of VAU-Bench CSVs, or vau-bench")
    export.add_argument("out", type=Path, help="output folder (must not exist or be empty)")
    export.add_argument("--format", choices=("datasets", "sharegpt", "lmms-eval"), default="datasets")
    export.add_argument("--strict", action="store_true", help="stop at the first malformed row")
    export.add_argument(
        "--videos",
        action="append",
        default=[],
        metavar="[SOURCE=]ROOT",
        help="sharegpt, lmms-eval: the folder holding the videos, or one per source "
        "(msad=DIR, ucf=DIR, ecva=DIR; repeat the option); a SynthVAU folder's videos/ by default",
    )
    export.add_argument(
        "--tasks", default="qa,tag,cls", help="sharegpt: comma-separated tasks (default qa,tag,cls)"
    )
    export.add_argument("--target", choices=("answer", "cot"), default="answer", help="sharegpt: SFT target")
    export.add_argument(
        "--split", action="append", default=None, help="lmms-eval: a split to export (default: test*)"
    )
    export.add_argument("--mode", choices=MODES, default="direct", help="lmms-eval: the prompt mode")
    export.add_argument(
        "--max-new-tokens", type=int, default=1024, help="lmms-eval: the tasks' generation budget"
    )
    export.set_defaults(func=run_export)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 160x120") from None
    return width, height


def _seconds_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(".."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not A..B, e.g. 8..16") from None
    return low, high


def run_synth(args: argparse.Namespace) -> int:
    import time

    from vaur1.bench.synth import generate_synthvau

    started = time.perf_counter()
    if args.long:
        return _synth_long(args, started)
    out = generate_synthvau(
        args.out,
        n=args.n,
        seed=args.seed,
        split_ratio=args.split_ratio,
        size=args.size or (160, 120),
        duration=args.duration,
        fps=args.fps,
        workers=args.workers,
        extra_test=args.extra_test,
    )
    manifest = json.loads((out / SYNTH_MANIFEST).read_text(encoding="utf-8"))
    console = output_console()
    for split, counts in manifest["counts"].items():
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        console.print(f"{split}.csv: {sum(counts.values())} clips ({listed})", highlight=False)
    seconds = time.perf_counter() - started
    clips = args.n + args.extra_test
    console.print(f"SynthVAU: {clips} clips in {out} ({seconds:.1f} s)", highlight=False, markup=False)
    return 0


def _synth_long(args: argparse.Namespace, started: float) -> int:
    import time

    from vaur1.bench.synth_long import EVENTS_CSV, generate_recordings, read_events

    out = generate_recordings(
        args.out,
        count=args.recordings,
        minutes=args.minutes,
        events=args.events,
        seed=args.seed,
        size=args.size or (112, 84),
        fps=args.fps,
    )
    console = output_console()
    for name, entry in read_events(out / EVENTS_CSV).items():
        times = ", ".join(f"{start:g}-{end:g} s {kind}" for start, end, kind in entry["events"]) or "normal"
        console.print(f"{name}: {entry['duration']:g} s; {times}", highlight=False, markup=False)
    seconds = time.perf_counter() - started
    console.print(f"{args.recordings} recordings in {out} ({seconds:.1f} s)", highlight=False, markup=False)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from vaur1.bench import load_bench
    from vaur1.bench.stats import bench_stats

    result = bench_stats(load_bench(list(args.paths), strict=args.strict, cleaning=args.clean))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = output_console()
    summary = Table(title="VAU-Bench files")
    for column in (
        "file",
        "rows",
        QA,
        "tag +",
        "tag normal",
        "tag missing",
        "skipped",
        "repairs",
        "warnings",
    ):
        summary.add_column(column, justify="left" if column == "file" else "right")
    for name, s in result["files"].items():
        summary.add_row(
            name,
            str(s["rows"]),
            str(s[QA]),
            str(s["tag_positive"]),
            str(s["tag_normal"]),
            str(s["tag_missing"]),
            str(sum(s["skipped"].values())),
            str(sum(s["repairs"].values())),
            str(len(s["warnings"])),
        )
    console.print(summary)
    rules = sorted({rule for s in result["files"].values() for rule in s["cleaning"]})
    if rules:
        console.print(
            "cleaning rules on (the counts differ from the paper's protocol): " + ", ".join(rules),
            highlight=False,
        )
    for name, s in result["files"].items():
        console.print(f"\n[bold]{name}[/]")
        console.print("  classes: " + ", ".join(f"{c} {n}" for c, n in s["classes"].items()))
        console.print("  reasoning: " + ", ".join(f"{f} {n}" for f, n in s["reasoning_format"].items()))
        for reason, count in s["skipped"].items():
            console.print(f"  [red]skipped[/] {count} rows: {reason}")
        for problem in s["problems"]:
            console.print(f"    {problem}", highlight=False)
        for repair, count in s["repairs"].items():
            console.print(f"  [yellow]repaired[/] {count}: {repair}")
        for warning in s["warnings"]:
            console.print(f"  [yellow]warning[/] {warning}", highlight=False)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from vaur1.bench import load_bench
    from vaur1.errors import VaurError

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VaurError(f"{out}: exists and is not an empty folder")
    bench = load_bench(args.bench, strict=args.strict)
    console = output_console(highlight=False)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    for report in bench.reports.values():  # what the export leaves out is said, never dropped silently
        for reason, count in report.skipped.items():
            errors.print(f"[yellow]skipped[/] {count} of {report.rows_read} rows of {report.file}: {reason}")
        for problem in report.problems[:5]:
            errors.print(f"  {problem}", markup=False)
    if args.format == "datasets":
        from vaur1.bench.datasets_io import to_dataset_dict

        dataset = to_dataset_dict(bench.samples)
        dataset.save_to_disk(str(out))
        sizes = ", ".join(f"{name} {len(rows)}" for name, rows in dataset.items())
        console.print(f"wrote a DatasetDict to {out}: {sizes}", markup=False)
        return 0
    roots = _video_roots(args.videos, args.bench)
    if args.format == "lmms-eval":
        from vaur1.eval.lmms_eval import write_tasks

        if args.max_new_tokens < 1:
            raise VaurError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
        names = write_tasks(bench.samples, out, roots, args.split, args.mode, args.max_new_tokens)
        console.print(f"wrote {len(names)} lmms-eval tasks to {out}: {', '.join(names)}", markup=False)
        console.print(
            f"run them with: lmms-eval eval --include_path {out} --tasks {','.join(names)} ...", markup=False
        )
        return 0
    from vaur1.bench.tasks import parse_tasks, task_view
    from vaur1.files import write_text
    from vaur1.prompts import sharegpt_record
    from vaur1.sft.config import TARGETS

    mode, target = TARGETS[args.target]
    out.mkdir(parents=True, exist_ok=True)
    info = {}
    for split in bench.splits:
        samples = bench.split(split)
        records = [
            sharegpt_record(example, mode, target, str(_video_path(roots, example)))
            for task in parse_tasks(args.tasks)
            for example in task_view(samples, task)
        ]
        if not records:
            continue
        name = f"vau_bench_{split}"
        write_text(out / f"{name}.json", json.dumps(records, ensure_ascii=False, indent=1))
        info[name] = {
            "file_name": f"{name}.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "videos": "videos"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
        console.print(f"{name}.json: {len(records)} examples", markup=False)
    if not info:
        raise VaurError(f"{args.bench}: no examples for tasks {args.tasks}")
    write_text(out / "dataset_info.json", json.dumps(info, indent=2))
    return 0


def _video_roots(values: list[str], bench: str):
    """--videos ROOT / SOURCE=ROOT as video roots; a SynthVAU folder's videos/ serves what is unset."""
    from vaur1.bench.schema import SOURCES
    from vaur1.data import DataConfig
    from vaur1.errors import VaurError
    from vaur1.video.roots import VideoRoots

    folders: dict[str, str] = {}
    for value in values:
        source, _, folder = value.rpartition("=")
        key = source or "default"
        if key not in ("default", *SOURCES):
            raise VaurError(f"--videos {value}: {source!r} is not a source ({', '.join(SOURCES)})")
        if not Path(folder).is_dir():
            raise VaurError(f"--videos {value}: {folder} is not a folder")
        folders[key] = folder
    return DataConfig(bench=bench, video_roots=VideoRoots(**folders)).roots()


def _video_path(roots, example) -> str | Path:
    """sharegpt: the video's path under its root, or its file name where no root is known."""
    try:
        return roots.resolve(example)
    except ConfigError:
        return example.video
