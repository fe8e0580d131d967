"""`vaur1 demo`: the whole VAU-R1 pipeline on a CPU, from no data to the comparison table.

    report = run_demo(load_demo_config(quick=False, overrides=["seed=1"]))

Stages, in order, each in its own folder under `out`:

    data       SynthVAU train / val / test splits (`vaur1.bench.synth`)
    model      a tiny random Qwen2.5-VL with its tokenizer and processor (`vaur1.model.tiny`)
    eval_base  the untrained model on the test split (the standard harness, `vaur1.eval.run`)
    sft        SFT as the warm start, until the validation metric stops improving (below)
    eval_sft   the chosen SFT checkpoint on the test split
    grpo       GRPO co-training on QA, TAG and CLS, starting from that checkpoint
    eval_grpo  the GRPO model on the test split
    report     report.md, report.html and report.json in `out`, and the table on the console

A finished stage leaves `stage.json` holding the hash of the settings it read and of the stages it
read from. A second `vaur1 demo` reuses every stage whose hash still matches and redoes the others
(and everything downstream of them); a stage that was interrupted continues where it stopped when
its settings are unchanged (the trainers resume from their checkpoints, evaluation from its
predictions), and starts over otherwise.

Fairness: SFT runs in chunks of `sft.chunk_steps` optimizer steps, one continuing run with a
constant learning rate. After each chunk the checkpoint is evaluated on the validation split: the
validation score is the mean of QA accuracy, TAG mIoU and CLS accuracy from the standard harness
(greedy, in the demo's prompt mode), and the validation loss is the trainer's token cross-entropy.
Training stops once `sft.patience` evaluations in a row have improved neither (or at the
`sft.max_chunks` cap, which the report then says), and GRPO starts from the checkpoint with the best
score. Both signals are needed: a tiny model gives the same answer to every clip for several
hundred steps before it reads the video, and greedy answers of that kind score well (a constant
interval has a TAG mIoU of ~51 on SynthVAU), so the score alone stops SFT before it has learnt
anything, while the loss keeps falling. For the same reason patience only counts from the first
evaluation whose CLS accuracy beat the best constant answer (the most common class's share) beyond
chance (`reading_level`); a SFT that never does by the cap gets a warning in the report, since a
gain over a blind model is no gain.
GRPO runs its `grpo.max_steps` steps, scoring a checkpoint every `grpo.eval_steps` on the same
split, and its model is the best-scoring one: both stages are chosen by the same rule (a learning
rate of 3e-4 once collapsed a seed's TAG answers late in the run). The report gives the budget of
each stage: optimizer steps, samples seen (and GRPO's completions), wall time.

Every stage uses one prompt mode (`mode`: direct by default, think optional), the same short
prompts (`prompts`) and the same VideoSpec (`video`), through the project's own trainers and
evaluation harness. SFT and GRPO train on the same mix: each QA example three times per epoch
(`sft.task_repeats`, `grpo.task_repeats`), because the tiny model learns QA last.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.config import apply_overrides, from_dict, save_config, to_dict
from vaur1.errors import ConfigError
from vaur1.parse import parse_completion
from vaur1.prompts import PromptConfig
from vaur1.rewards import RewardConfig
from vaur1.video.spec import VideoSpec

STAGE_FILE = "stage.json"  # a finished stage: its hash, its time and what it produced
STARTED_FILE = "started.json"  # a stage under way: the hash it runs with
CONFIG_FILE = "demo.yaml"
TASKS = ["qa", "tag", "cls"]
DEFAULT_OUT = "runs/demo"
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
SFT_TARGET = {"direct": "answer", "think": "cot"}  # the SFT target that matches each prompt mode
QUICK_OUT = "runs/demo-quick"


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
    fps: int = 8

    def validate(self) -> None:
        if len(self.split_ratio.split(",")) != 3:
            raise ConfigError(f"data.split_ratio: the demo needs train,val,test, got {self.split_ratio!r}")
        if self.extra_test < 0:
            raise ConfigError(f"data.extra_test: need 0 or more clips, got {self.extra_test}")


@dataclass
class DemoModel:
    """The tiny Qwen-VL that every stage starts from (`vaur1 model tiny`)."""

    arch: str = "qwen2_5_vl"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 1


def _check_task_repeats(section: str, repeats: dict[str, int]) -> None:
    unknown = sorted(set(repeats) - set(TASKS))
    if unknown:
        raise ConfigError(
            f"{section}.task_repeats: {', '.join(unknown)} is not one of the demo's tasks {TASKS}"
        )


@dataclass
class DemoSFT:
    """SFT with early stopping on the validation split."""

    learning_rate: float = 5e-4  # 2e-3 learnt the text but never looked at the video
    warmup_steps: int = 10
    batch_size: int = 8
    chunk_steps: int = 200  # optimizer steps between validation evaluations
    # a cap on the wall time (6000 steps); patience normally stops SFT first (a 4000-step cap stopped
    # one of three seeds while its validation score was still rising)
    max_chunks: int = 30
    # evaluations in a row with neither a better validation score nor a lower validation loss
    patience: int = 3
    # the training mix (see DemoGRPO): without repeats no seed learnt QA before patience stopped SFT
    task_repeats: dict[str, int] = field(default_factory=lambda: {"qa": 3})

    def validate(self) -> None:
        if self.chunk_steps < 1 or self.max_chunks < 1 or self.patience < 1:
            raise ConfigError("sft.chunk_steps, sft.max_chunks and sft.patience must be at least 1")
        _check_task_repeats("sft", self.task_repeats)


@dataclass
class DemoGRPO:
    """GRPO co-training on QA, TAG and CLS from the SFT checkpoint."""

    max_steps: int = 300
    # checkpoints scored on the val split, as SFT's are; the best one is GRPO's model
    eval_steps: int = 50
    # 1e-4 for 60 steps left the SFT model unchanged (KL 0.01); 3e-4 for 200 steps collapsed one of
    # three seeds' TAG answers (KL 0.6: it stopped after the start time)
    learning_rate: float = 2e-4
    batch_size: int = 8  # prompts per step, each sampled num_generations times
    num_generations: int = 8
    max_completion_length: int = 32  # direct answers take at most 20 tokens; think mode needs ~160
    temperature: float = 1.0
    beta: float = 0.04
    # the loss options of `vaur1.rl.loss` (TRL's names): token-level DAPO loss, rewards scaled by
    # their group's std
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    # the paper's rewards; `format` means the format reward of the demo's mode (see `mode_rewards`)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    # the training mix (`task_repeats` of the trainers): each named task's examples this many times
    # per epoch, the others once; QA three times, as in SFT
    task_repeats: dict[str, int] = field(default_factory=lambda: {"qa": 3})

    def validate(self) -> None:
        from vaur1.rl.loss import GRPOLossConfig

        if self.max_steps < 1 or self.eval_steps < 1:
            raise ConfigError("grpo.max_steps and grpo.eval_steps must be at least 1")
        _check_task_repeats("grpo", self.task_repeats)
        try:
            GRPOLossConfig(
                beta=self.beta, loss_type=self.loss_type, scale_rewards=self.scale_rewards
            ).validate()
        except ConfigError as err:
            raise ConfigError(f"grpo.{err}") from None


@dataclass
class DemoEval:
    """How each model is evaluated: the standard harness, greedy, in the demo's mode."""

    batch_size: int = 16
    max_new_tokens: int = 48  # think mode needs ~192
    resamples: int = 1000


