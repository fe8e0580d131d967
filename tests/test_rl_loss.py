"""The GRPO loss maths: hand-computed values on tiny tensors, then a cross-check against TRL's own code."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaur1.config import from_dict
from vaur1.errors import ConfigError
from vaur1.rl.loss import (
    ADVANTAGE_ESTIMATORS,
    AdvantageInputs,
    completion_mask,
    group_advantages,
    kl_k3,
    masked_mean,
    normalized_sum_advantages,
    truncated,
)
from vaur1.rl.loss_config import GRPOLossConfig
from vaur1.rl.objectives import policy_loss

LN = math.log


def assert_values(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- masks


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 2, 7, 2], [5, 5, 5, 5], [2, 9, 9, 9]])
    # eos = 2: row 0 keeps up to index 1, row 1 has no eos (all ones), row 2 ends at index 0.
    assert completion_mask(ids, 2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert completion_mask(ids, 2).dtype == torch.long


def test_completion_mask_any_of_several_eos_ids():
    ids = torch.tensor([[5, 3, 2, 7], [5, 6, 6, 2]])
    # <|endoftext|> (3) ends row 0 as well as <|im_end|> (2).
    assert completion_mask(ids, [2, 3]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert completion_mask(ids, 2).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_truncated_means_no_eos_at_all():
    ids = torch.tensor([[5, 2, 0, 0], [5, 5, 5, 5], [5, 5, 5, 3]])
    assert truncated(ids, 2).tolist() == [False, True, True]
    assert truncated(ids, (2, 3)).tolist() == [False, True, False]


def test_mask_inputs_are_checked():
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        completion_mask(torch.tensor([1, 2, 3]), 2)
    with pytest.raises(ValueError, match="empty"):
        truncated(torch.tensor([[1, 2]]), [])


# ---------------------------------------------------------------- advantages


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    # Group 1: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.577350; A = ±0.5 / (0.577350 + 1e-4).
    # Group 2: all equal, std 0, A = 0.
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    out = group_advantages(rewards, 4, "group")
    assert out.advantages.tolist() == pytest.approx([a, -a, a, -a, 0, 0, 0, 0], abs=1e-6)
    assert out.group_std.tolist() == pytest.approx([math.sqrt(1 / 3), 0.0], abs=1e-6)
    assert out.frac_zero_std.item() == 0.5

    # "batch": the same centring, divided by the std of all 8 rewards: mean 1.25, squared deviations
    # 0.0625, 1.5625, 0.0625, 1.5625, 4 * 0.5625 -> sum 5.5, / 7 -> std 0.886405.
    b = 0.5 / (math.sqrt(5.5 / 7) + 1e-4)
    out = group_advantages(rewards, 4, "batch")
    assert out.advantages.tolist() == pytest.approx([b, -b, b, -b, 0, 0, 0, 0], abs=1e-6)
    assert out.frac_zero_std.item() == 0.5  # counted per group, also under "batch"

    # "none" (Dr. GRPO): centred only.
    assert group_advantages(rewards, 4, "none").advantages.tolist() == [0.5, -0.5, 0.5, -0.5, 0, 0, 0, 0]


def verl_rloo(scores: torch.Tensor, index: list[int]) -> torch.Tensor:
    """verl's compute_rloo_outcome_advantage (trainer/ppo/core_algos.py), transcribed for one reward
    per sequence (its token-level rewards summed, times the response mask, are that reward)."""
    scores = scores.clone()
    id2score, id2mean = defaultdict(list), {}
    for i in range(scores.shape[0]):
        id2score[index[i]].append(scores[i])
    for idx in id2score:
        id2mean[idx] = (
            torch.tensor(0.0) if len(id2score[idx]) == 1 else torch.mean(torch.stack(id2score[idx]))
        )
    for i in range(scores.shape[0]):
        n = len(id2score[index[i]])
        if n > 1:
            scores[i] = scores[i] * n / (n - 1) - id2mean[index[i]] * n / (n - 1)
    return scores


@pytest.mark.parametrize("group_size", [1, 2, 4, 8])
def test_rloo_equals_verls_leave_one_out_baseline(group_size):
    generator = torch.Generator().manual_seed(group_size)
    rewards = torch.randint(0, 3, (4 * group_size,), generator=generator).float() / 2
    rewards[-group_size:] = torch.rand(group_size, generator=generator)  # one group of continuous rewards
    inputs = AdvantageInputs(rewards, rewards[:, None], torch.ones(rewards.numel(), 1), group_size, "group")
    out = ADVANTAGE_ESTIMATORS["rloo"](inputs)
    index = [i // group_size for i in range(rewards.numel())]
    torch.testing.assert_close(out.advantages, verl_rloo(rewards, index), atol=1e-6, rtol=0)
    # the same diagnostics as GRPO's, whatever the estimator
    grpo = group_advantages(rewards, group_size, "group")
    assert torch.equal(out.group_std, grpo.group_std) and torch.equal(out.frac_zero_std, grpo.frac_zero_std)


def test_the_registered_grpo_and_gdpo_estimators_are_the_named_functions():
    generator = torch.Generator().manual_seed(0)
    parts = torch.rand(8, 2, generator=generator)
    parts[0, 1] = math.nan
    weights = torch.tensor([[1.0, 0.5]]).repeat(8, 1)
    rewards = torch.nan_to_num(parts * weights).sum(dim=1)
    for scale in ("group", "batch", "none"):
        inputs = AdvantageInputs(rewards, parts, weights, 4, scale)
        assert torch.equal(
            ADVANTAGE_ESTIMATORS["grpo"](inputs).advantages, group_advantages(rewards, 4, scale).advantages
        )
    gdpo = ADVANTAGE_ESTIMATORS["gdpo"](AdvantageInputs(rewards, parts, weights, 4, "group"))
    assert torch.equal(gdpo.advantages, normalized_sum_advantages(parts, weights, 4).advantages)


def test_group_advantages_group_of_one_and_errors():
    out = group_advantages(torch.tensor([3.0, 1.0]), 1, "group")
    assert out.advantages.tolist() == [0.0, 0.0] and out.frac_zero_std.item() == 1.0
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        group_advantages(torch.zeros(6), 4, "group")
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([1.0, float("nan")]), 2, "group")
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.zeros(2), 2, "global")  # type: ignore[arg-type]


# ---------------------------------------------------------------- KL


def test_kl_k3_by_hand_and_zero_when_equal():
    # policy p = 0.5, reference q = 0.25: delta = ln q - ln p = -ln 2; exp(delta) - delta - 1 = 0.5 + ln 2 - 1.
    kl = kl_k3(torch.tensor([LN(0.5)]), torch.tensor([LN(0.25)]))
    assert kl.item() == pytest.approx(0.5 + LN(2) - 1, abs=1e-6)
    logp = torch.log(torch.rand(3, 7) + 0.01)
    assert torch.equal(kl_k3(logp, logp.clone()), torch.zeros(3, 7))
    assert (kl_k3(logp, torch.log(torch.rand(3, 7) + 0.01)) >= 0).all()


# ---------------------------------------------------------------- policy loss

# Two completions of two tokens; advantages A = [2, -1]; epsilon = 0.2.
#   token (0,0): ratio 1.5, A = 2  -> -min(3.0, 1.2 * 2) = -2.4   (clipped high)
#   token (0,1): ratio 1,   A = 2  -> -2
#   token (1,0): ratio 0.5, A = -1 -> -min(-0.5, 0.8 * -1) = 0.8  (clipped low)
#   token (1,1): ratio 1,   A = -1 -> 1
OLD = torch.zeros(2, 2)
LOGP = torch.tensor([[LN(1.5), 0.0], [LN(0.5), 0.0]])
ADV = torch.tensor([2.0, -1.0])
FULL = torch.ones(2, 2)
KW = {"epsilon": 0.2, "epsilon_high": None, "beta": 0.0, "max_completion_length": 4}


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        ("grpo", (-4.4 / 2 + 1.8 / 2) / 2),  # mean per sequence, then over sequences: -0.65
        ("bnpo", (-4.4 + 1.8) / 4),  # token mean over the batch: -0.65
        ("dr_grpo", (-4.4 + 1.8) / (2 * 4)),  # / (B * max_completion_length): -0.325
        ("dapo", (-4.4 + 1.8) / 4),  # / tokens in the batch by default: -0.65
    ],
)
def test_policy_loss_by_hand_every_loss_type(loss_type, expected):
    loss, stats = policy_loss(LOGP, OLD, None, ADV, FULL, loss_type=loss_type, **KW)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["policy_loss"].item() == pytest.approx(expected, abs=1e-6)
    assert stats["tokens"].item() == 4 and "kl" not in stats


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        # Token (1,1) masked out: sequence 2 has one token (0.8).
        ("grpo", (-4.4 / 2 + 0.8 / 1) / 2),  # -0.7: each sequence weighs the same
        ("bnpo", (-4.4 + 0.8) / 3),  # -1.2: each token weighs the same
        ("dr_grpo", (-4.4 + 0.8) / 8),
        ("dapo", (-4.4 + 0.8) / 3),
    ],
)
def test_policy_loss_ignores_masked_tokens(loss_type, expected):
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, _ = policy_loss(LOGP, OLD, None, ADV, mask, loss_type=loss_type, **KW)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_accumulation_and_global_token_normalisation():
    # grpo/bnpo/dr_grpo are divided by the accumulation steps; dapo divides by num_items_in_batch instead.
    loss, stats = policy_loss(
        LOGP, OLD, None, ADV, FULL, loss_type="grpo", gradient_accumulation_steps=2, **KW
    )
    assert loss.item() == pytest.approx(-0.65 / 2, abs=1e-6) and stats["policy_loss"].item() == pytest.approx(
        -0.65
    )
    loss, _ = policy_loss(
        LOGP,
        OLD,
        None,
        ADV,
        FULL,
        loss_type="dapo",
        num_items_in_batch=8,
        gradient_accumulation_steps=2,
        **KW,
    )
    assert loss.item() == pytest.approx(-2.6 / 8, abs=1e-6)


def test_clip_region_and_clip_ratios():
    _, stats = policy_loss(LOGP, OLD, None, ADV, FULL, loss_type="bnpo", **KW)
    assert stats["clip_ratio/low_mean"].item() == 0.25  # token (1,0)
    assert stats["clip_ratio/high_mean"].item() == 0.25  # token (0,0)
    assert stats["clip_ratio/region_mean"].item() == 0.5
    assert stats["clip_ratio/low_min"].item() == 0.0  # sequence 0 has no low-clipped token
    assert stats["clip_ratio/high_max"].item() == 0.5  # one of sequence 0's two tokens

    # A wider upper clip (epsilon_high = 0.6) lets ratio 1.5 through: token (0,0) costs -3 instead of -2.4.
    loss, stats = policy_loss(LOGP, OLD, None, ADV, FULL, loss_type="bnpo", **{**KW, "epsilon_high": 0.6})
    assert loss.item() == pytest.approx((-3 - 2 + 0.8 + 1) / 4, abs=1e-6)
    assert stats["clip_ratio/high_mean"].item() == 0.0

    # The clip only removes incentive: ratio 1.5 with a negative advantage is not clipped (-min(-1.5, -1.2)).
    loss, stats = policy_loss(
        LOGP[:1, :1], OLD[:1, :1], None, torch.tensor([-1.0]), FULL[:1, :1], loss_type="bnpo", **KW
    )
    assert loss.item() == pytest.approx(1.5, abs=1e-6) and stats["clip_ratio/region_mean"].item() == 0.0


def test_clipped_tokens_get_no_gradient_and_signs_are_right():
    logp = LOGP.clone().requires_grad_()
    loss, _ = policy_loss(logp, OLD, None, ADV, FULL, loss_type="bnpo", **KW)
    loss.backward()
    # d/dlogp of -ratio * A / 4 is -ratio * A / 4 where unclipped, 0 where clipped.
    assert_values(logp.grad, [[0.0, -2 / 4], [0.0, 1 / 4]])
    # Gradient descent raises the log-prob of a positive-advantage token and lowers a negative one.
    assert logp.grad[0, 1] < 0 < logp.grad[1, 1]


def test_ratio_is_one_when_old_equals_current():
    logp = torch.tensor([[LN(0.3), LN(0.6)], [LN(0.9), LN(0.2)]], requires_grad=True)
    loss_none, stats = policy_loss(logp, None, None, ADV, FULL, loss_type="dapo", **KW)
    loss_none.backward()
    grad_none = logp.grad.clone()
    logp.grad = None
    loss_same, _ = policy_loss(logp, logp.detach().clone(), None, ADV, FULL, loss_type="dapo", **KW)
    loss_same.backward()
    # ratio == 1: the loss is -mean(A) over tokens = -(2 + 2 - 1 - 1) / 4 and d ratio / d logp = 1.
    assert loss_none.item() == loss_same.item() == pytest.approx(-0.5)
    assert torch.equal(grad_none, logp.grad)
    assert_values(logp.grad, [[-0.5, -0.5], [0.25, 0.25]])
    assert stats["clip_ratio/region_mean"].item() == 0.0


def test_kl_term_by_hand_and_its_gradient_pulls_towards_the_reference():
    logp = torch.full((1, 2), LN(0.5), requires_grad=True)
    ref = torch.full((1, 2), LN(0.25))
    kw = {**KW, "beta": 0.1}
    loss, stats = policy_loss(logp, None, ref, torch.zeros(1), torch.ones(1, 2), loss_type="grpo", **kw)
    # A = 0, so only beta * kl_k3 = 0.1 * (0.5 + ln 2 - 1) per token remains; mean over tokens.
    assert loss.item() == pytest.approx(0.1 * (0.5 + LN(2) - 1), abs=1e-6)
    assert stats["kl"].item() == pytest.approx(0.5 + LN(2) - 1, abs=1e-6)
    loss.backward()
    # The policy is above the reference, so descent lowers logp (d kl / d logp = 1 - exp(ref - logp) = 0.5).
    assert_values(logp.grad, [[0.1 * 0.5 / 2, 0.1 * 0.5 / 2]])

    # KL = 0 when the reference equals the policy; with beta = 0 it is reported, not added.
    loss0, stats0 = policy_loss(logp, None, logp.detach(), ADV[:1], torch.ones(1, 2), loss_type="grpo", **kw)
    assert stats0["kl"].item() == 0.0 and loss0.item() == pytest.approx(-2.0)
    _, reported = policy_loss(logp, None, ref, torch.zeros(1), torch.ones(1, 2), loss_type="grpo", **KW)
    assert reported["kl"].item() == pytest.approx(0.5 + LN(2) - 1, abs=1e-6)


def test_empty_mask_gives_zero_not_nan():
    loss, stats = policy_loss(LOGP, OLD, LOGP, ADV, torch.zeros(2, 2), loss_type="grpo", **KW)
    assert loss.item() == 0.0 and all(torch.isfinite(v) for v in stats.values())


def test_policy_loss_argument_errors():
    with pytest.raises(ValueError, match="needs ref_logp"):
        policy_loss(LOGP, OLD, None, ADV, FULL, loss_type="grpo", **{**KW, "beta": 0.04})
    with pytest.raises(ValueError, match="max_completion_length"):
        policy_loss(LOGP, OLD, None, ADV, FULL, loss_type="dr_grpo", **{**KW, "max_completion_length": None})
    with pytest.raises(ValueError, match="loss_type"):
        policy_loss(LOGP, OLD, None, ADV, FULL, loss_type="ppo", **KW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="old_logp has shape"):
        policy_loss(LOGP, OLD[:1], None, ADV, FULL, loss_type="grpo", **KW)
    with pytest.raises(ValueError, match="3 advantages for 2 completions"):
        policy_loss(LOGP, OLD, None, torch.zeros(3), FULL, loss_type="grpo", **KW)


def test_masked_mean():
    values = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    assert masked_mean(values, torch.tensor([[1, 1], [1, 0]])).item() == 2.0
    assert masked_mean(values, torch.zeros(2, 2)).item() == 0.0


# ---------------------------------------------------------------- config


def test_loss_config_defaults_are_trl_and_validation_names_the_key():
    cfg = GRPOLossConfig()
    assert (cfg.loss_type, cfg.beta, cfg.epsilon, cfg.scale_rewards, cfg.num_iterations) == (
        "dapo",
        0.0,
        0.2,
        "group",
        1,
    )
    assert cfg.clip_high == 0.2 and GRPOLossConfig(epsilon_high=0.28).clip_high == 0.28
    with pytest.raises(ConfigError, match="loss_type"):
        from_dict(GRPOLossConfig, {"loss_type": "ppo"})
    with pytest.raises(ConfigError, match="num_iterations"):
        from_dict(GRPOLossConfig, {"num_iterations": 0})
    with pytest.raises(ConfigError, match="beta"):
        from_dict(GRPOLossConfig, {"beta": -1})
    # CISPO's epsilon_high is the ratio's cap: left at epsilon (0.2) it would scale every token down
    for cap in (None, 0.28):
        with pytest.raises(
            ConfigError, match=f"cispo caps the importance ratio at loss.epsilon_high, which is {cap}"
        ):
            from_dict(GRPOLossConfig, {"loss_type": "cispo", "epsilon_high": cap})
    from_dict(GRPOLossConfig, {"loss_type": "cispo", "epsilon_high": 5.0})


# ---------------------------------------------------------------- TRL cross-check


def _trl_compute_loss(
    logp,
    old,
    ref,
    adv,
    mask,
    *,
    loss_type,
    epsilon,
    epsilon_high,
    beta,
    max_len,
    num_items,
    accumulation,
    processes,
):
    """Run TRL 1.16's own `GRPOTrainer._compute_loss` on given log-probs, with none of its options."""
    options = {
        "loss_type": loss_type,
        "epsilon": epsilon,
        "epsilon_high": epsilon_high or epsilon,
        "beta": beta,
    }
    return _trl_loss_with_options(
        logp, old, ref, adv, mask, torch.zeros_like(logp), None, None, options,
        accumulation=accumulation, max_len=max_len, num_items=num_items, processes=processes,
    )  # fmt: skip


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_policy_loss_matches_trl(loss_type, beta):
    torch.manual_seed(1)
    logp = (-2 * torch.rand(4, 6)).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(4, 6)
    ref = logp.detach() + 0.2 * torch.randn(4, 6)
    adv = torch.randn(4)
    mask = torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [0] * 6])
    # TRL's num_items_in_batch counts the whole generation batch (here 2 micro-batches on each of 2
    # processes: 4x this micro-batch's tokens), then divides by the process count.
    step_tokens = 4 * mask.sum().item()
    trl_loss, trl_stats = _trl_compute_loss(
        logp,
        old,
        ref,
        adv,
        mask,
        loss_type=loss_type,
        epsilon=0.2,
        epsilon_high=0.28,
        beta=beta,
        max_len=9,
        num_items=step_tokens,
        accumulation=2,
        processes=2,
    )
    (trl_grad,) = torch.autograd.grad(trl_loss, logp)
    loss, stats = policy_loss(
        logp,
        old,
        ref,
        adv,
        mask,
        loss_type=loss_type,
        epsilon=0.2,
        epsilon_high=0.28,
        beta=beta,
        max_completion_length=9,
        num_items_in_batch=step_tokens / 2,
        gradient_accumulation_steps=2,
    )
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert torch.allclose(grad, trl_grad, atol=1e-7)
    for key in (
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "clip_ratio/low_min",
        "clip_ratio/high_max",
    ):
        assert stats[key].item() == pytest.approx(trl_stats[key], abs=1e-6), key
    assert stats["clip_ratio/region_mean"].item() > 0  # the check covers clipped tokens
    if beta:
        assert stats["kl"].item() == pytest.approx(trl_stats["kl"], abs=1e-6)


