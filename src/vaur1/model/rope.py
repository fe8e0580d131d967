"""M-RoPE positions as Qwen2-VL and Qwen2.5-VL were trained with, for every vaur1 path.

Text tokens take 1-D positions, a video's tokens 3-D (time, height, width) positions that start where
the text before it ends. Where the text *after* a video starts is where transformers 5.23 and the
reference part ways:

  * the reference rule (the Qwen team's `get_rope_index` in transformers 4.45-4.5x, which the released
    checkpoints were trained and evaluated with, and vLLM): the highest position of the video + 1;
  * transformers 5.23: the video's start + max(h, w) / merge, which leaves out the temporal extent.
    With Qwen2.5-VL's absolute time positions (2 per second) a 60 s clip's last frames sit at +116
    while the question after it restarts at +12: the text overlaps the video in time, which is what
    temporal grounding reads.

`use_reference_positions(model)` gives a loaded Qwen2-VL or Qwen2.5-VL model the reference rule;
`load_model` applies it, so training, evaluation, analysis and the vLLM parity tests all use it.
Qwen3-VL is left as transformers has it: its videos are one frame per vision block with timestamps
in the text, and for a single frame both rules give the same positions.
"""

from __future__ import annotations

import itertools
import types

import torch

PATCHED = ("qwen2_vl", "qwen2_5_vl")


def vision_positions(
    start: int, grid_thw: torch.Tensor, merge: int, time_interval: float, device: torch.device
) -> torch.Tensor:
    """(3, t*h*w) positions of one image or video's tokens: time scaled by `time_interval`, then floored."""
    t, h, w = int(grid_thw[0]), int(grid_thw[1]) // merge, int(grid_thw[2]) // merge
    time = (torch.arange(t, device=device) * time_interval).long()
    grid = torch.meshgrid(time, torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack(grid).reshape(3, -1) + start


def reference_rope_index(
    self,
    input_ids: torch.LongTensor,
    mm_token_type_ids: torch.IntTensor,
    image_grid_thw: torch.LongTensor | None = None,
    video_grid_thw: torch.LongTensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' `get_rope_index` (same arguments and results) with the reference rule: text after
    an image or video continues at the highest position so far + 1."""
    merge = self.config.vision_config.spatial_merge_size
    tokens_per_second = getattr(self.config.vision_config, "tokens_per_second", None)
    device = input_ids.device
    position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=device)
    grids = {
        1: iter(image_grid_thw) if image_grid_thw is not None else None,
        2: iter(video_grid_thw) if video_grid_thw is not None else None,
    }
    seconds = iter(second_per_grid_ts) if second_per_grid_ts is not None else itertools.repeat(1.0)
    deltas = []
    for row, ids in enumerate(input_ids):
        types_ = mm_token_type_ids[row]
        if attention_mask is not None:
            keep = attention_mask[row].bool()
            ids, types_ = ids[keep], types_[keep]
        pieces, position = [], 0
        for modality, group in itertools.groupby(types_.tolist()):
            length = len(list(group))
            if modality == 0:
                pieces.append(torch.arange(length, device=device).expand(3, -1) + position)
                position += length
                continue
            # Qwen2.5-VL spaces a video's temporal patches by their seconds (tokens_per_second a second)
            interval = 1.0
            if modality == 2 and tokens_per_second is not None:
                interval = tokens_per_second * float(next(seconds))
            block = vision_positions(position, next(grids[modality]), merge, interval, device)
            pieces.append(block)
            position = int(block.max()) + 1
        positions = torch.cat(pieces, dim=1)
        if attention_mask is not None:
            position_ids[:, row, attention_mask[row].bool()] = positions.to(position_ids.dtype)
        else:
            position_ids[:, row] = positions.to(position_ids.dtype)
        deltas.append(int(positions.max()) + 1 - len(ids))
    return position_ids, torch.tensor(deltas, device=device).unsqueeze(1)


def use_reference_positions(model) -> None:
    """Make a loaded Qwen2-VL or Qwen2.5-VL model (plain or PEFT-wrapped) compute the reference positions."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    if getattr(base.config, "model_type", None) in PATCHED and hasattr(inner, "get_rope_index"):
        inner.get_rope_index = types.MethodType(reference_rope_index, inner)
