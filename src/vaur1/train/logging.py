"""Training logs: metrics.jsonl (always), the trackers of `run.report_to` (accelerate's: tensorboard,
wandb, trackio, mlflow) and samples.jsonl. Only the main process logs; give the others `enabled=False`.

    with MetricsLogger(TrainRun(run_dir), report_to=["tensorboard"], enabled=is_main, start_step=state.step) as log:
        log.log(step, {"loss": loss, "reward/mean": r})

`metrics.jsonl` holds one JSON object per logged step: "step", "time" (Unix seconds) and the metrics.
NaN and infinities are written as null, so every line is valid JSON. On resume (`start_step` > 0)
records of later steps, written by the interrupted run after its last checkpoint, are dropped from
both files and from TensorBoard, so each step appears once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from vaur1.files import iter_jsonl, json_safe, jsonl_line, write_bytes
from vaur1.layout import TrainRun


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrite a JSONL log without the records of steps after `step` (atomically); a line cut by the
    crash this run resumes from goes too."""
    if not path.is_file():
        return
    kept = [
        jsonl_line(record)
        for _, record in iter_jsonl(path)
        if record is not None and isinstance(record.get("step"), int) and record["step"] <= step
    ]
    write_bytes(path, b"".join(kept))


# accelerate's trackers, under TRL's `report_to` names
TRACKERS: tuple[str, ...] = ("tensorboard", "wandb", "trackio", "mlflow")


def resolve_report_to(report_to: list[str] | str) -> list[str]:
    """TRL's `report_to` values: a list of tracker names, "none", or "all" (every installed one)."""
    import importlib.util

    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names in (["none"], []):
        return []
    if names == ["all"]:
        modules = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}
        return [name for name in TRACKERS if importlib.util.find_spec(modules[name]) is not None]
    return names


def start_trackers(
    names: list[str], run: TrainRun, config: Mapping[str, Any] | None, start_step: int = 0
) -> list:
    """accelerate's trackers for `names`, started, with the run's config stored in each. TensorBoard and
    MLflow write under the run directory (tensorboard/, mlruns/ unless MLFLOW_TRACKING_URI says
    otherwise); wandb and trackio follow their own environment (WANDB_MODE=offline, ...). On resume
    TensorBoard drops the events of steps after `start_step` (written by the interrupted run)."""
    import os

    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    trackers = []
    for name in names:
        if name == "tensorboard":
            purge = {"purge_step": start_step + 1} if start_step > 0 else {}
            # accelerate writes to logging_dir/run_name: output_dir/tensorboard
            tracker = LOGGER_TYPE_TO_CLASS[name](run.tensorboard.name, logging_dir=str(run.root), **purge)
        elif name == "mlflow":
            if "MLFLOW_TRACKING_URI" not in os.environ:
                # a local file store in the run directory; MLflow 3 asks to opt in to it
                os.environ["MLFLOW_TRACKING_URI"] = (run.root / "mlruns").resolve().as_uri()
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            tracker = LOGGER_TYPE_TO_CLASS[name](experiment_name="vaur1", run_name=run.root.name)
        else:
            tracker = LOGGER_TYPE_TO_CLASS[name](run.root.name)
        tracker.start()
        if config:
            tracker.store_init_configuration(_flat(config))
        trackers.append(tracker)
    return trackers


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optim.learning_rate": 1e-06, ...} with scalar values (lists as text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= _flat(value, f"{name}.")
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


class MetricsLogger:
    """metrics.jsonl and samples.jsonl always; the numeric metrics also to each tracker of `report_to`."""

    def __init__(
        self,
        run: TrainRun,
        *,
        report_to: list[str] | str = (),
        config: Mapping[str, Any] | None = None,
        enabled: bool = True,
        start_step: int = 0,
    ) -> None:
        self.run = run
        self.enabled = enabled
        self._lock = threading.Lock()
        self._trackers: list = []
        if not enabled:
            return
        run.root.mkdir(parents=True, exist_ok=True)
        for path in (run.metrics, run.samples):
            _drop_records_after(path, start_step)
        self._metrics = run.metrics.open("ab")
        self._samples = run.samples.open("ab")
        self._trackers = start_trackers(resolve_report_to(list(report_to) or "none"), run, config, start_step)

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record for `step`; numeric values also go to the trackers. Returns the record."""
        record = {"step": step, "time": round(time.time(), 3), **json_safe(dict(metrics))}
        if not self.enabled:
            return record
        numeric = {
            key: value
            for key, value in record.items()
            if key not in ("step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        with self._lock:
            self._metrics.write(jsonl_line(record))
            self._metrics.flush()
            for tracker in self._trackers:
                tracker.log(numeric, step=step)
        return record

    def log_samples(self, step: int, samples: list[Mapping[str, Any]]) -> None:
        """Append sample completions (prompt, completion, rewards, ...) for `step`, one line each; as a
        table to trackers that take tables (wandb), as text to TensorBoard."""
        if not self.enabled:
            return
        lines = b"".join(jsonl_line({"step": step, **json_safe(dict(s))}) for s in samples)
        columns = ["key", "task", "prompt", "completion", "reward"]
        rows = [[str(sample.get(column, "")) for column in columns] for sample in samples]
        with self._lock:
            self._samples.write(lines)
            self._samples.flush()
            for tracker in self._trackers:
                if tracker.name == "tensorboard":
                    text = "\n\n".join(f"**{row[0]}** ({row[4]}): {row[3]}" for row in rows)
                    tracker.writer.add_text("completions", text, global_step=step)
                elif hasattr(tracker, "log_table"):
                    tracker.log_table("completions", columns=columns, data=rows, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._metrics.close()
            self._samples.close()
            for tracker in self._trackers:
                tracker.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class MemoryMeter:
    """This process's peak memory since the run started, logged as `memory/peak_gib`: on CUDA the
    allocator's peak; on a CPU the peak resident memory above what the process held before the model
    was loaded (what `vaur1 plan --device cpu` estimates), sampled every few milliseconds. Resident
    memory includes the checkpoint's pages where transformers maps the weights file instead of
    copying it. glibc keeps freed memory of small allocations mapped, so for a figure that follows live
    tensors run with MALLOC_MMAP_THRESHOLD_=65536 (benchmarks/full_size_cpu.py and the tests do)."""

    SAMPLE_SECONDS = 0.005

    def __init__(self, device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._peak = 0
        self._stop = threading.Event()
        if self.cuda:
            return
        self.baseline = _resident()
        self._peak = self.baseline
        threading.Thread(target=self._sample, name="vaur1-memory", daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(self.SAMPLE_SECONDS):
            self._peak = max(self._peak, _resident())

    def peak_bytes(self) -> int:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated(self.device)
        self._peak = max(self._peak, _resident())
        return max(0, self._peak - self.baseline)

    def close(self) -> None:
        self._stop.set()


def _resident() -> int:
    import psutil

    return psutil.Process().memory_info().rss
