"""Which examples each process trains on at each step, decoded ahead, and what an empty micro-batch runs.

Every cycle takes the next global batch from the run's `DataOrder` (the same on every process); the
process of rank r gets slots r, r + world, r + 2 world, ... split into `accumulation` micro-batches of
`per_device` examples. DataLoader workers decode ahead through the frame cache. A video that fails is
recorded in `skipped.jsonl` and left out, never replaced: its micro-batch comes out shorter, or empty.

An empty micro-batch still runs a forward and backward pass on `filler_inputs` (a black clip and a
one-character prompt) with zero weight, because every process must take part in the gradient
all-reduce (and, under ZeRO-3 or FSDP, in every forward). GRPO samples the filler prompt like any
other (`vaur1.rl.rollout.filler_rollout`), with zero reward and zero weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vaur1.bench.tasks import Example, shuffle_options
from vaur1.train.data_order import DataOrder
from vaur1.video.dataset import LoadedExample, LoaderConfig, Skip, SkipLog, VideoDataset
from vaur1.video.frames import DecodedVideo

FILLER_CONVERSATION: list[dict] = [
    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "."}]}
]


@dataclass(frozen=True)
class Item:
    """One training example with its frames, and its slot in the step's global batch (which does not
    depend on the number of processes)."""

    slot: int
    example: Example
    video: DecodedVideo


def filler_video(processor_factor: int, temporal_patch: int) -> DecodedVideo:
    """A black clip of the smallest size the processor takes: the stand-in for an empty micro-batch."""
    frames = np.zeros((temporal_patch, processor_factor, processor_factor, 3), dtype=np.uint8)
    return DecodedVideo(
        path="<filler>",
        frames=frames,
        timestamps=[float(i) for i in range(temporal_patch)],
        indices=list(range(temporal_patch)),
        fps=1.0,
        num_frames_total=temporal_patch,
        duration=float(temporal_patch),
        height=processor_factor,
        width=processor_factor,
    )


def filler_inputs(processor, device: torch.device | str):
    """Model inputs for an empty micro-batch: one black clip and a one-character prompt."""
    from vaur1.model.inputs import build_inputs, processor_factor, temporal_patch

    video = filler_video(processor_factor(processor), temporal_patch(processor))
    return build_inputs(processor, [FILLER_CONVERSATION], [video]).to(device)


class _SlotDataset(Dataset):
    """`VideoDataset` items keyed by (slot, sample index), returned with their key."""

    def __init__(self, videos: VideoDataset) -> None:
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int, LoadedExample | Skip]:
        slot, index = key
        return slot, index, self.videos[index]


class _StepSampler:
    """This process's micro-batches of (slot, sample index), cycle after cycle, from a copy of the
    run's `DataOrder` (the loader runs ahead; the run's own order advances as cycles are consumed)."""

    def __init__(
        self, order: DataOrder, cycles: int, global_batch: int, rank: int, world: int, per_device: int
    ):
        self.start = order.state_dict()
        self.cycles = cycles
        self.global_batch = global_batch
        self.rank, self.world = rank, world
        self.per_device = per_device
        self.accumulation = global_batch // (per_device * world)

    def __len__(self) -> int:
        return self.cycles * self.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = DataOrder(self.start["num_samples"], self.start["seed"], self.start["shuffle"])
        order.load_state_dict(self.start)
        for _ in range(self.cycles):
            indices = order.next_indices(self.global_batch)
            mine = [(slot, indices[slot]) for slot in range(self.rank, self.global_batch, self.world)]
            for micro in range(self.accumulation):
                yield mine[micro * self.per_device : (micro + 1) * self.per_device]


def _as_list(items: list) -> list:
    return items


@dataclass
class StepData:
    """The training examples and how they are spread over processes and micro-batches."""

    examples: Sequence[Example]
    videos: VideoDataset
    loader: LoaderConfig
    rank: int
    world: int
    per_device: int
    accumulation: int
    seed: int
    shuffle_options: bool

    @property
    def global_batch(self) -> int:
        return self.per_device * self.world * self.accumulation

    def cycles(self, order: DataOrder, count: int, skips: SkipLog) -> Iterator[list[list[Item]]]:
        """`count` global batches from `order`: this process's micro-batches of each, as `Item`s.

        `order` advances as each cycle is handed out, so a checkpoint taken after the cycle
        continues with the next one.
        """
        sampler = _StepSampler(order, count, self.global_batch, self.rank, self.world, self.per_device)
        workers = self.loader.num_workers
        batches = iter(
            DataLoader(
                _SlotDataset(self.videos),
                batch_sampler=sampler,
                num_workers=workers,
                prefetch_factor=self.loader.prefetch_factor if workers > 0 else None,
                collate_fn=_as_list,
                # its own generator: starting an iterator draws a worker seed, which from the global
                # generator would shift the rollouts of a resumed run against an uninterrupted one
                generator=torch.Generator().manual_seed(self.seed),
            )
        )
        for _ in range(count):
            first_draw = order.samples_seen
            expected = order.next_indices(self.global_batch)
            cycle = []
            for _ in range(self.accumulation):
                items = []
                for slot, index, loaded in next(batches):
                    if expected[slot] != index:
                        raise RuntimeError(
                            f"data loader out of step: slot {slot} has {index}, not {expected[slot]}"
                        )
                    if isinstance(loaded, Skip):
                        skips.record(loaded)
                        continue
                    items.append(Item(slot, self._augment(loaded.example, first_draw + slot), loaded.video))
                cycle.append(items)
            yield cycle

    def _augment(self, example: Example, draw: int) -> Example:
        if not self.shuffle_options:
            return example
        return shuffle_options(example, np.random.default_rng([self.seed, draw]))
