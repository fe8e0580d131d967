"""`VideoSpec`: which frames of a video the model sees, and at what size.

One spec object drives SFT, GRPO, evaluation and analysis alike; it is printed and saved with
every run, and its hash keys the frame cache, so train and eval cannot silently differ.

Frames come either at a rate (`fps`, the paper evaluates Qwen models at 1 fps; the count is
clamped to [min_frames, max_frames]) or as a fixed count (`num_frames`). Either way they are
spread uniformly over the whole video (qwen-vl-utils' `linspace` rule), a video shorter than the
request gives the frames it has, and the count is padded to a multiple of `temporal_patch` by
repeating the last frame.

Sizes follow Qwen's `smart_resize`: both sides rounded to `factor` (patch size x spatial merge:
28 for Qwen2/2.5-VL, 32 for Qwen3-VL), the aspect ratio kept, the area within
[min_pixels, max_pixels]. `total_pixels`, when set, is a budget over all frames: qwen-vl-utils'
rule `max_pixels_per_frame = min(max_pixels, total_pixels * temporal_patch / frames)`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from vaur1.config import read_yaml
from vaur1.errors import ConfigError
from vaur1.files import write_text
from vaur1.layout import MODEL_VIDEO_SPEC

Decoder = Literal["pyav", "torchcodec"]
Interpolation = Literal["bicubic", "bilinear", "area"]

MAX_ASPECT_RATIO = 200  # Qwen's smart_resize refuses more extreme frames
SPEC_VERSION = 2  # bump when the meaning of a field changes, so cached frames are not reused


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: float) -> tuple[int, int]:
    """Qwen's resize rule: sides divisible by `factor`, area in [min_pixels, max_pixels], aspect kept."""
    if min(height, width) <= 0:
        raise ValueError(f"frame size {width}x{height} is empty")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of {width}x{height} is above {MAX_ASPECT_RATIO}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def variable_rate(times: Sequence[float]) -> bool:
    """Whether frames at these presentation times (seconds, ascending) come at a variable rate: a gap
    more than 10% away from the median gap (a muxer's rounding of a constant rate stays within it)."""
    if len(times) < 3:
        return False
    gaps = np.diff(np.asarray(times, dtype=float))
    median = float(np.median(gaps))
    return median > 0 and float(np.abs(gaps - median).max()) > 0.1 * median


def _nearest_frames(times: np.ndarray, count: int) -> list[int]:
    """For `count` instants evenly spread from the first frame's time to the last's, the nearest frame
    to each (the earlier one on a tie); distinct instants may share a frame where frames are sparse."""
    instants = np.linspace(times[0], times[-1], count)
    after = np.clip(np.searchsorted(times, instants), 1, len(times) - 1)
    before = after - 1
    nearer_before = instants - times[before] <= times[after] - instants
    return np.where(nearer_before, before, after).astype(int).tolist()


