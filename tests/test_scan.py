"""Scanning long videos: windows, their frames, P(anomaly), events, `vaur1 analyze --scan`."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import run_cli
from vaur1.bench.synth_long import generate_recordings, read_events
from vaur1.bench.tasks import Example
from vaur1.errors import VaurError
from vaur1.eval.scan import merge_events, needs_scan
from vaur1.model.generate import SamplingConfig
from vaur1.model.generators import HFGenerator, label_tokens
from vaur1.model.inputs import append_completions, build_inputs
from vaur1.model.load import ModelConfig, load_model
from vaur1.model.logprobs import target_logprobs
from vaur1.parse import ANSWER_OPEN, TAG_LABELS
from vaur1.prompts import PromptConfig, build_messages
from vaur1.video.decode import probe
from vaur1.video.spec import VideoSpec
from vaur1.video.windows import Window, decode_windows, scan_windows
from video_helpers import read_stamp, write_stamped_video

SPEC = VideoSpec(fps=None, num_frames=4, factor=16, min_pixels=16 * 16, total_pixels=None)
MODEL_SPEC = VideoSpec(fps=None, num_frames=4, min_pixels=784, max_pixels=3136)


def test_windows_cover_the_whole_video_and_the_last_ends_with_it():
    assert scan_windows(60.0, 8.0, 4.0)[-1] == Window(52.0, 60.0) and len(scan_windows(60.0, 8.0, 4.0)) == 14
    uneven = scan_windows(61.0, 8.0, 4.0)
    assert uneven[-2:] == [Window(52.0, 60.0), Window(53.0, 61.0)]
    assert scan_windows(5.0, 8.0, 4.0) == [Window(0.0, 5.0)]
    with pytest.raises(ValueError, match="stride"):
        scan_windows(60.0, 4.0, 8.0)


def test_each_window_is_sampled_as_a_clip_of_its_own_and_decoded_in_order(tmp_path):
    path = write_stamped_video(tmp_path / "long.mp4", 600, fps=10, gop=25)
    parts = list(decode_windows(path, SPEC, scan_windows(60.0, 8.0, 4.0), batch=3))
    assert [p.window.start for p in parts] == [4.0 * i for i in range(14)]
    for part in parts:
        first = round(part.window.start * 10)
        # the spec's 4 frames of an 80-frame clip, counted from the window's first frame
        assert part.video.indices == [0, 26, 53, 79]
        assert [read_stamp(f) for f in part.video.frames] == [first + i for i in (0, 26, 53, 79)]
        assert part.video.timestamps == pytest.approx([0.0, 2.6, 5.3, 7.9])
        assert (part.video.num_frames_total, part.video.duration) == (80, 8.0)


def test_a_corrupt_stretch_fails_its_windows_alone(tmp_path):
    path = write_stamped_video(tmp_path / "long.mp4", 600, fps=10, gop=25)
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size and 30 <= float(packet.pts * stream.time_base) < 34:
                data[packet.pos : packet.pos + packet.size] = b"\xff" * packet.size
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    parts = list(decode_windows(broken, SPEC, scan_windows(probe(broken).duration, 8.0, 4.0)))
    failed = [p.window.start for p in parts if p.video is None]
    assert failed == [24.0, 28.0, 32.0]  # every window holding a frame of 30-34 s, and no other
    assert all(str(broken) in p.error for p in parts if p.video is None)
    assert [read_stamp(f) for f in parts[-1].video.frames] == [520, 546, 573, 599]


def test_label_tokens_part_where_the_labels_do(eval_model):
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(eval_model).tokenizer
    text, tokens = label_tokens(tokenizer, ANSWER_OPEN, TAG_LABELS)
    assert text == ANSWER_OPEN and len(set(tokens)) == 2
    # a prefix the tokenizer merges into the labels (" A", " Normal"): the shared text is shorter
    text, tokens = label_tokens(tokenizer, ANSWER_OPEN + " ", TAG_LABELS)
    assert text == ANSWER_OPEN
    assert tokens == [tokenizer.encode(ANSWER_OPEN + " " + label)[1] for label in TAG_LABELS]
    with pytest.raises(VaurError, match="does not tell the labels"):
        label_tokens(tokenizer, ANSWER_OPEN, ["Normal", "Normal"])


def test_p_anomaly_is_the_two_labels_next_token_probabilities_renormalised(eval_model, tmp_path):
    """Against the training code's teacher-forced log-probs of each label's first token."""
    model, processor = load_model(ModelConfig(name_or_path=str(eval_model), device="cpu"))
    path = write_stamped_video(tmp_path / "clip.mp4", 80, fps=10, size=(112, 84))
    videos = [part.video for part in decode_windows(path, MODEL_SPEC, [Window(0, 4), Window(4, 8)])]
    conversation = build_messages(Example(task="tag", id="c", video="c"), "direct", PromptConfig())
    generator = HFGenerator(model, processor, SamplingConfig())
    scores = generator.label_probabilities([conversation] * 2, videos, ANSWER_OPEN, TAG_LABELS)
    text, tokens = label_tokens(processor.tokenizer, ANSWER_OPEN, TAG_LABELS)
    inputs = build_inputs(processor, [conversation] * 2, videos, assistant_prefix=text)
    logps = []
    for token in tokens:
        targets = torch.full((2, 1), token)
        extended = append_completions(inputs, targets, torch.ones_like(targets))
        with torch.no_grad(), target_logprobs(model, targets) as result:
            model(**extended, logits_to_keep=2, use_cache=False)
        logps.append(result.logps[:, 0].double())
    expected = torch.softmax(torch.stack(logps, dim=1), dim=1)
    assert torch.allclose(torch.tensor(scores, dtype=torch.float64), expected, atol=1e-5)
    assert scores[0][0] != pytest.approx(scores[1][0], abs=1e-9)  # each window its own frames


def test_events_are_runs_of_windows_at_the_threshold():
    def window(start, score, interval=None, anomaly_class=None):
        return {
            "start": start,
            "end": start + 8,
            "score": score,
            "interval": interval,
            "class": anomaly_class,
        }

    windows = [
        window(0, 0.1),
        window(4, 0.9, [6.0, 9.0], "Fire"),
        window(8, 0.7, None, "Fighting"),
        window(12, None),  # not decoded: breaks no run
        window(16, 0.8, [17.0, 20.0], "Fighting"),
        window(20, 0.2),
        window(24, 0.6, None, "Normal"),
    ]
    events = merge_events(windows, 0.5)
    assert events[0] == {"start": 6.0, "end": 20.0, "class": "Fighting", "score": 0.9, "windows": 3}
    assert events[1] == {"start": 24, "end": 32, "class": None, "score": 0.6, "windows": 1}
    assert merge_events(windows, 0.95) == []


def test_a_video_is_scanned_when_one_pass_would_see_it_coarser_than_a_window():
    sixteen = VideoSpec(fps=None, num_frames=16)
    assert not needs_scan(30.0, sixteen, 32.0) and needs_scan(40.0, sixteen, 32.0)
    by_rate = VideoSpec(fps=1.0, max_frames=64)
    assert not needs_scan(60.0, by_rate, 32.0) and needs_scan(120.0, by_rate, 32.0)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    return generate_recordings(tmp_path_factory.mktemp("long"), count=2, minutes=3, events=2, seed=0)


def test_long_recordings_list_their_events_apart_inside_normal_footage(recordings, tmp_path):
    table = read_events(recordings / "events.csv")
    assert sorted(table) == ["recording_000.mp4", "recording_001.mp4"]
    events, normal = table["recording_000.mp4"], table["recording_001.mp4"]
    assert len(events["events"]) == 2 and normal["events"] == []
    duration = probe(recordings / "videos" / "recording_000.mp4").duration
    assert duration == pytest.approx(events["duration"])
    (first, first_end, _), (second, second_end, _) = sorted(events["events"])
    # the first and last minute normal, a normal segment between the two events
    assert first >= 60 and second_end <= duration - 60 and second - first_end > 8
    # the same seed, the same bytes
    again = generate_recordings(tmp_path / "again", count=2, minutes=3, events=2, seed=0)
    name = "videos/recording_000.mp4"
    assert (again / name).read_bytes() == (recordings / name).read_bytes()


def test_analyze_scans_a_long_recording_into_windows_and_events(eval_model, recordings, tmp_path):
    video = str(recordings / "videos" / "recording_000.mp4")
    flags = ["--model", str(eval_model), "--device", "cpu", "--num-frames", "4", "--min-pixels", "784"]
    flags += [
        "--max-pixels",
        "3136",
        "--window",
        "16",
        "--stride",
        "8",
        "--threshold",
        "0",
        "--max-new-tokens",
        "4",
    ]
    result = run_cli("analyze", video, *flags, "--json", "--out", str(tmp_path / "pages"), check=True)
    # longer than a window: scanned without being asked, and said so
    assert "scanned in windows of 16 s every 8 s" in result.stderr
    scan = json.loads(result.stdout)
    assert [w["start"] for w in scan["windows"]] == [8.0 * i for i in range(21)]
    assert all(0 <= w["score"] <= 1 and w["error"] is None for w in scan["windows"])
    # threshold 0: every window is anomalous, one event over the whole recording
    assert scan["skipped_windows"] == 0 and [e["windows"] for e in scan["events"]] == [21]
    page = (tmp_path / "pages" / "recording_000.html").read_text()
    assert "<polyline" in page and "event 1" in page and "data:image/jpeg;base64," in page
    # --no-scan: one pass of the spec, the short-video answer
    whole = json.loads(
        run_cli("analyze", video, *flags, "--json", "--no-scan", "--max-new-tokens", "8", check=True).stdout
    )
    assert "anomaly" in whole and "windows" not in whole
    table = run_cli("analyze", video, *flags, "--scan", check=True).stdout
    assert "21 windows of 16 s every 8 s over 176 s: 21 scored" in " ".join(table.split())


def test_eval_scan_scores_recordings_against_their_events_and_continues_a_killed_run(
    eval_model, recordings, tmp_path
):
    out = tmp_path / "scored"
    flags = [
        "--model",
        str(eval_model),
        "--recordings",
        str(recordings),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    flags += [
        "--num-frames",
        "4",
        "--min-pixels",
        "784",
        "--max-pixels",
        "3136",
        "--window",
        "16",
        "--stride",
        "16",
    ]
    run_cli("eval", "scan", *flags, "--max-new-tokens", "4", check=True)
    metrics = json.loads((out / "scan_metrics.json").read_text())
    assert (metrics["videos"], metrics["instants"], metrics["known_events"]) == (2, 2 * 176, 2)
    assert metrics["anomalous_instants"] == sum(
        len(range(int(np.ceil(s)), int(np.ceil(e))))
        for s, e, _ in read_events(recordings / "events.csv")["recording_000.mp4"]["events"]
    )
    assert 0 <= metrics["frame_auc"] <= 100 and metrics["frame_auc_ci"] is not None
    scans = (out / "scans.jsonl").read_text().splitlines()
    assert len(scans) == 2
    # a rerun scans nothing again: the recorded scans are read back
    (recordings / "videos" / "recording_001.mp4").rename(tmp_path / "moved.mp4")
    try:
        marked = {**json.loads(scans[0]), "marker": "read back, not scanned again"}
        (out / "scans.jsonl").write_text(json.dumps(marked) + "\n")
        again = run_cli("eval", "scan", *flags, "--max-new-tokens", "4")
        assert (
            again.returncode == 2
            and "recording_001.mp4 are in the events table but not among" in again.stderr
        )
    finally:
        (tmp_path / "moved.mp4").rename(recordings / "videos" / "recording_001.mp4")
    rerun = run_cli("eval", "scan", *flags, "--max-new-tokens", "4", check=True)
    lines = (out / "scans.jsonl").read_text().splitlines()
    assert "frame AUC" in rerun.stdout and len(lines) == 2 and "read back, not scanned again" in lines[0]


def test_data_synth_long_writes_recordings_and_their_events(tmp_path):
    result = run_cli(
        "data",
        "synth",
        "--long",
        "--out",
        str(tmp_path / "r"),
        "--recordings",
        "1",
        "--minutes",
        "3",
        "--events",
        "1",
        check=True,
    )
    table = read_events(tmp_path / "r" / "events.csv")
    ((name, entry),) = table.items()
    ((start, end, kind),) = entry["events"]
    assert f"{name}: 176 s; {start:g}-{end:g} s {kind}" in result.stdout
    too_many = run_cli(
        "data", "synth", "--long", "--out", str(tmp_path / "x"), "--minutes", "3", "--events", "9"
    )
    assert too_many.returncode != 0 and "has room for" in too_many.stderr


def test_eval_run_scan_scores_the_tag_videos_at_the_frame_level_beside_the_paper_metrics(
    eval_synth, eval_model, tmp_path
):
    import eval_helpers

    run_dir = tmp_path / "run"
    # the clips last 2-3 s and their events under a second: 8 instants a second
    flags = [
        "--tasks",
        "tag",
        "--mode",
        "direct",
        "--scan",
        "scan.frame_rate=8",
        "scan.window=1",
        "scan.stride=1",
    ]
    run_cli(*eval_helpers.cli_args(eval_synth, eval_model, run_dir, *flags), check=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    scan = metrics["scan"]
    assert (scan["videos"], scan["unscanned"], scan["unreadable"], scan["window"]) == (3, 0, 0, 1.0)
    assert list(scan["by_source"]) == ["synth"] and scan["by_source"]["synth"] == scan["all"]
    # the frame labels are the TAG intervals: two anomalous clips and a normal one
    lines = [json.loads(line) for line in (run_dir / "scans.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(len(line["windows"]) >= 2 for line in lines)
    assert scan["all"]["instants"] == sum(int(np.ceil(line["duration"] * 8)) for line in lines)
    assert 0 < scan["all"]["anomalous_instants"] < scan["all"]["instants"]
    assert scan["all"]["frame_auc"] is not None and metrics["tasks"]["tag"]["direct"]["miou"] is not None
    assert "Frame-level anomaly detection (scan)" in (run_dir / "report.md").read_text()
    # other windows over the same scans: refused, nothing mixed
    again = run_cli(
        *eval_helpers.cli_args(eval_synth, eval_model, run_dir, *flags[:-2], "scan.window=2", "scan.stride=1")
    )
    assert again.returncode != 0 and "scan.window=1.0, this run has 2.0" in again.stderr
