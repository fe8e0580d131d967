"""VAU-Bench: load, clean and serve the benchmark (official CSVs, the Hub, or SynthVAU)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vaur1.bench.datasets_io import is_dataset_dir, samples_from_dataset
from vaur1.bench.loader import CLEANING_RULES, LoadReport, check_cleaning, read_csv
from vaur1.bench.schema import CLASSES, COLUMNS, NORMAL, Reasoning, Sample, normalize_class
from vaur1.errors import VaurError

HUB_NAMES = ("vau-bench", "hf", "7xiang/VAU-Bench")

__all__ = [
    "CLASSES",
    "CLEANING_RULES",
    "COLUMNS",
    "NORMAL",
    "Bench",
    "LoadReport",
    "Reasoning",
    "Sample",
    "bench_files",
    "check_cleaning",
    "load_bench",
    "normalize_class",
    "read_csv",
    "split_files",
]


@dataclass
class Bench:
    """Samples from one or more files, with each file's load report."""

    samples: list[Sample] = field(default_factory=list)
    reports: dict[str, LoadReport] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        found = [s for s in self.samples if s.split == name]
        if not found and name not in {s.split for s in self.samples}:
            known = ", ".join(sorted({s.split for s in self.samples})) or "none"
            raise VaurError(f"no split {name!r} in this benchmark (splits: {known})")
        return found

    @property
    def splits(self) -> list[str]:
        return sorted({s.split for s in self.samples})


def bench_files(path: str | Path) -> list[Path]:
    """The CSV files a path names: the file itself, or a folder's train/val/test_*.csv."""
    if str(path) in HUB_NAMES:
        from vaur1.bench.hub import download_annotations

        path = download_annotations()
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        names = ["train.csv", "val.csv", "test.csv"]
        files = [path / n for n in names if (path / n).is_file()]
        files += sorted(p for p in path.glob("test_*.csv"))
        if not files:
            raise VaurError(f"{path}: no train.csv, val.csv, test.csv or test_*.csv in this folder")
        return files
    raise VaurError(f"{path}: no such file or folder (and not one of {', '.join(HUB_NAMES)})")


def split_files(path: str | Path, splits: list[str]) -> list[Path]:
    """The CSV files a job reading `splits` of the benchmark at `path` reads (a single CSV file is
    read whatever the split is called): what run metadata hashes."""
    if is_dataset_dir(path):
        return sorted(file for split in splits for file in (Path(path) / split).glob("*.arrow"))
    files = bench_files(path)
    if len(files) == 1 and Path(path).is_file():
        return files
    return [file for file in files if file.stem in splits]


def load_bench(
    path: str | Path | list[str | Path],
    strict: bool = False,
    default_source: str | None = None,
    cleaning: Iterable[str] = (),
) -> Bench:
    """Load a benchmark from CSV files, folders, or the Hub name `vau-bench`; `cleaning` names the
    cleaning rules to apply (`CLEANING_RULES`, none by default: the paper's protocol)."""
    paths = path if isinstance(path, list) else [path]
    cleaning = sorted(check_cleaning(cleaning))
    bench = Bench()
    for item in paths:
        if is_dataset_dir(item):  # a DatasetDict saved by `vaur1 data export` (or in its shape)
            for key, (samples, report) in samples_from_dataset(item, strict, cleaning).items():
                if key in bench.reports:
                    raise VaurError(f"{item}: a second split named {key!r}")
                bench.samples.extend(samples)
                bench.reports[key] = report
            continue
        for file in bench_files(item):
            samples, report = read_csv(file, strict=strict, default_source=default_source, cleaning=cleaning)
            key = file.stem
            if key in bench.reports:
                raise VaurError(f"{file}: a second file with split name {key!r}")
            bench.samples.extend(samples)
            bench.reports[key] = report
    return bench
