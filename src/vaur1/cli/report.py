"""`vaur1 report RUN_DIR... [--out FILE]`: Markdown, HTML and JSON reports of runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from vaur1.console import output_console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="Markdown + self-contained HTML report of one or more runs, side by side",
        description="Tables in the paper's layout (QA, TAG, CLS, VAU-Eval or the offline scorer), per source, "
        "with 95% intervals, one column per run; plots of IoU, intervals, class confusion and, for runs "
        "with a training log, reward curves. Writes FILE.md (+ FILE_files/), FILE.html and FILE.json.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--out", type=Path, help="FILE without extension (default: RUN_DIR/report for one run, ./report)"
    )
    parser.add_argument(
        "--gallery",
        action="store_true",
        help="also FILE_gallery.html: every item with its frames, timeline, raw output and scores (one or two runs)",
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="add the VAU-R1 paper's published Qwen2.5-VL-3B rows (base, + SFT, + RFT) to the paper-layout tables",
    )
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from vaur1.present.report import paper_rows_apply, write_report

    out = args.out or (args.run_dirs[0] / "report" if len(args.run_dirs) == 1 else Path("report"))
    if args.paper and not paper_rows_apply(args.run_dirs):
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            "[yellow]warning:[/] --paper adds the paper's rows for MSAD, UCF-Crime and ECVA only; these runs "
            "scored none of them, so no paper row is added"
        )
    written = write_report(args.run_dirs, out, paper=args.paper)
    if args.gallery:
        from vaur1.present.gallery import write_gallery

        written["gallery"] = write_gallery(args.run_dirs, Path(f"{out}_gallery.html"))
    console = output_console(highlight=False, soft_wrap=True)
    for kind, path in written.items():
        console.print(f"{kind}: {path}")
    return 0
