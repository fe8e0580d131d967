from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from model_fixtures import make_video, video_prompt
from vaur1.errors import VaurError
from vaur1.model import (
    ARCHS,
    IGNORE_INDEX,
    append_completions,
    build_inputs,
    build_sft_inputs,
    processor_factor,
    repeat_inputs,
    temporal_patch,
    video_metadata,
)


@pytest.fixture(scope="module")
def processors(tiny_models):
    return {arch: AutoProcessor.from_pretrained(path) for arch, path in tiny_models.items()}


def decoded(processor, inputs, row: int = 0) -> str:
    return processor.tokenizer.decode(inputs["input_ids"][row], skip_special_tokens=False)


def test_factor_and_temporal_patch_come_from_the_processor(processors):
    assert {arch: processor_factor(p) for arch, p in processors.items()} == {
        "qwen2_vl": 28,
        "qwen2_5_vl": 28,
        "qwen3_vl": 32,
    }
    assert {temporal_patch(p) for p in processors.values()} == {2}


@pytest.mark.parametrize("sample_fps", [1.0, 2.0])
def test_qwen2_5_vl_seconds_per_grid_follow_the_sampling_rate(processors, sample_fps):
    processor = processors["qwen2_5_vl"]
    video = make_video(processor, num_frames=8, sample_fps=sample_fps)
    assert video.sample_fps == pytest.approx(sample_fps)
    inputs = build_inputs(processor, [video_prompt()], [video])
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([temporal_patch(processor) / sample_fps])


def test_seconds_per_grid_use_the_real_spacing_not_the_whole_video_average(processors):
    processor = processors["qwen2_5_vl"]
    # 4 frames one second apart from a 60 s source: transformers' own rule would say 4/60 fps.
    video = dataclasses.replace(make_video(processor, num_frames=4), num_frames_total=1800, duration=60.0)
    # 3 frames one second apart from a 3 s source, padded to 4: the rule would count the copy.
    padded = dataclasses.replace(
        make_video(processor, num_frames=4), num_frames_total=90, duration=3.0, padded=1
    )
    padded.indices[-1], padded.timestamps[-1] = padded.indices[-2], padded.timestamps[-2]
    inputs = build_inputs(processor, [video_prompt(), video_prompt()], [video, padded])
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2.0, 2.0])


@pytest.mark.parametrize(
    ("sample_fps", "expected"), [(1.0, ["0.5", "2.5", "4.5"]), (2.0, ["0.2", "1.2", "2.2"])]
)
def test_qwen3_vl_timestamps_in_the_prompt_follow_the_sampling_rate(processors, sample_fps, expected):
    processor = processors["qwen3_vl"]
    inputs = build_inputs(
        processor, [video_prompt()], [make_video(processor, num_frames=6, sample_fps=sample_fps)]
    )
    text = decoded(processor, inputs)
    # One timestamp per temporal patch: the mean time of its two frames.
    assert [f"<{t} seconds>" in text for t in expected] == [True, True, True]
    assert text.count(" seconds>") == 3


def test_video_metadata_carries_the_source(processors):
    video = make_video(processors["qwen2_vl"], num_frames=4, sample_fps=2.0, source_fps=25.0)
    metadata = video_metadata(video)
    assert (metadata.fps, metadata.total_num_frames, metadata.frames_indices) == (25.0, 50, [0, 12, 25, 38])
    assert (metadata.width, metadata.height, metadata.duration) == (320, 240, 2.0)


