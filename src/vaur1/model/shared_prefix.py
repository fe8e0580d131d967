"""One forward pass per prompt group: the prompt once, its G completions after it, each seeing only
the prompt and itself.

In video GRPO the prompt (system, video, question) is most of each row: 1,800 visual tokens for a
short clip against completions of a few hundred. Scoring G completions as G rows computes that
prompt G times, in forward and in backward. Here each group becomes one row,

    [ prompt | completion 1 | completion 2 | ... | completion G ]

with a block attention mask (every token sees the prompt causally, a completion token sees its own
completion causally and no other) and the positions each token has in its own unshared row: the
M-RoPE positions are computed for the unshared rows by the model's own rule and copied over, so a
completion starts where the prompt ends whatever the video did to the positions. Each completion
token's log-prob is read from the hidden state before it (the prompt's last token for a first
token), so the log-probs are those of the unshared rows up to float rounding, and the gradients of
all G completions reach the prompt's tokens once, summed.

    packed = pack_groups(model, inputs, completion_ids, completion_mask, group=G)
    with target_logprobs(model, completion_ids, temperature, positions=packed.positions) as result:
        model(**packed.inputs, mm_encoder_outputs=..., logits_to_keep=0, use_cache=False)

The mask is a dense (rows, 1, T, T) tensor, which the sdpa and eager attention kernels take;
flash-attention takes no such mask, so `shares_prefix(model)` is False there and the caller keeps
one row per completion. The packing strips the completions' padding too, so a group costs
`prompt + sum of its completions' lengths` tokens instead of `G x (prompt + longest completion)`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

MASKED_ATTENTION = ("sdpa", "eager")  # the attention kernels that take a dense 4-D mask


@dataclass
class PackedGroups:
    """The model inputs of one row per prompt group and where each completion token is predicted."""

    inputs: dict[str, Any]  # input_ids, attention_mask (rows, 1, T, T), position_ids (3, rows, T), ...
    positions: (
        torch.Tensor
    )  # (completions, L) flat index into (groups * T) of the state predicting each token
    tokens: int  # tokens the packed rows compute (their padding included)


def _unwrapped(model: Any) -> Any:
    while hasattr(model, "module"):  # DistributedDataParallel, DeepSpeed
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model


def shares_prefix(model: Any) -> bool:
    """Whether `model`'s attention kernel takes the block mask the shared prefix needs."""
    return getattr(_unwrapped(model).config, "_attn_implementation", None) in MASKED_ATTENTION


def unshared_positions(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """(3, rows, width) M-RoPE positions of the unshared rows, by the model's own rule (which
    `vaur1.model.rope` sets for Qwen2-VL and Qwen2.5-VL)."""
    inner = _unwrapped(model).model
    accepted = inspect.signature(inner.compute_3d_position_ids).parameters
    arguments = {key: inputs.get(key) for key in accepted if key != "self"}
    arguments |= {"inputs_embeds": None, "past_key_values": None}
    positions = inner.compute_3d_position_ids(**arguments)
    if positions is None:
        raise ValueError(
            "the model computed no M-RoPE positions for these inputs (no video grid or token types)"
        )
    return positions


def pack_groups(
    model: Any,
    inputs: dict[str, Any],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    group: int,
) -> PackedGroups:
    """`inputs` are the unshared rows (prompt-major: prompt i's G copies, each followed by its
    completion, as `append_completions` builds them); the packed rows hold each prompt once."""
    rows, length = completion_ids.shape
    if rows % group:
        raise ValueError(f"{rows} completion rows are not whole groups of {group}")
    width = inputs["input_ids"].shape[1]
    prompt_width = width - length
    positions = unshared_positions(model, inputs)
    lengths = completion_mask.sum(dim=1).tolist()
    pieces = []
    for first in range(0, rows, group):
        keep = inputs["attention_mask"][first, :prompt_width].bool()
        ids = [inputs["input_ids"][first, :prompt_width][keep]]
        place = [positions[:, first, :prompt_width][:, keep]]
        types = (
            [inputs["mm_token_type_ids"][first, :prompt_width][keep]] if "mm_token_type_ids" in inputs else []
        )
        for row in range(first, first + group):
            used = int(lengths[row])
            ids.append(completion_ids[row, :used])
            place.append(positions[:, row, prompt_width : prompt_width + used])
            if types:
                types.append(torch.zeros(used, dtype=types[0].dtype, device=types[0].device))
        pieces.append((int(keep.sum()), ids, place, types))
    total = max(sum(len(piece) for piece in ids) for _, ids, _, _ in pieces)
    device = completion_ids.device
    packed_ids = torch.zeros(len(pieces), total, dtype=inputs["input_ids"].dtype, device=device)
    packed_positions = torch.zeros(3, len(pieces), total, dtype=positions.dtype, device=device)
    packed_types = torch.zeros(len(pieces), total, dtype=torch.int, device=device)
    allowed = torch.zeros(len(pieces), 1, total, total, dtype=torch.bool, device=device)
    targets = torch.zeros(rows, length, dtype=torch.long, device=device)
    causal = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    for index, (prompt, ids, place, types) in enumerate(pieces):
        used = sum(len(piece) for piece in ids)
        packed_ids[index, :used] = torch.cat(ids)
        packed_positions[:, index, :used] = torch.cat(place, dim=1)
        if types:
            packed_types[index, :used] = torch.cat(types).to(packed_types.dtype)
        allowed[index, 0, :prompt, :prompt] = causal[:prompt, :prompt]
        base = index * total
        start = prompt
        for offset, piece in enumerate(ids[1:]):
            size, stop = len(piece), start + len(piece)
            allowed[index, 0, start:stop, :prompt] = True
            allowed[index, 0, start:stop, start:stop] = causal[:size, :size]
            before = torch.arange(start - 1, stop - 1, device=device)
            before[0:1] = prompt - 1  # a first token is predicted from the prompt's last state
            row = index * group + offset
            targets[row, :size] = base + before
            targets[row, size:] = base + prompt - 1  # padding: any state; the caller masks it
            start = stop
        idle = torch.arange(used, total, device=device)
        allowed[index, 0, idle, idle] = True  # padding sees itself: no row of the softmax is empty
    packed = {
        "input_ids": packed_ids,
        "attention_mask": _attention_mask(model, allowed),
        "position_ids": packed_positions,
    }
    if "mm_token_type_ids" in inputs:
        packed["mm_token_type_ids"] = packed_types.to(inputs["mm_token_type_ids"].dtype)
    return PackedGroups(inputs=packed, positions=targets, tokens=len(pieces) * total)


def _attention_mask(model: Any, allowed: torch.Tensor) -> torch.Tensor:
    """sdpa reads a boolean mask; eager adds the mask to its scores."""
    inner = _unwrapped(model)
    if inner.config._attn_implementation == "sdpa":
        return allowed
    dtype = next(inner.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )
