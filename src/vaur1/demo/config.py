"""`DemoConfig`: what `vaur1 demo` runs, and the trainer and evaluation configs it writes.

The demo's own settings are the data, the model, the VideoSpec, the prompts and the prompt mode,
which every stage shares. `sft` and `grpo` are sections of `SFTTrainConfig` and `GRPOTrainConfig`,
in the trainers' own keys (`vaur1 config show sft` lists them): the demo writes the shared sections
(model, data, video, prompts, cache, output folder, validation split) and puts them under its
`sft` / `grpo` section, so `sft.optim.learning_rate=1e-3` is exactly the trainer's setting.

    cfg = load_demo_config(quick=False, overrides=["seed=1", "grpo.run.max_steps=80"])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.config import apply_overrides, from_dict, merge, to_dict
from vaur1.errors import ConfigError
from vaur1.layout import DEFAULT_DEMO_OUT, FULL_DEMO_OUT, QUICK_DEMO_OUT, DemoRun
from vaur1.prompts import PromptConfig
from vaur1.video.spec import VideoSpec
from vaur1.vocab import ACCURACY, CLS, MEAN_ACCURACY, QA, SCORED_TASKS, TAG, check_mode

TASKS = list(SCORED_TASKS)
SFT_TARGET = {"direct": "answer", "think": "cot"}  # the SFT target that matches each prompt mode
SHORT_PROMPTS = {
    "qa_think": "{question}\n{options}\nThink in <think> </think>, then give the letter in <answer> </answer>.",
    "qa_direct": "{question}\n{options}\nGive the letter in <answer> </answer>.",
    "tag_think": (
        "Anomaly or Normal? Think in <think> </think>, answer in <answer> </answer>, then the time "
        "in seconds in <glue>[start, end]</glue>; Normal: <glue>[-1, -1]</glue>."
    ),
    "tag_direct": (
        "Anomaly or Normal? Answer in <answer> </answer>, then the time in seconds in "
        "<glue>[start, end]</glue>; Normal: <glue>[-1, -1]</glue>."
    ),
    "cls_think": "Which anomaly class, or Normal? Think in <think> </think>, answer in <answer> </answer>.",
    "cls_direct": "Which anomaly class, or Normal? Answer in <answer> </answer>.",
}


def _sft_section() -> dict[str, Any]:
    return {
        "per_device_train_batch_size": 8,
        # the training mix: without repeats no seed learnt QA before patience stopped SFT
        "task_repeats": {QA: 3},
        # 2e-3 learnt the text but never looked at the video; constant after warm-up, so a stop by
        # patience ends no schedule early
        "optim": {"learning_rate": 5e-4, "lr_scheduler": "constant", "warmup_steps": 10},
        # the demo's time budget: SFT reads the video (CLS above the constant answer) after ~1,500-2,000
        # steps; `--full` lets it run until patience stops it (up to 6,000 steps), which scores higher
        "run": {"max_steps": 2400, "save_steps": 400},
        # both signals: a constant answer scores well early, so the score alone stops SFT before it has
        # learnt anything while the loss keeps falling; and patience counts only once SFT reads the video
        "validation": {
            "eval_steps": 400,
            "patience": 3,
            "patience_metrics": [MEAN_ACCURACY, "val_loss"],
            "patience_after_reading": True,
        },
    }


def _grpo_section() -> dict[str, Any]:
    return {
        "per_device_train_batch_size": 8,  # prompts per step, each sampled num_generations times
        "num_generations": 8,
        "max_completion_length": 32,  # direct answers take at most 20 tokens; think mode needs ~160
        "task_repeats": {QA: 3},  # QA three times per epoch, as in SFT
        "sampling": {"temperature": 1.0},
        # token-level DAPO loss, rewards scaled by their group's std; the KL as the paper's, unweighted
        "loss": {
            "beta": 0.04,
            "loss_type": "dapo",
            "scale_rewards": "group",
            "use_bias_correction_kl": False,
        },
        # 1e-4 for 60 steps left the SFT model unchanged (KL 0.01); 3e-4 for 200 steps collapsed one of
        # three seeds' TAG answers (KL 0.6: it stopped after the start time)
        "optim": {"learning_rate": 2e-4, "lr_scheduler": "constant"},
        # the demo's time budget (`--full`: 300 steps, scored every 50)
        "run": {"max_steps": 60, "save_steps": 20},
        # checkpoints scored on the val split, as SFT's are; the best one is GRPO's model
        "validation": {"eval_steps": 20},
        # the paper's rewards; `format` stands for the format reward of the demo's mode (`mode_rewards`)
        "rewards": {
            QA: {"format": 1.0, ACCURACY: 1.0},
            TAG: {"format": 1.0, ACCURACY: 1.0, "iou": 1.0},
            CLS: {"format": 1.0, "class": 1.0},
        },
    }


@dataclass
class DemoData:
    """The SynthVAU the demo trains and tests on (`vaur1 data synth`)."""

    n: int = 360  # clips split in split_ratio
    split_ratio: str = "0.6,0.15,0.25"  # train, val (early stopping), test (the reported numbers)
    # more clips for the test split alone: 90 + 270 = 360 test clips. With 90, a 95% interval on a
    # seed's QA accuracy was about +-10 points; evaluating a clip takes milliseconds
    extra_test: int = 270
    size: tuple[int, int] = (112, 84)  # width, height; the VideoSpec shrinks frames further
    duration: tuple[float, float] = (8.0, 8.0)  # seconds; one length: a frame's time is its index
    fps: int = 8  # frames per second of the clips

    def validate(self) -> None:
        if len(self.split_ratio.split(",")) != 3:
            raise ConfigError(f"data.split_ratio: the demo needs train,val,test, got {self.split_ratio!r}")
        if self.extra_test < 0:
            raise ConfigError(f"data.extra_test: need 0 or more clips, got {self.extra_test}")


@dataclass
class DemoModel:
    """The tiny Qwen-VL that every stage starts from (`vaur1 model tiny`)."""

    arch: str = "qwen2_5_vl"  # qwen2_vl, qwen2_5_vl or qwen3_vl
    hidden_size: int = 128  # text and vision width
    num_layers: int = 2  # language model layers
    num_heads: int = 2  # attention heads (head_dim 64, which vLLM's CPU attention accepts)
    num_kv_heads: int = 1  # key/value heads: grouped-query attention, as the real models have


@dataclass
class DemoEval:
    """How each model is evaluated, validation included: the standard harness, greedy, in the demo's mode."""

    batch_size: int = 16  # prompts per generate call
    max_new_tokens: int = 48  # think mode needs ~192
    resamples: int = 1000  # bootstrap resamples of the test intervals


