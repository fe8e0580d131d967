"""The fp32 output layer: target log-probs and entropies without the logits, on real tiny models."""

from __future__ import annotations

import pytest
import torch

from model_fixtures import load_tiny, make_video, video_prompt
from vaur1.model import ARCHS, build_inputs
from vaur1.model.logprobs import linear_target_logprobs, target_logprobs


def test_gradients_match_finite_differences_across_uneven_vocabulary_chunks():
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(23, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(23, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 23, (7,))

    def logps(h, w, b):
        return linear_target_logprobs(h, w, targets, b, temperature=0.7, chunk=4)[0]

    assert torch.autograd.gradcheck(logps, (hidden, weight, bias))
    reference = torch.log_softmax((hidden @ weight.T + bias) / 0.7, -1)
    got, entropy = linear_target_logprobs(hidden, weight, targets, bias, temperature=0.7, chunk=4)
    assert torch.allclose(got, reference.gather(-1, targets[:, None]).squeeze(-1), atol=1e-12)
    assert torch.allclose(entropy, -(reference.exp() * reference).sum(-1), atol=1e-12)


def inputs_with_targets(processor, length: int = 6):
    videos = [make_video(processor, num_frames=2 * (i + 1), seed=i) for i in range(2)]
    inputs = build_inputs(processor, [video_prompt(f"Question {i}?") for i in range(2)], videos)
    return inputs, inputs["input_ids"][:, -length:]


@pytest.mark.parametrize("arch", ARCHS)
def test_inside_the_model_forward_it_equals_the_full_logits_in_value_and_gradient(tiny_models, arch):
    model, processor = load_tiny(tiny_models[arch])
    inputs, targets = inputs_with_targets(processor)
    length = targets.shape[1]

    logits = model(**inputs, logits_to_keep=length + 1, use_cache=False).logits[:, :-1] / 1.3
    naive = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    naive.sum().backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    with target_logprobs(model, targets, temperature=1.3) as result:
        returned = model(**inputs, logits_to_keep=length + 1, use_cache=False).logits
    assert returned is result.logps and result.logps.dtype == torch.float32
    assert torch.allclose(result.logps, naive, atol=1e-5)
    probs = torch.softmax(logits, -1)
    assert torch.allclose(result.entropies, -(probs * probs.log()).sum(-1), atol=1e-5)
    result.logps.sum().backward()
    for name, param in model.named_parameters():
        if name in expected:
            assert torch.allclose(param.grad, expected[name], atol=1e-5), name
    # the layer is itself again afterwards
    assert (
        model(**inputs, logits_to_keep=1, use_cache=False).logits.shape[-1]
        == model.config.get_text_config().vocab_size
    )


def test_ignored_targets_get_zero_and_a_wrong_logits_to_keep_is_named(tiny_models):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"])
    inputs, targets = inputs_with_targets(processor)
    masked = targets.clone()
    masked[0, :2] = -100
    with target_logprobs(model, masked, ignore_index=-100) as result:
        model(**inputs, logits_to_keep=targets.shape[1] + 1, use_cache=False)
    assert (result.logps[0, :2] == 0).all() and (result.logps[0, 2:] < 0).all()
    with pytest.raises(ValueError, match="logits_to_keep=7"), target_logprobs(model, targets):
        model(**inputs, logits_to_keep=3, use_cache=False)


def test_a_bf16_model_gets_log_probs_at_fp32_resolution(tiny_models):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"], dtype="bfloat16")
    inputs, targets = inputs_with_targets(processor)
    length = targets.shape[1]
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-1][
            :, -length - 1 : -1
        ]
        weight = model.get_output_embeddings().weight
        exact = (
            torch.log_softmax(hidden.double() @ weight.double().T, -1)
            .gather(-1, targets[..., None])
            .squeeze(-1)
        )
        bf16_logits = model(**inputs, logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
        from_bf16 = torch.log_softmax(bf16_logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
        with target_logprobs(model, targets) as result:
            model(**inputs, logits_to_keep=length + 1, use_cache=False)
    fp32_error = (result.logps.double() - exact).abs().max()
    bf16_error = (from_bf16.double() - exact).abs().max()
    assert fp32_error < 1e-4 < bf16_error
