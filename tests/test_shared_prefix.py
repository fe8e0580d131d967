"""Shared-prefix log-probs: one row per prompt group gives the log-probs and gradients of one row per
completion, on the three architectures (M-RoPE positions and videos of different lengths included),
with LoRA, with gradient checkpointing and in both attention kernels that take its mask."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from model_fixtures import checkpointing_on, load_tiny, make_video
from train_helpers import rollout_of
from vaur1.data import DataConfig
from vaur1.model import ARCHS, LoraConfig, append_completions
from vaur1.model.shared_prefix import pack_groups, shares_prefix
from vaur1.rl.reference import completion_logps

pytestmark = pytest.mark.usefixtures("one_thread")

GROUP = 3
TOKENS = 7


def uneven_rollout(model, processor, examples, videos):
    """A rollout whose completions end at different lengths (1 to TOKENS tokens), as real ones do."""
    rollout = rollout_of(model, processor, examples, videos, group=GROUP, tokens=TOKENS)
    rows = rollout.completion_ids.shape[0]
    lengths = torch.tensor([1 + (row * 5) % TOKENS for row in range(rows)])
    mask = (torch.arange(TOKENS)[None, :] < lengths[:, None]).long()
    prompt = {key: value for key, value in rollout.inputs.items()}
    prompt["input_ids"] = prompt["input_ids"][:, :-TOKENS]
    prompt["attention_mask"] = prompt["attention_mask"][:, :-TOKENS]
    prompt["mm_token_type_ids"] = prompt["mm_token_type_ids"][:, :-TOKENS]
    ids = rollout.completion_ids.masked_fill(mask == 0, processor.tokenizer.pad_token_id or 0)
    inputs = append_completions(prompt, ids, mask)
    return replace(rollout, inputs=inputs, completion_ids=ids, completion_mask=mask, loss_mask=mask)


def two_prompts(synth_bench, processor):
    examples = DataConfig(bench=str(synth_bench), tasks=["tag", "cls"], max_per_task=1).load()
    videos = [make_video(processor, num_frames=2 * (i + 1), seed=i) for i in range(2)]  # two lengths
    return examples, videos


def gradients(model) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def assert_same_logps_and_gradients(model, rollout) -> None:
    mask = rollout.completion_mask.bool()
    weights = torch.linspace(-1.0, 1.0, mask.numel()).view(mask.shape)  # every token counts differently
    results = {}
    for shared in (True, False):
        logps, entropies = completion_logps(model, rollout, 0.7, entropy=True, shared_prefix=shared)
        (logps * weights * mask).sum().backward()
        results[shared] = (logps.detach(), entropies, gradients(model))
    (shared_logps, shared_entropy, shared_grads), (logps, entropy, grads) = results[True], results[False]
    assert torch.allclose(shared_logps[mask], logps[mask], atol=1e-5, rtol=0)
    assert torch.allclose(shared_entropy[mask], entropy[mask], atol=1e-5, rtol=0)
    assert shared_grads.keys() == grads.keys() and grads
    for name, grad in grads.items():
        scale = max(float(grad.abs().max()), 1.0)
        assert torch.allclose(shared_grads[name], grad, atol=1e-5 * scale, rtol=0), name


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_one_row_per_group_equals_one_row_per_completion(tiny_models, synth_bench, arch, attention):
    model, processor = load_tiny(tiny_models[arch], attn_implementation=attention)
    assert shares_prefix(model)
    examples, videos = two_prompts(synth_bench, processor)
    rollout = uneven_rollout(model, processor, examples, videos)
    model.train()
    assert_same_logps_and_gradients(model, rollout)


def test_the_packed_rows_hold_each_prompt_once_and_no_padding(tiny_models, synth_bench):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"])
    examples, videos = two_prompts(synth_bench, processor)
    rollout = uneven_rollout(model, processor, examples, videos)
    packed = pack_groups(model, rollout.inputs, rollout.completion_ids, rollout.completion_mask, GROUP)
    prompts = [int(rollout.inputs["attention_mask"][row, :-TOKENS].sum()) for row in (0, GROUP)]
    completions = rollout.completion_mask.sum(dim=1).view(2, GROUP)
    width = max(p + int(c.sum()) for p, c in zip(prompts, completions, strict=True))
    assert packed.inputs["input_ids"].shape == (2, width)
    assert packed.tokens == 2 * width < rollout.inputs["input_ids"].numel()
    layout = packed.inputs["shared_prefix_layout"]
    assert layout.prompts == prompts
    # completion i of group g lies right after the prompt and the completions before it
    for group, prompt in enumerate(prompts):
        start = prompt
        for i, size in enumerate(completions[group].tolist()):
            assert layout.suffix_index[group, i, :size].tolist() == list(range(start, start + size))
            assert layout.suffix_valid[group, i].sum() == size
            start += size


def test_ordinary_calls_through_the_grouped_attention_are_the_kernel_itself(tiny_models, synth_bench):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"])
    examples, videos = two_prompts(synth_bench, processor)
    rollout = uneven_rollout(model, processor, examples, videos)
    before = completion_logps(model, rollout, 1.0, shared_prefix=False)[0]
    completion_logps(model, rollout, 1.0)  # switches the language model to the grouped function
    assert model.model.language_model.config._attn_implementation == "vaur1_grouped_sdpa"
    assert torch.equal(completion_logps(model, rollout, 1.0, shared_prefix=False)[0], before)
    saved = model.config.to_dict()
    assert "vaur1_grouped" not in str(saved)


def test_lora_and_gradient_checkpointing_keep_it_exact(tiny_models, synth_bench):
    model, processor = load_tiny(
        tiny_models["qwen2_vl"], lora=LoraConfig(enabled=True, r=4, dropout=0.0), gradient_checkpointing=True
    )
    assert checkpointing_on(model) and hasattr(model, "peft_config")
    examples, videos = two_prompts(synth_bench, processor)
    rollout = uneven_rollout(model, processor, examples, videos)
    model.train()
    assert_same_logps_and_gradients(model, rollout)


def test_flash_attention_keeps_one_row_per_completion(tiny_models):
    model, _ = load_tiny(tiny_models["qwen2_vl"])
    model.model.language_model.config._attn_implementation = "flash_attention_2"  # the flag alone: never run

    assert not shares_prefix(model)
