"""Log-probabilities of given tokens in fp32, from the model's own forward pass, without its logits.

GRPO's ratio and KL and SFT's cross-entropy are differences of log-probs of a few nats; from bf16
logits (DeepSpeed's engine computes in bf16, with no autocast to fall back on) their resolution is
0.03-0.06 at |logp| 4-8. So the output layer runs in fp32 here, whatever the engine, and computes
only what the loss needs: for each position, the target's log-prob (and, without gradients, the
entropy). It walks the vocabulary in chunks with a running log-sum-exp and recomputes each chunk in
backward, so neither a full `rows x length x vocab` logits tensor nor a second copy of it for the
temperature is ever kept: the memory is one `positions x chunk` block.

    with target_logprobs(model, targets, temperature=1.0) as result:   # targets: (B, L)
        model(**inputs, logits_to_keep=L + 1, use_cache=False)
    result.logps, result.entropies                                      # (B, L) fp32 each

It works by making the output layer (`get_output_embeddings()`) compute these in place of its
logits for the one call: the layer still runs inside the model's own forward, which is where
DeepSpeed ZeRO-3 gathers its weight and FSDP2 unshards it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

VOCAB_CHUNK = 8192  # vocabulary rows per block: positions x 8192 fp32 values at a time


class _LinearTargetLogprob(torch.autograd.Function):
    """logp[n] = log_softmax((hidden @ weight.T + bias) / T)[n, targets[n]], in fp32, chunked over the
    vocabulary; also the entropy of each row's distribution (no gradient)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature: float, chunk: int):
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.to(_compute_dtype(hidden))
            rows = h.shape[0]
            running_max = h.new_full((rows,), float("-inf"))
            sum_exp = h.new_zeros(rows)
            sum_exp_logit = h.new_zeros(rows)  # sum of exp(z - max) * z: the entropy's expectation term
            selected = h.new_zeros(rows)
            for start in range(0, weight.shape[0], chunk):
                logits = _block(h, weight, bias, start, chunk, temperature)
                _take_targets(selected, logits, targets, start)
                block_max = torch.maximum(running_max, logits.max(dim=-1).values)
                rescale = torch.exp(running_max - block_max)
                exp = torch.exp(logits - block_max[:, None])
                sum_exp = sum_exp * rescale + exp.sum(dim=-1)
                sum_exp_logit = sum_exp_logit * rescale + (exp * logits).sum(dim=-1)
                running_max = block_max
            logsumexp = running_max + torch.log(sum_exp)
            entropy = logsumexp - sum_exp_logit / sum_exp
        ctx.save_for_backward(hidden, weight, bias, targets, logsumexp)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.mark_non_differentiable(entropy)
        return selected - logsumexp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hidden, weight, bias, targets, logsumexp = ctx.saved_tensors
        temperature, chunk = ctx.temperature, ctx.chunk
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.to(_compute_dtype(hidden))
            g = grad_logp.to(h.dtype)
            grad_hidden = torch.zeros_like(h) if ctx.needs_input_grad[0] else None
            grad_weight = torch.zeros_like(weight, dtype=h.dtype) if ctx.needs_input_grad[1] else None
            grad_bias = (
                torch.zeros_like(bias, dtype=h.dtype)
                if bias is not None and ctx.needs_input_grad[2]
                else None
            )
            for start in range(0, weight.shape[0], chunk):
                logits = _block(h, weight, bias, start, chunk, temperature)
                # d logp / d z = onehot(target) - softmax(z); z = logits, already divided by T
                dz = torch.exp(logits - logsumexp[:, None]).mul_(-g[:, None])
                inside = (targets >= start) & (targets < start + logits.shape[1])
                rows = inside.nonzero().squeeze(-1)
                dz[rows, targets[rows] - start] += g[rows]
                dz.div_(temperature)
                stop = start + logits.shape[1]
                if grad_hidden is not None:
                    grad_hidden += dz @ weight[start:stop].to(h.dtype)
                if grad_weight is not None:
                    grad_weight[start:stop] = dz.T @ h
                if grad_bias is not None:
                    grad_bias[start:stop] = dz.sum(dim=0)
        return (
            None if grad_hidden is None else grad_hidden.to(hidden.dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            None,
            None,
            None,
        )


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """fp32, or fp64 for fp64 inputs (the gradient checks)."""
    return torch.float64 if hidden.dtype == torch.float64 else torch.float32


def _block(h, weight, bias, start: int, chunk: int, temperature: float) -> torch.Tensor:
    """Logits in `h`'s dtype (fp32 or fp64) of vocabulary rows [start, start + chunk), divided by the
    temperature in place."""
    logits = h @ weight[start : start + chunk].to(h.dtype).T
    if bias is not None:
        logits += bias[start : start + chunk].to(h.dtype)
    return logits.div_(temperature)


def _take_targets(selected: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, start: int) -> None:
    inside = (targets >= start) & (targets < start + logits.shape[1])
    rows = inside.nonzero().squeeze(-1)
    selected[rows] = logits[rows, targets[rows] - start]


def linear_target_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk: int = VOCAB_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, entropies) in fp32 of `targets` (...,) under logits `hidden @ weight.T + bias`
    divided by `temperature`; `hidden` is (..., H). Gradients reach `hidden`, `weight` and `bias`."""
    shape = targets.shape
    logp, entropy = _LinearTargetLogprob.apply(
        hidden.reshape(-1, hidden.shape[-1]), weight, bias, targets.reshape(-1), float(temperature), chunk
    )
    return logp.view(shape), entropy.view(shape)


@dataclass
class TargetLogprobs:
    logps: torch.Tensor | None = None  # (B, L) fp32
    entropies: torch.Tensor | None = None  # (B, L) fp32, no gradient


def output_layer(model: Any) -> torch.nn.Module:
    """The output (lm_head) layer of a possibly wrapped model (DDP, DeepSpeed, PEFT)."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model.get_output_embeddings()


