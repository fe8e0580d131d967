"""Conversations + decoded frames -> the tensors a Qwen-VL model takes.

    inputs = build_inputs(processor, conversations, videos)      # prompts, left-padded
    batch = build_sft_inputs(processor, conversations, videos)   # prompt + answer, with labels

One video per conversation. The frames come from the VideoSpec already sampled, padded to a
multiple of the temporal patch and resized to multiples of the processor's factor
(patch * merge); the processor only normalises and patchifies them, so the VideoSpec stays the
single source of truth for pixels. The video's metadata (source fps, frame indices) travels
with the frames, so that Qwen2.5-VL's temporal positions (`second_per_grid_ts`) and Qwen3-VL's
`<t seconds>` timestamps follow the real sampling rate instead of the processor's 24 fps guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vaur1.errors import ConfigError, VaurError
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"

# The frames are final: no resampling, no resizing. `cap_pixels_per_frame` only matters when
# resizing; passing it silences transformers' warning about its future default.
_VIDEO_KWARGS: dict[str, Any] = {
    "do_sample_frames": False,
    "do_resize": False,
    "cap_pixels_per_frame": False,
    "input_data_format": "channels_last",
}


def processor_factor(processor) -> int:
    """Frame height and width must be multiples of this: the vision patch size times the merge size."""
    video_processor = _video_processor(processor)
    return int(video_processor.patch_size) * int(video_processor.merge_size)


def temporal_patch(processor) -> int:
    """Frames per temporal patch: the number of frames must be a multiple of this."""
    return int(_video_processor(processor).temporal_patch_size)


def build_inputs(
    processor,
    conversations: Sequence[list[dict]],
    videos: Sequence[DecodedVideo],
    add_generation_prompt: bool = True,
    assistant_prefix: str = "",
):
    """Batched, left-padded model inputs for `conversations[i]` with `videos[i]`; `assistant_prefix` is
    text the assistant's turn starts with (the model continues after it).

    Each conversation holds exactly one `{"type": "video"}` content item, where the video goes in
    the prompt. Returns a `BatchFeature` of torch tensors: input_ids, attention_mask,
    mm_token_type_ids, pixel_values_videos, video_grid_thw, and for Qwen2.5-VL second_per_grid_ts.
    """
    if len(conversations) != len(videos):
        raise VaurError(f"{len(conversations)} conversations but {len(videos)} videos; give one video each")
    if not conversations:
        raise VaurError("no conversations to build inputs from")
    messages = [_clean_conversation(conversation, i) for i, conversation in enumerate(conversations)]
    factor, frames_per_patch = processor_factor(processor), temporal_patch(processor)
    for video in videos:
        _check_frames(video, factor, frames_per_patch)
    texts = processor.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    return _process(processor, [text + assistant_prefix for text in texts], videos)


def build_sft_inputs(processor, conversations: Sequence[list[dict]], videos: Sequence[DecodedVideo]):
    """Inputs for supervised fine-tuning: each conversation ends with the assistant's answer.

    Adds `labels`: the answer's tokens and the end-of-turn token that closes it; every other
    position (system, user, video, padding) is `IGNORE_INDEX`, so the loss covers the answer only.
    """
    answers = []
    for i, conversation in enumerate(conversations):
        if not conversation or conversation[-1].get("role") != "assistant":
            raise VaurError(f"conversation {i}: the last message must be the assistant's answer")
        answers.append(_message_text(conversation[-1], i))
    inputs = build_inputs(processor, conversations, videos, add_generation_prompt=False)
    texts = _rendered_texts(processor, inputs)
    inputs["labels"] = _answer_labels(processor, inputs, texts, answers)
    return inputs


def repeat_inputs(inputs, times: int):
    """Each row `times` times in a row (prompt-major), with its video patches: the layout of
    `generate(..., num_return_sequences=times)`, for scoring G completions per prompt."""
    from transformers import BatchFeature

    if times < 1:
        raise VaurError(f"times must be at least 1, got {times}")
    repeated = {}
    for key, value in inputs.items():
        if key == "pixel_values_videos":
            repeated[key] = _repeat_patches(value, inputs["video_grid_thw"], times)
        elif key == "pixel_values":
            repeated[key] = _repeat_patches(value, inputs["image_grid_thw"], times)
        else:
            repeated[key] = value.repeat_interleave(times, dim=0)
    return BatchFeature(repeated)


def append_completions(inputs, completion_ids: torch.Tensor, completion_mask: torch.Tensor):
    """Prompt inputs extended with generated completions, for the log-prob forward pass.

    Rows must correspond (see `repeat_inputs`). Completion tokens are text: their
    `mm_token_type_ids` are 0, and the attention mask is the completion mask.
    """
    from transformers import BatchFeature

    rows = inputs["input_ids"].shape[0]
    if completion_ids.shape[0] != rows or completion_mask.shape != completion_ids.shape:
        raise VaurError(
            f"completions {tuple(completion_ids.shape)} (mask {tuple(completion_mask.shape)}) do not match "
            f"{rows} prompt rows; repeat the prompt inputs first"
        )
    extended = dict(inputs)
    completion_ids = completion_ids.to(inputs["input_ids"].device)
    extended["input_ids"] = torch.cat([inputs["input_ids"], completion_ids], dim=1)
    mask = completion_mask.to(inputs["attention_mask"].device, inputs["attention_mask"].dtype)
    extended["attention_mask"] = torch.cat([inputs["attention_mask"], mask], dim=1)
    if "mm_token_type_ids" in inputs:
        token_types = inputs["mm_token_type_ids"]
        extended["mm_token_type_ids"] = torch.cat(
            [token_types, torch.zeros_like(completion_ids, dtype=token_types.dtype)], 1
        )
    return BatchFeature(extended)


def video_metadata(video: DecodedVideo):
    """transformers' `VideoMetadata` for decoded frames: where they came from in the source."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(
        total_num_frames=int(video.num_frames_total),
        fps=float(video.fps),
        width=int(video.width),
        height=int(video.height),
        duration=float(video.duration),
        frames_indices=[int(i) for i in video.indices],
    )


