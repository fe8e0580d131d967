"""Decoded frames and where they came from: what travels from the decoder to the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DecodedVideo:
    """Frames sampled from one video, with the timestamps the model and the IoU depend on.

    `frames` is uint8 (T, H, W, C). `indices[i]` is the source frame index of `frames[i]` and
    `timestamps[i]` its time in seconds. When T had to be rounded up to a multiple of the
    model's temporal patch, the last frame is repeated `padded` times (indices and timestamps
    repeat with it).
    """

    path: str
    frames: np.ndarray
    timestamps: list[float]
    indices: list[int]
    fps: float  # the source's frame rate
    num_frames_total: int  # frames in the source
    duration: float  # seconds
    height: int  # source size
    width: int
    padded: int = 0
    decode_seconds: float = 0.0

    @property
    def sample_fps(self) -> float:
        """Frames per second of the sampled sequence (what the model's time positions assume)."""
        unique = len(self.indices) - self.padded
        if unique <= 1 or self.duration <= 0:
            return self.fps
        span = self.timestamps[unique - 1] - self.timestamps[0]
        return (unique - 1) / span if span > 0 else self.fps
