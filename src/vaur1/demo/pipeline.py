"""The demo's stages, run in order; each in its own folder of the output (`vaur1.layout.DemoRun`).

    data       SynthVAU train / val / test splits (`vaur1.bench.synth`)
    model      a tiny random Qwen2.5-VL with its tokenizer and processor (`vaur1.model.tiny`)
    eval_base  the untrained model on the test split (the standard harness, `vaur1.eval.run`)
    sft        SFT as the warm start, stopped by patience on the validation split (a training run)
    eval_sft   SFT's best checkpoint on the test split
    grpo       GRPO co-training on QA, TAG and CLS from that checkpoint (a training run)
    eval_grpo  GRPO's best checkpoint on the test split
    report     report.md, report.html and report.json in the output folder, and the table on the console

Both training stages are one trainer run each, with the trainers' own validation: the standard
harness on the val split every `validation.eval_steps`, the best checkpoint by the same score (the
mean of QA accuracy, TAG mIoU and CLS accuracy) kept in `best/`, and for SFT early stopping by
patience (see `vaur1.train.validation`).

A finished stage leaves `stage.json` holding the hash of the settings it read and of the stages it
read from. A second `vaur1 demo` reuses every stage whose hash still matches and redoes the others
(and everything downstream of them); a stage that was interrupted continues where it stopped when
its settings are unchanged (the trainers resume from their checkpoints, evaluation from its
predictions), and starts over otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaur1.config import save_config, to_dict
from vaur1.console import console
from vaur1.demo.config import DemoConfig, eval_config, grpo_train_config, sft_train_config
from vaur1.files import read_jsonl, write_json
from vaur1.layout import SYNTH_MANIFEST, Checkpoint, TrainRun
from vaur1.runlock import claim_run
from vaur1.vocab import CLS, HEADLINE_METRICS, VAL_LOSS


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


def _training_settings(section: str) -> Callable[[DemoConfig], Any]:
    def settings(cfg: DemoConfig) -> Any:
        return {
            **_eval_settings(cfg),
            section: getattr(cfg, section),
            "shuffle_options": cfg.shuffle_options,
            "seed": cfg.seed,
        }

    return settings


def run_data(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.bench.synth import generate_synthvau

    bench = generate_synthvau(
        cfg.run.bench,
        n=cfg.data.n,
        seed=cfg.seed,
        split_ratio=cfg.data.split_ratio,
        size=cfg.data.size,
        duration=cfg.data.duration,
        fps=cfg.data.fps,
        extra_test=cfg.data.extra_test,
    )
    manifest = json.loads((bench / SYNTH_MANIFEST).read_text(encoding="utf-8"))
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


def evaluate(cfg: DemoConfig, model: str, split: str, out: Path) -> dict[str, Any]:
    """The standard harness on one split; returns the `qa`, `tag` and `cls` blocks of the demo's mode."""
    from vaur1.present import evaluate as harness
    from vaur1.present.report import stage_metrics

    harness.evaluate(eval_config(cfg, model, split, out))
    return stage_metrics(out, cfg.mode)


