"""One video in, the model's reading of it out: anomaly or not, class, interval, description, reasoning.

    result = analyze_video("clip.mp4", ModelConfig(name_or_path="runs/demo/grpo/best"), VideoSpec())

Three prompts (TAG, CLS and reasoning) go to the model in one batch, built exactly as evaluation
builds them: the same VideoSpec, prompt templates and parser. `raw` keeps each output verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.errors import VaurError
from vaur1.eval.config import EVAL_DEFAULTS
from vaur1.eval.reasoning import reasoning_parts
from vaur1.layout import DemoRun
from vaur1.model.generate import SamplingConfig
from vaur1.model.generators import Generator, load_generator
from vaur1.model.load import ModelConfig
from vaur1.parse import read_tag_and_class
from vaur1.prompts import Mode, PromptConfig, build_messages
from vaur1.video.decode import decode
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec
from vaur1.vocab import CLS, REASONING, TAG, Task

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")

# The tasks whose answers describe a video; QA needs a question that a user's video does not come with.
ANALYZE_TASKS: tuple[Task, ...] = (TAG, CLS, REASONING)


def default_model() -> str:
    """The model `make demo` ends with, when it exists; otherwise an error saying what to pass."""
    chosen = DemoRun().chosen_model
    if (chosen / "config.json").is_file() or (chosen / "adapter_config.json").is_file():
        return str(chosen)
    raise VaurError(
        f"no --model given and the demo's model {chosen} does not exist (run `make demo`); pass --model PATH"
    )


def expand_videos(paths: list[str | Path]) -> list[Path]:
    """The videos to analyze: each file as given, each folder's video files (by suffix) in name order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not inside:
                raise VaurError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)})")
            found += inside
        else:
            found.append(path)
    return found


@dataclass
class AnalyzeOptions:
    mode: Mode = "think"
    prompts: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(**EVAL_DEFAULTS["sampling"]))


def read_outputs(raw: dict[str, str]) -> dict[str, Any]:
    """anomaly, class, interval, description and reasoning from the three outputs, by the one parser."""
    # only the answer format is read: an output without it is unreadable, never a guess from free text
    reading = read_tag_and_class(raw[TAG], raw[CLS])
    description, analysis = reasoning_parts(raw[REASONING])
    return {
        "anomaly": reading.anomaly,
        "class": reading.anomaly_class,
        "interval": list(reading.interval) if reading.interval is not None else None,
        "description": description,
        REASONING: analysis,
    }


def analyze_video(
    path: str | Path,
    model: ModelConfig,
    spec: VideoSpec,
    options: AnalyzeOptions | None = None,
    generator: Generator | None = None,
) -> dict[str, Any]:
    """The model's analysis of one video; a `VideoError` (one line, naming the file) if unreadable."""
    return analyze_frames(decode(path, spec), model, spec, options, generator)


def analyze_frames(
    video: DecodedVideo,
    model: ModelConfig,
    spec: VideoSpec,
    options: AnalyzeOptions | None = None,
    generator: Generator | None = None,
) -> dict[str, Any]:
    """The analysis of frames already decoded under `spec` (a page showing them decodes once)."""
    options = options or AnalyzeOptions()
    if generator is None:
        generator = load_generator(model, options.sampling, spec)
    name = Path(video.path).name
    examples = [Example(task=task, id=name, video=name) for task in ANALYZE_TASKS]
    conversations = [build_messages(example, options.mode, options.prompts) for example in examples]
    completions = generator(conversations, [video] * len(examples))
    raw = {example.task: completion.text for example, completion in zip(examples, completions, strict=True)}
    return {"video": str(video.path), **read_outputs(raw), "raw": raw}
