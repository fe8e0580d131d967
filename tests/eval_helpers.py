"""A small SynthVAU benchmark and a tiny model, built once per test session, and eval configs for them.

import eval_helpers
eval_synth = eval_helpers.eval_synth      # re-export the fixtures in a test module
eval_model = eval_helpers.eval_model
cfg = eval_helpers.make_config(eval_synth, eval_model, tmp_path / "run", tasks=["qa"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vaur1.bench.synth import generate_synthvau
from vaur1.eval.config import EvalConfig, load_eval_config
from vaur1.model import build_tiny_model

_BUILT: dict[str, Path] = {}

# 64x48 clips; 3136 px = 56x56 frames, 4 frames: 8 video tokens for the tiny model.
SPEC_OVERRIDES = ["video.min_pixels=3136"]


@pytest.fixture(scope="session")
def eval_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SynthVAU with 6 clips: 3 in `test` (one normal, a fire and a traffic accident), 3 in `train`."""
    if "synth" not in _BUILT:
        _BUILT["synth"] = generate_synthvau(
            tmp_path_factory.mktemp("eval-synth"),
            n=6,
            seed=3,
            split_ratio=(0.5, 0.5),
            size=(64, 48),
            duration=(2.0, 3.0),
            workers=1,
        )
    return _BUILT["synth"]


@pytest.fixture(scope="session")
def eval_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL (hidden size 64)."""
    if "model" not in _BUILT:
        _BUILT["model"] = build_tiny_model("qwen2_5_vl", tmp_path_factory.mktemp("eval-tiny"), hidden_size=64)
    return _BUILT["model"]


def run_flags(synth: Path, model: Path, out: Path, **flags: Any) -> dict[str, Any]:
    """Dotted config keys for a quick greedy run on the synth test split (callers add or replace keys)."""
    base = {
        "model.name_or_path": str(model),
        "model.device": "cpu",
        "data.bench": str(synth),
        "data.split": "test",
        "out": str(out),
        "batch_size": 4,
        "sampling.max_new_tokens": 12,
        "cache.dir": str(out.parent / f"{out.name}-frames"),
        "loader.num_workers": 0,
        "offline_scorer": False,
    }
    return {**base, **flags}


def make_config(synth: Path, model: Path, out: Path, **flags: Any) -> EvalConfig:
    return load_eval_config(None, SPEC_OVERRIDES, run_flags(synth, model, out, **flags))


def cli_args(synth: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """`vaur1 eval run` arguments for the same quick run, through the command line's own flags."""
    return [
        "eval",
        "run",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--bench",
        "synth",
        "--videos",
        str(synth),
        "--split",
        "test",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "12",
        "--workers",
        "0",
        "--cache-dir",
        str(out.parent / f"{out.name}-frames"),
        "--no-offline-scorer",
        *extra,
        *SPEC_OVERRIDES,
    ]