@contextlib.contextmanager
def target_logprobs(
    model: Any,
    targets: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int | None = None,
    positions: torch.Tensor | None = None,
) -> Iterator[TargetLogprobs]:
    """For one forward call of `model` with `logits_to_keep = L + 1`: the fp32 log-probs and entropies
    of `targets` (B, L), token t of a row predicted from the position before it. Targets equal to
    `ignore_index` get log-prob 0 (mask them in the loss).

    With `positions` (B, L), the call keeps every position (`logits_to_keep=0`) and target [b, t] is
    predicted from the state at flat index `positions[b, t]` of the (rows x length) output, wherever
    it is (the shared-prefix layout of `vaur1.model.shared_prefix`)."""
    head = output_layer(model)
    result = TargetLogprobs()
    ignored = None if ignore_index is None else targets == ignore_index
    safe = targets if ignored is None else targets.masked_fill(ignored, 0)

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        length = safe.shape[1]
        if positions is not None:
            states = hidden.reshape(-1, hidden.shape[-1])[positions]
        elif hidden.shape[1] != length + 1:
            raise ValueError(
                f"call the model with logits_to_keep={length + 1}, got {hidden.shape[1]} positions"
            )
        else:
            states = hidden[:, :-1]
        logps, entropies = linear_target_logprobs(
            states, head.weight, safe, getattr(head, "bias", None), temperature
        )
        if ignored is not None:
            logps = logps.masked_fill(ignored, 0.0)
        result.entropies = entropies
        return logps

    def keep_output(_module, _inputs, output: torch.Tensor) -> None:
        # the layer's output after every earlier hook: ZeRO-3's wraps it so that backward gathers the
        # weight again, so the loss must use this tensor, not the one `forward` returned
        result.logps = output

    head.forward = forward
    hook = head.register_forward_hook(keep_output)
    try:
        yield result
    finally:
        hook.remove()
        del head.forward
    if result.logps is None:
        raise RuntimeError("the model's forward never reached its output layer")