def _process(processor, texts: list[str], videos: Sequence[DecodedVideo]):
    metadata = [video_metadata(video) for video in videos]
    inputs = processor(
        text=texts,
        videos=[video.frames for video in videos],
        videos_kwargs={**_VIDEO_KWARGS, "video_metadata": metadata},
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    if "second_per_grid_ts" in inputs:
        # transformers derives the rate from len(indices) / total_frames * fps, the average over the
        # whole source, which counts padded frames and is off whenever the samples do not span the
        # source end to end; the decoder knows the actual spacing.
        seconds = [temporal_patch(processor) / video.sample_fps for video in videos]
        inputs["second_per_grid_ts"] = torch.tensor(seconds, dtype=inputs["second_per_grid_ts"].dtype)
    return inputs


def _clean_conversation(conversation: list[dict], index: int) -> list[dict]:
    """Drop None-valued keys from content items and check there is exactly one video.

    HF `datasets` gives every content dict of a column the union of keys (`"video": None` on a
    text item); the official template tests `'video' in content` and would add a placeholder.
    """
    if not isinstance(conversation, list) or not conversation:
        raise VaurError(f"conversation {index}: expected a non-empty list of messages")
    cleaned, num_videos = [], 0
    for message in conversation:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise VaurError(
                f"conversation {index}: every message needs a role and a content, got {message!r}"
            )
        content = message["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in item.items() if v is not None} for item in content]
            num_videos += sum(1 for item in content if item.get("type") == "video" or "video" in item)
        cleaned.append({**message, "content": content})
    if num_videos != 1:
        raise VaurError(f"conversation {index}: expected exactly one video content item, found {num_videos}")
    return cleaned


def _check_frames(video: DecodedVideo, factor: int, frames_per_patch: int) -> None:
    frames = video.frames
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise VaurError(f"{video.path}: frames must be a uint8 array (T, H, W, 3), got {dtype} {shape}")
    num_frames, height, width = frames.shape[:3]
    if height % factor or width % factor:
        raise VaurError(
            f"{video.path}: frames are {height}x{width}, not multiples of the processor's factor {factor} "
            "(patch size x merge size); resize them in the VideoSpec, the processor does not resize again"
        )
    if num_frames == 0 or num_frames % frames_per_patch:
        raise VaurError(
            f"{video.path}: {num_frames} frames is not a positive multiple of the temporal patch "
            f"{frames_per_patch}; the VideoSpec pads by repeating the last frame"
        )
    if len(video.indices) != num_frames:
        raise VaurError(f"{video.path}: {num_frames} frames but {len(video.indices)} frame indices")
    if video.fps <= 0 or video.sample_fps <= 0:
        raise VaurError(
            f"{video.path}: frame rate must be positive (source {video.fps}, sampled {video.sample_fps})"
        )


def _message_text(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(item, dict) for item in content):
        return "".join(item["text"] for item in content if item.get("text") is not None)
    raise VaurError(f"conversation {index}: the assistant's content must be text, got {content!r}")


def _rendered_texts(processor, inputs) -> list[str]:
    """The text each row encodes, without padding, as the tokenizer saw it (video tokens expanded)."""
    ids = [
        row[mask.bool()].tolist()
        for row, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)
    ]
    return processor.tokenizer.batch_decode(
        ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
    )


def _answer_labels(processor, inputs, texts: list[str], answers: list[str]) -> torch.Tensor:
    """Label the tokens that overlap the answer and the end-of-turn after it.

    The official templates render the last turn as `<|im_start|>assistant\\n{answer}<|im_end|>\\n`,
    so the answer's characters are found from the end of the rendered text.
    """
    tokenizer = processor.tokenizer
    labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
    for row, (text, answer) in enumerate(zip(texts, answers, strict=True)):
        body, tail = text.rstrip("\n"), answer + END_OF_TURN
        if not body.endswith(tail):
            raise VaurError(
                f"conversation {row}: the chat template did not end with the answer and {END_OF_TURN}"
            )
        start, stop = len(body) - len(tail), len(body)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        row_ids = inputs["input_ids"][row]
        valid = inputs["attention_mask"][row].bool()
        first = int(valid.nonzero()[0])
        if len(offsets) != int(valid.sum()) or encoded["input_ids"] != row_ids[first:].tolist():
            raise VaurError(
                f"conversation {row}: re-tokenising the rendered text did not reproduce the inputs"
            )
        for position, (char_start, char_end) in enumerate(offsets):
            if char_end > start and char_start < stop:
                labels[row, first + position] = row_ids[first + position]
    return labels


def _repeat_patches(patches: torch.Tensor, grid_thw: torch.Tensor, times: int) -> torch.Tensor:
    chunks = torch.split(patches, grid_thw.prod(-1).tolist())
    return torch.cat([chunk for chunk in chunks for _ in range(times)])


def _video_processor(processor):
    video_processor = getattr(processor, "video_processor", None)
    if video_processor is None or not hasattr(video_processor, "temporal_patch_size"):
        raise VaurError(
            f"{type(processor).__name__} is not a Qwen-VL processor (it has no Qwen video processor)"
        )
    return video_processor


def check_spec_fits(spec: VideoSpec, processor) -> None:
    """The VideoSpec must size frames for this model's processor, which does not resize them again."""
    factor, frames_per_patch = processor_factor(processor), temporal_patch(processor)
    if spec.factor % factor:
        raise ConfigError(
            f"video.factor {spec.factor} does not fit the model, whose patch x merge size is {factor}: "
            f"set video.factor={factor}" + (" (Qwen3-VL)" if factor == 32 else "")
        )
    if spec.temporal_patch % frames_per_patch:
        raise ConfigError(
            f"video.temporal_patch {spec.temporal_patch} is not a multiple of the model's temporal patch "
            f"{frames_per_patch}: set video.temporal_patch={frames_per_patch}"
        )
