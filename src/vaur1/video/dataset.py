"""What training and evaluation read videos through: examples paired with their decoded frames.

`VideoDataset` decodes through the frame cache; `video_loader` prefetches with DataLoader worker
processes. A video that cannot be read becomes a `Skip` record instead of an item: it is written
to the run's `skipped.jsonl`, counted in the logs, and never replaced by another sample, so a
batch can come out shorter than asked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError, VideoError
from vaur1.files import jsonl_line
from vaur1.video.cache import CachedDecoder
from vaur1.video.frames import DecodedVideo
from vaur1.video.roots import VideoRoots

log = logging.getLogger("vaur1.video")


@dataclass(frozen=True)
class LoaderConfig:
    """How many worker processes decode ahead of the consumer."""

    num_workers: int = 2  # decoding processes (0: decode in the training process)
    prefetch_factor: int = 2  # batches each worker keeps ready

    def validate(self) -> None:
        if self.num_workers < 0 or self.prefetch_factor < 1:
            raise ConfigError(
                f"loader: need num_workers >= 0 and prefetch_factor >= 1, "
                f"got {self.num_workers} and {self.prefetch_factor}"
            )


@dataclass
class LoadedExample:
    example: Example
    video: DecodedVideo


@dataclass(frozen=True)
class Skip:
    """A sample left out, and why."""

    key: str  # the example's key (split/id/task)
    video: str  # the file that failed
    reason: str


class SkipLog:
    """Every skipped sample, kept in memory and appended to `path` (a run's skipped.jsonl) when given."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.skips: list[Skip] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def count(self) -> int:
        return len(self.skips)

    def record(self, skip: Skip) -> None:
        self.skips.append(skip)
        if self.path is not None:
            with self.path.open("ab") as handle:
                handle.write(jsonl_line(asdict(skip)))
        log.warning("skipped %s (%d so far): %s", skip.key, self.count, skip.reason)


class VideoDataset(Dataset):
    """Examples with their frames; item i is a `LoadedExample`, or a `Skip` if its video is unreadable."""

    def __init__(self, examples: Sequence[Example], roots: VideoRoots, decoder: CachedDecoder):
        self.examples = list(examples)
        self.roots = roots
        self.decoder = decoder
        for example in self.examples:
            roots.folder(example.source)  # a missing root is a setup error: fail before any work

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> LoadedExample | Skip:
        example = self.examples[index]
        path = self.roots.resolve(example)
        try:
            return LoadedExample(example, self.decoder.get(path))
        except VideoError as err:
            return Skip(key=example.key, video=str(path), reason=str(err))


def _as_list(items: list) -> list:
    return items


def video_loader(
    dataset: VideoDataset,
    batch_size: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    loader: LoaderConfig | None = None,
) -> DataLoader:
    """A DataLoader whose batches are lists of `LoadedExample | Skip`, decoded by worker processes."""
    loader = loader or LoaderConfig()
    workers = loader.num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        num_workers=workers,
        prefetch_factor=loader.prefetch_factor if workers > 0 else None,
        collate_fn=_as_list,
    )


def iter_batches(
    batches: Iterable[list[LoadedExample | Skip]], skip_log: SkipLog
) -> Iterator[list[LoadedExample]]:
    """The readable items of each batch; skips go to `skip_log`. Batches left empty are dropped."""
    for batch in batches:
        loaded = []
        for item in batch:
            if isinstance(item, Skip):
                skip_log.record(item)
            else:
                loaded.append(item)
        if loaded:
            yield loaded


def iter_videos(
    examples: Sequence[Example],
    roots: VideoRoots,
    decoder: CachedDecoder,
    skip_log: SkipLog,
    loader: LoaderConfig | None = None,
) -> Iterator[tuple[Example, DecodedVideo]]:
    """(example, frames) in example order, decoded ahead by workers; unreadable ones are skipped."""
    batches = video_loader(VideoDataset(examples, roots, decoder), loader=loader)
    for batch in iter_batches(batches, skip_log):
        for item in batch:
            yield item.example, item.video
