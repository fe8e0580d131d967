"""How many visual tokens a run's videos become, and how much frame cache they need.

The answer comes from the real videos where the plan can see them (files given on the command
line, or the benchmark's videos under `data.video_roots`: their headers and packet tables are read,
and their first frame decoded for its display rotation); otherwise from the VideoSpec's worst case for a reference frame size, which is
what a long video at that size costs (the longest video sets a run's peak).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from vaur1.errors import VaurError, VideoError
from vaur1.video.cache import entry_bytes
from vaur1.video.decode import VideoInfo, probe
from vaur1.video.spec import VideoSpec

REFERENCE_SIZE = (720, 1280)  # (height, width) assumed for videos the plan cannot see


@dataclass(frozen=True)
class VideoSurvey:
    """The videos a run reads, as far as the plan can see them; `tokens` re-plans them under another spec."""

    infos: tuple[VideoInfo, ...]  # the probed videos; empty: a reference video stands in
    videos: int | None  # distinct videos the run reads, where the benchmark could be loaded
    size: tuple[int, int]  # the reference video's (height, width)
    seconds: float | None  # the reference video's length; None: the spec's worst case

    @property
    def basis(self) -> str:
        """Where the numbers come from, in words."""
        if self.infos:
            return f"{len(self.infos)} video(s) probed"
        length = f"{self.seconds:g} s" if self.seconds is not None else "as long as the spec samples"
        return f"no video found: a {self.size[1]}x{self.size[0]} video, {length}"

    def tokens(self, spec: VideoSpec) -> int:
        """Visual tokens of the largest video: what the peak is planned for."""
        if self.infos:
            return max(probed_tokens(spec, info) for info in self.infos)
        return reference_video(spec, self.size, self.seconds)[0]

    def tokens_mean(self, spec: VideoSpec) -> float | None:
        return statistics.fmean(probed_tokens(spec, info) for info in self.infos) if self.infos else None

    def cache_bytes(self, spec: VideoSpec) -> int | None:
        """The frame cache every video of the run fills at `spec` (unprobed ones at the probed mean)."""
        if self.infos:
            known = sum(entry_bytes(spec, info) for info in self.infos)
            unseen = (self.videos or len(self.infos)) - len(self.infos)
            return known + round(unseen * known / len(self.infos))
        if self.videos is None:
            return None
        return self.videos * reference_video(spec, self.size, self.seconds)[1]


def reference_video(spec: VideoSpec, size: tuple[int, int], seconds: float | None) -> tuple[int, int]:
    """(visual tokens, cache bytes) of a video of `size`: `seconds` long at 30 fps, or the spec's
    worst case over every frame count it can give."""
    height, width = size
    if seconds is not None:
        counts = [spec.frame_count(max(1, round(seconds * 30)), 30.0)]
    else:
        counts = list(spec.frame_counts())
    best = (0, 0)
    for count in counts:
        frames = spec.padded_count(count)
        out_height, out_width = spec.output_size(height, width, frames)
        candidate = (spec.visual_tokens(frames, out_height, out_width), frames * out_height * out_width * 3)
        best = max(best, candidate)
    return best


def probed_tokens(spec: VideoSpec, info: VideoInfo) -> int:
    frames, height, width = spec.model_input_shape(info.num_frames_total, info.fps, info.height, info.width)
    return spec.visual_tokens(frames, height, width)


def survey(
    spec: VideoSpec,
    data=None,
    files: list[str] | None = None,
    size: tuple[int, int] = REFERENCE_SIZE,
    seconds: float | None = None,
) -> VideoSurvey:
    """The videos in `files`, else `data`'s (a `DataConfig`): probed where their files exist."""
    paths = [Path(f) for f in files or []]
    videos: int | None = len(paths) or None
    if not paths and data is not None:
        paths, videos = _bench_videos(data)
    infos: list[VideoInfo] = []
    for path in paths:
        try:
            infos.append(probe(path))
        except (VideoError, OSError) as err:
            if files:
                raise VaurError(f"{path}: cannot read the video: {err}") from None
    return VideoSurvey(infos=tuple(infos), videos=videos or len(infos) or None, size=size, seconds=seconds)


def _bench_videos(data) -> tuple[list[Path], int | None]:
    """(the benchmark's video files that exist, how many distinct videos it names); ([], None) when the
    benchmark itself cannot be read here (e.g. VAU-Bench's train split offline)."""
    try:
        examples = data.load()
        roots = data.roots()
        wanted = {roots.resolve(example) for example in examples}
    except (VaurError, OSError):
        return [], None
    return sorted(path for path in wanted if path.is_file()), len(wanted)
