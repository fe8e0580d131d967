"""Decode the frames a `VideoSpec` asks for, exactly and fast.

The container's packets are read once without decoding (a few ms) to get every frame's
presentation timestamp and the keyframes. Frame `i` is then the frame with the i-th smallest
timestamp, whatever the codec's reordering, and a target is reached by seeking to the last
keyframe at or before it, or by decoding on when no keyframe lies in between. Frames that are
neither targets nor references for later frames are skipped by the codec (`skip_frame=NONREF`),
and only the chosen frames are converted and resized (swscale, straight to the output size).
With `threads > 1` the targets are cut into contiguous runs at keyframe boundaries (no stretch is
decoded twice) and each run is decoded on its own file handle; PyAV releases the GIL while it
decodes. In DataLoader workers, which already decode one video each, keep threads at 1.

Files are read as a player shows them: a display matrix (every phone video has one) turns the
frames upright (PyAV exposes it on decoded frames only, so the first frame is decoded for it: about
4% of a 16-frame 720p decode), a variable-frame-rate stream is sampled by presentation time rather than by frame
index, and a video's duration runs from its first frame's timestamp to the end of its last frame.

Every failure is a `VideoError` naming the file and the reason. There is no fallback: no other
decoder is tried and the whole video is never decoded behind the caller's back.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vaur1.errors import VaurError, VideoError
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec, variable_rate

_SWSCALE = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "area": "AREA"}


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may cost, checked from the container's header before any frame is decoded and
    against the clock while decoding: a small file may declare a 15360 x 15360 picture or millions of
    frames, and decoding it would hold a worker (or a web page's server) for many minutes."""

    max_pixels: int = 7680 * 4320  # 8K UHD
    max_seconds: float = 24 * 3600.0  # a camera's day
    max_frames: int = 24 * 3600 * 60  # a day at 60 fps
    timeout_s: float = 600.0  # wall time of one decode (or probe)

    def check_size(self, path: Path, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise VideoError(
                f"{path}: {width}x{height} pictures exceed the decode limit of {self.max_pixels:,} pixels"
            )

    def check_length(self, path: Path, frames: int, seconds: float) -> None:
        if frames > self.max_frames:
            raise VideoError(f"{path}: {frames:,} frames exceed the decode limit of {self.max_frames:,}")
        if seconds > self.max_seconds:
            raise VideoError(f"{path}: {seconds:,.0f} s exceed the decode limit of {self.max_seconds:,.0f} s")

    def deadline(self) -> float:
        return time.perf_counter() + self.timeout_s

    def check_time(self, path: Path, deadline: float) -> None:
        if time.perf_counter() > deadline:
            raise VideoError(f"{path}: decoding took longer than the limit of {self.timeout_s:.0f} s")


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its packets (exact frame count, not the header's guess)."""

    path: str
    codec: str
    fps: float
    num_frames_total: int
    duration: float
    height: int
    width: int
    keyframes: int
    size_bytes: int
    rotation: int = 0  # degrees the stored pictures are turned clockwise for display; height/width are shown


@dataclass(frozen=True)
class _FrameTable:
    pts: list[int]  # presentation timestamps in display order: pts[i] is frame i
    keyframes: list[int]  # indices of keyframes, ascending
    time_base: Fraction
    fps: float
    end_pts: int  # where the last frame ends: its timestamp plus its duration

    def seconds(self, index: int) -> float:
        return float((self.pts[index] - self.pts[0]) * self.time_base)

    @functools.cached_property
    def times(self) -> np.ndarray:
        """Every frame's time in seconds from the first, as `seconds` gives it (exact integer products,
        one correctly rounded division)."""
        offsets = np.asarray(self.pts, dtype=np.int64) - self.pts[0]
        return offsets * self.time_base.numerator / self.time_base.denominator

    @functools.cached_property
    def index_of(self) -> dict[int, int]:
        """Frame index by timestamp."""
        return {p: i for i, p in enumerate(self.pts)}

    @property
    def duration(self) -> float:
        return float((self.end_pts - self.pts[0]) * self.time_base)

    def keyframe_at_or_before(self, index: int) -> int:
        """The last keyframe at or before frame `index` (frame 0 when there is none)."""
        position = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[position] if position >= 0 else 0

    def keyframe_before(self, index: int) -> int | None:
        position = bisect.bisect_left(self.keyframes, index) - 1
        return self.keyframes[position] if position >= 0 else None


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.strip().rstrip(".") or type(err).__name__


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    try:
        size = path.stat().st_size
        if size == 0:
            raise VideoError(f"{path}: empty file (0 bytes)")
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise VideoError(f"{path}: not a readable video file ({_reason(err)})") from None
    except OSError as err:
        raise VideoError(f"{path}: cannot open ({_reason(err)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    return container


def _frame_table(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path, limits: DecodeLimits
) -> _FrameTable:
    pts: list[int] = []
    keyframe_pts: list[int] = []
    end_pts: int | None = None  # the latest end a packet declares (pts + duration)
    packets = 0
    deadline = limits.deadline()
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets += 1
            if packets % 4096 == 0:
                limits.check_time(path, deadline)
                limits.check_length(path, packets, 0.0)
            if packet.is_discard:
                continue
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None:
                raise VideoError(f"{path}: packets without timestamps, frames cannot be located exactly")
            pts.append(timestamp)
            if packet.duration:
                end_pts = max(end_pts or timestamp, timestamp + packet.duration)
            if packet.is_keyframe:
                keyframe_pts.append(timestamp)
    except av.FFmpegError as err:
        raise VideoError(f"{path}: cannot read the video stream ({_reason(err)})") from None
    if not pts:
        raise VideoError(f"{path}: the video stream holds no frames")
    if stream.frames and packets < stream.frames:
        # the container's index lists frames whose data is not in the file
        raise VideoError(
            f"{path}: truncated file: the index lists {stream.frames} frames, {packets} are readable"
        )
    pts.sort()
    if len(set(pts)) != len(pts):
        raise VideoError(f"{path}: several frames share one timestamp, frames cannot be located exactly")
    position = {p: i for i, p in enumerate(pts)}
    keyframes = sorted(position[p] for p in keyframe_pts)
    time_base = stream.time_base or Fraction(1, 1)
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        fps = float(rate)
    elif len(pts) > 1 and pts[-1] > pts[0]:
        fps = (len(pts) - 1) / float((pts[-1] - pts[0]) * time_base)
    else:
        raise VideoError(f"{path}: unknown frame rate")
    if end_pts is None or end_pts <= pts[-1]:
        # packets without durations: the last frame lasts as long as the typical gap between frames
        gap = int(np.median(np.diff(pts))) if len(pts) > 1 else round(1 / (fps * time_base))
        end_pts = pts[-1] + max(gap, 1)
    table = _FrameTable(pts=pts, keyframes=keyframes, time_base=time_base, fps=fps, end_pts=end_pts)
    if variable_rate(table.times):
        # the header's average rate comes from a duration muxers compute in different ways; the
        # frames' own mean rate keeps frames / fps equal to the duration, which sampling counts on
        table = replace(table, fps=len(pts) / table.duration)
    return table


def _seek(container: av.container.InputContainer, stream: av.VideoStream, table: _FrameTable, keyframe: int):
    """Packets from `keyframe` on, the decoder emptied of what it held."""
    container.seek(table.pts[keyframe], stream=stream, backward=True, any_frame=False)
    stream.codec_context.flush_buffers()
    return container.demux(stream)


def _display_rotation(
    container: av.container.InputContainer, stream: av.VideoStream, table: _FrameTable, path: Path
) -> int:
    """Clockwise degrees (0, 90, 180, 270) that turn the stored pictures upright, from the display matrix
    the decoder attaches to the first frame (PyAV reads it nowhere else). Mirroring is not applied."""
    try:
        for packet in _seek(container, stream, table, 0):
            for frame in stream.codec_context.decode(packet):
                return (-round(frame.rotation / 90) * 90) % 360
    except av.FFmpegError as err:
        raise VideoError(f"{path}: the first frame cannot be decoded ({_reason(err)})") from None
    raise VideoError(f"{path}: the first frame cannot be decoded")


def _read_table(
    container: av.container.InputContainer, path: Path, limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[_FrameTable, VideoInfo]:
    stream = container.streams.video[0]
    limits.check_size(path, stream.codec_context.width, stream.codec_context.height)
    table = _frame_table(container, stream, path, limits)
    height, width = stream.codec_context.height, stream.codec_context.width
    if height <= 0 or width <= 0:
        raise VideoError(f"{path}: the video stream has no frame size")
    rotation = _display_rotation(container, stream, table, path)
    if rotation in (90, 270):
        height, width = width, height
    info = VideoInfo(
        path=str(path),
        codec=stream.codec_context.name,
        fps=table.fps,
        num_frames_total=len(table.pts),
        duration=table.duration,
        height=height,
        width=width,
        keyframes=len(table.keyframes),
        size_bytes=path.stat().st_size,
        rotation=rotation,
    )
    limits.check_length(path, info.num_frames_total, info.duration)
    return table, info


def probe(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> VideoInfo:
    """Metadata of a video, with the exact frame count; raises `VideoError` for a bad file."""
    path = Path(path)
    with _open(path) as container:
        return _read_table(container, path, limits)[1]


@functools.cache
def check_decoder(name: str) -> None:
    """Raise `VaurError` (a setup problem, not one bad video) if decoder `name` cannot run here."""
    if name == "pyav":
        return
    if name != "torchcodec":
        raise VaurError(f"unknown video decoder {name!r} (decoders: pyav, torchcodec)")
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as err:  # a CUDA-linked build fails with OSError/RuntimeError, a missing one ImportError
        raise VaurError(
            f"video decoder 'torchcodec' cannot be imported here ({type(err).__name__}: {_reason(err)}); "
            "set video.decoder: pyav"
        ) from None


def _pyav_frames(
    container: av.container.InputContainer,
    path: Path,
    table: _FrameTable,
    targets: list[int],
    size: tuple[int, int],
    spec: VideoSpec,
    deadline: float = float("inf"),
    limits: DecodeLimits = DEFAULT_LIMITS,
    rotation: int = 0,
) -> dict[int, np.ndarray]:
    """{index: HxWx3 uint8 frame, upright} for the distinct, ascending frame indices `targets`; `size` is
    the upright size, the pictures are scaled in their stored orientation and then turned."""
    height, width = size[::-1] if rotation in (90, 270) else size
    interpolation = _SWSCALE[spec.interpolation]
    index_of = table.index_of
    wanted = {table.pts[i] for i in targets}
    out: dict[int, np.ndarray] = {}
    reformatter = VideoReformatter()  # keeps one swscale context: a fresh one per frame costs ~10x
    stream = container.streams.video[0]
    codec = stream.codec_context
    packets = None
    fed = -1  # the highest frame whose packet the decoder has been given since the last seek

    def seek(keyframe: int):
        nonlocal fed
        fed = keyframe - 1
        return _seek(container, stream, table, keyframe)

    def decode_until(target: int) -> str:
        nonlocal fed
        for packet in packets:
            limits.check_time(path, deadline)
            # a frame that is neither wanted nor referenced by a later frame is not decoded at all
            codec.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
            for frame in codec.decode(packet):
                index = index_of.get(frame.pts)
                if frame.pts in wanted and index not in out:
                    image = reformatter.reformat(
                        frame, width=width, height=height, format="rgb24", interpolation=interpolation
                    )
                    out[index] = upright(image.to_ndarray(), rotation)
                if frame.pts is not None and frame.pts > table.pts[target] and target not in out:
                    return "overshot"
            fed = max(fed, index_of.get(packet.pts, fed))
            if target in out:
                return "found"
        return "ended"

    try:
        for target in targets:
            if target in out:
                continue
            start = table.keyframe_at_or_before(target)
            if packets is None or start > fed:
                packets = seek(start)
            state = decode_until(target)
            earlier = table.keyframe_before(start)
            if state == "overshot" and earlier is not None:
                # the seek landed past the target (an inexact index): once more, one keyframe earlier
                packets = seek(earlier)
                state = decode_until(target)
            if state == "ended":
                raise VideoError(
                    f"{path}: the stream ends before frame {target} ({table.seconds(target):.3f}s): truncated file?"
                )
            if state == "overshot":
                raise VideoError(f"{path}: frame {target} ({table.seconds(target):.3f}s) cannot be decoded")
    except av.FFmpegError as err:
        raise VideoError(f"{path}: decoding failed ({_reason(err)})") from None
    return out


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """An HxWxC picture turned `rotation` degrees clockwise (a multiple of 90)."""
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-rotation // 90))


def _runs(table: _FrameTable, targets: list[int], parts: int) -> list[list[int]]:
    """`targets` cut into at most `parts` contiguous runs of similar size, only between keyframe groups."""
    groups: dict[int, list[int]] = {}
    for target in targets:
        groups.setdefault(table.keyframe_at_or_before(target), []).append(target)
    runs: list[list[int]] = [[]]
    share = len(targets) / parts
    for group in groups.values():
        if runs[-1] and len(runs) < parts and len(runs[-1]) + len(group) / 2 > share:
            runs.append([])
        runs[-1].extend(group)
    return runs


def _pyav_frames_threaded(
    path: Path,
    table: _FrameTable,
    targets: list[int],
    size: tuple[int, int],
    spec: VideoSpec,
    threads: int,
    deadline: float,
    limits: DecodeLimits,
    rotation: int,
) -> dict[int, np.ndarray]:
    def decode_run(run: list[int]) -> dict[int, np.ndarray]:
        with _open(path) as container:
            return _pyav_frames(container, path, table, run, size, spec, deadline, limits, rotation)

    out: dict[int, np.ndarray] = {}
    with ThreadPoolExecutor(threads) as pool:
        for part in pool.map(decode_run, _runs(table, targets, threads)):
            out.update(part)
    return out


def _torchcodec_frames(
    path: Path, targets: list[int], size: tuple[int, int], spec: VideoSpec, rotation: int
) -> dict[int, np.ndarray]:
    """The same frames through torchcodec's exact-seek decoder, resized with torch and turned upright."""
    import torch
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(str(path), seek_mode="exact", dimension_order="NCHW")
        batch = decoder.get_frames_at(indices=targets).data
    except (RuntimeError, ValueError, IndexError) as err:
        raise VideoError(f"{path}: torchcodec cannot decode ({_reason(err)})") from None
    stored = size[::-1] if rotation in (90, 270) else size
    resized = torch.nn.functional.interpolate(
        batch.float(), size=stored, mode=spec.interpolation, antialias=spec.interpolation != "area"
    )
    images = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return {target: upright(image, rotation) for target, image in zip(targets, images, strict=True)}


@contextlib.contextmanager
def open_video(
    path: Path, limits: DecodeLimits = DEFAULT_LIMITS
) -> Iterator[tuple[av.container.InputContainer, _FrameTable, VideoInfo]]:
    """An open file with its frame table read, for `read_frames` calls on it (see vaur1.video.windows)."""
    with _open(path) as container:
        table, info = _read_table(container, path, limits)
        yield container, table, info


def read_frames(
    container: av.container.InputContainer,
    path: Path,
    table: _FrameTable,
    info: VideoInfo,
    spec: VideoSpec,
    targets: list[int],
    size: tuple[int, int],
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> dict[int, np.ndarray]:
    """{index: upright frame of `size`} for the ascending, distinct frame indices `targets` of an open
    file, in one pass (each call has the decode time limit of its own)."""
    return _pyav_frames(container, path, table, targets, size, spec, limits.deadline(), limits, info.rotation)


def decode(
    path: str | Path, spec: VideoSpec, threads: int = 1, limits: DecodeLimits = DEFAULT_LIMITS
) -> DecodedVideo:
    """The frames `spec` asks for, with their source indices and timestamps; `VideoError` if unreadable
    or past `limits`.

    `threads` decoding threads for this one video (pyav); the frames are the same for any count.
    """
    started = time.perf_counter()
    deadline = limits.deadline()
    path = Path(path)
    check_decoder(spec.decoder)
    with _open(path) as container:
        table, info = _read_table(container, path, limits)
        indices = spec.sample_indices(info.num_frames_total, info.fps, table.times)
        padded = spec.padded_count(len(indices)) - len(indices)
        try:
            size = spec.output_size(info.height, info.width, len(indices) + padded)
        except ValueError as err:
            raise VideoError(f"{path}: {err}") from None
        targets = sorted(set(indices))
        rotation = info.rotation
        if spec.decoder == "torchcodec":
            images = _torchcodec_frames(path, targets, size, spec, rotation)
        elif threads > 1 and len(table.keyframes) > 1:
            images = _pyav_frames_threaded(
                path, table, targets, size, spec, threads, deadline, limits, rotation
            )
        else:
            images = _pyav_frames(container, path, table, targets, size, spec, deadline, limits, rotation)
    indices = indices + [indices[-1]] * padded
    frames = np.empty((len(indices), *size, 3), dtype=np.uint8)
    for slot, index in enumerate(indices):
        frames[slot] = images[index]
    return DecodedVideo(
        path=str(path),
        frames=frames,
        timestamps=[table.seconds(i) for i in indices],
        indices=indices,
        fps=info.fps,
        num_frames_total=info.num_frames_total,
        duration=info.duration,
        height=info.height,
        width=info.width,
        padded=padded,
        decode_seconds=time.perf_counter() - started,
    )
