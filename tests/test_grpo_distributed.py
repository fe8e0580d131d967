"""Two CPU processes (torchrun, gloo) reach the same weights as one process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import model_fixtures
import train_helpers
import vaur1
from train_helpers import TOY, changed, grpo_config, read_jsonl, safetensors_weights
from vaur1.config import save_config

tiny_models = model_fixtures.tiny_models
synth_bench = train_helpers.synth_bench
toy = train_helpers.toy

# The console entry point with the toy reward registered first: a reward with spread from the first
# step, so that the update is far from zero.
LAUNCHER = """
import sys
sys.path.insert(0, {tests!r})
import train_helpers
from vaur1.cli import main

train_helpers.register_toy_reward()
sys.exit(main(sys.argv[1:]))
"""


def launch(script: Path, config: Path, out: Path, processes: int, *overrides: str) -> None:
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    ]
    command = [*torchrun, str(script)] if processes > 1 else [sys.executable, str(script)]
    command += ["train", "grpo", "--config", str(config), f"run.output_dir={out}", *overrides]
    env = vaur1.subprocess_env() | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_update_the_weights_as_one_process_with_the_same_global_batch(
    tiny_models, synth_bench, tmp_path, toy
):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(Path(__file__).parent)))
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

    launch(script, config, tmp_path / "two", 2, "per_device_train_batch_size=1")
    launch(script, config, tmp_path / "one", 1, "per_device_train_batch_size=2")
    launch(
        script,
        config,
        tmp_path / "accumulated",
        1,
        "per_device_train_batch_size=1",
        "gradient_accumulation_steps=2",
    )

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