def _eval_stage(model_of: Callable[[dict[str, dict]], str]):
    def run(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
        model = model_of(done)
        return {"model": model, "metrics": evaluate(cfg, model, "test", stage_dir)}

    return run


def validation_history(run: TrainRun) -> list[dict[str, Any]]:
    """A training run's validations as the report shows them: step, score and each task's headline metric."""
    history = []
    for record in read_jsonl(run.validation):
        metrics = record["metrics"]
        entry = {
            "step": record["step"],
            "score": record["score"],
            **{task: metrics[task][key] for task, key in HEADLINE_METRICS.items()},
        }
        if VAL_LOSS in record:
            entry[VAL_LOSS] = record[VAL_LOSS]
        history.append(entry)
    return history


def _finished(run: TrainRun) -> dict[str, Any]:
    """The last checkpoint's trainer state: the step reached, and why the run stopped early if it did."""
    from vaur1.train.checkpoint import latest_checkpoint

    checkpoint = Checkpoint(latest_checkpoint(run.root))
    return json.loads(checkpoint.trainer_state.read_text(encoding="utf-8"))


def run_sft(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.eval.baselines import constant_class_accuracy, reading_level
    from vaur1.sft.trainer import train

    train_cfg = sft_train_config(cfg, done["model"]["model"], stage_dir)
    started = time.perf_counter()
    train(train_cfg)
    run = TrainRun(stage_dir)
    history = validation_history(run)
    best = json.loads(run.best_record.read_text(encoding="utf-8"))
    state = _finished(run)
    val_cls = [e for e in train_cfg.validation.data(train_cfg.data).load() if e.task == CLS]
    constant = constant_class_accuracy(val_cls)
    level = reading_level(constant, len(val_cls))
    batch = train_cfg.per_device_train_batch_size
    return {
        "model": str(run.best),
        "best_step": best["step"],
        "best_validation_score": best["score"],
        "validation": history,
        "steps": state["step"],
        "samples": state["step"] * batch,
        "samples_to_best": best["step"] * batch,
        "seconds": time.perf_counter() - started,
        "stopped": "patience" if state["extra"].get("stopped") else "max_steps",
        "constant_answer_cls": constant,
        "reading_level_cls": level,
        "read_the_video": any(h[CLS] >= level for h in history),
    }


def run_grpo(cfg: DemoConfig, stage_dir: Path, done: dict[str, dict]) -> dict[str, Any]:
    from vaur1.rl.trainer import train

    train_cfg = grpo_train_config(cfg, done["sft"]["model"], stage_dir)
    started = time.perf_counter()
    train(train_cfg)
    run = TrainRun(stage_dir)
    best = json.loads(run.best_record.read_text(encoding="utf-8"))
    steps = _finished(run)["step"]
    prompts = steps * train_cfg.per_device_train_batch_size
    return {
        "model": str(run.best),
        "steps": steps,
        "best_step": best["step"],
        "best_validation_score": best["score"],
        "validation": validation_history(run),
        "samples": prompts,
        "completions": prompts * train_cfg.num_generations,
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
    Stage(
        "sft", "SFT warm start, early stopping on val", ("data", "model"), _training_settings("sft"), run_sft
    ),
    Stage(
        "eval_sft",
        "evaluate the SFT model",
        ("data", "sft"),
        _eval_settings,
        _eval_stage(lambda done: done["sft"]["model"]),
    ),
    Stage(
        "grpo", "GRPO co-training on QA, TAG and CLS", ("data", "sft"), _training_settings("grpo"), run_grpo
    ),
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


def run_stage(stage: Stage, cfg: DemoConfig, digest: str, done: dict[str, dict], number: int) -> dict:
    """Reuse the stage when its `stage.json` has this hash; else continue or redo it."""
    demo = cfg.run
    stage_dir = demo.stage(stage.name)
    header = f"[{number}/{len(STAGES) + 1}] {stage.name}: {stage.title}"
    finished = _read_json(demo.stage_record(stage.name))
    if finished is not None and finished.get("hash") == digest:
        console.print(f"{header} [green]reused[/] (finished in {finished['seconds']:.0f} s)", highlight=False)
        return {**finished, "reused": True}
    started = _read_json(demo.stage_started(stage.name))
    if stage_dir.exists() and (started is None or started.get("hash") != digest):
        shutil.rmtree(stage_dir)  # made with other settings: nothing in it may be reused
    console.rule(header)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json(demo.stage_started(stage.name), {"hash": digest})
    clock = time.perf_counter()
    summary = stage.run(cfg, stage_dir, done)
    record = {"stage": stage.name, "hash": digest, "seconds": time.perf_counter() - clock, **summary}
    write_json(demo.stage_record(stage.name), record)
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

    from vaur1.demo.report import print_comparison, write_demo_report

    torch.set_num_threads(min(cfg.torch_threads, usable_cpus()))
    with claim_run(cfg.run.root, "demo"):  # its stages claim their own folders as training or eval runs
        save_config(cfg, cfg.run.config)
        hashes: dict[str, str] = {}
        done: dict[str, dict] = {}
        for number, stage in enumerate(STAGES, start=1):
            hashes[stage.name] = stage_hash(stage, cfg, hashes)
            done[stage.name] = run_stage(stage, cfg, hashes[stage.name], done, number)
        report = write_demo_report(cfg, done)
    print_comparison(report, cfg.run.report)
    return report