@dataclass
class DemoConfig:
    out: str = DEFAULT_DEMO_OUT  # the output folder, one subfolder per stage
    seed: int = 0  # the data, the model's initial weights and both training runs
    # the prompts of SFT, GRPO and evaluation alike: `direct` (answer tags only; SFT learns the
    # answers, the paper's SFT baseline) or `think` (a <think> block first; SFT learns the
    # annotation's reasoning, then the answer)
    mode: str = "direct"
    data: DemoData = field(default_factory=DemoData)
    model: DemoModel = field(default_factory=DemoModel)
    # 16 frames (two a second) of at most 56x56 pixels: 32 video tokens per clip. With 8 frames SFT
    # read the video later and GRPO's TAG gain over SFT was +3.1 mIoU over 3 seeds, against +6.9
    video: VideoSpec = field(
        default_factory=lambda: VideoSpec(fps=None, num_frames=16, min_pixels=784, max_pixels=3136)
    )
    # short prompts with the standard answer formats. Measured on CLS alone (lr 5e-4, batch 8): with
    # a 10-token prompt the tiny model reads the video after ~250 steps (val loss 0.44 -> 0.06 by
    # step 300); with the standard 150-token prompt it had barely started by step 400 (0.39)
    prompts: PromptConfig = field(default_factory=lambda: PromptConfig(**SHORT_PROMPTS))
    # SFT and GRPO see each QA item's options in a new order every time (`shuffle_options` of the
    # trainers): with SynthVAU's one order per clip, SFT learnt each training clip's letter (98% on
    # train, 31% on test) and GRPO then had no QA group with mixed rewards to learn from
    shuffle_options: bool = True
    loader_workers: int = 1  # frame-decoding processes next to training and evaluation
    # torch threads, at most the CPUs this process may use. On 2 cores, 2 threads ran SFT steps in
    # 58-65 ms against 82 ms with 1, with the same results; but next to other busy processes (seeds
    # side by side) two-thread kernels ran up to 30x slower (0.11 s -> 3.7 s): set 1 there
    torch_threads: int = 2
    sft: dict[str, Any] = field(default_factory=_sft_section)  # an SFTTrainConfig section (trainer keys)
    grpo: dict[str, Any] = field(default_factory=_grpo_section)  # a GRPOTrainConfig section (trainer keys)
    eval: DemoEval = field(default_factory=DemoEval)

    def validate(self) -> None:
        check_mode(self.mode)
        if self.torch_threads < 1:
            raise ConfigError(f"torch_threads: need at least 1, got {self.torch_threads}")
        # every trainer setting is checked before any stage runs
        sft_train_config(self, "<model>", Path(self.out) / "sft")
        grpo_train_config(self, "<model>", Path(self.out) / "grpo")

    @property
    def run(self) -> DemoRun:
        return DemoRun(self.out)


