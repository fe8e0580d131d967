"""The console: one rich console on stderr for logs and progress bars, the `vaur1` logger's
handler, and a progress bar over steps or items (training, evaluation, analysis alike).

    setup_console_logging(accelerator.is_main_process)
    with ProgressBar(max_steps, start_step=state.step, enabled=is_main) as bar:
        bar.update(step, {"loss": loss})
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from vaur1.files import json_safe

console = Console(stderr=True)
PIPE_WIDTH = 1000  # columns of a command's output when it is not a terminal


def output_console(**options: Any) -> Console:
    """A console for what a command prints on stdout. On a terminal it takes the terminal's width; in a
    pipe or a file (where rich would assume 80 columns, or an exported $COLUMNS, and cut or fold tables
    mid-key) it is wide enough that every table prints whole."""
    if "width" not in options and not sys.stdout.isatty():
        options["width"] = PIPE_WIDTH
    return Console(**options)


# What other libraries print by default that says nothing to a vaur1 user: download and shard bars
# (huggingface_hub, transformers), transformers' advice, DeepSpeed's start-up notes ("Setting accelerator
# to CPU"). Set in the environment, so that the processes a command starts (accelerate launch) keep quiet.
# transformers' own warnings stay on: one of them says that a checkpoint left weights uninitialised.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
DEEPSPEED_LOGGER = "DeepSpeed"


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def quiet_third_party(verbose: bool = False) -> None:
    """Keep other libraries' progress bars and warnings off the console, unless `verbose` (`vaur1 -v`).
    Call before they are imported: they read these settings when they load."""
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    # DeepSpeed sets its logger's level when it loads, so its records are filtered instead
    deepspeed = logging.getLogger(DEEPSPEED_LOGGER)
    if not any(isinstance(f, _ErrorsOnly) for f in deepspeed.filters):
        deepspeed.addFilter(_ErrorsOnly())


def setup_console_logging(is_main_process: bool = True, level: int = logging.INFO) -> logging.Logger:
    """Send the `vaur1` loggers to the shared rich console (warnings and errors only on other ranks)."""
    logger = logging.getLogger("vaur1")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False))
    logger.setLevel(level if is_main_process else logging.WARNING)
    return logger


class _RateColumn(ProgressColumn):
    """Units per second, or seconds per unit when slower than one a second."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text(f"-- {self.unit}/s", style="progress.data.speed")
        text = f"{speed:.2f} {self.unit}/s" if speed >= 1 else f"{1 / speed:.1f} s/{self.unit}"
        return Text(text, style="progress.data.speed")


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    parts = []
    for key, value in json_safe(dict(metrics)).items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


class ProgressBar:
    """A rich progress bar over optimizer steps (or other units): done, rate, elapsed, ETA and a few
    live metrics."""

    def __init__(
        self,
        total_steps: int,
        *,
        start_step: int = 0,
        enabled: bool = True,
        description: str = "train",
        unit: str = "step",
    ) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(unit),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
            disable=not enabled,
            speed_estimate_period=300.0,
        )
        self._task = self._progress.add_task(description, total=total_steps, completed=start_step, metrics="")

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> None:
        """Show `step` steps done and, when given, these metrics."""
        fields = {"metrics": _format_metrics(metrics)} if metrics else {}
        self._progress.update(self._task, completed=step, **fields)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()