@dataclass
class DemoConfig:
    out: str = DEFAULT_OUT
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
    sft: DemoSFT = field(default_factory=DemoSFT)
    grpo: DemoGRPO = field(default_factory=DemoGRPO)
    eval: DemoEval = field(default_factory=DemoEval)
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

    def validate(self) -> None:
        if self.mode not in SFT_TARGET:
            raise ConfigError(f"mode: {self.mode!r} is not one of {', '.join(SFT_TARGET)}")
        if self.torch_threads < 1:
            raise ConfigError(f"torch_threads: need at least 1, got {self.torch_threads}")


# `--quick`: fewer clips and steps, for the CI smoke test; the same stages and code paths.
QUICK: list[str] = [
    f"out={QUICK_OUT}",
    "data.n=36",
    "data.extra_test=0",
    "sft.batch_size=4",
    "sft.chunk_steps=8",
    "sft.max_chunks=2",
    "sft.patience=1",
    "grpo.max_steps=3",
    "grpo.eval_steps=2",
    "grpo.batch_size=2",
    "grpo.num_generations=2",
    "eval.resamples=100",
]


def load_demo_config(quick: bool = False, overrides: list[str] | None = None) -> DemoConfig:
    """The defaults, then the `--quick` preset, then dotted overrides; validated."""
    data = apply_overrides(to_dict(DemoConfig()), [*(QUICK if quick else []), *(overrides or [])])
    return from_dict(DemoConfig, data)


# ---- stages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    after: tuple[str, ...]  # the stages whose outputs it reads
    settings: Callable[[DemoConfig], Any]  # the part of the config it reads
    run: Callable[[DemoConfig, Path, dict[str, dict]], dict[str, Any]]  # -> the stage's summary


def _data_settings(cfg: DemoConfig) -> Any:
    return {"data": to_dict(cfg.data), "seed": cfg.seed}


