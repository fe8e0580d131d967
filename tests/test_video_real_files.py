"""Real files read as a player shows them: display rotation, variable frame rates, exact durations."""

from __future__ import annotations

import dataclasses
import json

import av
import numpy as np
import pytest

from conftest import run_cli
from vaur1.video.decode import decode, probe
from vaur1.video.spec import VideoSpec
from video_helpers import read_stamp, write_stamped_video

SPEC = VideoSpec(fps=None, num_frames=4, factor=16, min_pixels=16 * 16, total_pixels=None)
# a phone that dropped frames: dense at first, then gaps of 0.3-1.6 s
VFR_TIMES = [0.0, 0.033, 0.066, 0.1, 0.4, 0.41, 2.0, 2.01, 2.05, 3.0, 3.5, 5.0]


@pytest.mark.parametrize(("matrix", "clockwise", "turn_back"), [(-90, 90, 1), (90, 270, -1), (180, 180, 2)])
def test_a_display_matrix_turns_the_frames_upright(tmp_path, matrix, clockwise, turn_back):
    path = write_stamped_video(tmp_path / "phone.mp4", 20, fps=10, rotation=matrix)
    info = probe(path)
    upright = (64, 48) if clockwise in (90, 270) else (48, 64)  # stored 64 wide, 48 high
    assert (info.rotation, (info.height, info.width)) == (clockwise, upright)
    video = decode(path, SPEC)
    assert video.frames.shape == (4, *upright, 3) and (video.height, video.width) == upright
    # the stamp is drawn on the stored picture: turned back, each frame reads its own number
    assert [read_stamp(np.rot90(frame, k=turn_back)) for frame in video.frames] == video.indices
    assert np.array_equal(decode(path, SPEC, threads=2).frames, video.frames)


def test_an_unrotated_file_is_unchanged(tmp_path):
    path = write_stamped_video(tmp_path / "plain.mp4", 20, fps=10)
    video = decode(path, SPEC)
    assert probe(path).rotation == 0 and video.frames.shape == (4, 48, 64, 3)
    assert [read_stamp(frame) for frame in video.frames] == video.indices


def test_a_variable_frame_rate_is_sampled_by_presentation_time(tmp_path):
    path = write_stamped_video(tmp_path / "vfr.mp4", len(VFR_TIMES), times=VFR_TIMES)
    spec = dataclasses.replace(SPEC, fps=1.0, num_frames=None, min_frames=1)
    video = decode(path, spec)
    # 5 s at 1 fps: the frames nearest 0, 1.25, 2.5, 3.75 and 5 s (then padded to 6), not the
    # index-uniform 0, 3, 5, 8, 11 (0, 0.1, 0.41, 2.05, 5.0 s)
    assert video.indices == [0, 6, 8, 10, 11, 11] and video.padded == 1
    assert video.timestamps == pytest.approx([0.0, 2.0, 2.05, 3.5, 5.0, 5.0])
    assert [read_stamp(frame) for frame in video.frames] == video.indices
    info = probe(path)
    assert info.fps == pytest.approx(info.num_frames_total / info.duration)


def test_durations_end_with_the_last_frame_not_an_average_interval(tmp_path):
    path = write_stamped_video(tmp_path / "vfr.mp4", len(VFR_TIMES), times=VFR_TIMES)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        last = max(packets, key=lambda p: p.pts)
        first = min(p.pts for p in packets)
        expected = float((last.pts + last.duration - first) * stream.time_base)
    assert probe(path).duration == pytest.approx(expected) and expected == pytest.approx(5.0, abs=0.1)
    # a constant rate: frames / fps exactly
    assert probe(write_stamped_video(tmp_path / "cfr.mp4", 50, fps=10)).duration == pytest.approx(5.0)


def test_video_probe_reports_the_rotation(tmp_path):
    path = write_stamped_video(tmp_path / "phone.mp4", 20, fps=10, rotation=-90)
    result = run_cli("video", "probe", str(path), "--json", "--num-frames", "4", check=True)
    data = json.loads(result.stdout)
    assert (data["rotation"], data["height"], data["width"]) == (90, 64, 48)
    assert data["output_height"] > data["output_width"]
    table = run_cli("video", "probe", str(path), "--num-frames", "4", check=True).stdout
    assert "48x64, turned 90 degrees clockwise" in table
