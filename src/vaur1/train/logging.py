"""Training logs: metrics.jsonl (always), tensorboard (optional) and samples.jsonl. Only the main
process logs; give the others `enabled=False`.

    with MetricsLogger(TrainRun(run_dir), tensorboard=True, enabled=is_main, start_step=state.step) as log:
        log.log(step, {"loss": loss, "reward/mean": r})

`metrics.jsonl` holds one JSON object per logged step: "step", "time" (Unix seconds) and the metrics.
NaN and infinities are written as null, so every line is valid JSON. On resume (`start_step` > 0)
records of later steps, written by the interrupted run after its last checkpoint, are dropped from
both files and from tensorboard, so each step appears once.
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


class MetricsLogger:
    def __init__(
        self, run: TrainRun, *, tensorboard: bool = False, enabled: bool = True, start_step: int = 0
    ) -> None:
        self.run = run
        self.enabled = enabled
        self._lock = threading.Lock()
        self._writer = None
        if not enabled:
            return
        run.root.mkdir(parents=True, exist_ok=True)
        for path in (run.metrics, run.samples):
            _drop_records_after(path, start_step)
        self._metrics = run.metrics.open("ab")
        self._samples = run.samples.open("ab")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = start_step + 1 if start_step > 0 else None
            self._writer = SummaryWriter(log_dir=str(run.tensorboard), purge_step=purge)

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record for `step`; numeric values also go to tensorboard. Returns the record."""
        record = {"step": step, "time": round(time.time(), 3), **json_safe(dict(metrics))}
        if not self.enabled:
            return record
        with self._lock:
            self._metrics.write(jsonl_line(record))
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
        lines = b"".join(jsonl_line({"step": step, **json_safe(dict(s))}) for s in samples)
        with self._lock:
            self._samples.write(lines)
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
