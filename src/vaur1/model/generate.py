"""Sampling completions from a Qwen-VL model: rollouts for GRPO, predictions for eval and analyze.

    out = generate(model, processor, build_inputs(processor, conversations, videos), SamplingConfig())
    out.texts, out.completion_ids, out.completion_mask

G samples per prompt come from `num_return_sequences=G`: transformers encodes each video once
and expands the encoded features, so the vision tower runs once per prompt, not G times. Rows
are prompt-major (prompt i's samples are rows i*G .. i*G+G-1); `repeat_inputs(inputs, G)` gives
the matching prompt rows for the scoring forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from vaur1.errors import ConfigError, VaurError
from vaur1.model.inputs import END_OF_TURN

VISION_PLACEHOLDERS: tuple[str, ...] = (
    "<|video_pad|>",
    "<|image_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
)


@dataclass
class SamplingConfig:
    """How completions are sampled. Every field is explicit: nothing comes from the checkpoint's
    `generation_config.json` (Qwen's ships top_k=1, top_p=0.001, temperature=0.1, which would
    collapse GRPO's G samples into one)."""

    max_new_tokens: int = 256  # tokens per completion at most
    do_sample: bool = True  # False: greedy decoding (temperature, top_p and top_k are then unused)
    temperature: float = 1.0  # logits are divided by this before sampling
    top_p: float = 1.0  # 1.0: off
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0  # 1.0: off
    num_return_sequences: int = 1  # G completions per prompt
    seed: int | None = None  # reseeds torch's global generator before sampling

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"sampling.max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ConfigError(f"sampling.temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"sampling.top_k must be 0 (off) or positive, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"sampling.repetition_penalty must be positive, got {self.repetition_penalty}")
        if self.num_return_sequences < 1:
            raise ConfigError(
                f"sampling.num_return_sequences must be at least 1, got {self.num_return_sequences}"
            )
        if not self.do_sample and self.num_return_sequences > 1:
            raise ConfigError("greedy decoding (sampling.do_sample false) gives one completion per prompt")


@dataclass
class Samples:
    """Completions of a batch from any generator, `num_return_sequences` rows per prompt (prompt-major)."""

    completion_ids: torch.Tensor  # (rows, L) long; padding after the end of turn
    completion_mask: torch.Tensor  # (rows, L) 1 up to and including the end of turn
    texts: list[str]  # the masked completion decoded with skip_special_tokens=True
    truncated: list[bool]  # stopped by max_new_tokens before the end of turn
    logps: torch.Tensor | None = None  # (rows, L) fp32: the engine's log-prob of each sampled token (vLLM)


@dataclass
class GenerationOutput:
    """Completions for a batch of prompts, `num_return_sequences` rows per prompt (prompt-major)."""

    prompt_length: int  # columns of the (left-padded) prompt
    completion_ids: torch.Tensor  # (rows, L) long; positions after the end of turn hold padding
    completion_mask: torch.Tensor  # (rows, L) long; 1 up to and including the first end-of-turn token
    texts: list[str]  # the masked completion decoded with skip_special_tokens=True
    num_return_sequences: int
    end_of_turn: int  # the token id that ends a completion

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per completion, the end-of-turn token included."""
        return self.completion_mask.sum(dim=1)

    @property
    def truncated(self) -> torch.Tensor:
        """True where the completion hit max_new_tokens without ending its turn (the length alone
        cannot tell: the end of turn may fall on the very last position)."""
        return truncated(self.completion_ids, self.end_of_turn)


def token_id(processor, token: str) -> int:
    """The id of a single special token, or a clear error if the tokenizer lacks it."""
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise VaurError(f"the tokenizer has no {token} token; is this a Qwen-VL checkpoint?")
    return int(ids[0])


def vision_placeholder_ids(processor) -> list[int]:
    """Ids of the tokens that stand for vision features: never to be generated."""
    return [token_id(processor, token) for token in VISION_PLACEHOLDERS]


def end_of_turn_id(processor) -> int:
    return token_id(processor, END_OF_TURN)


def generation_config(sampling: SamplingConfig, processor):
    """A complete `GenerationConfig`: transformers' global defaults, overridden by `sampling`.

    Generation stops at the end of turn only (`<|im_end|>`); padding is `<|endoftext|>`.
    """
    from transformers import GenerationConfig

    sampling.validate()
    end_of_turn = end_of_turn_id(processor)
    pad = processor.tokenizer.pad_token_id
    defaults = GenerationConfig._get_default_generation_params()
    # max_length would compete with max_new_tokens (transformers warns when both are set).
    defaults.pop("max_length")
    fields = {
        **defaults,
        "max_new_tokens": sampling.max_new_tokens,
        "do_sample": sampling.do_sample,
        "num_return_sequences": sampling.num_return_sequences,
        "repetition_penalty": sampling.repetition_penalty,
        "suppress_tokens": vision_placeholder_ids(processor),
        "eos_token_id": [end_of_turn],
        "pad_token_id": end_of_turn if pad is None else pad,
    }
    if sampling.do_sample:
        fields |= {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}
    return GenerationConfig(**fields)


def generate(model, processor, inputs, sampling: SamplingConfig) -> GenerationOutput:
    """Sample completions for `inputs` (from `build_inputs`).

    The model runs in eval mode (restored afterwards): dropout off, and the KV cache on even when
    gradient checkpointing is enabled for training.
    """
    config = generation_config(sampling, processor)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    inputs = inputs.to(_device(model))
    with _eval_mode(model), _checkpoint_defaults_off(model, config):
        sequences = model.generate(**inputs, generation_config=config)
    prompt_length = inputs["input_ids"].shape[1]
    completion_ids = sequences[:, prompt_length:]
    mask = completion_mask(completion_ids, config.eos_token_id[0])
    kept = [row[: int(n)].tolist() for row, n in zip(completion_ids, mask.sum(dim=1), strict=True)]
    texts = processor.tokenizer.batch_decode(
        kept, skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    return GenerationOutput(
        prompt_length, completion_ids, mask, texts, sampling.num_return_sequences, config.eos_token_id[0]
    )


def _eos_hits(completion_ids: torch.Tensor, eos_token_id: int | Sequence[int]) -> torch.Tensor:
    if completion_ids.dim() != 2:
        raise ValueError(f"completion_ids must be (batch, length), got shape {tuple(completion_ids.shape)}")
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not eos:
        raise ValueError("eos_token_id is empty")
    return torch.isin(completion_ids, torch.tensor(eos, device=completion_ids.device))


def completion_mask(completion_ids: torch.Tensor, eos_token_id: int | Sequence[int]) -> torch.Tensor:
    """1 for every token up to and including the first end-of-turn token, 0 after it (int64, (B, T)).

    A completion with no end-of-turn token (cut at the length limit) is all ones. Any id in
    `eos_token_id` ends the turn.
    """
    is_eos = _eos_hits(completion_ids, eos_token_id)
    length = completion_ids.size(1)
    first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), length)
    positions = torch.arange(length, device=completion_ids.device).expand_as(completion_ids)
    return (positions <= first_eos.unsqueeze(1)).long()


def truncated(completion_ids: torch.Tensor, eos_token_id: int | Sequence[int]) -> torch.Tensor:
    """True for completions that never produced an end-of-turn token (cut at the length limit), (B,)."""
    return ~_eos_hits(completion_ids, eos_token_id).any(dim=1)


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _checkpoint_defaults_off(model, config) -> Iterator[None]:
    """Make `config` the model's own generation config for the call.

    transformers fills every field the caller left None from the checkpoint's generation config
    (min_p, bad_words_ids, ...); with ours in its place there is nothing else to inherit from.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = base.generation_config
    base.generation_config = config
    try:
        yield
    finally:
        base.generation_config = saved


def _device(model) -> torch.device:
    return next(model.parameters()).device
