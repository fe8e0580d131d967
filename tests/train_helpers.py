"""What the trainer tests share: a small SynthVAU, tiny-run configs, a toy reward and weight checks.

    import train_helpers
    synth_bench = train_helpers.synth_bench          # fixtures are re-exported by each test module
    cfg = train_helpers.grpo_config(tmp_path, model_dir, bench, ["run.max_steps=2"])

Configs start from tiny settings (two 28x28 frames, short prompts, no frame cache, no loader workers)
and take dotted overrides like the command line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import vaur1.rewards as rewards_module
from vaur1.bench.synth import generate_synthvau
from vaur1.config import apply_overrides, from_dict
from vaur1.rl.config import GRPOTrainConfig
from vaur1.sft.config import SFTTrainConfig

# Two frames of 28x28: one merged video token per clip, so a step costs milliseconds.
TINY_VIDEO = {"fps": None, "num_frames": 2, "min_pixels": 784, "max_pixels": 784, "total_pixels": None}
# Short templates keep the prompts (and the tests) small; the real ones are tested in test_prompts.
SHORT_PROMPTS = {
    "qa_think": "Q: {question}\n{options}",
    "qa_direct": "Q: {question}\n{options}",
    "tag_think": "Anomaly? When?",
    "tag_direct": "Anomaly? When?",
    "cls_think": "Class?",
    "cls_direct": "Class?",
    "reasoning_think": "Why?",
    "reasoning_direct": "Why?",
}


# Every task scored by the toy reward alone, on direct prompts.
TOY = ["rewards.qa={toy: 1.0}", "rewards.tag={toy: 1.0}", "rewards.cls={toy: 1.0}", "mode=direct"]


def toy_reward(completion: str, example) -> float:
    """A toy task whose fixed answer is "A": the share of the completion's characters that are that letter
    (dense enough for a random tiny model to climb within a few dozen steps)."""
    text = completion.strip()
    return text.count("A") / len(text) if text else 0.0


def register_toy_reward() -> None:
    """For launched processes; in the test process use the `toy` fixture, which removes it again."""
    rewards_module.REWARDS["toy"] = toy_reward
    rewards_module.REWARD_TASKS["toy"] = ("qa", "tag", "cls")


@pytest.fixture
def toy(monkeypatch):
    """The toy reward in the registry for one test."""
    monkeypatch.setitem(rewards_module.REWARDS, "toy", toy_reward)
    monkeypatch.setitem(rewards_module.REWARD_TASKS, "toy", ("qa", "tag", "cls"))


@pytest.fixture(scope="module")
def synth_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve short SynthVAU clips at 64x48, split into train (8), val (1) and test (3)."""
    out = tmp_path_factory.mktemp("synthvau")
    return generate_synthvau(
        out, n=12, seed=5, split_ratio=(0.7, 0.1, 0.2), size=(64, 48), duration=(2.0, 4.0), workers=1
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads are often far slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def base_config(out: Path, model: Path, bench: Path) -> dict[str, Any]:
    return {
        "model": {"name_or_path": str(model), "dtype": "float32"},
        "data": {"bench": str(bench), "split": "train", "tasks": ["qa", "tag", "cls"]},
        "video": dict(TINY_VIDEO),
        "cache": {"enabled": False},
        "loader": {"num_workers": 0},
        "prompts": dict(SHORT_PROMPTS),
        "per_device_train_batch_size": 2,
        "optim": {"learning_rate": 1e-3, "lr_scheduler": "constant"},
        "run": {"output_dir": str(out), "max_steps": 2, "save_steps": 100, "log_completions_every": 1},
    }


def grpo_config(out: Path, model: Path, bench: Path, overrides: list[str] | None = None) -> GRPOTrainConfig:
    data = base_config(out, model, bench) | {"num_generations": 4, "max_completion_length": 8}
    return from_dict(GRPOTrainConfig, apply_overrides(data, list(overrides or [])))


def sft_config(out: Path, model: Path, bench: Path, overrides: list[str] | None = None) -> SFTTrainConfig:
    return from_dict(SFTTrainConfig, apply_overrides(base_config(out, model, bench), list(overrides or [])))


def safetensors_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    first, second = safetensors_weights(a), safetensors_weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def changed(before: Path, after: Path, prefix: str = "") -> list[str]:
    """Names of the tensors (starting with `prefix`) that differ between two model directories."""
    first, second = safetensors_weights(before), safetensors_weights(after)
    return [k for k in first if k.startswith(prefix) and not torch.equal(first[k], second[k])]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fsdp_on_cpu() -> None:
    """Make vaur1's Accelerator an FSDP2 one on a CPU, in a process started by `accelerate launch` with
    an FSDP config (which sets ACCELERATE_USE_FSDP and the FSDP_* settings in the environment).

    accelerate 1.15 picks FSDP only for GPU-like devices: on a CPU it forms a gloo group (MULTI_CPU)
    and ignores the FSDP settings. This builds that accelerator, then sets the shared state's engine
    to FSDP with the plugin the launch described, which is all `prepare` looks at, so vaur1's FSDP
    code paths run for real on CPU tensors.
    """
    import os

    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    import vaur1.train.distributed as distributed

    build = distributed.make_accelerator

    def make_fsdp_accelerator(gradient_accumulation_steps: int, bf16: bool):
        os.environ["ACCELERATE_USE_FSDP"] = "false"  # so that vaur1 builds the CPU (gloo) accelerator
        accelerator = build(gradient_accumulation_steps, bf16)
        os.environ["ACCELERATE_USE_FSDP"] = "true"
        plugin = FullyShardedDataParallelPlugin()
        if bf16:
            plugin.set_mixed_precision("bf16")
        accelerator.state.fsdp_plugin = plugin
        # AcceleratorState copies PartialState's fields each time it is constructed: set both
        accelerator.state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        return accelerator

    distributed.make_accelerator = make_fsdp_accelerator


def videos_with_one_broken(bench: Path, folder: Path, examples: list, broken: int = 1) -> Path:
    """A video folder of links to `examples`' clips in which clip `broken` is junk bytes."""
    folder.mkdir()
    for example in examples:
        (folder / example.video).symlink_to(bench / "videos" / example.video)
    (folder / examples[broken].video).unlink()
    (folder / examples[broken].video).write_bytes(b"\x00not an mp4" * 10)
    return folder


class Killed(Exception):
    """What `killed_after` raises in place of a crash."""


@contextlib.contextmanager
def killed_after(step: int) -> Iterator[None]:
    """A training run inside the block dies right after logging `step`, leaving its folder as a crash
    leaves it (the checkpoints saved so far)."""
    from vaur1.train import session as session_module

    real_log = session_module.Session.log

    def log_then_die(self, metrics, samples=None):
        real_log(self, metrics, samples)
        if self.state.step == step:
            raise Killed

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        patch.setattr(session_module.Session, "log", log_then_die)
        yield


def rollout_of(model, processor, examples, videos, group: int = 3, seeds=None, tokens: int = 6):
    """`collect` in think mode with the short prompts: `group` sampled completions of `tokens` tokens."""
    from vaur1.model import SamplingConfig
    from vaur1.model.generators import HFGenerator
    from vaur1.prompts import PromptConfig
    from vaur1.rewards import RewardConfig
    from vaur1.rl.rollout import collect

    sampling = SamplingConfig(max_new_tokens=tokens, num_return_sequences=group, seed=None if seeds else 0)
    return collect(
        HFGenerator(model, processor, sampling),
        examples,
        videos,
        mode="think",
        prompts=PromptConfig(**SHORT_PROMPTS),
        sampling=sampling,
        rewards=RewardConfig(),
        device=next(model.parameters()).device,
        seeds=seeds,
    )
