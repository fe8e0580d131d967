"""`vaur1 data ...`: inspect and generate benchmarks."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect and generate benchmarks")
    data = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    stats = data.add_parser("stats", help="per-file counts of VAU-Bench CSVs (or a folder, or `vau-bench`)")
    stats.add_argument("paths", nargs="+", help="CSV files, folders with train/val/test_*.csv, or vau-bench")
    stats.add_argument("--json", action="store_true", help="print JSON instead of tables")
    stats.add_argument("--strict", action="store_true", help="stop at the first malformed row")
    stats.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    from vaur1.bench import load_bench
    from vaur1.bench.stats import bench_stats

    result = bench_stats(load_bench(list(args.paths), strict=args.strict))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = Console()
    summary = Table(title="VAU-Bench files")
    for column in ("file", "rows", "qa", "tag +", "tag normal", "tag missing", "skipped", "repairs", "warnings"):
        summary.add_column(column, justify="left" if column == "file" else "right")
    for name, s in result["files"].items():
        summary.add_row(
            name,
            str(s["rows"]),
            str(s["qa"]),
            str(s["tag_positive"]),
            str(s["tag_normal"]),
            str(s["tag_missing"]),
            str(sum(s["skipped"].values())),
            str(sum(s["repairs"].values())),
            str(len(s["warnings"])),
        )
    console.print(summary)
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