def test_advantages_match_trl_formula():
    from trl.trainer.utils import nanstd

    torch.manual_seed(2)
    rewards = torch.randint(0, 3, (12,)).float()
    rewards[4:8] = 1.0  # one group with zero std
    grouped = rewards.view(-1, 4)
    # TRL 1.16 `_generate_and_score_completions`, sum_then_normalize branch:
    mean = grouped.mean(dim=1).repeat_interleave(4)
    std_group = nanstd(grouped, dim=1).repeat_interleave(4)
    assert torch.allclose(
        group_advantages(rewards, 4, "group").advantages, (rewards - mean) / (std_group + 1e-4)
    )
    assert torch.allclose(
        group_advantages(rewards, 4, "batch").advantages, (rewards - mean) / (nanstd(rewards) + 1e-4)
    )
    assert torch.allclose(group_advantages(rewards, 4, "none").advantages, rewards - mean)


def test_masks_match_trl_rules():
    torch.manual_seed(3)
    eos_ids, pad_id = [7, 8], 8
    ids = torch.randint(0, 10, (64, 6))
    # TRL: ones up to the first eos (`sequence_indices <= eos_idx`) ...
    is_eos = torch.isin(ids, torch.tensor(eos_ids))
    eos_idx = torch.full((64,), 6, dtype=torch.long)
    eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
    trl_mask = (torch.arange(6).expand(64, -1) <= eos_idx.unsqueeze(1)).int()
    assert torch.equal(completion_mask(ids, eos_ids), trl_mask.long())
    # ... and a completion is truncated when its last unmasked token is neither eos nor pad.
    trimmed = [row[: int(m.sum())].tolist() for row, m in zip(ids, trl_mask, strict=True)]
    trl_truncated = [row[-1] not in [*eos_ids, pad_id] for row in trimmed]
    assert truncated(ids, eos_ids).tolist() == trl_truncated


