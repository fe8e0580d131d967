"""`vaur1 video probe` and `vaur1 video cache`, run as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from conftest import VAUR1, run_cli
from vaur1.bench.synth import generate_synthvau
from video_helpers import write_stamped_video


def test_probe_json_has_metadata_indices_and_timestamps(tmp_path):
    clip = write_stamped_video(tmp_path / "clip.mp4", 45, fps=15)
    spec = tmp_path / "train.yaml"
    spec.write_text("video:\n  factor: 16\n  min_pixels: 256\n  total_pixels: null\n")
    result = run_cli(
        "video", "probe", str(clip), "--num-frames", "5", "--spec", str(spec), "--json", check=True
    )
    data = json.loads(result.stdout)
    assert (data["fps"], data["num_frames_total"], data["height"], data["width"]) == (15.0, 45, 48, 64)
    assert data["duration"] == 3.0 and data["codec"] == "h264"
    assert data["indices"] == [0, 11, 22, 33, 44, 44] and data["padded"] == 1
    assert data["timestamps"] == [round(i / 15, 6) for i in data["indices"]]
    assert (data["output_height"], data["output_width"]) == (48, 64)
    assert data["spec"]["num_frames"] == 5 and data["spec"]["fps"] is None and data["spec"]["factor"] == 16
    assert data["decode_ms"] > 0

    table = run_cli(
        "video", "probe", str(clip), "--fps", "2", "--max-pixels", "1568", "--min-pixels", "784", check=True
    )
    assert (
        "indices:    0 9 18 26 35 44" in table.stdout and "2 fps" in table.stdout and "28x28" in table.stdout
    )


def test_probe_bad_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("no video here")
    result = run_cli("video", "probe", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(bad) in result.stderr
    assert "not a readable video" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    both = run_cli("video", "probe", str(bad), "--fps", "1", "--num-frames", "4")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_cache_predecodes_a_benchmark_and_reports_skips(tmp_path):
    bench = generate_synthvau(tmp_path / "synth", n=6, seed=4, size=(64, 48), duration=(2.0, 3.0), workers=1)
    (bench / "videos" / "00002.mp4").unlink()
    cache_dir = tmp_path / "cache"
    args = ["video", "cache", str(bench), "--videos", str(bench / "videos"), "--cache-dir", str(cache_dir),
            "--num-frames", "4", "--workers", "2", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    first = run_cli(*args, check=True)
    assert "0 already cached, 5 decoded, 1 skipped" in first.stdout
    assert len(list(cache_dir.rglob("*.frames"))) == 5
    skipped = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == 1 and skipped[0]["video"].endswith("00002.mp4")
    assert "no such file" in skipped[0]["reason"] and skipped[0]["key"].endswith("/synth_00002.mp4")
    second = run_cli(*args[:-2], check=True)
    assert "5 already cached, 0 decoded, 1 skipped" in second.stdout

    nothing = run_cli(
        "video", "cache", str(bench), "--videos", str(tmp_path / "nowhere"), "--cache-dir", str(cache_dir)
    )
    assert nothing.returncode == 1 and "6 skipped" in nothing.stdout


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_killing_the_cache_command_ends_its_workers(tmp_path):
    """Its decoding workers hold the pipe they read from open themselves, so they outlive a killed
    command unless the kernel ends them with it."""
    bench = generate_synthvau(tmp_path / "synth", n=24, seed=4, size=(64, 48), duration=(2.0, 3.0), workers=1)
    command = [str(VAUR1), "video", "cache", str(bench), "--videos", str(bench / "videos"), "--cache-dir",
               str(tmp_path / "cache"), "--num-frames", "8", "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and process.poll() is None and time.monotonic() < deadline:
        workers = _children(process.pid)
        time.sleep(0.02)
    assert len(workers) >= 2, "the workers never started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