@pytest.mark.parametrize("arch", ARCHS)
def test_frames_are_not_resized_again(processors, arch):
    processor = processors[arch]
    factor = processor_factor(processor)
    patch = factor // 2
    # 6x5 factors is 30x more pixels than the tiny processor's budget allows, and is kept as is.
    video = make_video(processor, num_frames=4, rows=6, cols=5)
    inputs = build_inputs(processor, [video_prompt()], [video])
    assert inputs["video_grid_thw"].tolist() == [[2, 6 * factor // patch, 5 * factor // patch]]
    assert inputs["pixel_values_videos"].shape[0] == 2 * 12 * 10
    video_tokens = int((inputs["input_ids"] == processor.video_token_id).sum())
    assert video_tokens == 2 * 6 * 5


def test_frames_not_sized_by_the_video_spec_are_refused(processors):
    processor = processors["qwen2_5_vl"]
    video = make_video(processor, path="clips/odd.mp4")
    with pytest.raises(VaurError, match=r"clips/odd.mp4: frames are 56x55, not multiples of .* factor 28"):
        build_inputs(
            processor, [video_prompt()], [dataclasses.replace(video, frames=video.frames[:, :, :55])]
        )
    with pytest.raises(VaurError, match=r"clips/odd.mp4: 3 frames is not a positive multiple"):
        short = dataclasses.replace(video, frames=video.frames[:3], indices=video.indices[:3])
        build_inputs(processor, [video_prompt()], [short])
    with pytest.raises(VaurError, match=r"clips/odd.mp4: frames must be a uint8 array"):
        build_inputs(
            processor, [video_prompt()], [dataclasses.replace(video, frames=video.frames.astype(np.float32))]
        )
    with pytest.raises(VaurError, match="4 frames but 3 frame indices"):
        build_inputs(processor, [video_prompt()], [dataclasses.replace(video, indices=video.indices[:3])])


def test_batches_are_left_padded(processors):
    processor = processors["qwen2_5_vl"]
    long_question = video_prompt("Describe every event in the video in detail, one by one, with times.")
    videos = [make_video(processor, seed=1), make_video(processor, seed=2)]
    inputs = build_inputs(processor, [video_prompt("Why?"), long_question], videos)
    mask = inputs["attention_mask"]
    assert mask[1].all() and not mask[0].all()
    assert mask[0, -1] == 1 and mask[0, 0] == 0
    pad = processor.tokenizer.pad_token_id
    assert (inputs["input_ids"][0][mask[0] == 0] == pad).all()
    assert decoded(processor, inputs, 0).endswith("<|im_start|>assistant\n")


def test_exactly_one_video_per_conversation_and_none_keys_are_ignored(processors):
    processor = processors["qwen2_5_vl"]
    video = make_video(processor)
    # A row from HF datasets: the text item carries `video: None`, which the template would count.
    from_datasets = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Q?", "video": None}, {"type": "video", "text": None}],
        }
    ]
    inputs = build_inputs(processor, [from_datasets], [video])
    assert decoded(processor, inputs).count("<|vision_start|>") == 1
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]
    with pytest.raises(VaurError, match="conversation 1: expected exactly one video content item, found 0"):
        build_inputs(processor, [video_prompt(), text_only], [video, video])
    with pytest.raises(VaurError, match="2 conversations but 1 videos"):
        build_inputs(processor, [video_prompt(), video_prompt()], [video])


@pytest.mark.parametrize("arch", ARCHS)
def test_sft_labels_mark_the_answer_span(processors, arch):
    processor = processors[arch]
    answers = ["<think>Smoke rises.</think><answer>Fire</answer>", "<answer>B</answer>"]
    conversations = [[*video_prompt(), {"role": "assistant", "content": answer}] for answer in answers]
    conversations[1][-1]["content"] = [{"type": "text", "text": answers[1]}]
    videos = [make_video(processor, seed=1), make_video(processor, num_frames=6, seed=2)]
    batch = build_sft_inputs(processor, conversations, videos)
    for row, answer in enumerate(answers):
        labels = batch["labels"][row]
        span = (labels != IGNORE_INDEX).nonzero().flatten()
        assert span.tolist() == list(
            range(int(span[0]), labels.numel() - 1)
        )  # contiguous, before the last "\n"
        assert processor.tokenizer.decode(labels[span]) == answer + "<|im_end|>"
        assert torch.equal(labels[span], batch["input_ids"][row][span])
    with pytest.raises(VaurError, match="conversation 0: the last message must be the assistant's answer"):
        build_sft_inputs(processor, [video_prompt()], videos[:1])


def test_repeated_inputs_keep_each_video_with_its_rows(processors):
    processor = processors["qwen2_5_vl"]
    videos = [make_video(processor, seed=1), make_video(processor, num_frames=6, rows=3, seed=2)]
    inputs = build_inputs(processor, [video_prompt(), video_prompt("Other?")], videos)
    repeated = repeat_inputs(inputs, 3)
    assert repeated["input_ids"].shape[0] == 6
    assert torch.equal(repeated["input_ids"][3], inputs["input_ids"][1])
    assert (
        repeated["video_grid_thw"].tolist()
        == [inputs["video_grid_thw"][0].tolist()] * 3 + [inputs["video_grid_thw"][1].tolist()] * 3
    )
    first, second = torch.split(inputs["pixel_values_videos"], inputs["video_grid_thw"].prod(-1).tolist())
    assert torch.equal(
        repeated["pixel_values_videos"], torch.cat([first, first, first, second, second, second])
    )
    assert repeated["second_per_grid_ts"].tolist() == [2.0] * 6


def test_appended_completions_are_text_tokens(processors):
    processor = processors["qwen2_5_vl"]
    inputs = build_inputs(processor, [video_prompt()], [make_video(processor)])
    completion = torch.tensor([[5, 6, 7]])
    mask = torch.tensor([[1, 1, 0]])
    full = append_completions(inputs, completion, mask)
    length = inputs["input_ids"].shape[1]
    assert full["input_ids"][0, length:].tolist() == [5, 6, 7]
    assert full["attention_mask"][0, length:].tolist() == [1, 1, 0]
    assert full["mm_token_type_ids"][0, length:].tolist() == [0, 0, 0]
    assert torch.equal(full["pixel_values_videos"], inputs["pixel_values_videos"])
    with pytest.raises(VaurError, match="repeat the prompt inputs first"):
        append_completions(inputs, completion.repeat(2, 1), mask.repeat(2, 1))
