"""Inference backends: chat messages + decoded frames in, one completion per prompt out.

    generator = load_generator(cfg.model, cfg.sampling, cfg.video, backend="hf")
    completions = generator(conversations, videos)

`hf` is transformers' `generate` through `vaur1.model` (batched, left-padded, vision placeholders
suppressed, every sampling field explicit): the code path training's rollouts use. `vllm` hands
the same chat-template text and the same frames (with their source metadata, so nothing is
resampled) to a vLLM engine; it is for GPU machines with vLLM installed and is not exercised by
the CPU test suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vaur1.errors import VaurError
from vaur1.eval.config import check_backend
from vaur1.model.generate import SamplingConfig, generate
from vaur1.model.inputs import build_inputs, processor_factor, temporal_patch
from vaur1.model.load import ModelConfig, load_model, resolve_checkpoint
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text, how many tokens it took, and whether it was cut short."""

    text: str
    tokens: int  # generated tokens, the end of turn included
    truncated: bool  # stopped by max_new_tokens before the end of turn


def check_spec_fits(spec: VideoSpec, processor) -> None:
    """The VideoSpec must size frames for this model's processor, which does not resize them again."""
    factor, frames_per_patch = processor_factor(processor), temporal_patch(processor)
    if spec.factor % factor:
        raise VaurError(
            f"video.factor {spec.factor} does not fit the model, whose patch x merge size is {factor}: "
            f"set video.factor={factor}" + (" (Qwen3-VL)" if factor == 32 else "")
        )
    if spec.temporal_patch % frames_per_patch:
        raise VaurError(
            f"video.temporal_patch {spec.temporal_patch} is not a multiple of the model's temporal patch "
            f"{frames_per_patch}: set video.temporal_patch={frames_per_patch}"
        )


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


class VllmGenerator:
    """A vLLM engine fed the chat-template text and the VideoSpec's frames with their metadata."""

    def __init__(self, model: ModelConfig, sampling: SamplingConfig):
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams

        checkpoint = resolve_checkpoint(model.name_or_path)
        if checkpoint.adapter is not None:
            raise VaurError(f"{model.name_or_path}: backend vllm needs a merged model, not a LoRA adapter")
        self.processor = AutoProcessor.from_pretrained(checkpoint.model, local_files_only=checkpoint.local)
        dtype = model.dtype if model.dtype != "auto" else "auto"
        self.engine = LLM(
            model=checkpoint.model, dtype=dtype, seed=sampling.seed or 0, limit_mm_per_prompt={"video": 1}
        )
        greedy = not sampling.do_sample
        self.params = SamplingParams(
            n=1,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=-1 if greedy or sampling.top_k == 0 else sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )

    def __call__(
        self, conversations: Sequence[list[dict]], videos: Sequence[DecodedVideo]
    ) -> list[Generation]:
        prompts = []
        for conversation, video in zip(conversations, videos, strict=True):
            text = self.processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False
            )
            metadata = {
                "fps": float(video.fps),
                "duration": float(video.duration),
                "total_num_frames": int(video.num_frames_total),
                "frames_indices": [int(i) for i in video.indices],
                "width": int(video.width),
                "height": int(video.height),
                "do_sample_frames": False,
            }
            prompts.append(
                {
                    "prompt": text,
                    "multi_modal_data": {"video": (video.frames, metadata)},
                    "mm_processor_kwargs": {"do_sample_frames": False},
                }
            )
        outputs = self.engine.generate(prompts, self.params, use_tqdm=False)
        return [
            Generation(o.outputs[0].text, len(o.outputs[0].token_ids), o.outputs[0].finish_reason == "length")
            for o in outputs
        ]


def load_generator(model: ModelConfig, sampling: SamplingConfig, spec: VideoSpec, backend: str = "hf"):
    """The backend's generator for `model`, after checking the VideoSpec fits its processor."""
    check_backend(backend)
    if backend == "vllm":
        generator = VllmGenerator(model, sampling)
        check_spec_fits(spec, generator.processor)
        return generator
    loaded, processor = load_model(model)
    check_spec_fits(spec, processor)
    return HFGenerator(loaded, processor, sampling)