def _model_settings(cfg: DemoConfig) -> Any:
    from vaur1.model.tiny import training_corpus

    # the tokenizer is trained when the model is built: a new corpus means a new model
    corpus = hashlib.sha256("\n".join(training_corpus()).encode()).hexdigest()[:16]
    return {"model": to_dict(cfg.model), "seed": cfg.seed, "tokenizer_corpus": corpus}


def _eval_settings(cfg: DemoConfig) -> Any:
    return {
        "eval": to_dict(cfg.eval),
        "video": to_dict(cfg.video),
        "prompts": to_dict(cfg.prompts),
        "mode": cfg.mode,
    }


def _sft_settings(cfg: DemoConfig) -> Any:
    return {
        **_eval_settings(cfg),
        "sft": to_dict(cfg.sft),
        "shuffle_options": cfg.shuffle_options,
        "seed": cfg.seed,
    }


def _grpo_settings(cfg: DemoConfig) -> Any:
    return {
        "grpo": to_dict(cfg.grpo),
        "video": to_dict(cfg.video),
        "prompts": to_dict(cfg.prompts),
        "mode": cfg.mode,
        "shuffle_options": cfg.shuffle_options,
        "seed": cfg.seed,
    }


def _bench(cfg: DemoConfig) -> Path:
    return Path(cfg.out) / "data" / "synthvau"


def _cache(cfg: DemoConfig) -> str:
    return str(Path(cfg.out) / "frame-cache")


