"""`vaur1 eval ...`: score model outputs against a benchmark.

vaur1 eval metrics --task tag --bench test_msad.csv --predictions preds.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vaur1.errors import VaurError

MAX_LISTED_LINES = 20  # line numbers listed per problem kind; the counts are always complete
PREDICTIONS_HELP = (
    'one JSON object a line: {"video": "<Video Name as in the CSV>", "output": "<raw model text>"}'
)
METRIC_NAMES = {
    "qa": ("accuracy",),
    "tag": ("miou", "r@0.3", "r@0.5", "r@0.7", "false_alarm_rate"),
    "cls": ("binary_accuracy", "multiclass_accuracy", "macro_f1"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate model outputs on a benchmark")
    commands = parser.add_subparsers(dest="eval_command", required=True, metavar="COMMAND")

    metrics = commands.add_parser(
        "metrics",
        help="task metrics of a predictions file against a VAU-Bench CSV",
        description="Task metrics of raw model outputs against a VAU-Bench CSV, overall and per source, "
        "with bootstrap 95% intervals. Unknown videos, duplicate lines (the first one counts) and "
        "malformed lines are reported with their line numbers; malformed lines make the exit status 1.",
    )
    metrics.add_argument("--task", required=True, choices=("qa", "tag", "cls"))
    metrics.add_argument("--bench", required=True, help="a VAU-Bench CSV (or a folder of them)")
    metrics.add_argument(
        "--predictions", required=True, type=Path, metavar="FILE.jsonl", help=PREDICTIONS_HELP
    )
    metrics.add_argument("--json", action="store_true", help="print JSON instead of tables")
    metrics.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    metrics.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    metrics.set_defaults(func=run_metrics)


@dataclass
class PredictionFile:
    """Raw outputs by video name, and what was wrong with the file's lines."""

    outputs: dict[str, str | None] = field(default_factory=dict)
    lines: int = 0
    unknown: list[int] = field(default_factory=list)
    duplicate: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)

    def report(self, matched: int, not_scored: int) -> dict:
        return {
            "lines": self.lines,
            "matched": matched,
            "not_scored_for_task": not_scored,
            "unknown_videos": {"count": len(self.unknown), "lines": self.unknown[:MAX_LISTED_LINES]},
            "duplicates": {"count": len(self.duplicate), "lines": self.duplicate[:MAX_LISTED_LINES]},
            "malformed": {
                "count": len(self.malformed),
                "lines": [{"line": n, "error": e} for n, e in self.malformed[:MAX_LISTED_LINES]],
            },
        }


def _parse_prediction(text: str) -> tuple[str, str | None]:
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    video, output = record.get("video"), record.get("output", ...)
    if not isinstance(video, str) or not video:
        raise ValueError('"video" must be a non-empty string')
    if output is ...:
        raise ValueError('missing "output" (use null for a video the model gave no output for)')
    if output is not None and not isinstance(output, str):
        raise ValueError(f'"output" must be a string or null, got {type(output).__name__}')
    return video, output


def read_predictions(path: Path, known_videos: set[str]) -> PredictionFile:
    """Read a predictions JSONL file; the first line of a video counts, later ones are duplicates."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise VaurError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise VaurError(f"{path}: not UTF-8 text: {err}") from None
    result = PredictionFile()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        result.lines += 1
        try:
            video, output = _parse_prediction(text)
        except ValueError as err:  # json.JSONDecodeError is a ValueError too
            result.malformed.append((number, str(err)))
            continue
        if video not in known_videos:
            result.unknown.append(number)
        elif video in result.outputs:
            result.duplicate.append(number)
        else:
            result.outputs[video] = output
    return result


def run_metrics(args: argparse.Namespace) -> int:
    from vaur1.bench import load_bench
    from vaur1.bench.tasks import task_view
    from vaur1.eval.metrics import compute_metrics

    bench = load_bench(args.bench)
    names: dict[str, str] = {}
    for sample in bench.samples:
        if sample.id in names:
            raise VaurError(
                f"{args.bench}: video {sample.id!r} is in both {names[sample.id]} and {sample.split}"
            )
        names[sample.id] = sample.split
    predictions = read_predictions(args.predictions, set(names))
    examples = task_view(bench.samples, args.task)
    outputs = {e.key: predictions.outputs[e.id] for e in examples if e.id in predictions.outputs}
    result = compute_metrics(args.task, examples, outputs, resamples=args.resamples, seed=args.seed)
    result["predictions"] = predictions.report(len(outputs), len(predictions.outputs) - len(outputs))

    err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    for number, error in predictions.malformed:
        err_console.print(f"[red]{args.predictions}:{number}:[/] {error}")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_tables(args.task, result)
    return 1 if predictions.malformed else 0


def _print_tables(task: str, result: dict) -> None:
    console = Console(highlight=False)
    table = Table(title=f"{task} metrics (%)")
    for column in ("source", "metric", "value", "95% interval"):
        table.add_column(column, justify="left" if column in ("source", "metric") else "right")
    blocks = [("all", result), *sorted(result["by_source"].items())]
    for index, (source, block) in enumerate(blocks):
        table.add_row(source, "n", str(block["n"]), "", end_section=False)
        for name in METRIC_NAMES[task]:
            value, interval = block[name], block["ci"][name]
            table.add_row(
                "",
                name,
                "-" if value is None else f"{value:.2f}",
                f"{interval[0]:.2f} - {interval[1]:.2f}" if interval else "",
            )
        table.add_row(
            "",
            "missing / unparsed",
            f"{block['missing']} / {block['unparsed']}",
            "",
            end_section=index < len(blocks) - 1,
        )
    console.print(table)
    report = result["predictions"]
    console.print(
        f"{report['lines']} prediction lines: {report['matched']} scored, "
        f"{report['not_scored_for_task']} for videos this task does not score"
    )
    for kind in ("unknown_videos", "duplicates", "malformed"):
        problem = report[kind]
        if problem["count"]:
            listed = problem["lines"] if kind != "malformed" else [p["line"] for p in problem["lines"]]
            more = " ..." if problem["count"] > len(listed) else ""
            console.print(
                f"[yellow]{problem['count']} {kind.replace('_', ' ')}[/] at lines {', '.join(map(str, listed))}{more}"
            )
