"""Tiny Qwen-VL models built once per test session, and synthetic decoded videos for them.

Every test may request `tiny_models` ({"qwen2_vl": Path, "qwen2_5_vl": Path, "qwen3_vl": Path}): the
conftest loads this module as a plugin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaur1.model import ARCHS, ModelConfig, build_tiny_model, load_model, processor_factor, temporal_patch
from vaur1.video.frames import DecodedVideo

_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories of tiny random models of the three architectures (default sizes, seed 0)."""
    for arch in ARCHS:
        if arch not in _BUILT:
            _BUILT[arch] = build_tiny_model(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
    return dict(_BUILT)


def load_tiny(path: Path, **overrides):
    """(model, processor) through `load_model`, the code path of real checkpoints, on the CPU."""
    return load_model(ModelConfig(name_or_path=str(path), device="cpu", **overrides))


def make_video(
    processor,
    num_frames: int = 4,
    sample_fps: float = 1.0,
    source_fps: float = 30.0,
    rows: int = 2,
    cols: int = 2,
    seed: int = 0,
    path: str = "synthetic.mp4",
) -> DecodedVideo:
    """Random frames sized to multiples of the processor's factor, sampled at `sample_fps` from a
    source at `source_fps` that lasts exactly as long as the samples span plus one sample."""
    factor = processor_factor(processor)
    assert num_frames % temporal_patch(processor) == 0
    frames = np.random.default_rng(seed).integers(
        0, 256, (num_frames, rows * factor, cols * factor, 3), np.uint8
    )
    step = source_fps / sample_fps
    indices = [round(i * step) for i in range(num_frames)]
    total = round(num_frames * step)
    return DecodedVideo(
        path=path,
        frames=frames,
        timestamps=[i / source_fps for i in indices],
        indices=indices,
        fps=source_fps,
        num_frames_total=total,
        duration=total / source_fps,
        height=240,
        width=320,
    )


def video_prompt(question: str = "Is there any anomaly in the video?") -> list[dict]:
    """One user turn, text then video, as VAU-R1 builds its prompts."""
    return [{"role": "user", "content": [{"type": "text", "text": question}, {"type": "video"}]}]


def checkpointing_on(model) -> bool:
    """transformers 5.23 names it is_activation_checkpointing; 5.20 (the vllm extra's) is_gradient_checkpointing."""
    if hasattr(model, "is_activation_checkpointing"):
        return model.is_activation_checkpointing
    return model.is_gradient_checkpointing