def test_fp32_output_layer_logprobs_and_entropy_match_trl():
    from trl.trainer.utils import entropy_from_logits as trl_entropy
    from trl.trainer.utils import selective_log_softmax as trl_selective

    from vaur1.model.logprobs import linear_target_logprobs

    torch.manual_seed(4)
    hidden, weight = torch.randn(2, 7, 5), torch.randn(13, 5)
    ids = torch.randint(0, 13, (2, 7))
    logits = hidden @ weight.T / 0.7  # TRL divides the logits by the temperature first
    logps, entropies = linear_target_logprobs(hidden, weight, ids, temperature=0.7, chunk=4)
    assert torch.allclose(logps, trl_selective(logits, ids), atol=1e-6)
    assert torch.allclose(entropies, trl_entropy(logits), atol=1e-6)


def _trl_loss_with_options(
    logp, old, ref, adv, mask, entropies, sampling, ratio, options, accumulation=2, max_len=9, num_items=None,
    processes=1,
):  # fmt: skip
    """TRL 1.16's own `GRPOTrainer._compute_loss` with every GRPO-family option it has, on given tensors.

    The trainer object is a namespace holding exactly the attributes that method reads; the log-prob
    forward returns `logp` (and `entropies`), and the process group is one process reporting
    `processes`."""
    from trl import GRPOTrainer

    o = {
        "loss_type": "dapo",
        "beta": 0.0,
        "epsilon": 0.2,
        "epsilon_high": 0.28,
        "importance_sampling_level": "token",
        "delta": None,
        "use_bias_correction_kl": False,
        "top_entropy_quantile": 1.0,
        "entropy_coef": 0.0,
        "off_policy_mask_threshold": None,
        "vllm": False,
        **options,
    }
    metrics: dict = {"train": defaultdict(list)}
    same = lambda tensor, **_: tensor  # noqa: E731
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, entropies, None),
        top_entropy_quantile=o["top_entropy_quantile"],
        off_policy_mask_threshold=o["off_policy_mask_threshold"],
        importance_sampling_level=o["importance_sampling_level"],
        beta=o["beta"],
        args=SimpleNamespace(
            use_bias_correction_kl=o["use_bias_correction_kl"],
            delta=o["delta"],
            steps_per_generation=accumulation,
            sapo_temperature_pos=1.0,
            sapo_temperature_neg=1.05,
            vespo_k_pos=2.0,
            vespo_lambda_pos=3.0,
            vespo_k_neg=3.0,
            vespo_lambda_neg=2.0,
        ),
        loss_type=o["loss_type"],
        epsilon_low=o["epsilon"],
        epsilon_high=o["epsilon_high"],
        use_vllm=o["vllm"],
        vllm_importance_sampling_correction=o["vllm"],
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=accumulation,
        max_completion_length=max_len,
        accelerator=SimpleNamespace(
            num_processes=processes, reduce=same, gather=same, pad_across_processes=same, sync_gradients=True
        ),
        _entropy_bonus_enabled=o["entropy_coef"] != 0.0,
        entropy_coef=o["entropy_coef"],
        use_adaptive_entropy=False,
        aux_loss_enabled=False,
        _metrics=metrics,
        get_off_policy_mask=GRPOTrainer.get_off_policy_mask,
        get_gamma_weights=GRPOTrainer.get_gamma_weights,
    )
    trainer.get_high_entropy_mask = lambda *a: GRPOTrainer.get_high_entropy_mask(trainer, *a)
    batch, length = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(batch, 1, dtype=torch.long),
        "prompt_mask": torch.ones(batch, 1, dtype=torch.long),
        "completion_ids": torch.zeros(batch, length, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": torch.tensor(
            float(mask.sum()) * accumulation if num_items is None else num_items
        ),
    }
    if o["vllm"]:
        inputs["sampling_per_token_logps"] = sampling
        inputs["importance_sampling_ratio"] = ratio
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    return loss, {key: values[-1] for key, values in metrics["train"].items()}


