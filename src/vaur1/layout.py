"""Every run directory's files and folders, named once: what each writer writes and each reader reads.

    run = TrainRun("runs/grpo")       run.metrics, run.best, run.checkpoint(200).hf, ...
    run = EvalRun("runs/eval")        run.predictions, run.metrics, run.report, ...
    demo = DemoRun("runs/demo")       demo.stage("sft"), demo.chosen_model, ...

A training run directory:

    config.yaml, run_info.json   the resolved config; versions, git revision, data file hashes
    metrics.jsonl                one record per logged optimizer step (always written)
    samples.jsonl                sample completions
    skipped.jsonl                samples left out because their video could not be read
    tensorboard/                 with run.tensorboard
    video_spec.txt               the VideoSpec in one line
    validation.jsonl             one record per validation (step, metrics, score)
    validation/step-<N>/         each validation's evaluation run (an EvalRun)
    best/, best.json             the best model by the validation score, and its record
    checkpoint-<N>/              full state: state/, trainer_state.json, hf/ (a model directory)
    final/                       the last model: a Hugging Face model directory

An evaluation run directory holds config.yaml, run_info.json, predictions.jsonl, metrics.json,
sample_scores.jsonl, reasoning_scores.jsonl, judge_cache.jsonl and report.{md,html,json}.
Every model directory vaur1 writes also holds vaur1_video_spec.yaml, the VideoSpec it was trained with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
RUN_INFO = "run_info.json"
MODEL_VIDEO_SPEC = "vaur1_video_spec.yaml"
SYNTH_MANIFEST = "synthvau.json"  # beside a SynthVAU benchmark's split CSVs: how it was generated
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
DEFAULT_DEMO_OUT = "runs/demo"  # `vaur1 demo`; its GRPO model is what `vaur1 analyze` uses by default
QUICK_DEMO_OUT = "runs/demo-quick"  # `vaur1 demo --quick`
FULL_DEMO_OUT = "runs/demo-full"  # `vaur1 demo --full`


@dataclass(frozen=True)
class Checkpoint:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"  # Accelerator.save_state: weights or shards, optimizer, RNG states

    @property
    def trainer_state(self) -> Path:
        return self.root / "trainer_state.json"

    def extra_state(self, name: str) -> Path:
        # weights a run keeps beside the accelerate state (a mixed reference model); under state/ so
        # that the checksums cover them
        return self.state / f"{name}.safetensors"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    @property
    def checksums(self) -> Path:
        return self.root / "checksums.json"  # sha256 of every file resume reads


@dataclass(frozen=True)
class TrainRun:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / CONFIG)
    run_info = property(lambda self: self.root / RUN_INFO)
    metrics = property(lambda self: self.root / "metrics.jsonl")
    samples = property(lambda self: self.root / "samples.jsonl")
    skipped = property(lambda self: self.root / "skipped.jsonl")
    tensorboard = property(lambda self: self.root / "tensorboard")
    video_spec = property(lambda self: self.root / "video_spec.txt")
    validation = property(lambda self: self.root / "validation.jsonl")
    best = property(lambda self: self.root / "best")
    best_record = property(lambda self: self.root / "best.json")
    final = property(lambda self: self.root / "final")

    def validation_run(self, step: int) -> EvalRun:
        return EvalRun(self.root / "validation" / f"step-{step}")

    def checkpoint(self, step: int) -> Checkpoint:
        return Checkpoint(self.root / f"checkpoint-{step}")


@dataclass(frozen=True)
class EvalRun:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / CONFIG)
    run_info = property(lambda self: self.root / RUN_INFO)
    predictions = property(lambda self: self.root / "predictions.jsonl")
    lock = property(lambda self: self.root / ".predictions.lock")
    metrics = property(lambda self: self.root / "metrics.json")
    sample_scores = property(lambda self: self.root / "sample_scores.jsonl")
    reasoning_scores = property(lambda self: self.root / "reasoning_scores.jsonl")
    judge_cache = property(lambda self: self.root / "judge_cache.jsonl")
    SCANS = "scans.jsonl"  # one scan (`vaur1.eval.scan`) a line, of `eval run --scan` and `eval scan`
    scans = property(lambda self: self.root / EvalRun.SCANS)
    # report.md (+ report_files/), report.html and report.json
    report = property(lambda self: self.root / "report")


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a `checkpoint-<step>` directory name, None for anything else."""
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def training_log_of_model(model_dir: str | Path) -> Path | None:
    """The training log of the run a model directory lies in (`<run>/final`, `<run>/best`,
    `<run>/checkpoint-N/hf`), if any."""
    model_dir = Path(model_dir)
    for run_root in (model_dir.parent, model_dir.parent.parent):
        log = TrainRun(run_root).metrics
        if log.is_file():
            return log
    return None


@dataclass(frozen=True)
class DemoRun:
    """`vaur1 demo`'s output folder: one folder per stage; the training stages are training runs and
    the evaluation stages evaluation runs."""

    root: Path

    def __init__(self, root: str | Path = DEFAULT_DEMO_OUT) -> None:
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / "demo.yaml")
    bench = property(lambda self: self.root / "data" / "synthvau")
    frame_cache = property(lambda self: self.root / "frame-cache")
    # report.md (+ report_files/), report.html and report.json
    report = property(lambda self: self.root / "report")

    def stage(self, name: str) -> Path:
        return self.root / name

    def stage_record(self, name: str) -> Path:
        """A finished stage's record: its settings hash, time and what it produced."""
        return self.stage(name) / "stage.json"

    def stage_started(self, name: str) -> Path:
        """A stage under way: the settings hash it runs with."""
        return self.stage(name) / "started.json"

    @property
    def chosen_model(self) -> Path:
        """The model the demo ends with: GRPO's best checkpoint on the validation split."""
        return TrainRun(self.stage("grpo")).best
