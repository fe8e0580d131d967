"""What `vaur1 analyze` and `vaur1 eval scan` share about scanning: the options, the prompts file and
the progress bar."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from vaur1.eval.scan_config import ScanConfig


def add_scan_options(parser: argparse.ArgumentParser, automatic: bool = True) -> None:
    defaults = ScanConfig()
    scan = parser.add_argument_group(
        "scanning",
        "Windows of --window seconds every --stride seconds, each through the TAG and CLS prompts in direct "
        "mode, scored with P(anomaly) and merged into events (docs/jobs/scanning.md)."
        + (
            " A video is scanned automatically (said on screen) when it is longer than a window and one pass "
            "of the VideoSpec would space its frames wider than a window's."
            if automatic
            else ""
        ),
    )
    if automatic:
        scan.add_argument(
            "--scan",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="scan every video (--no-scan: never; default: the long ones)",
        )
    scan.add_argument(
        "--window", type=float, default=defaults.window, help="seconds per window (default %(default)s)"
    )
    scan.add_argument(
        "--stride", type=float, default=defaults.stride, help="seconds between windows (default %(default)s)"
    )
    scan.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help="a window scoring at least this is anomalous (default %(default)s)",
    )
    scan.add_argument(
        "--batch", type=int, default=defaults.batch, help="windows per model call (default %(default)s)"
    )
    parser.add_argument(
        "--prompts",
        type=Path,
        help="a YAML file with the prompts the model was trained on (PromptConfig's fields, or a `prompts:` "
        "mapping of them such as the demo's demo.yaml); default: vaur1's prompts",
    )


def scan_config(args: argparse.Namespace) -> ScanConfig:
    cfg = ScanConfig(window=args.window, stride=args.stride, batch=args.batch, threshold=args.threshold)
    cfg.validate()
    return cfg


def load_prompts(path: Path | None):
    """The PromptConfig of --prompts: the file's `prompts:` mapping, or the file itself as one."""
    from vaur1.config import from_dict, read_yaml
    from vaur1.errors import ConfigError
    from vaur1.prompts import PromptConfig

    if path is None:
        return PromptConfig()
    data = read_yaml(path)
    fields = data.get("prompts", data) if isinstance(data, dict) else None
    if not isinstance(fields, dict):
        raise ConfigError(
            f"{path}: not a mapping of prompts (PromptConfig's fields, or a `prompts:` key holding them)"
        )
    return from_dict(PromptConfig, fields)


def progress_bar(err: Console):
    """A rich progress bar on stderr with the ETA (drawn on a terminal only; a pipe gets nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err, transient=True)


def scan_with_progress(
    video: Path, generator, spec, scan, prompts, err: Console, number: int, total: int
) -> dict:
    """`scan_video` with a progress bar of its windows."""
    from vaur1.eval.scan import scan_video

    with progress_bar(err) as progress:
        task = progress.add_task(f"scanning {video.name} ({number} of {total}): windows", total=None)

        def advance(done: int, windows: int) -> None:
            progress.update(task, completed=done, total=windows)

        return scan_video(video, generator, spec, scan, prompts, on_progress=advance)