TRL_OPTION_CASES = {
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence"},
    "gspo kl corrected": {"loss_type": "grpo", "importance_sampling_level": "sequence", "beta": 0.04,
                          "use_bias_correction_kl": True},
    "luspo": {"loss_type": "luspo", "importance_sampling_level": "sequence"},
    "two-sided clip": {"loss_type": "dapo", "delta": 1.3},
    "cispo": {"loss_type": "cispo", "epsilon_high": 1.1},
    "sapo": {"loss_type": "sapo"},
    "vespo": {"loss_type": "vespo"},
    "vespo vllm": {"loss_type": "vespo", "vllm": True},
    "high entropy tokens": {"loss_type": "dapo", "top_entropy_quantile": 0.5},
    "entropy bonus": {"loss_type": "grpo", "entropy_coef": 0.01},
    "entropy bonus on masked tokens": {"loss_type": "bnpo", "entropy_coef": 0.01, "top_entropy_quantile": 0.6},
    "off-policy mask": {"loss_type": "dapo", "off_policy_mask_threshold": 0.02},
    "off-policy mask vllm": {"loss_type": "dapo", "off_policy_mask_threshold": 0.02, "vllm": True},
    "kl corrected": {"loss_type": "bnpo", "beta": 0.04, "use_bias_correction_kl": True},
    "vllm correction dr_grpo": {"loss_type": "dr_grpo", "vllm": True},
    "vllm correction dapo kl": {"loss_type": "dapo", "vllm": True, "beta": 0.04, "use_bias_correction_kl": True},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TRL_OPTION_CASES))