# `--quick`: fewer clips and steps, for the CI smoke test; the same stages and code paths.
QUICK: list[str] = [
    f"out={QUICK_DEMO_OUT}",
    "data.n=36",
    "data.extra_test=0",
    "sft.per_device_train_batch_size=4",
    "sft.run.max_steps=16",
    "sft.run.save_steps=8",
    "sft.validation.eval_steps=8",
    "sft.validation.patience=1",
    "grpo.run.max_steps=3",
    "grpo.run.save_steps=2",
    "grpo.validation.eval_steps=2",
    "grpo.per_device_train_batch_size=2",
    "grpo.num_generations=2",
    "eval.resamples=100",
]


# `--full`: the long version, with the budgets of the seed runs in docs/lab-log.md: SFT until
# patience stops it (up to 6,000 steps, scored every 200) and 300 GRPO steps (scored every 50); 15-25
# minutes on 2 cores.
FULL: list[str] = [
    f"out={FULL_DEMO_OUT}",
    "sft.run.max_steps=6000",
    "sft.run.save_steps=200",
    "sft.validation.eval_steps=200",
    "grpo.run.max_steps=300",
    "grpo.run.save_steps=50",
    "grpo.validation.eval_steps=50",
]


def load_demo_config(
    quick: bool = False, overrides: list[str] | None = None, full: bool = False
) -> DemoConfig:
    """The defaults, then the `--quick` or `--full` preset, then dotted overrides; validated."""
    if quick and full:
        raise ConfigError("--quick and --full: choose one")
    preset = QUICK if quick else FULL if full else []
    data = apply_overrides(to_dict(DemoConfig()), [*preset, *(overrides or [])])
    return from_dict(DemoConfig, data)


# ---- the configs the demo writes --------------------------------------------------------------


def eval_flags(cfg: DemoConfig) -> dict[str, Any]:
    """What every evaluation of the demo shares, validation included: greedy, in the demo's mode."""
    return {
        "video": to_dict(cfg.video),
        "prompts": to_dict(cfg.prompts),
        "cache.dir": str(cfg.run.frame_cache),
        "loader.num_workers": cfg.loader_workers,
        "sampling.max_new_tokens": cfg.eval.max_new_tokens,
        "batch_size": cfg.eval.batch_size,
    }


