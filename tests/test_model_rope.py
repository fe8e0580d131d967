"""M-RoPE positions: vaur1's models use the rule the Qwen2/2.5-VL checkpoints were trained with.

The reference is transcribed below from the Qwen team's `get_rope_index` as released in transformers
4.49 (Qwen2.5-VL's release; Qwen2-VL's is the same without time scaling): text after a video starts at
the video's highest position + 1. transformers 5.23 starts it at the video's start + max(h, w) / merge.
"""

from __future__ import annotations

import torch

from model_fixtures import load_tiny, make_video, video_prompt
from vaur1.model import build_inputs


def transcribed_reference(config, input_ids, attention_mask, video_grid_thw, second_per_grid_ts=None):
    """transformers 4.49's Qwen2.5-VL `get_rope_index` for text + videos (Qwen2-VL: no time scaling)."""
    merge = config.vision_config.spatial_merge_size
    tokens_per_second = getattr(config.vision_config, "tokens_per_second", None)
    position_ids = torch.ones(3, *input_ids.shape, dtype=input_ids.dtype)
    video_index = 0
    for i, ids in enumerate(input_ids):
        ids = ids[attention_mask[i] == 1]
        starts = torch.argwhere(ids == config.vision_start_token_id).squeeze(1)
        video_nums = int((ids[starts + 1] == config.video_token_id).sum())
        tokens = ids.tolist()
        pieces, st = [], 0
        for _ in range(video_nums):
            ed = tokens.index(config.video_token_id, st)
            t, h, w = (int(v) for v in video_grid_thw[video_index])
            second = float(second_per_grid_ts[video_index]) if second_per_grid_ts is not None else 1.0
            video_index += 1
            grid_t, grid_h, grid_w = t, h // merge, w // merge
            text_len = ed - st
            st_idx = pieces[-1].max() + 1 if pieces else 0
            pieces.append(torch.arange(text_len).view(1, -1).expand(3, -1) + st_idx)
            t_range = torch.arange(grid_t).view(-1, 1).expand(-1, grid_h * grid_w)
            if tokens_per_second is not None:
                t_index = (t_range * second * tokens_per_second).long().flatten()
            else:
                t_index = t_range.flatten()
            h_index = torch.arange(grid_h).view(1, -1, 1).expand(grid_t, -1, grid_w).flatten()
            w_index = torch.arange(grid_w).view(1, 1, -1).expand(grid_t, grid_h, -1).flatten()
            pieces.append(torch.stack([t_index, h_index, w_index]) + text_len + st_idx)
            st = ed + grid_t * grid_h * grid_w
        if st < len(tokens):
            st_idx = pieces[-1].max() + 1 if pieces else 0
            pieces.append(torch.arange(len(tokens) - st).view(1, -1).expand(3, -1) + st_idx)
        position_ids[:, i, attention_mask[i] == 1] = torch.cat(pieces, dim=1).reshape(3, -1)
    return position_ids


def long_video_batch(processor):
    """Two prompts with videos whose temporal extent exceeds their height and width, left-padded."""
    videos = [make_video(processor, num_frames=16, seed=1), make_video(processor, num_frames=8, seed=2)]
    return build_inputs(processor, [video_prompt("What happens after the car stops?")] * 2, videos)


def test_qwen2_and_qwen25_use_the_reference_positions(tiny_models) -> None:
    for arch in ("qwen2_vl", "qwen2_5_vl"):
        model, processor = load_tiny(tiny_models[arch])
        inputs = long_video_batch(processor)
        kwargs = {key: inputs[key] for key in ("mm_token_type_ids", "video_grid_thw", "attention_mask")}
        if "second_per_grid_ts" in inputs:
            kwargs["second_per_grid_ts"] = inputs["second_per_grid_ts"]
        positions, deltas = model.model.get_rope_index(inputs["input_ids"], **kwargs)
        expected = transcribed_reference(
            model.config,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["video_grid_thw"],
            inputs.get("second_per_grid_ts"),
        )
        keep = inputs["attention_mask"].bool()
        assert torch.equal(positions[:, keep], expected[:, keep]), arch
        lengths = keep.sum(dim=1)
        assert torch.equal(deltas.squeeze(1), expected.amax(dim=(0, 2)) + 1 - lengths)
        # transformers' own rule puts the question after the video inside the video's time span
        theirs, _ = type(model.model).get_rope_index(model.model, inputs["input_ids"], **kwargs)
        assert not torch.equal(theirs[:, keep], expected[:, keep]), arch


def test_generation_continues_after_the_reference_positions(tiny_models) -> None:
    """Greedy decoding with the KV cache gives the tokens a full forward pass ranks first."""
    model, processor = load_tiny(tiny_models["qwen2_5_vl"])
    inputs = long_video_batch(processor)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    full = torch.cat(
        [inputs["attention_mask"], torch.ones_like(out[:, inputs["input_ids"].shape[1] :])], dim=1
    )
    extended = {**inputs, "input_ids": out, "attention_mask": full}
    extended["mm_token_type_ids"] = torch.cat(
        [inputs["mm_token_type_ids"], torch.zeros_like(out[:, inputs["input_ids"].shape[1] :])], dim=1
    )
    logits = model(**extended).logits
    start = inputs["input_ids"].shape[1]
    assert torch.equal(logits[:, start - 1 : -1].argmax(-1), out[:, start:])


def test_qwen3_keeps_transformers_positions(tiny_models) -> None:
    model, _ = load_tiny(tiny_models["qwen3_vl"])
    assert "get_rope_index" not in vars(model.model)
