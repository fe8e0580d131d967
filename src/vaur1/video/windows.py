"""A long video as a sequence of overlapping windows, each sampled as if it were a clip of its own.

    windows = scan_windows(info.duration, window=32.0, stride=16.0)
    for part in decode_windows("camera.mp4", spec, windows):   # in order, a few windows at a time
        part.window, part.video   # or part.error: that stretch could not be decoded
    with open_windows("camera.mp4") as reader:                 # the duration, then windows, one open
        reader.frames(spec, scan_windows(reader.info.duration, 32.0, 16.0))

The VideoSpec samples each window as it samples a whole clip (its fps or frame count, its pixel
budget), and each window's timestamps start at 0, so a model trained on short clips sees what it
was trained on. The file is opened once and its frame table read once; the windows are decoded in
order, `batch` at a time, with the union of their frames decoded in one pass of the stream (a frame
shared by two overlapping windows is decoded once). Memory is that of `batch` windows whatever the
video's length. A stretch that cannot be decoded fails its windows alone: each is retried on its own
and reported with its error, and the scan goes on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaur1.errors import VideoError
from vaur1.video.decode import DEFAULT_LIMITS, DecodeLimits, VideoInfo, open_video, read_frames
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec


@dataclass(frozen=True)
class Window:
    start: float  # seconds into the video
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def scan_windows(duration: float, window: float, stride: float) -> list[Window]:
    """Windows of `window` seconds every `stride` seconds over [0, duration]; the last one ends at the
    video's end (it may overlap its neighbour more), and a video shorter than a window is one window."""
    if not (0 < stride <= window):
        raise ValueError(f"windows need 0 < stride <= window, got {stride} and {window}")
    if duration <= window:
        return [Window(0.0, float(duration))]
    count = math.ceil((duration - window) / stride - 1e-9) + 1
    starts = [min(i * stride, duration - window) for i in range(count)]
    return [Window(float(start), float(start + window)) for start in starts]


@dataclass
class WindowFrames:
    window: Window
    video: DecodedVideo | None  # None when the stretch could not be decoded
    error: str | None = None


def _window_frames(spec: VideoSpec, times: np.ndarray, window: Window) -> tuple[range, list[int]]:
    """(the window's source frames, those the spec picks), picked as from a clip of only those frames."""
    inside = range(
        int(np.searchsorted(times, window.start - 1e-9)), int(np.searchsorted(times, window.end - 1e-9))
    )
    if not inside:
        return inside, []
    own = times[inside.start : inside.stop]
    picked = spec.sample_indices(len(own), len(own) / window.seconds, (own - own[0]).tolist())
    return inside, [inside.start + i for i in picked]


class WindowReader:
    """An open video, its frame table read once, whose windows are decoded in order."""

    def __init__(self, container, table, info: VideoInfo, path: Path, limits: DecodeLimits) -> None:
        self.container, self.table, self.info, self.path, self.limits = container, table, info, path, limits

    def frames(self, spec: VideoSpec, windows: Sequence[Window], batch: int = 4) -> Iterator[WindowFrames]:
        """Each window's frames under `spec`, in order (see the module docstring)."""
        path, table, info, limits = self.path, self.table, self.info, self.limits
        times = table.times
        for offset in range(0, len(windows), batch):
            chunk = windows[offset : offset + batch]
            picks = [_window_frames(spec, times, window) for window in chunk]
            sizes = [
                spec.output_size(info.height, info.width, max(spec.padded_count(len(p)), 1)) for _, p in picks
            ]
            decoded: dict[tuple[int, int], dict[int, np.ndarray]] = {}
            for size in dict.fromkeys(sizes):  # one pass per frame size (the last window may differ)
                wanted = sorted({i for (_, p), s in zip(picks, sizes, strict=True) if s == size for i in p})
                try:
                    decoded[size] = read_frames(self.container, path, table, info, spec, wanted, size, limits)
                except VideoError:
                    decoded[size] = {}  # a bad stretch somewhere: each window below tries its own frames
            for window, (inside, indices), size in zip(chunk, picks, sizes, strict=True):
                if not indices:
                    yield WindowFrames(
                        window, None, f"{path}: no frames in {window.start:.1f}-{window.end:.1f} s"
                    )
                    continue
                images = decoded[size]
                try:
                    if not all(i in images for i in indices):
                        images = read_frames(
                            self.container, path, table, info, spec, sorted(set(indices)), size, limits
                        )
                except VideoError as err:
                    yield WindowFrames(window, None, str(err))
                    continue
                yield WindowFrames(window, _clip(path, spec, times, info, window, inside, indices, images))


@contextlib.contextmanager
def open_windows(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> Iterator[WindowReader]:
    """The video opened for its windows; `reader.info` holds its duration before any window is chosen."""
    path = Path(path)
    with open_video(path, limits) as (container, table, info):
        yield WindowReader(container, table, info, path, limits)


def decode_windows(
    path: str | Path,
    spec: VideoSpec,
    windows: Sequence[Window],
    batch: int = 4,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Iterator[WindowFrames]:
    """Each window's frames under `spec`, in order (see the module docstring)."""
    with open_windows(path, limits) as reader:
        yield from reader.frames(spec, windows, batch)


def _clip(
    path: Path,
    spec: VideoSpec,
    times: np.ndarray,
    info: VideoInfo,
    window: Window,
    inside: range,
    indices: list[int],
    images: dict[int, np.ndarray],
) -> DecodedVideo:
    """The window's frames as a clip of its own: source indices and timestamps start at the window."""
    padded = spec.padded_count(len(indices)) - len(indices)
    slots = indices + [indices[-1]] * padded
    return DecodedVideo(
        path=str(path),
        frames=np.stack([images[i] for i in slots]),
        timestamps=[float(times[i] - times[inside.start]) for i in slots],
        indices=[i - inside.start for i in slots],
        fps=len(inside) / window.seconds,
        num_frames_total=len(inside),
        duration=window.seconds,
        height=info.height,
        width=info.width,
        padded=padded,
    )
