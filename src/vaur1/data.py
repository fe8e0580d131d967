"""Which examples a job reads: the benchmark, its split, the tasks, and where the videos are.

Shared by SFT, GRPO and evaluation so that all three select data the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vaur1.bench import check_cleaning, load_bench
from vaur1.bench.tasks import Example, parse_tasks, task_view
from vaur1.errors import ConfigError
from vaur1.video.roots import VideoRoots
from vaur1.vocab import CLS, QA, TAG


@dataclass
class DataConfig:
    bench: str = ""  # a CSV file, a folder with train/val/test*.csv (e.g. SynthVAU), or `vau-bench`
    split: str = "train"  # the file stem: train, val, test, test_msad, ...
    tasks: list[str] = field(
        default_factory=lambda: [QA, TAG, CLS]
    )  # qa, tag, cls, reasoning (GRPO: the first three)
    video_roots: VideoRoots = field(default_factory=VideoRoots)
    max_per_task: int | None = None  # the first N examples of each task (for quick runs)
    strict: bool = False  # stop at the first malformed CSV row instead of skipping it
    # cleaning rules that change which rows a task scores (vaur1.bench.CLEANING_RULES); none by
    # default: the paper's protocol
    cleaning: list[str] = field(default_factory=list)
    # the share of samples whose video file may be missing (skipped, listed and counted); more stops
    # the run before it starts: the video roots are probably wrong
    max_missing_videos: float = 0.05

    def validate(self) -> None:
        parse_tasks(self.tasks)
        check_cleaning(self.cleaning)
        if not 0 <= self.max_missing_videos <= 1:
            raise ConfigError(
                f"data.max_missing_videos must be a share in [0, 1], got {self.max_missing_videos}"
            )
        if self.max_per_task is not None and self.max_per_task < 1:
            raise ConfigError(f"data.max_per_task must be at least 1, got {self.max_per_task}")

    def roots(self) -> VideoRoots:
        """The configured roots; for a benchmark folder with a `videos/` subfolder (SynthVAU), that
        subfolder serves every source left unset."""
        folder = Path(self.bench)
        if self.video_roots.default is None and (folder / "videos").is_dir():
            return replace(self.video_roots, default=str(folder / "videos"))
        return self.video_roots

    def load(self) -> list[Example]:
        return self.load_with_rows()[0]

    def load_with_rows(self) -> tuple[list[Example], dict[str, Any]]:
        """(the split's examples, what happened to its CSV rows: rows read, loaded, skipped by reason
        and the first problem lines), so that a caller can report the rows it did not get."""
        if not self.bench:
            raise ConfigError("data.bench is not set: give a CSV file, a benchmark folder, or vau-bench")
        bench = load_bench(self.bench, strict=self.strict, cleaning=self.cleaning)
        samples = bench.split(self.split)
        examples: list[Example] = []
        for task in parse_tasks(self.tasks):
            view = task_view(samples, task)
            examples.extend(view[: self.max_per_task] if self.max_per_task else view)
        report = bench.reports.get(self.split)
        rows = {
            "file": report.file if report else self.split,
            "rows_read": report.rows_read if report else 0,
            "loaded": report.loaded if report else 0,
            "skipped": dict(report.skipped) if report else {},
            "problems": list(report.problems[:5]) if report else [],
            "cleaning": list(self.cleaning),
        }
        return examples, rows
