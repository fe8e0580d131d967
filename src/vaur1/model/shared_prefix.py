"""One forward pass per prompt group: the prompt once, its G completions after it, each seeing only
the prompt and itself.

In video GRPO the prompt (system, video, question) is most of each row: 1,800 visual tokens for a
short clip against completions of a few hundred. Scoring G completions as G rows computes that
prompt G times, in forward and in backward. Here each group becomes one row,

    [ prompt | completion 1 | completion 2 | ... | completion G ]

whose tokens carry the positions they have in their own unshared row: the M-RoPE positions are
computed for the unshared rows by the model's own rule and copied over, so a completion starts
where the prompt ends whatever the video did to the positions. Embeddings, projections, MLPs and
norms run over the packed row token by token. Attention is split the way Prefix Grouper (arXiv
2506.05433) splits it: the prompt attends to itself causally, and the G completions, batched,
attend to the prompt's keys and values and causally to their own, never to each other; so its cost
is `P^2 / 2 + G * L * (P + L / 2)`, not `G * (P + L)^2 / 2`. Each completion token's log-prob is
read from the hidden state before it (the prompt's last state for a first token). The log-probs
are those of the unshared rows up to float rounding, and the gradients of all G completions reach
the prompt's tokens once, summed.

    packed = pack_groups(model, inputs, completion_ids, completion_mask, group=G)
    with target_logprobs(model, completion_ids, temperature, positions=packed.positions) as result:
        model(**packed.inputs, mm_encoder_outputs=..., logits_to_keep=0, use_cache=False)

The split runs inside transformers' own sdpa or eager kernels: `use_grouped_attention(model)`
registers an attention function that is the model's kernel for every ordinary call (generation
included) and splits only a call that carries a group layout, which reaches every layer as a
keyword argument, gradient checkpointing's recomputation included. flash-attention is left
alone (`shares_prefix` is False there) and keeps one row per completion.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

import torch

BASE_KERNELS = ("sdpa", "eager")  # the kernels the split runs on
GROUPED = "vaur1_grouped_"  # + base kernel: the registered attention function's name
LAYOUT_KEY = "shared_prefix_layout"  # the keyword argument that carries the layout to the attention


@dataclass
class GroupLayout:
    """Where each packed row's prompt and completions lie, for the attention split."""

    prompts: list[int]  # prompt tokens of each packed row (its first P positions)
    suffix_index: torch.Tensor  # (rows, G, L) position of completion token l in the packed row
    suffix_valid: torch.Tensor  # (rows, G, L) bool: a real token (not padding to the longest)


@dataclass
class PackedGroups:
    """The model inputs of one row per prompt group and where each completion token is predicted."""

    inputs: dict[str, Any]  # input_ids, position_ids (3, rows, T), the layout, ...
    positions: torch.Tensor  # (completions, L) flat index into (rows * T) of the state predicting each token
    tokens: int  # tokens the packed rows compute (their padding included)


def _unwrapped(model: Any) -> Any:
    while hasattr(model, "module"):  # DistributedDataParallel, DeepSpeed
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model


def _language_config(model: Any) -> Any:
    return _unwrapped(model).model.language_model.config


def _base_kernel(model: Any) -> str | None:
    name = _language_config(model)._attn_implementation
    name = name.removeprefix(GROUPED) if isinstance(name, str) else name
    return name if name in BASE_KERNELS else None


def shares_prefix(model: Any) -> bool:
    """Whether `model`'s attention kernel is one the split runs on (sdpa or eager)."""
    return _base_kernel(model) is not None


def use_grouped_attention(model: Any) -> None:
    """Make the language model's attention the grouped function over its own kernel (idempotent): the
    same computation for every call without a layout. Its name is not written into saved configs."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    base = _base_kernel(model)
    if base is None:
        raise ValueError("the shared prefix needs sdpa or eager attention")
    name = GROUPED + base
    AttentionInterface.register(name, _grouped_attention)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    _language_config(model)._attn_implementation = name


def _kernel(module: torch.nn.Module):
    """(the kernel function, its name) of an attention module whose config names the grouped function."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    base = module.config._attn_implementation.removeprefix(GROUPED)
    if base == "eager":  # each model file has its own eager function
        return sys.modules[type(module).__module__].eager_attention_forward, base
    return ALL_ATTENTION_FUNCTIONS[base], base