def run_data(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.bench.synth import generate_synthvau

    bench = generate_synthvau(
        _bench(cfg),
        n=cfg.data.n,
        seed=cfg.seed,
        split_ratio=cfg.data.split_ratio,
        size=cfg.data.size,
        duration=cfg.data.duration,
        fps=cfg.data.fps,
        extra_test=cfg.data.extra_test,
    )
    manifest = json.loads((bench / "synthvau.json").read_text(encoding="utf-8"))
    return {"bench": str(bench), "clips": {split: sum(c.values()) for split, c in manifest["counts"].items()}}


def run_model(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.model.tiny import build_tiny_model

    path = build_tiny_model(
        cfg.model.arch,
        stage_dir / "tiny",
        hidden_size=cfg.model.hidden_size,
        num_layers=cfg.model.num_layers,
        num_heads=cfg.model.num_heads,
        num_kv_heads=cfg.model.num_kv_heads,
        seed=cfg.seed,
    )
    return {"model": str(path)}


def eval_config(cfg: DemoConfig, model: str, split: str, out: Path):
    """The standard harness's `EvalConfig` for one model on one split: greedy, in the demo's mode."""
    from vaur1.eval.config import load_eval_config

    return load_eval_config(
        # dotted keys: a section given as a dict would replace the evaluation defaults (greedy decoding)
        flags={
            "model.name_or_path": model,
            "data.bench": str(_bench(cfg)),
            "data.split": split,
            "data.tasks": TASKS,
            "video": to_dict(cfg.video),
            "prompts": to_dict(cfg.prompts),
            "cache.dir": _cache(cfg),
            "loader.num_workers": cfg.loader_workers,
            "modes": [cfg.mode],
            "sampling.max_new_tokens": cfg.eval.max_new_tokens,
            "batch_size": cfg.eval.batch_size,
            "offline_scorer": False,
            "resamples": cfg.eval.resamples,
            "bootstrap_seed": cfg.seed,
            "out": str(out),
        }
    )


def evaluate(cfg: DemoConfig, model: str, split: str, out: Path) -> dict[str, Any]:
    """The standard harness on one split; returns the `qa`, `tag` and `cls` blocks of the demo's mode."""
    from vaur1.eval.report import stage_metrics
    from vaur1.eval.run import run_eval

    run_eval(eval_config(cfg, model, split, out))
    return stage_metrics(out, cfg.mode)


def _eval_stage(model_of: Callable[[dict[str, dict]], str]):
    def run(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
        model = model_of(done)
        metrics = evaluate(cfg, model, "test", stage_dir)
        return {"model": model, "metrics": metrics}

    return run


def validation_score(metrics: dict[str, Any]) -> float:
    """What SFT's early stopping maximises: the mean of QA accuracy, TAG mIoU and CLS accuracy, in points."""
    return (metrics["qa"]["accuracy"] + metrics["tag"]["miou"] + metrics["cls"]["multiclass_accuracy"]) / 3


def _val_loss(run_dir: Path, step: int) -> float:
    """The validation loss the SFT trainer logged at `step`."""
    for line in reversed((run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        if record.get("step") == step and "val_loss" in record:
            return float(record["val_loss"])
    raise ConfigError(f"{run_dir}/metrics.jsonl: no validation loss at step {step}")


def _split_examples(cfg: DemoConfig, split: str, tasks: list[str]) -> list:
    from vaur1.data import DataConfig

    examples = DataConfig(bench=str(_bench(cfg)), split=split, tasks=tasks).load()
    if not examples:
        raise ConfigError(f"{_bench(cfg)}: the {split} split has no {', '.join(tasks)} examples")
    return examples


def _best_constant_class(baselines: dict[str, Any]) -> str:
    """The CLS baseline kind (always Normal, always the most common anomaly) of higher accuracy."""
    return max(baselines["cls"], key=lambda kind: baselines["cls"][kind]["metrics"]["multiclass_accuracy"])


def constant_answer_accuracy(cfg: DemoConfig, split: str = "val") -> float:
    """The CLS accuracy of the best constant answer on `split`, in points: the most common class's
    share. A model that scores no better on CLS does not tell the clips apart."""
    from vaur1.eval.baselines import blind_baselines

    baselines = blind_baselines(_split_examples(cfg, split, ["cls"]), tasks=["cls"], resamples=1)
    return baselines["cls"][_best_constant_class(baselines)]["metrics"]["multiclass_accuracy"]


def reading_level(constant: float, n: int, alpha: float = 0.05) -> float:
    """The validation CLS accuracy, in points, from which a model has read the video: the least that
    beats the best constant answer (`constant` points of `n` clips) with a one-sided binomial p-value of
    at most `alpha`. One clip above the constant is chance: on 54 val clips a blind SFT scored 37.0
    against 33.3 once, and that single evaluation let patience stop it."""
    share = constant / 100
    for right in range(n + 1):
        if right / n <= share:
            continue
        p_value = sum(math.comb(n, k) * share**k * (1 - share) ** (n - k) for k in range(right, n + 1))
        if p_value <= alpha:
            return 100 * right / n
    raise ConfigError(
        f"the val split's {n} CLS clips cannot show a model beating the best constant answer "
        f"({constant:.1f}%) beyond chance: use more clips (data.n, data.split_ratio)"
    )


def _first_reading(history: list[dict[str, Any]], level: float) -> int | None:
    """The index of the first validation evaluation whose CLS accuracy reached `level`, if any."""
    return next((i for i, h in enumerate(history) if h["cls"] >= level), None)


def read_the_video(history: list[dict[str, Any]], level: float) -> bool:
    """True once some validation evaluation's CLS accuracy reached `level` (see `reading_level`)."""
    return _first_reading(history, level) is not None


def stop_after(history: list[dict[str, Any]], patience: int, level: float | None = None) -> bool:
    """True once the last `patience` evaluations improved neither the best score nor the best loss.

    With `level` (see `reading_level`), patience counts only from the first evaluation that reached
    it: with 720 clips one seed's loss and score stalled long enough for patience to stop SFT while it
    still answered every clip alike, and GRPO's "gain" over that blind model would not count; and a
    model that has only just started to read the video gets `patience` evaluations to improve.
    """
    if len(history) <= patience:
        return False
    if level is not None:
        first = _first_reading(history, level)
        if first is None or len(history) - 1 - first < patience:
            return False
    before = history[:-patience]
    recent = history[-patience:]
    best_score = max(h["score"] for h in before)
    best_loss = min(h["val_loss"] for h in before)
    return all(h["score"] <= best_score and h["val_loss"] >= best_loss for h in recent)


def sft_train_config(cfg: DemoConfig, model: str, run_dir: Path, max_steps: int):
    """The `SFTTrainConfig` of the demo's SFT: from `model`, into `run_dir`, until step `max_steps`."""
    from vaur1.sft.config import SFTTrainConfig

    shared = _training_sections(cfg, model, run_dir, max_steps)
    return from_dict(
        SFTTrainConfig,
        {
            **shared,
            "target": SFT_TARGET[cfg.mode],
            "val_data": {"bench": str(_bench(cfg)), "split": "val", "tasks": TASKS},
            "eval_steps": cfg.sft.chunk_steps,
            "per_device_train_batch_size": cfg.sft.batch_size,
            "task_repeats": cfg.sft.task_repeats,
            # constant after warm-up: the run continues chunk after chunk without a schedule to end
            "optim": {
                "learning_rate": cfg.sft.learning_rate,
                "lr_scheduler": "constant",
                "warmup_steps": cfg.sft.warmup_steps,
            },
        },
    )


def _training_sections(cfg: DemoConfig, model: str, run_dir: Path, max_steps: int) -> dict[str, Any]:
    return {
        "model": {"name_or_path": model, "dtype": "float32"},
        "data": {"bench": str(_bench(cfg)), "split": "train", "tasks": TASKS},
        "video": to_dict(cfg.video),
        "prompts": to_dict(cfg.prompts),
        "cache": {"dir": _cache(cfg)},
        "loader": {"num_workers": cfg.loader_workers},
        "shuffle_options": cfg.shuffle_options,
        "run": {
            "output_dir": str(run_dir),
            "seed": cfg.seed,
            "max_steps": max_steps,
            "save_steps": max_steps,
            "save_total_limit": 1,
            "logging_steps": 1,
            "resume": "auto",
        },
    }


def _validated_checkpoint(
    cfg: DemoConfig, stage_dir: Path, steps: int, train_to: Callable[[int], Path]
) -> dict[str, Any]:
    """Train to `steps`, keep that checkpoint, and score it on the validation split."""
    from vaur1.train.logging import console

    model = stage_dir / "checkpoints" / f"step-{steps}"
    if not model.exists():  # a resumed stage has it from before the interruption
        final = train_to(steps)
        shutil.copytree(final, model.with_suffix(".tmp"), dirs_exist_ok=True)
        model.with_suffix(".tmp").rename(model)
    metrics = evaluate(cfg, str(model), "val", stage_dir / "val" / f"step-{steps}")
    record = {
        "step": steps,
        "score": validation_score(metrics),
        "qa": metrics["qa"]["accuracy"],
        "miou": metrics["tag"]["miou"],
        "cls": metrics["cls"]["multiclass_accuracy"],
    }
    console.print(
        f"{stage_dir.name} step {steps}: validation QA {record['qa']:.1f}, TAG mIoU {record['miou']:.1f}, "
        f"CLS {record['cls']:.1f} -> score {record['score']:.2f}",
        highlight=False,
    )
    return record


def _keep_best(stage_dir: Path, history: list[dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """Copy the best-scoring checkpoint (the earliest of equals) to `best/`; drop the others."""
    best = max(history, key=lambda record: record["score"])
    chosen = stage_dir / "best"
    if chosen.exists():
        shutil.rmtree(chosen)
    shutil.copytree(stage_dir / "checkpoints" / f"step-{best['step']}", chosen)
    shutil.rmtree(stage_dir / "checkpoints")
    return chosen, best


def run_sft(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.sft.trainer import train

    run_dir = stage_dir / "run"
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    stopped_by = "max_chunks"
    blind_cls = constant_answer_accuracy(cfg)
    level = reading_level(blind_cls, len(_split_examples(cfg, "val", ["cls"])))
    for chunk in range(1, cfg.sft.max_chunks + 1):
        steps = chunk * cfg.sft.chunk_steps
        record = _validated_checkpoint(
            cfg, stage_dir, steps, lambda n: train(sft_train_config(cfg, done["model"]["model"], run_dir, n))
        )
        history.append({**record, "val_loss": _val_loss(run_dir, steps)})
        if stop_after(history, cfg.sft.patience, level):
            stopped_by = "patience"
            break
    chosen, best = _keep_best(stage_dir, history)
    steps_run = history[-1]["step"]
    return {
        "model": str(chosen),
        "best_step": best["step"],
        "best_validation_score": best["score"],
        "validation": history,
        "steps": steps_run,
        "samples": steps_run * cfg.sft.batch_size,
        "samples_to_best": best["step"] * cfg.sft.batch_size,
        "seconds": time.perf_counter() - started,
        "stopped": stopped_by,
        "constant_answer_cls": blind_cls,
        "reading_level_cls": level,
        "read_the_video": read_the_video(history, level),
    }


def mode_rewards(rewards: RewardConfig, mode: str) -> dict[str, Any]:
    """The reward config with `format` standing for the mode's own format reward."""
    from vaur1.rl.config import FORMAT_REWARD

    data = to_dict(rewards)
    for task in ("qa", "tag", "cls"):
        data[task] = {FORMAT_REWARD[mode] if name == "format" else name: w for name, w in data[task].items()}
    return data


def grpo_train_config(cfg: DemoConfig, model: str, run_dir: Path, max_steps: int):
    """The `GRPOTrainConfig` of the demo's GRPO: from `model`, into `run_dir`, until step `max_steps`."""
    from vaur1.rl.config import GRPOTrainConfig

    grpo = cfg.grpo
    return from_dict(
        GRPOTrainConfig,
        {
            **_training_sections(cfg, model, run_dir, max_steps),
            "mode": cfg.mode,
            "rewards": mode_rewards(grpo.rewards, cfg.mode),
            "num_generations": grpo.num_generations,
            "max_completion_length": grpo.max_completion_length,
            "per_device_train_batch_size": grpo.batch_size,
            "task_repeats": grpo.task_repeats,
            "sampling": {"temperature": grpo.temperature},
            "loss": {"beta": grpo.beta, "loss_type": grpo.loss_type, "scale_rewards": grpo.scale_rewards},
            "optim": {"learning_rate": grpo.learning_rate, "lr_scheduler": "constant"},
        },
    )


def run_grpo(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.rl.trainer import train

    grpo = cfg.grpo
    run_dir = stage_dir / "run"

    def train_to(max_steps: int) -> Path:
        return train(grpo_train_config(cfg, done["sft"]["model"], run_dir, max_steps))

    started = time.perf_counter()
    checkpoints = [*range(grpo.eval_steps, grpo.max_steps, grpo.eval_steps), grpo.max_steps]
    history = [_validated_checkpoint(cfg, stage_dir, steps, train_to) for steps in checkpoints]
    chosen, best = _keep_best(stage_dir, history)
    prompts = grpo.max_steps * grpo.batch_size
    return {
        "model": str(chosen),
        "steps": grpo.max_steps,
        "best_step": best["step"],
        "best_validation_score": best["score"],
        "validation": history,
        "samples": prompts,
        "completions": prompts * grpo.num_generations,
        "seconds": time.perf_counter() - started,
    }


STAGES: tuple[Stage, ...] = (
    Stage("data", "SynthVAU train / val / test", (), _data_settings, run_data),
    Stage("model", "tiny Qwen2.5-VL", (), _model_settings, run_model),
    Stage(
        "eval_base",
        "evaluate the untrained model",
        ("data", "model"),
        _eval_settings,
        _eval_stage(lambda done: done["model"]["model"]),
    ),
    Stage("sft", "SFT warm start, early stopping on val", ("data", "model"), _sft_settings, run_sft),
    Stage(
        "eval_sft",
        "evaluate the SFT model",
        ("data", "sft"),
        _eval_settings,
        _eval_stage(lambda done: done["sft"]["model"]),
    ),
    Stage("grpo", "GRPO co-training on QA, TAG and CLS", ("data", "sft"), _grpo_settings, run_grpo),
    Stage(
        "eval_grpo",
        "evaluate the GRPO model",
        ("data", "grpo"),
        _eval_settings,
        _eval_stage(lambda done: done["grpo"]["model"]),
    ),
)


def stage_hash(stage: Stage, cfg: DemoConfig, hashes: dict[str, str]) -> str:
    """The stage's settings and the hashes of the stages it reads from, hashed."""
    payload = {
        "stage": stage.name,
        "settings": stage.settings(cfg),
        "after": [hashes[a] for a in stage.after],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_stage(stage: Stage, cfg: DemoConfig, digest: str, done: dict[str, dict], number: int) -> dict:
    """Reuse the stage when its `stage.json` has this hash; else continue or redo it."""
    from vaur1.train.logging import console

    stage_dir = Path(cfg.out) / stage.name
    header = f"[{number}/{len(STAGES) + 1}] {stage.name}: {stage.title}"
    finished = _read_json(stage_dir / STAGE_FILE)
    if finished is not None and finished.get("hash") == digest:
        console.print(f"{header} [green]reused[/] (finished in {finished['seconds']:.0f} s)", highlight=False)
        return {**finished, "reused": True}
    started = _read_json(stage_dir / STARTED_FILE)
    if stage_dir.exists() and (started is None or started.get("hash") != digest):
        shutil.rmtree(stage_dir)  # made with other settings: nothing in it may be reused
    console.rule(header)
    stage_dir.mkdir(parents=True, exist_ok=True)
    _write_json(stage_dir / STARTED_FILE, {"hash": digest})
    clock = time.perf_counter()
    summary = stage.run(cfg, stage_dir, done)
    record = {"stage": stage.name, "hash": digest, "seconds": time.perf_counter() - clock, **summary}
    _write_json(stage_dir / STAGE_FILE, record)
    console.print(f"{stage.name}: done in {record['seconds']:.0f} s", highlight=False)
    return {**record, "reused": False}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or reuse) every stage, then write the report; returns report.json's content."""
    import torch

    torch.set_num_threads(min(cfg.torch_threads, usable_cpus()))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / CONFIG_FILE)
    hashes: dict[str, str] = {}
    done: dict[str, dict] = {}
    for number, stage in enumerate(STAGES, start=1):
        hashes[stage.name] = stage_hash(stage, cfg, hashes)
        done[stage.name] = run_stage(stage, cfg, hashes[stage.name], done, number)
    report = write_demo_report(cfg, done)
    print_comparison(report)
    return report


# ---- report ---------------------------------------------------------------------------------

REPORTED_STAGES = {"base": "eval_base", "sft": "eval_sft", "grpo": "eval_grpo"}
# (task, metric key, label) of the comparison table; every value is in points (0-100)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("qa", "accuracy", "QA accuracy"),
    ("tag", "miou", "TAG mIoU"),
    ("tag", "r@0.5", "TAG R@0.5"),
    # a constant interval scores ~51 mIoU on SynthVAU but ~20 R@0.7: R@0.7 tells placing from hedging
    ("tag", "r@0.7", "TAG R@0.7"),
    ("tag", "false_alarm_rate", "TAG false alarms on normal clips"),
    ("cls", "multiclass_accuracy", "CLS accuracy"),
    ("cls", "binary_accuracy", "CLS binary accuracy"),
)


def _headline(stages: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    return {
        name: {f"{task}.{key}": (blocks.get(task) or {}).get(key) for task, key, _ in HEADLINE}
        for name, blocks in stages.items()
    }


def constant_answers(cfg: DemoConfig) -> dict[str, Any]:
    """The headline metrics on the test split of a model that ignores the video: QA always A, TAG
    always Anomaly with the interval of best mean IoU on the train split, CLS always the train split's
    better constant class (Normal or its most common anomaly class)."""
    from vaur1.eval.baselines import blind_baselines

    train = _split_examples(cfg, "train", TASKS)
    on_test = blind_baselines(_split_examples(cfg, "test", TASKS), fit_on=train, resamples=1)
    cls_kind = _best_constant_class(blind_baselines(train, tasks=["cls"], resamples=1))
    chosen = {
        "qa": on_test["qa"]["always_a"],
        "tag": on_test["tag"]["always_interval"],
        "cls": on_test["cls"][cls_kind],
    }
    return {
        "metrics": {f"{task}.{key}": chosen[task]["metrics"][key] for task, key, _ in HEADLINE},
        "answers": {task: baseline["answers"] for task, baseline in chosen.items()},
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _paired_intervals(before: list[dict], after: list[dict], resamples: int) -> dict[str, list[float] | None]:
    """The 95% paired-bootstrap interval of each headline difference, over the test items."""
    from vaur1.eval.paired import paired_gain

    intervals = {}
    for task, key, _ in HEADLINE:
        gain = paired_gain([(before, after)], f"{task}.{key}", resamples=resamples)
        intervals[f"{task}.{key}"] = None if gain is None else gain["ci"]
    return intervals


def budgets(cfg: DemoConfig, done: dict[str, dict]) -> dict[str, Any]:
    """What SFT and GRPO cost: optimizer steps, samples (and completions) seen, wall time."""
    sft, grpo = done["sft"], done["grpo"]
    return {
        "sft": {
            "steps": sft["steps"],
            "best_step": sft["best_step"],
            "samples": sft["samples"],
            "samples_to_best": sft["samples_to_best"],
            "validation_evaluations": len(sft["validation"]),
            "stopped_by": sft["stopped"],
            "seconds": sft["seconds"],
            "read_the_video": sft.get("read_the_video"),
            "constant_answer_cls": sft.get("constant_answer_cls"),
            "reading_level_cls": sft.get("reading_level_cls"),
        },
        "grpo": {
            "steps": grpo["steps"],
            "best_step": grpo["best_step"],
            "validation_evaluations": len(grpo["validation"]),
            "samples": grpo["samples"],
            "completions": grpo["completions"],
            "seconds": grpo["seconds"],
        },
    }


def write_demo_report(cfg: DemoConfig, done: dict[str, dict]) -> dict[str, Any]:
    """`out`/report.md (+ report_files/), report.html and report.json; returns report.json's content."""
    from vaur1.eval import report as harness

    out = Path(cfg.out)
    runs = [harness.load_run(out / stage, name) for name, stage in REPORTED_STAGES.items()]
    stages = {name: done[stage]["metrics"] for name, stage in REPORTED_STAGES.items()}
    scores = {run.name: run.sample_scores for run in runs}
    headline = _headline(stages)
    report = {
        "stages": stages,
        "headline": headline,
        "constant": constant_answers(cfg),
        "gains": {
            "grpo_over_sft": {k: _difference(v, headline["sft"][k]) for k, v in headline["grpo"].items()},
            "sft_over_base": {k: _difference(v, headline["base"][k]) for k, v in headline["sft"].items()},
            "grpo_over_sft_ci": _paired_intervals(scores["sft"], scores["grpo"], cfg.eval.resamples),
            "sft_over_base_ci": _paired_intervals(scores["base"], scores["sft"], cfg.eval.resamples),
        },
        "budgets": budgets(cfg, done),
        "sft_validation": done["sft"]["validation"],
        "grpo_validation": done["grpo"]["validation"],
        "times": {name: record["seconds"] for name, record in done.items()},
        "reused": [name for name, record in done.items() if record.get("reused")],
        "mode": cfg.mode,
        "config": to_dict(cfg),
        "runs": harness.report_json(runs)["runs"],
    }
    demo_tables = [comparison_table(report), budget_table(report), *harness.tables(runs)]
    plotted = harness.figures(runs)
    image_dir = out / "report_files"
    if image_dir.exists():
        shutil.rmtree(image_dir)
    markdown_images = []
    if plotted:
        image_dir.mkdir()
    for stem, caption, png in plotted:
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)
        (image_dir / f"{name}.png").write_bytes(png)
        markdown_images.append((caption, f"{image_dir.name}/{name}.png", stem))
    (out / "report.md").write_text(harness.render_markdown(demo_tables, markdown_images), encoding="utf-8")
    html_images = [(caption, png) for _, caption, png in plotted]
    (out / "report.html").write_text(harness.render_html(demo_tables, html_images), encoding="utf-8")
    _write_json(out / "report.json", report)
    return report


def _points(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _interval(interval: list[float] | None) -> str:
    return "-" if interval is None else f"[{interval[0]:+.1f}, {interval[1]:+.1f}]"


def comparison_table(report: dict[str, Any]):
    from vaur1.eval.report import Table

    headline, gains = report["headline"], report["gains"]
    rows = [
        [
            label,
            _points(report["constant"]["metrics"][f"{task}.{key}"]),
            *(_points(headline[stage][f"{task}.{key}"]) for stage in ("base", "sft", "grpo")),
            _points(gains["sft_over_base"][f"{task}.{key}"], signed=True),
            _points(gains["grpo_over_sft"][f"{task}.{key}"], signed=True),
            _interval(gains["grpo_over_sft_ci"][f"{task}.{key}"]),
        ]
        for task, key, label in HEADLINE
    ]
    note = (
        f"Held-out SynthVAU test split, {report['mode']} prompts, greedy decoding; points (0-100). "
        "The interval is the 95% paired-bootstrap interval of GRPO - SFT over the test items (both models "
        "answered the same items; it leaves out the variation between training seeds). "
        "Constant: one answer for every clip, chosen on the train split (QA: A; TAG: Anomaly and "
        f"{_constant_interval(report)}; CLS: {_constant_class(report)}): what a model that ignores the video scores. "
        "Per-source results with 95% intervals follow."
    )
    header = ["metric", "constant", "base", "SFT", "GRPO", "SFT - base", "GRPO - SFT", "95% interval"]
    return Table("Untrained vs SFT vs GRPO after SFT", header, rows, note)


def _constant_interval(report: dict[str, Any]) -> str:
    answers = report["constant"]["answers"]["tag"]
    return ", ".join(parse_completion(text).glue or "" for text in answers.values())


def _constant_class(report: dict[str, Any]) -> str:
    answers = report["constant"]["answers"]["cls"]
    return ", ".join(parse_completion(text).answer or "" for text in answers.values())


def budget_table(report: dict[str, Any]):
    from vaur1.eval.report import Table

    sft, grpo = report["budgets"]["sft"], report["budgets"]["grpo"]
    rows = [
        [
            "optimizer steps",
            f"{sft['steps']} (best at {sft['best_step']})",
            f"{grpo['steps']} (best at {grpo['best_step']})",
        ],
        ["samples seen", f"{sft['samples']} ({sft['samples_to_best']} to the best)", str(grpo["samples"])],
        ["completions sampled", "-", str(grpo["completions"])],
        ["wall time (s)", f"{sft['seconds']:.0f}", f"{grpo['seconds']:.0f}"],
    ]
    note = (
        f"SFT stopped by {sft['stopped_by']} after {sft['validation_evaluations']} validation evaluations "
        "on the val split (stopping once neither the mean of QA accuracy, TAG mIoU and CLS accuracy nor the "
        "validation loss improves); GRPO starts from SFT's best-scoring checkpoint, so "
        "GRPO's model has seen both budgets. GRPO runs all its steps and keeps its best-scoring checkpoint "
        f"of {grpo['validation_evaluations']} on the same split. Wall times include the validation evaluations."
    )
    if sft["read_the_video"] is False:
        # SFT stages finished before the level was recorded lack it
        needed = (
            "" if sft.get("reading_level_cls") is None else f" (it needed {sft['reading_level_cls']:.1f}%)"
        )
        note += (
            f" WARNING: SFT's validation CLS accuracy never beat the best constant answer "
            f"({sft['constant_answer_cls']:.1f}%) beyond chance{needed}: "
            "SFT did not learn to tell the clips apart before its step cap, "
            "so GRPO - SFT compares against a blind model and shows no fair gain; raise sft.max_chunks."
        )
    return Table("Training budgets", ["", "SFT (to early stop)", "GRPO (after SFT)"], rows, note)


def print_comparison(report: dict[str, Any]) -> None:
    """The comparison and budget tables on standard output: the demo's last words."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(highlight=False)
    for table in (comparison_table(report), budget_table(report)):
        shown = RichTable(*table.header, title=table.title, caption=table.note)
        for row in table.rows:
            shown.add_row(*row)
        console.print(shown)
