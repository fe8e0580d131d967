"""VideoSpec arithmetic and exact decoding, on mp4 files whose frames show their own number."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest

from vaur1.config import load_config
from vaur1.errors import ConfigError, VaurError, VideoError
from vaur1.video.decode import check_decoder, decode, probe
from vaur1.video.spec import VideoSpec, smart_resize
from video_helpers import read_stamp, write_audio_only, write_stamped_video

# 64x48 sources stay 64x48 at factor 16 without a budget: stamps are read at the source size
SPEC = VideoSpec(fps=None, num_frames=8, factor=16, min_pixels=16 * 16, total_pixels=None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """50 frames at 10 fps, keyframe every 12 frames, with B-frames."""
    return write_stamped_video(tmp_path_factory.mktemp("video") / "clip.mp4", 50, fps=10, gop=12)


def stamps(video) -> list[int]:
    return [read_stamp(frame) for frame in video.frames]


def test_num_frames_returns_the_uniformly_spaced_frames(clip):
    video = decode(clip, SPEC)
    assert video.indices == [0, 7, 14, 21, 28, 35, 42, 49]
    assert stamps(video) == video.indices
    assert video.timestamps == pytest.approx([i / 10 for i in video.indices])
    assert video.frames.shape == (8, 48, 64, 3) and video.frames.dtype == np.uint8
    assert (video.fps, video.num_frames_total, video.duration) == (10.0, 50, pytest.approx(5.0))
    assert (video.height, video.width, video.padded) == (48, 64, 0)


def test_fps_sampling_covers_the_video_at_the_asked_rate(clip):
    spec = dataclasses.replace(SPEC, fps=2.0, num_frames=None, min_frames=1)
    video = decode(clip, spec)
    assert len(video.indices) == 10  # 5 s at 2 fps
    assert video.indices == np.round(np.linspace(0, 49, 10)).astype(int).tolist()
    assert stamps(video) == video.indices
    assert video.timestamps == pytest.approx([i / 10 for i in video.indices])
    assert video.sample_fps == pytest.approx(9 / 4.9)


def test_every_frame_is_exact_and_matches_a_sequential_decode(clip):
    video = decode(clip, dataclasses.replace(SPEC, num_frames=50))
    assert stamps(video) == list(range(50))
    with av.open(str(clip)) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # same frames; only the swscale path (one conversion with resize vs. a plain one) may differ
    assert np.abs(video.frames.astype(int) - np.stack(reference).astype(int)).max() <= 8


def test_threads_decode_the_same_frames(clip):
    spec = dataclasses.replace(SPEC, num_frames=13)
    alone = decode(clip, spec)
    for threads in (2, 3):
        together = decode(clip, spec, threads=threads)
        assert together.indices == alone.indices and np.array_equal(together.frames, alone.frames)
    assert stamps(alone) == alone.indices


def test_short_video_gives_what_it_has_and_pads_to_the_temporal_patch(tmp_path):
    path = write_stamped_video(tmp_path / "short.mp4", 7, fps=10, gop=4)
    video = decode(path, dataclasses.replace(SPEC, num_frames=16))
    assert video.indices == [0, 1, 2, 3, 4, 5, 6, 6] and video.padded == 1
    assert stamps(video) == video.indices
    assert np.array_equal(video.frames[-1], video.frames[-2])
    assert video.timestamps[-1] == video.timestamps[-2] == pytest.approx(0.6)
    assert video.sample_fps == pytest.approx(10.0)

    at_fps = decode(path, dataclasses.replace(SPEC, fps=1.0, num_frames=None))  # min_frames 4 > 0.7 s
    assert at_fps.indices == [0, 2, 4, 6] and stamps(at_fps) == at_fps.indices


def test_odd_counts_are_padded_by_repeating_the_last_frame(clip):
    video = decode(clip, dataclasses.replace(SPEC, num_frames=5))
    assert video.indices == [0, 12, 24, 37, 49, 49] and video.padded == 1
    assert stamps(video) == video.indices
    three = decode(clip, dataclasses.replace(SPEC, num_frames=5, temporal_patch=3))
    assert len(three.indices) == 6 and three.padded == 1


def test_output_size_follows_qwen_smart_resize(clip):
    assert smart_resize(240, 320, 28, 3136, 76800) == (224, 308)
    assert smart_resize(240, 320, 28, 3136, 320 * 240 * 4) == (252, 308)
    assert smart_resize(48, 64, 28, 56 * 56 * 4, 10**6) == (112, 140)  # upscaled to min_pixels
    spec = VideoSpec(
        fps=None, num_frames=8, factor=28, min_pixels=784, max_pixels=10**6, total_pixels=4 * 28 * 28 * 8
    )
    # the budget allows 4 * 28 * 28 * 2 pixels per frame for 8 frames, whatever max_pixels says
    height, width = spec.output_size(480, 640, 8)
    assert height % 28 == 0 and width % 28 == 0 and height * width <= 4 * 28 * 28 * 2
    assert abs(width / height - 640 / 480) < 0.35
    video = decode(clip, dataclasses.replace(spec, total_pixels=None, max_pixels=28 * 28 * 2))
    assert video.frames.shape[1:3] == (28, 28)  # 48x64 over the cap: both sides floor to one factor
    assert stamps(video) == video.indices  # the stamp survives the downscale


def test_sample_indices_rules():
    spec = VideoSpec(fps=1.0, min_frames=4, max_frames=6)
    # 10 s at 1 fps is 10 frames, capped to max_frames
    assert spec.sample_indices(100, 10.0) == [0, 20, 40, 59, 79, 99]
    assert len(spec.sample_indices(20, 10.0)) == 4  # 2 s lifted to min_frames
    assert spec.sample_indices(3, 10.0) == [0, 1, 2]  # never more than the video has
    assert spec.sample_indices(300, 30.0) == np.round(np.linspace(0, 299, 6)).astype(int).tolist()
    assert VideoSpec(fps=1.0).frame_count(300, 30.0) == 10  # 10.0 s does not floor to 9
    assert VideoSpec(fps=None, num_frames=1).sample_indices(40, 10.0) == [0]
    assert spec.sample_indices(0, 10.0) == []


def test_spec_loads_from_yaml_validates_and_hashes(tmp_path):
    path = tmp_path / "video.yaml"
    path.write_text("fps: null\nnum_frames: 16\nmax_pixels: 50176\ndecoder: pyav\n")
    spec = load_config(VideoSpec, path)
    assert (spec.fps, spec.num_frames, spec.max_pixels) == (None, 16, 50176)
    assert spec.hash() == load_config(VideoSpec, path).hash() and len(spec.hash()) == 16
    assert spec.hash() != dataclasses.replace(spec, max_pixels=50177).hash()
    assert spec.hash() != dataclasses.replace(spec, interpolation="area").hash()
    assert "16 frames" in spec.describe() and spec.hash() in spec.describe() and "\n" not in spec.describe()
    with pytest.raises(ConfigError, match="exactly one of fps and num_frames"):
        load_config(VideoSpec, None, ["num_frames=16"])
    with pytest.raises(ConfigError, match="decoder"):
        load_config(VideoSpec, None, ["decoder=opencv"])
    with pytest.raises(ConfigError, match="min_frames <= max_frames"):
        VideoSpec(min_frames=8, max_frames=4)
    with pytest.raises(ConfigError, match="positive"):
        VideoSpec(fps=0.0)


def test_probe_reads_the_exact_metadata(clip):
    info = probe(clip)
    assert (info.codec, info.num_frames_total, info.fps, info.width, info.height) == (
        "h264",
        50,
        10.0,
        64,
        48,
    )
    assert info.duration == pytest.approx(5.0) and info.keyframes >= 5 and info.size_bytes > 0


def test_bad_inputs_raise_video_error_naming_file_and_reason(tmp_path, clip):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # moov atom at the end: lost
    cases = {
        tmp_path / "missing.mp4": "no such file",
        empty: "empty file",
        text: "not a readable video",
        truncated: "not a readable video",
        write_audio_only(tmp_path / "sound.wav"): "no video stream",
        tmp_path: "is a folder",
    }
    for path, reason in cases.items():
        with pytest.raises(VideoError, match=reason) as caught:
            decode(path, SPEC)
        assert str(path) in str(caught.value)
        with pytest.raises(VideoError):
            probe(path)


def test_truncated_stream_with_index_up_front_is_an_error_not_fewer_frames(tmp_path):
    whole = write_stamped_video(tmp_path / "whole.mp4", 60, fps=10, gop=12, faststart=True)
    data = whole.read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    for read in (probe, lambda path: decode(path, SPEC)):
        with pytest.raises(VideoError, match=r"cut\.mp4: truncated file: the index lists 60 frames"):
            read(truncated)


def test_unavailable_decoder_is_a_setup_error_not_a_video_error(clip):
    try:
        check_decoder("torchcodec")
    except VaurError as err:
        assert not isinstance(err, VideoError)
        with pytest.raises(VaurError, match="torchcodec"):
            decode(clip, dataclasses.replace(SPEC, decoder="torchcodec"))
    else:
        video = decode(clip, dataclasses.replace(SPEC, decoder="torchcodec"))
        assert stamps(video) == video.indices == decode(clip, SPEC).indices


def test_decode_limits_stop_a_costly_file_before_its_frames(tmp_path, clip):
    """A 100 KB file may declare 35 million pixels a picture: refused from its header, in probe, decode
    and `vaur1 video probe`, before a frame is decoded; length and wall time have limits too."""
    from conftest import run_cli
    from vaur1.video.decode import DecodeLimits

    huge = tmp_path / "huge.mp4"
    with av.open(str(huge), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 8192, 4352, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = av.VideoFrame.from_ndarray(np.zeros((4352, 8192, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    assert huge.stat().st_size < 500_000
    message = f"{huge}: 8192x4352 pictures exceed the decode limit of 33,177,600 pixels"
    for read in (probe, lambda path: decode(path, VideoSpec(num_frames=4, fps=None))):
        with pytest.raises(VideoError, match=message):
            read(huge)
    result = run_cli("video", "probe", str(huge))
    assert result.returncode == 2 and result.stderr == f"error: {message}\n"

    info = probe(clip)
    with pytest.raises(
        VideoError, match=f"{clip}: {info.num_frames_total} frames exceed the decode limit of 10"
    ):
        probe(clip, DecodeLimits(max_frames=10))
    with pytest.raises(VideoError, match=r"s exceed the decode limit of 1 s"):
        decode(clip, VideoSpec(num_frames=4, fps=None), limits=DecodeLimits(max_seconds=1.0))
    with pytest.raises(VideoError, match=f"{clip}: decoding took longer than the limit of 0 s"):
        decode(clip, VideoSpec(num_frames=4, fps=None), limits=DecodeLimits(timeout_s=1e-9))