def test_every_grpo_family_option_matches_trl(case):
    """Loss, gradient and stats equal TRL 1.16's own `_compute_loss` to 1e-6, padding included."""
    from vaur1.rl.loss import importance_weights
    from vaur1.rl.objectives import high_entropy_mask

    options = TRL_OPTION_CASES[case]
    torch.manual_seed(3)
    logp = (-2 * torch.rand(4, 6)).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(4, 6)
    ref = logp.detach() + 0.2 * torch.randn(4, 6)
    sampling = old + 0.05 * torch.randn(4, 6)
    adv = torch.randn(4)
    entropies = torch.rand(4, 6) * 3
    mask = torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])
    ratio = (
        importance_weights(old, sampling, mask.float(), "token_truncate", None, 3.0)
        if options.get("vllm")
        else None
    )
    trl_loss, trl_stats = _trl_loss_with_options(
        logp, old, ref, adv, mask, entropies, sampling, ratio, options
    )
    (trl_grad,) = torch.autograd.grad(trl_loss, logp)

    quantile = options.get("top_entropy_quantile", 1.0)
    loss, stats = policy_loss(
        logp,
        old,
        ref if options.get("beta") else None,
        adv,
        mask,
        loss_type=options["loss_type"],
        epsilon=0.2,
        epsilon_high=options.get("epsilon_high", 0.28),
        beta=options.get("beta", 0.0),
        max_completion_length=9,
        num_items_in_batch=float(mask.sum()) * 2,
        gradient_accumulation_steps=2,
        importance=ratio,
        importance_sampling_level=options.get("importance_sampling_level", "token"),
        delta=options.get("delta"),
        use_bias_correction_kl=options.get("use_bias_correction_kl", False),
        off_policy_mask_threshold=options.get("off_policy_mask_threshold"),
        sampling_logp=sampling if options.get("vllm") else None,
        entropy_mask=high_entropy_mask(entropies, mask, quantile) if quantile < 1 else None,
        entropies=entropies,
        entropy_coef=options.get("entropy_coef", 0.0),
        options=GRPOLossConfig().options(),
    )
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6), case
    assert torch.allclose(grad, trl_grad, atol=1e-6), case
    assert grad.abs().sum() > 0, case  # the case trains something
    shared = set(stats) & set(trl_stats)
    assert shared >= {key for key in ("kl", "cispo_clip_ratio", "vespo/phi_seq_mean") if key in trl_stats}
    for key in sorted(shared - {"policy_loss"}):
        assert stats[key].item() == pytest.approx(trl_stats[key], abs=1e-6), (case, key)