@dataclass(frozen=True)
class VideoSpec:
    """Frame sampling, frame size and decoder. Defaults: 1 fps and VAU-R1's training pixel budget."""

    fps: float | None = 1.0  # frames per second of video; exactly one of fps / num_frames is set
    num_frames: int | None = None  # a fixed number of uniformly spread frames
    min_frames: int = 4  # bounds on the count when sampling by fps
    max_frames: int = 768  # the upper bound on the count when sampling by fps
    min_pixels: int = 16 * 28 * 28  # per frame
    max_pixels: int = 768 * 28 * 28  # per frame
    total_pixels: int | None = 3584 * 28 * 28  # over all frames of a video; None: no budget
    factor: int = 28  # the processor's patch_size * merge_size (Qwen3-VL: 32)
    temporal_patch: int = 2  # frames per temporal patch; the count is padded to a multiple of it
    decoder: Decoder = "pyav"  # pyav, or torchcodec where its CPU build is installed
    interpolation: Interpolation = "bicubic"  # how frames are resized: bicubic (Qwen's), bilinear or area

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if (self.fps is None) == (self.num_frames is None):
            raise ConfigError(
                f"video: set exactly one of fps and num_frames, got fps={self.fps}, num_frames={self.num_frames} "
                "(for a fixed frame count also set fps: null)"
            )
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"video.fps: must be a positive number, got {self.fps}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ConfigError(f"video.num_frames: must be at least 1, got {self.num_frames}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ConfigError(
                f"video: need 1 <= min_frames <= max_frames, got {self.min_frames} and {self.max_frames}"
            )
        if self.factor < 1 or self.temporal_patch < 1:
            raise ConfigError(
                f"video: factor and temporal_patch must be at least 1, got {self.factor}, {self.temporal_patch}"
            )
        if not 1 <= self.min_pixels <= self.max_pixels:
            raise ConfigError(
                f"video: need 1 <= min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}"
            )
        if self.total_pixels is not None and self.total_pixels < self.min_pixels:
            raise ConfigError(
                f"video.total_pixels: {self.total_pixels} is below min_pixels {self.min_pixels}"
            )
        if self.decoder not in ("pyav", "torchcodec"):
            raise ConfigError(f"video.decoder: {self.decoder!r} is not one of 'pyav', 'torchcodec'")
        if self.interpolation not in ("bicubic", "bilinear", "area"):
            raise ConfigError(f"video.interpolation: {self.interpolation!r} is not bicubic, bilinear or area")

    def frame_count(self, num_frames_total: int, fps: float) -> int:
        """How many distinct frames to take from a video (before padding)."""
        if self.num_frames is not None:
            wanted = self.num_frames
        else:
            duration = num_frames_total / fps
            # the epsilon keeps 10.0 s at 1 fps from flooring to 9 through float error
            wanted = math.floor(duration * self.fps + 1e-6)
            wanted = min(max(wanted, self.min_frames), self.max_frames)
        return max(1, min(wanted, num_frames_total))

    def sample_indices(
        self, num_frames_total: int, fps: float, times: Sequence[float] | None = None
    ) -> list[int]:
        """Source frame indices, uniform over the whole video (no padding; see `padded_count`).

        With the frames' presentation `times` (seconds) and a variable frame rate, uniform in time: the
        frame nearest each of `count` evenly spaced instants, so a stretch where the camera recorded
        fewer frames is not skipped over. A constant rate gives the same frames either way; it is
        computed by index. `fps` is then the frames' mean rate over the video (frames / duration).
        """
        if num_frames_total < 1:
            return []
        count = self.frame_count(num_frames_total, fps)
        if times is not None and variable_rate(times):
            return _nearest_frames(np.asarray(times, dtype=float), count)
        return np.round(np.linspace(0, num_frames_total - 1, count)).astype(int).tolist()

    def padded_count(self, count: int) -> int:
        """`count` rounded up to a multiple of the temporal patch."""
        return math.ceil(count / self.temporal_patch) * self.temporal_patch

    def frame_pixel_cap(self, n_frames: int) -> float:
        """The per-frame pixel cap for a video of `n_frames` (padded) frames."""
        cap: float = self.max_pixels
        if self.total_pixels is not None:
            cap = min(cap, self.total_pixels * self.temporal_patch / max(n_frames, 1))
            # qwen-vl-utils' floor: 5% above min_pixels, so rounding down to the factor stays above it
            cap = max(cap, int(self.min_pixels * 1.05))
        return cap

    def output_size(self, height: int, width: int, n_frames: int) -> tuple[int, int]:
        """(height, width) of every returned frame for a source of this size and `n_frames` frames."""
        return smart_resize(height, width, self.factor, self.min_pixels, self.frame_pixel_cap(n_frames))

    def model_input_shape(
        self, num_frames_total: int, fps: float, height: int, width: int
    ) -> tuple[int, int, int]:
        """(frames after padding, height, width) of what the model gets from a video of this kind."""
        frames = self.padded_count(self.frame_count(num_frames_total, fps)) if num_frames_total else 0
        return (frames, *self.output_size(height, width, max(frames, 1)))

    def visual_tokens(self, frames: int, height: int, width: int) -> int:
        """Visual tokens of `frames` (padded) frames of height x width: one per factor x factor square
        of every temporal patch."""
        return frames // self.temporal_patch * (height // self.factor) * (width // self.factor)

    def frame_counts(self) -> range:
        """Every (unpadded) frame count the spec can give a video that has at least `min_frames`."""
        if self.num_frames is not None:
            return range(self.num_frames, self.num_frames + 1)
        return range(self.min_frames, self.max_frames + 1)

    def hash(self) -> str:
        """A stable 16-hex-digit digest of every field: what the frame cache is keyed by."""
        text = json.dumps({"version": SPEC_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line for logs and run summaries."""
        if self.num_frames is not None:
            frames = f"{self.num_frames} frames"
        else:
            frames = f"{self.fps:g} fps ({self.min_frames}..{self.max_frames} frames)"
        budget = f", total {self.total_pixels} px" if self.total_pixels is not None else ""
        return (
            f"{frames}, {self.min_pixels}..{self.max_pixels} px/frame{budget}, factor {self.factor}, "
            f"temporal patch {self.temporal_patch}, {self.decoder}, {self.interpolation} [spec {self.hash()}]"
        )


def write_model_spec(spec: VideoSpec, model_dir: str | Path) -> Path:
    """Store the spec a model was trained with inside its model directory, so that evaluation and
    analyze feed it frames exactly as training did."""
    path = Path(model_dir) / MODEL_VIDEO_SPEC
    return write_text(path, yaml.safe_dump(asdict(spec), sort_keys=False))


def model_video_spec(model_dir: str | Path) -> VideoSpec:
    """The VideoSpec a model was trained with (its stored fields over the defaults)."""
    from vaur1.config import from_dict

    return from_dict(VideoSpec, read_model_spec(model_dir) or {})


def read_model_spec(model_dir: str | Path) -> dict | None:
    """The spec fields stored with a model directory, or None (a Hub id, or a model trained elsewhere)."""
    path = Path(model_dir) / MODEL_VIDEO_SPEC
    if not path.is_file():
        return None
    return read_yaml(path)