def _grouped_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """transformers' attention signature: query (B, H, T, d), key/value (B, Hkv, T, d) ->
    ((B, T, H, d), weights). Without a layout, the kernel itself."""
    kernel, base = _kernel(module)
    layout: GroupLayout | None = kwargs.pop(LAYOUT_KEY, None)
    if layout is None:
        return kernel(module, query, key, value, attention_mask, *args, **kwargs)
    kwargs.pop("position_ids", None)  # packed positions would tell flash-style kernels to unpack
    rows = []
    for row, prompt in enumerate(layout.prompts):
        q, k, v = query[row], key[row], value[row]  # (H, T, d)
        prefix, _ = kernel(
            module,
            q[None, :, :prompt],
            k[None, :, :prompt],
            v[None, :, :prompt],
            _prefix_mask(base, prompt, query),
            *args,
            **kwargs,
        )
        index, valid = layout.suffix_index[row], layout.suffix_valid[row]  # (G, L)
        group = index.shape[0]
        own_k, own_v = k[:, index].transpose(0, 1), v[:, index].transpose(0, 1)  # (G, Hkv, L, d)
        shared_k = k[None, :, :prompt].expand(group, -1, -1, -1)
        shared_v = v[None, :, :prompt].expand(group, -1, -1, -1)
        suffix, _ = kernel(
            module,
            q[:, index].transpose(0, 1),
            torch.cat([shared_k, own_k], dim=2),
            torch.cat([shared_v, own_v], dim=2),
            _suffix_mask(base, prompt, valid, query),
            *args,
            **kwargs,
        )  # (G, L, H, d)
        places = torch.cat([torch.arange(prompt, device=index.device), index[valid]])
        values = torch.cat([prefix[0], suffix[valid]])
        out = values.new_zeros(query.shape[2], *values.shape[1:])
        rows.append(out.index_copy(0, places, values))
    return torch.stack(rows), None


def _prefix_mask(base: str, prompt: int, query: torch.Tensor) -> torch.Tensor | None:
    """sdpa: none (its causal kernel, no mask kept); eager: the additive causal mask."""
    if base == "sdpa":
        return None
    causal = torch.ones(prompt, prompt, dtype=torch.bool, device=query.device).tril()
    return _additive(causal[None, None], query)


def _suffix_mask(base: str, prompt: int, valid: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """(G, 1, L, P + L): every completion token sees the whole prompt, and its own completion's real
    tokens up to itself; a padding query sees the prompt, so no row of the softmax is empty."""
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    own = causal[None] & valid[:, None, :]
    shared = torch.ones(valid.shape[0], length, prompt, dtype=torch.bool, device=valid.device)
    allowed = torch.cat([shared, own], dim=2)[:, None]
    return allowed if base == "sdpa" else _additive(allowed, query)


def _additive(allowed: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    dtype = query.dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


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
    prompt_width = inputs["input_ids"].shape[1] - length
    positions = unshared_positions(model, inputs)
    lengths = completion_mask.sum(dim=1).tolist()
    device = completion_ids.device
    types = inputs.get("mm_token_type_ids")
    pieces = []
    for first in range(0, rows, group):
        keep = inputs["attention_mask"][first, :prompt_width].bool()
        ids = [inputs["input_ids"][first, :prompt_width][keep]]
        place = [positions[:, first, :prompt_width][:, keep]]
        kinds = [types[first, :prompt_width][keep]] if types is not None else []
        for row in range(first, first + group):
            used = int(lengths[row])
            ids.append(completion_ids[row, :used])
            place.append(positions[:, row, prompt_width : prompt_width + used])
            if kinds:
                kinds.append(torch.zeros(used, dtype=types.dtype, device=device))
        pieces.append((ids, place, kinds))
    total = max(sum(len(piece) for piece in ids) for ids, _, _ in pieces)
    longest = max(1, int(max(lengths)))
    packed_ids = torch.zeros(len(pieces), total, dtype=inputs["input_ids"].dtype, device=device)
    packed_positions = torch.zeros(3, len(pieces), total, dtype=positions.dtype, device=device)
    packed_types = torch.zeros(
        len(pieces), total, dtype=types.dtype if types is not None else torch.int, device=device
    )
    suffix_index = torch.zeros(len(pieces), group, longest, dtype=torch.long, device=device)
    suffix_valid = torch.zeros(len(pieces), group, longest, dtype=torch.bool, device=device)
    targets = torch.zeros(rows, length, dtype=torch.long, device=device)
    prompts = []
    for index, (ids, place, kinds) in enumerate(pieces):
        used = sum(len(piece) for piece in ids)
        packed_ids[index, :used] = torch.cat(ids)
        packed_positions[:, index, :used] = torch.cat(place, dim=1)
        if kinds:
            packed_types[index, :used] = torch.cat(kinds)
        prompt = len(ids[0])
        prompts.append(prompt)
        start = prompt
        for offset, piece in enumerate(ids[1:]):
            size, stop = len(piece), start + len(piece)
            suffix_index[index, offset, :size] = torch.arange(start, stop, device=device)
            suffix_valid[index, offset, :size] = True
            before = torch.arange(start - 1, stop - 1, device=device)
            before[0:1] = prompt - 1  # a first token is predicted from the prompt's last state
            row = index * group + offset
            targets[row, :size] = index * total + before
            targets[row, size:] = index * total + prompt - 1  # padding: any state; the caller masks it
            start = stop
    layout = GroupLayout(prompts=prompts, suffix_index=suffix_index, suffix_valid=suffix_valid)
    packed = {
        "input_ids": packed_ids,
        # read by no kernel (the layout replaces it); a 4-D tensor, so transformers builds no mask
        "attention_mask": torch.ones(len(pieces), 1, 1, 1, dtype=torch.bool, device=device),
        "position_ids": packed_positions,
        LAYOUT_KEY: layout,
    }
    if types is not None:
        packed["mm_token_type_ids"] = packed_types
    return PackedGroups(inputs=packed, positions=targets, tokens=len(pieces) * total)
