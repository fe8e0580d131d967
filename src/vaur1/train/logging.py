"""Training logs: metrics.jsonl (always), tensorboard (optional), samples.jsonl, a progress bar and
the console logger. Only the main process logs; give the others `enabled=False`.

    setup_console_logging(accelerator.is_main_process)
    with MetricsLogger(run_dir, tensorboard=True, enabled=is_main, start_step=state.step) as metrics, \
            ProgressBar(max_steps, start_step=state.step, enabled=is_main) as bar:
        ...
        metrics.log(step, {"loss": loss, "reward/mean": r})
        bar.update(step, {"loss": loss})

`metrics.jsonl` holds one JSON object per logged step: "step", "time" (Unix seconds) and the metrics.
NaN and infinities are written as null, so every line is valid JSON. On resume (`start_step` > 0)
records of later steps, written by the interrupted run after its last checkpoint, are dropped from
both files and from tensorboard, so each step appears once.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
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

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
TENSORBOARD_DIR = "tensorboard"

console = Console(stderr=True)


def setup_console_logging(is_main_process: bool = True, level: int = logging.INFO) -> logging.Logger:
    """Send the `vaur1` loggers to the shared rich console (warnings and errors only on other ranks)."""
    logger = logging.getLogger("vaur1")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False))
    logger.setLevel(level if is_main_process else logging.WARNING)
    return logger


def _plain(value: Any) -> Any:
    """A metric value as JSON data: tensors and NumPy scalars become numbers, NaN/inf become None."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"a metric must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    elif hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrite a JSONL log without the records of steps after `step` (atomically)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record_step = json.loads(line).get("step")
        except json.JSONDecodeError:
            continue  # a line cut short by the crash that this run resumes from
        if isinstance(record_step, int) and record_step <= step:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    tmp.replace(path)


class MetricsLogger:
    def __init__(
        self, run_dir: str | Path, *, tensorboard: bool = False, enabled: bool = True, start_step: int = 0
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._lock = threading.Lock()
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, SAMPLES_FILE):
            _drop_records_after(self.run_dir / name, start_step)
        self._metrics = (self.run_dir / METRICS_FILE).open("a", encoding="utf-8")
        self._samples = (self.run_dir / SAMPLES_FILE).open("a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = start_step + 1 if start_step > 0 else None
            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=purge)

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record for `step`; numeric values also go to tensorboard. Returns the record."""
        record = {"step": step, "time": round(time.time(), 3), **_plain(dict(metrics))}
        if not self.enabled:
            return record
        line = json.dumps(record, allow_nan=False, ensure_ascii=False)
        with self._lock:
            self._metrics.write(line + "\n")
            self._metrics.flush()
            if self._writer is not None:
                for key, value in record.items():
                    if (
                        key not in ("step", "time")
                        and isinstance(value, (int, float))
                        and not isinstance(value, bool)
                    ):
                        self._writer.add_scalar(key, value, global_step=step)
                self._writer.flush()
        return record

    def log_samples(self, step: int, samples: list[Mapping[str, Any]]) -> None:
        """Append sample completions (prompt, completion, rewards, ...) for `step`, one line each."""
        if not self.enabled:
            return
        lines = [
            json.dumps({"step": step, **_plain(dict(s))}, allow_nan=False, ensure_ascii=False)
            for s in samples
        ]
        with self._lock:
            self._samples.write("".join(f"{line}\n" for line in lines))
            self._samples.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._metrics.close()
            self._samples.close()
            if self._writer is not None:
                self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


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
    for key, value in _plain(dict(metrics)).items():
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
