from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from model_fixtures import load_tiny, make_video, video_prompt
from vaur1.config import from_dict
from vaur1.errors import ConfigError
from vaur1.model import (
    ARCHS,
    GenerationOutput,
    SamplingConfig,
    append_completions,
    build_inputs,
    completion_mask,
    end_of_turn_id,
    generate,
    generation_config,
    repeat_inputs,
    vision_placeholder_ids,
    vision_tower,
)

# Qwen2.5-VL-Instruct's generation_config.json: near-greedy sampling defaults.
QWEN_CHECKPOINT_DEFAULTS = {
    "do_sample": True,
    "top_k": 1,
    "top_p": 0.001,
    "temperature": 0.1,
    "repetition_penalty": 1.05,
}


def prompts(processor, count: int = 2):
    videos = [make_video(processor, num_frames=2 * (i + 1), seed=i) for i in range(count)]
    return build_inputs(processor, [video_prompt(f"Question {i}?") for i in range(count)], videos)


def completion_log_probs(model, inputs, out) -> torch.Tensor:
    """Per-token log-probs of the completions given prompt and video (the GRPO scoring pass)."""
    full = append_completions(
        repeat_inputs(inputs, out.num_return_sequences), out.completion_ids, out.completion_mask
    )
    logits = model(**full).logits[:, out.prompt_length - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, out.completion_ids[..., None]).squeeze(-1)


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_with_video_then_score_and_backpropagate(tiny_models, arch):
    model, processor = load_tiny(tiny_models[arch])
    inputs = prompts(processor)
    out = generate(
        model, processor, inputs, SamplingConfig(max_new_tokens=12, num_return_sequences=3, seed=0)
    )
    rows = 2 * 3
    assert out.completion_ids.shape[0] == rows and out.completion_ids.shape[1] <= 12
    assert out.prompt_length == inputs["input_ids"].shape[1]
    assert len(out.texts) == rows and all(isinstance(t, str) for t in out.texts)
    assert len(set(out.texts)) > 1  # sampled, not collapsed
    assert out.lengths.tolist() == out.completion_mask.sum(1).tolist() and (out.lengths >= 1).all()

    model.train()
    log_probs = completion_log_probs(model, inputs, out)
    mask = out.completion_mask.float()
    loss = -(log_probs * mask).sum() / mask.sum()
    loss.backward()
    grads = [p.grad for p in vision_tower(model).parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_vision_placeholders_are_never_generated(tiny_models):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"])
    placeholders = vision_placeholder_ids(processor)
    # Only the placeholders get non-zero logits, two of them opposite: one is always the argmax.
    with torch.no_grad():
        head = model.lm_head.weight
        direction = head[placeholders[0]].clone() * 100
        head.zero_()
        head[placeholders[0]], head[placeholders[1]] = direction, -direction
    inputs = prompts(processor)
    unsuppressed = generation_config(SamplingConfig(max_new_tokens=8, do_sample=False), processor)
    unsuppressed.suppress_tokens = None
    raw = model.generate(**inputs, generation_config=unsuppressed)[:, inputs["input_ids"].shape[1] :]
    assert torch.isin(raw, torch.tensor(placeholders)).any()
    for sampling in (
        SamplingConfig(max_new_tokens=8, do_sample=False),
        SamplingConfig(max_new_tokens=8, num_return_sequences=4, seed=0),
    ):
        out = generate(model, processor, inputs, sampling)
        assert not torch.isin(out.completion_ids, torch.tensor(placeholders)).any()


def test_checkpoint_generation_defaults_are_not_inherited(tiny_models, tmp_path):
    model, processor = load_tiny(tiny_models["qwen2_vl"])
    model.generation_config = GenerationConfig(**QWEN_CHECKPOINT_DEFAULTS, min_p=0.9, max_length=7)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model, processor = load_tiny(tmp_path)
    assert model.generation_config.top_k == 1
    inputs = prompts(processor, count=1)
    out = generate(
        model, processor, inputs, SamplingConfig(max_new_tokens=10, num_return_sequences=4, seed=3)
    )
    assert len(set(out.texts)) == 4
    assert model.generation_config.top_k == 1  # the checkpoint's own config is left as it was


def test_greedy_and_seeded_sampling_are_reproducible(tiny_models):
    model, processor = load_tiny(tiny_models["qwen3_vl"])
    inputs = prompts(processor, count=1)
    greedy = SamplingConfig(max_new_tokens=8, do_sample=False)
    assert (
        generate(model, processor, inputs, greedy).texts == generate(model, processor, inputs, greedy).texts
    )
    sampled = SamplingConfig(max_new_tokens=8, num_return_sequences=2, seed=7, top_k=50, top_p=0.9)
    assert (
        generate(model, processor, inputs, sampled).texts == generate(model, processor, inputs, sampled).texts
    )


def test_generation_restores_training_mode(tiny_models):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"])
    model.train()
    generate(model, processor, prompts(processor, count=1), SamplingConfig(max_new_tokens=2))
    assert model.training


def test_generation_config_is_complete_and_stops_at_end_of_turn(tiny_models):
    _, processor = load_tiny(tiny_models["qwen2_5_vl"])
    config = generation_config(SamplingConfig(temperature=0.7, top_k=20, num_return_sequences=4), processor)
    assert (config.temperature, config.top_k, config.top_p, config.repetition_penalty) == (0.7, 20, 1.0, 1.0)
    assert config.num_return_sequences == 4 and config.do_sample
    assert config.eos_token_id == [end_of_turn_id(processor)]
    assert config.pad_token_id == processor.tokenizer.pad_token_id
    assert sorted(config.suppress_tokens) == sorted(vision_placeholder_ids(processor))
    assert processor.tokenizer.convert_ids_to_tokens(vision_placeholder_ids(processor)) == [
        "<|video_pad|>",
        "<|image_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
    ]
    unset = [
        k for k, v in GenerationConfig._get_default_generation_params().items() if getattr(config, k) is None
    ]
    assert set(unset) <= {"max_length", "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id"} | {
        "exponential_decay_length_penalty",
        "begin_suppress_tokens",
    }


def test_completion_mask_ends_at_the_first_end_of_turn():
    ids = torch.tensor([[4, 9, 0, 0], [4, 5, 6, 7], [9, 4, 9, 0], [4, 5, 6, 9]])
    mask = completion_mask(ids, 9)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    out = GenerationOutput(
        prompt_length=5,
        completion_ids=ids,
        completion_mask=mask,
        texts=[""] * 4,
        num_return_sequences=1,
        end_of_turn=9,
    )
    assert out.lengths.tolist() == [2, 4, 1, 4]
    # the last row ends its turn on the very last position: full length, yet not truncated
    assert out.truncated.tolist() == [False, True, False, False]


def test_sampling_config_is_validated():
    assert from_dict(SamplingConfig, {"temperature": "0.9", "num_return_sequences": 8}).temperature == 0.9
    for bad, message in [
        ({"temperature": 0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"do_sample": False, "num_return_sequences": 2}, "one completion per prompt"),
    ]:
        with pytest.raises(ConfigError, match=message):
            from_dict(SamplingConfig, bad)