def test_importance_weights_by_hand_in_every_mode():
    """exp(trainer - sampler) per token, or of the masked sum per sequence, clipped or masked to
    [clip_min, clip_max]; padding and NaN (a token the sampler could not score) count as ratio 1."""
    from vaur1.rl.loss import importance_weights

    trainer = torch.tensor([[0.0, LN(2.0), LN(4.0)], [LN(0.25), 0.0, 5.0]])
    sampler = torch.tensor([[0.0, 0.0, 0.0], [0.0, float("nan"), 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    table = {
        # mode, clip_min, clip_max: expected
        ("token_truncate", None, 3.0): [[1.0, 2.0, 3.0], [0.25, 1.0, 1.0]],
        ("token_truncate", 0.5, 3.0): [[1.0, 2.0, 3.0], [0.5, 1.0, 1.0]],
        ("token_mask", None, 3.0): [[1.0, 2.0, 0.0], [0.25, 1.0, 1.0]],
        ("token_mask", 0.5, 3.0): [[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]],
        ("sequence_truncate", None, 3.0): [[3.0], [0.25]],  # 1 x 2 x 4 = 8 -> 3; 0.25 x 1
        ("sequence_truncate", None, None): [[8.0], [0.25]],
        ("sequence_mask", None, 3.0): [[0.0], [0.25]],
        ("sequence_mask", 0.5, 10.0): [[8.0], [0.0]],
    }
    for (mode, low, high), expected in table.items():
        assert_values(importance_weights(trainer, sampler, mask, mode, low, high), expected)


def test_normalize_then_sum_matches_trl():
    """GDPO's aggregation against TRL 1.16's `normalize_then_sum` branch (a transcription using its
    own nanstd), with a reward that does not apply to some completions (NaN) and one that none do."""
    from trl.trainer.utils import nanstd

    from vaur1.rl.loss import normalized_sum_advantages

    torch.manual_seed(4)
    parts = torch.randint(0, 3, (12, 3)).float()
    parts[:4, 2] = float("nan")  # a reward that does not apply to the first group
    parts[8, :] = float("nan")  # a completion no reward applies to
    weights = torch.tensor([1.0, 0.5, 2.0]).expand(12, 3)
    ours = normalized_sum_advantages(parts, weights, 4)

    grouped = parts.view(-1, 4, 3)
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = nanstd(grouped, dim=1, keepdim=True)
    reward_k = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, 3)
    rewards = (reward_k * weights).nansum(dim=1)
    rewards[torch.isnan(parts).all(dim=1)] = torch.nan
    expected = torch.nan_to_num((rewards - torch.nanmean(rewards)) / (nanstd(rewards) + 1e-4), nan=0.0)
    assert torch.allclose(ours.advantages, expected, atol=1e-6)
    assert ours.advantages[8] == 0.0


def test_a_new_objective_is_one_function_and_its_registration():
    """docs/algorithms.md's example: a registered surrogate is a loss_type the config and the loss take."""
    from vaur1.rl.objectives import LOSSES, SurrogateInputs, register_loss

    @register_loss("capped_ratio_test", aggregation="sequence_mean")
    def capped(inputs: SurrogateInputs):
        return -inputs.coef.clamp(max=2.0) * inputs.advantages, {}

    try:
        GRPOLossConfig(loss_type="capped_ratio_test").validate()
        logp = (-torch.rand(2, 3)).requires_grad_()
        mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
        adv = torch.tensor([1.0, -1.0])
        loss, _ = policy_loss(logp, None, None, adv, mask, loss_type="capped_ratio_test", epsilon=0.2,
                              epsilon_high=None, beta=0.0)  # fmt: skip
        # ratio 1 everywhere: -(A) averaged per sequence, then over sequences
        assert loss.item() == pytest.approx(0.0)
        (grad,) = torch.autograd.grad(loss, logp)
        assert torch.allclose(grad, torch.tensor([[-0.25, -0.25, 0.0], [1 / 6, 1 / 6, 1 / 6]]))
    finally:
        del LOSSES["capped_ratio_test"]


def test_temporal_bonus_equals_video_r1s_rule():
    """A transcription of Video-R1's T-GRPO (its GRPO trainer): when the ordered group's mean accuracy is
    at least 0.8 x the shuffled group's, every ordered completion with accuracy > 0.1 gets +0.3."""
    from vaur1.rl.temporal import temporal_bonus

    def video_r1(accuracy: torch.Tensor, shuffled_accuracy: torch.Tensor) -> torch.Tensor:
        temporal_rewards_per_func = accuracy.clone().unsqueeze(1)
        acc_mean = temporal_rewards_per_func[:, 0].mean()
        shuffled_acc_mean = shuffled_accuracy.mean()
        if acc_mean >= 0.8 * shuffled_acc_mean:
            mask = temporal_rewards_per_func[:, 0] > 0.1
            temporal_rewards_per_func[mask, 0] = temporal_rewards_per_func[mask, 0] + 0.3
        return temporal_rewards_per_func[:, 0]

    cases = [
        ([1.0, 0.0, 1.0, 0.05], [0.0, 1.0]),  # ordered 0.51 >= 0.8 x 0.5: paid
        ([1.0, 0.0, 0.0, 0.0], [1.0, 1.0]),  # ordered 0.25 < 0.8: not paid
        ([0.4, 0.4, 0.4, 0.4], [0.5, 0.5]),  # exactly at the margin: paid
        ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0]),  # nobody right: 0 >= 0, but no one above 0.1
    ]
    for ordered, shuffled in cases:
        ordered, shuffled = torch.tensor(ordered), torch.tensor(shuffled)
        ours, _ = temporal_bonus(ordered, shuffled, bonus=0.3, margin=0.8, threshold=0.1)
        assert torch.allclose(ours, video_r1(ordered, shuffled)), (ordered, shuffled)


def test_dynamic_sampling_keeps_the_groups_verl_keeps():
    """A transcription of verl's DAPO trainer filter: per prompt uid, the std of its trajectories' metric;
    kept when std > 0 or the prompt has a single trajectory."""
    from collections import defaultdict

    from vaur1.rl.dynamic import informative

    def verl(uids, metric_vals):
        prompt_uid2metric_vals = defaultdict(list)
        for uid, metric_val in zip(uids, metric_vals, strict=True):
            prompt_uid2metric_vals[uid].append(metric_val)
        prompt_uid2metric_std = {uid: np.std(vals) for uid, vals in prompt_uid2metric_vals.items()}
        return [
            uid
            for uid, std in prompt_uid2metric_std.items()
            if std > 0 or len(prompt_uid2metric_vals[uid]) == 1
        ]

    rng = np.random.default_rng(0)
    for group in (1, 2, 4):
        rewards = rng.choice([0.0, 0.5, 1.0], size=group * 6).tolist()
        rewards[:group] = [1.0] * group  # one group with no spread
        uids = [f"p{i // group}" for i in range(len(rewards))]
        kept = [f"p{i}" for i, flag in enumerate(informative(rewards, group)) if flag]
        assert kept == verl(uids, rewards), group