def eval_config(cfg: DemoConfig, model: str, split: str, out: Path):
    """The standard harness's `EvalConfig` for one model on one split: greedy, in the demo's mode."""
    from vaur1.eval.config import load_eval_config

    return load_eval_config(
        # dotted keys: a section given as a dict would replace the evaluation defaults (greedy decoding)
        flags={
            **eval_flags(cfg),
            "model.name_or_path": model,
            "data.bench": str(cfg.run.bench),
            "data.split": split,
            "data.tasks": TASKS,
            "modes": [cfg.mode],
            "offline_scorer": False,
            "resamples": cfg.eval.resamples,
            "bootstrap_seed": cfg.seed,
            "out": str(out),
        }
    )


def _shared_sections(cfg: DemoConfig, model: str, run_dir: Path) -> dict[str, Any]:
    """The sections every training stage shares, in the trainers' keys."""
    return {
        "model": {"name_or_path": model, "dtype": "float32"},
        "data": {"bench": str(cfg.run.bench), "split": "train", "tasks": TASKS},
        "video": to_dict(cfg.video),
        "prompts": to_dict(cfg.prompts),
        "cache": {"dir": str(cfg.run.frame_cache)},
        "loader": {"num_workers": cfg.loader_workers},
        "shuffle_options": cfg.shuffle_options,
        "run": {
            "output_dir": str(run_dir),
            "seed": cfg.seed,
            "save_total_limit": 1,
            "logging_steps": 1,
            "resume": "auto",
        },
        "validation": {
            "split": "val",
            "metric": MEAN_ACCURACY,
            "max_new_tokens": cfg.eval.max_new_tokens,
            "batch_size": cfg.eval.batch_size,
        },
    }


def _build(cls: type, section: str, data: dict[str, Any]):
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{section}: {err}") from None


def sft_train_config(cfg: DemoConfig, model: str, run_dir: Path):
    """The `SFTTrainConfig` of the demo's SFT: from `model`, into `run_dir`."""
    from vaur1.sft.config import SFTTrainConfig

    shared = _shared_sections(cfg, model, run_dir)
    return _build(
        SFTTrainConfig, "sft", merge(shared, {**copy.deepcopy(cfg.sft), "target": SFT_TARGET[cfg.mode]})
    )


def mode_rewards(rewards: dict[str, Any], mode: str) -> dict[str, Any]:
    """The rewards with `format` standing for the mode's own format reward (the demo's one mode
    decides the prompts of every stage, so its GRPO rewards follow it)."""
    from vaur1.rl.config import FORMAT_REWARD

    return {
        task: {FORMAT_REWARD[mode] if name == "format" else name: weight for name, weight in weights.items()}
        if isinstance(weights, dict)
        else weights
        for task, weights in rewards.items()
    }


def grpo_train_config(cfg: DemoConfig, model: str, run_dir: Path):
    """The `GRPOTrainConfig` of the demo's GRPO: from `model`, into `run_dir`."""
    from vaur1.rl.config import GRPOTrainConfig

    section = copy.deepcopy(cfg.grpo)
    if isinstance(section.get("rewards"), dict):
        section["rewards"] = mode_rewards(section["rewards"], cfg.mode)
    shared = _shared_sections(cfg, model, run_dir)
    return _build(GRPOTrainConfig, "grpo", merge(shared, {**section, "mode": cfg.mode}))


def split_examples(cfg: DemoConfig, split: str) -> list:
    """The demo's QA, TAG and CLS examples of one SynthVAU split."""
    from vaur1.data import DataConfig
    from vaur1.errors import ConfigError

    examples = DataConfig(bench=str(cfg.run.bench), split=split, tasks=TASKS).load()
    if not examples:
        raise ConfigError(f"{cfg.run.bench}: the {split} split has no {', '.join(TASKS)} examples")
    return examples
