"""`vaur1 train sft|grpo` through the console script with the shipped tiny configs, and every shipped
config loading."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import vaur1
from conftest import REPO, VAUR1
from train_helpers import read_jsonl
from vaur1.config import load_config
from vaur1.rl.config import GRPOTrainConfig
from vaur1.sft.config import SFTTrainConfig

CONFIGS = REPO / "configs"


def vaur1_train(*args: str) -> subprocess.CompletedProcess:
    env = vaur1.subprocess_env() | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(VAUR1), "train", *args], capture_output=True, text=True, timeout=600, env=env, cwd=REPO
    )


def tiny_overrides(tmp_path: Path, model: Path, bench: Path) -> list[str]:
    return [
        f"model.name_or_path={model}",
        f"data.bench={bench}",
        f"cache.dir={tmp_path / 'cache'}",
        f"run.output_dir={tmp_path / 'run'}",
        "run.max_steps=2",
        "per_device_train_batch_size=2",
    ]


def test_train_sft_runs_the_tiny_config_with_overrides(tiny_models, synth_bench, tmp_path):
    overrides = tiny_overrides(tmp_path, tiny_models["qwen2_5_vl"], synth_bench)
    result = vaur1_train(
        "sft", "--config", str(CONFIGS / "sft" / "tiny_cpu.yaml"), *overrides, "validation.eval_steps=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]
    assert (run / "final" / "model.safetensors").is_file() and (run / "best" / "config.json").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run"]["max_steps"] == 2 and saved["target"] == "cot"
    assert (run / "video_spec.txt").read_text().startswith("4 frames")
    assert (tmp_path / "cache").is_dir()  # frames went through the cache, decoded by a loader worker


def test_train_grpo_runs_the_tiny_config_with_overrides(tiny_models, synth_bench, tmp_path):
    overrides = tiny_overrides(tmp_path, tiny_models["qwen2_5_vl"], synth_bench)
    result = vaur1_train(
        "grpo", "--config", str(CONFIGS / "grpo" / "tiny_cpu.yaml"), *overrides, "max_completion_length=8"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2] and "kl" in records[-1]
    assert (run / "final" / "model.safetensors").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["max_completion_length"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run.max_stepz=2"], "unknown config key 'run.max_stepz'"),
        (["loss.beta=-1"], "beta must be >= 0"),
        (["num_generations=lots"], "num_generations: expected an integer"),
        (["data.bench=/no/such/bench"], "/no/such/bench: no such file or folder"),
    ],
)
def test_a_bad_override_is_a_one_line_error_naming_the_key(args, message, tmp_path):
    result = vaur1_train(
        "grpo", "--config", str(CONFIGS / "grpo" / "tiny_cpu.yaml"), f"run.output_dir={tmp_path}", *args
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


@pytest.mark.parametrize(
    "path", [*sorted((CONFIGS / "qwen2_5_vl_3b").glob("*.yaml")), CONFIGS / "grpo" / "tiny_cpu.yaml"], ids=str
)
def test_shipped_grpo_and_sft_configs_load(path):
    cls = SFTTrainConfig if path.stem == "sft" else GRPOTrainConfig
    cfg = load_config(cls, path)
    if path.parent.name == "qwen2_5_vl_3b":
        assert cfg.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"
        assert cfg.bf16 and cfg.gradient_checkpointing and cfg.data.split == "train"
        assert (cfg.video.fps, cfg.video.total_pixels) == (1.0, 3584 * 28 * 28)
    if cls is GRPOTrainConfig and path.parent.name == "qwen2_5_vl_3b":
        assert (cfg.num_generations, cfg.loss.beta, cfg.max_completion_length) == (4, 0.04, 1024)
        assert cfg.optim.learning_rate == (2e-6 if path.stem == "cls" else 1e-6)
    assert load_config(SFTTrainConfig, CONFIGS / "sft" / "tiny_cpu.yaml").target == "cot"


def test_qwen_task_configs_train_the_papers_tasks():
    tasks = {
        path.stem: load_config(GRPOTrainConfig, path).data.tasks
        for path in (CONFIGS / "qwen2_5_vl_3b").glob("[!_]*.yaml")
        if path.stem != "sft"
    }
    assert tasks == {"qa": ["qa"], "tag": ["tag"], "cls": ["cls"], "cotrain": ["qa", "tag", "cls"]}


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3", "fsdp"])
def test_accelerate_configs_are_launch_configs(name):
    config = yaml.safe_load((CONFIGS / "accelerate" / f"{name}.yaml").read_text())
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[name]
    assert config["distributed_type"] == expected and config["mixed_precision"] == "bf16"
    if expected == "DEEPSPEED":
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])
