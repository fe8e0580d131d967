"""Write small H.264 videos whose frames carry their own frame number, and read it back.

Each frame shows its number as a 4x3 grid of black/white cells (12 bits, most significant bit
first), large enough to survive H.264 and any resize, so a test can tell exactly which source
frame a decoder returned.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID_ROWS, GRID_COLS = 3, 4
BITS = GRID_ROWS * GRID_COLS


def stamp(number: int, height: int, width: int) -> np.ndarray:
    """An RGB frame showing `number` as a grid of black (0) and white (1) cells."""
    assert 0 <= number < 2**BITS
    cells = np.array([(number >> (BITS - 1 - b)) & 1 for b in range(BITS)], dtype=np.uint8).reshape(
        GRID_ROWS, GRID_COLS
    )
    rows = np.arange(height) * GRID_ROWS // height
    cols = np.arange(width) * GRID_COLS // width
    image = np.where(cells[rows][:, cols] == 1, 235, 16).astype(np.uint8)
    return np.repeat(image[:, :, None], 3, axis=2)


def read_stamp(frame: np.ndarray) -> int:
    """The number a (possibly resized, compressed) stamped frame shows."""
    height, width = frame.shape[:2]
    gray = frame.mean(axis=2)
    number = 0
    for r in range(GRID_ROWS):
        for c in range(GRID_COLS):
            top, bottom = (r * height) // GRID_ROWS, ((r + 1) * height) // GRID_ROWS
            left, right = (c * width) // GRID_COLS, ((c + 1) * width) // GRID_COLS
            dy, dx = max(1, (bottom - top) // 4), max(1, (right - left) // 4)
            centre = gray[top + dy : bottom - dy, left + dx : right - dx]
            number = (number << 1) | int(centre.mean() > 128)
    return number


def write_stamped_video(
    path: Path,
    num_frames: int,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    gop: int = 12,
    faststart: bool = False,
    rotation: int = 0,
    times: list[float] | None = None,
) -> Path:
    """An H.264 mp4 (with B-frames) of `num_frames` stamped frames at `fps`, `size` = (width, height).

    `rotation`: a display matrix turning the pictures counter-clockwise by that many degrees, as a phone
    writes one (-90: stored landscape, shown portrait). `times`: each frame's presentation time in
    seconds (a variable frame rate, in milliseconds), in place of `fps`'s even spacing."""
    width, height = size
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "12", "bframes": "3", "threads": "1"}
        if rotation:
            stream.set_display_rotation(rotation)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for number in range(num_frames):
            frame = av.VideoFrame.from_ndarray(stamp(number, height, width), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[number] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    """A WAV file: a real media file without a video stream."""
    rate = 8000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        samples = (np.sin(np.arange(int(rate * seconds)) / 5) * 3000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
