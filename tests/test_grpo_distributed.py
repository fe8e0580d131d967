"""Two CPU processes (DDP on gloo) reach the same weights as one process with the same global batch, and
each samples with its own noise. The toy reward has spread from the first step, so the update is far
from zero."""

from __future__ import annotations

import json

import pytest

from engine_helpers import launch
from train_helpers import TOY, changed, grpo_config, read_jsonl, safetensors_weights
from vaur1.config import save_config

pytestmark = pytest.mark.engines


@pytest.mark.slow
def test_two_processes_update_the_weights_as_one_process_with_the_same_global_batch(
    tiny_models, synth_bench, tmp_path, toy
):
    cfg = grpo_config(
        tmp_path / "unused",
        tiny_models["qwen2_5_vl"],
        synth_bench,
        [
            *TOY,
            "num_generations=8",
            "seed_rollouts_per_prompt=true",
            "loss.beta=0.04",
            "loss.loss_type=dapo",
            "loss.scale_rewards=batch",
            "run.max_steps=2",
            "optim.learning_rate=1e-2",
            "optim.eps=1e-3",  # smooth in the gradient: float-level differences stay float-level
        ],
    )
    config = tmp_path / "grpo.yaml"
    save_config(cfg, config)

    launch(tmp_path / "two", "grpo", config, "ddp-cpu", 2, "per_device_train_batch_size=1")
    launch(tmp_path / "one", "grpo", config, None, 1, "per_device_train_batch_size=2")
    accumulated = ["per_device_train_batch_size=1", "gradient_accumulation_steps=2"]
    launch(tmp_path / "accumulated", "grpo", config, None, 1, *accumulated)

    runs = {name: read_jsonl(tmp_path / name / "metrics.jsonl") for name in ("two", "one", "accumulated")}
    for name, records in runs.items():
        assert [r["prompts"] for r in records] == [2, 2], name
        assert [r["reward"] for r in records] == pytest.approx([r["reward"] for r in runs["one"]]), name
    assert runs["one"][0]["reward_std"] > 0 and runs["one"][1]["kl"] > 0

    one = safetensors_weights(tmp_path / "one" / "final")
    assert changed(tiny_models["qwen2_5_vl"], tmp_path / "one" / "final", prefix="visual.")
    for name in ("two", "accumulated"):
        other = safetensors_weights(tmp_path / name / "final")
        assert other.keys() == one.keys()
        for key, tensor in one.items():
            assert other[key].allclose(tensor, rtol=1e-4, atol=1e-6), (name, key)


@pytest.mark.slow
def test_each_process_samples_with_its_own_noise_by_default(tiny_models, synth_bench, tmp_path, toy):
    """With seed_rollouts_per_prompt left off, two processes given the same prompt sample different
    completions: each draws its own random stream."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = grpo_config(
        tmp_path / "unused",
        tiny_models["qwen2_5_vl"],
        synth_bench,
        [*TOY, "data.tasks=[qa]", "data.max_per_task=1", "run.max_steps=1", "max_completion_length=16"],
    )
    assert cfg.seed_rollouts_per_prompt is False  # the default users get
    config = tmp_path / "grpo.yaml"
    save_config(cfg, config)
    launch(
        out,
        "grpo",
        config,
        "ddp-cpu",
        2,
        "per_device_train_batch_size=1",
        env={"RECORD_ROLLOUTS_TO": str(out)},
    )
    ranks = [json.loads((out / f"texts-{rank}.jsonl").read_text().splitlines()[0]) for rank in (0, 1)]
    assert ranks[0]["keys"] == ranks[1]["keys"]  # one example: both processes got the same prompt
    assert ranks[0]["texts"] != ranks[1]["texts"]
