"""The configs that ship for Qwen2.5-VL-3B, run as shipped (their sampling, prompts, frame cache, loader
workers, bf16 and gradient checkpointing) on a tiny bf16 Qwen2.5-VL and SynthVAU: only the model, the
data, the lengths and the step count are changed. And GRPO in bf16 under ZeRO-2 with 2 processes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import model_fixtures
from engine_helpers import launch
from train_helpers import changed, read_jsonl
from vaur1.config import config_path, save_config
from vaur1.rl.config import GRPOTrainConfig
from vaur1.sft.config import SFTTrainConfig
from vaur1.train.aliases import load_training_config


@pytest.fixture(scope="module")
def tiny_bf16(tiny_models, tmp_path_factory) -> Path:
    """The tiny Qwen2.5-VL saved in bf16, as the real checkpoints are."""
    model, processor = model_fixtures.load_tiny(tiny_models["qwen2_5_vl"])
    folder = tmp_path_factory.mktemp("tiny-bf16")
    model.to(torch.bfloat16).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def shipped(name: str, cls, model: Path, bench: Path, out: Path, *extra: str):
    """A shipped config with only what the tiny setting needs changed."""
    overrides = [
        f"model.name_or_path={model}",
        f"data.bench={bench}",
        f"data.video_roots.default={bench / 'videos'}",
        "data.max_per_task=2",
        "run.max_steps=1",
        f"run.output_dir={out}",
        f"cache.dir={out.parent / 'frame-cache'}",
        *extra,
    ]
    return load_training_config(cls, str(config_path(f"qwen2_5_vl_3b/{name}")), overrides)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qa", "tag", "cls", "cotrain", "sft"])
def test_each_shipped_config_trains_a_step_as_shipped(name, tiny_bf16, synth_bench, tmp_path):
    from vaur1.rl.trainer import train as train_grpo
    from vaur1.sft.trainer import train as train_sft

    out = tmp_path / name
    if name == "sft":
        cfg = shipped(name, SFTTrainConfig, tiny_bf16, synth_bench, out)
        final = train_sft(cfg)
    else:
        cfg = shipped(name, GRPOTrainConfig, tiny_bf16, synth_bench, out, "max_completion_length=16")
        assert (cfg.sampling.top_k, cfg.num_generations, cfg.mode) == (50, 4, "think")  # as shipped
        final = train_grpo(cfg)
    assert cfg.bf16 and cfg.gradient_checkpointing and cfg.loader.num_workers == 4 and cfg.cache.enabled
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1] and math.isfinite(records[0]["loss"])
    assert changed(tiny_bf16, final)
    assert any((out.parent / "frame-cache").rglob("*.frames"))  # the cache the config enables was used


@pytest.mark.slow
@pytest.mark.engines
def test_grpo_in_bf16_under_zero2_on_two_processes(tiny_bf16, synth_bench, tmp_path, toy):
    # a dense toy reward: the random model's think answers would all score 0 and teach nothing
    cfg = shipped(
        "tag", GRPOTrainConfig, tiny_bf16, synth_bench, tmp_path / "unused", "max_completion_length=8",
        "rewards.tag={toy: 1.0}",
    )  # fmt: skip
    config = tmp_path / "grpo.yaml"
    save_config(cfg, config)
    out = tmp_path / "run"
    # at the shipped 1e-6 the update is below what bf16 weights can show after export: a larger step
    result = launch(
        out, "grpo", config, "zero2", 2, "run.max_steps=2", "loader.num_workers=0", "optim.learning_rate=1e-3"
    )
    assert "deepspeed on 2 process" in " ".join((result.stderr + result.stdout).split())
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
    assert changed(tiny_bf16, out / "final")
