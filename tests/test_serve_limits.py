"""`vaur1 serve` under hostile use: oversized and streamed uploads, big form fields, other hosts and
origins, odd file names, a full queue while a model works, and SIGTERM mid-analysis."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import VAUR1, run_cli
from engine_helpers import free_port
from vaur1.analyze import AnalyzeOptions
from vaur1.video.spec import model_video_spec

pytest.importorskip("starlette", reason="vaur1 serve needs vaur1[serve]")
from starlette.testclient import TestClient

from vaur1.serve import ServeLimits, build_app


def multipart(video: bytes, filename: str = "clip.mp4", model: str = "tiny") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n".encode("utf-8", "surrogateescape"),
        video,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def app_for(model: Path, **limits):
    options = AnalyzeOptions(mode="direct")
    options.sampling.max_new_tokens = 4
    return build_app(
        {"tiny": str(model)}, model_video_spec, options, device="cpu", limits=ServeLimits(**limits)
    )


@pytest.fixture
def clip(eval_synth: Path) -> bytes:
    return sorted((eval_synth / "videos").iterdir())[0].read_bytes()


def test_uploads_past_the_limit_are_refused_while_they_stream(eval_model: Path, clip: bytes) -> None:
    client = TestClient(app_for(eval_model, max_upload_bytes=len(clip) // 2), base_url="http://127.0.0.1")
    body, kind = multipart(clip)
    declared = client.post("/analyze", content=body, headers={"content-type": kind})
    assert declared.status_code == 413 and "the upload exceeds" in declared.text
    # no Content-Length: the body is counted as it arrives
    streamed = client.post(
        "/analyze",
        content=(body[i : i + 4096] for i in range(0, len(body), 4096)),
        headers={"content-type": kind},
    )
    assert streamed.status_code == 413 and "the upload exceeds" in streamed.text
    # a form field is held in memory, so it is small: 200 KB of "model" is refused
    fat, kind = multipart(clip[:100], model="x" * 200_000)
    big_field = TestClient(app_for(eval_model), base_url="http://127.0.0.1").post(
        "/analyze", content=fat, headers={"content-type": kind}
    )
    assert big_field.status_code == 400 and "error:" in big_field.text


def test_other_hosts_and_origins_are_refused_and_odd_names_are_shown_safely(
    eval_model: Path, clip: bytes
) -> None:
    app = app_for(eval_model)
    rebound = TestClient(app, base_url="http://attacker.example")
    assert rebound.get("/").status_code == 400  # DNS rebinding: the page is not served to another name
    client = TestClient(app, base_url="http://127.0.0.1:7860")
    assert client.get("/").status_code == 200
    body, kind = multipart(clip)
    posted = client.post(
        "/analyze", content=body, headers={"content-type": kind, "origin": "http://evil.example"}
    )
    assert posted.status_code == 403
    # a name of 300 characters with a NUL and markup: analysed, shown escaped and cut, never a traceback
    odd = "a" * 290 + "\x00<b>x</b>.mp4"
    body, kind = multipart(b"not a video", filename=odd)
    answer = client.post(
        "/analyze", content=body, headers={"content-type": kind, "origin": "http://127.0.0.1:7860"}
    )
    assert answer.status_code == 400 and "not a readable video file" in answer.text
    assert "<b>x</b>" not in answer.text and "\x00" not in answer.text and "a" * 97 + "..." in answer.text
    body, kind = multipart(clip)
    good = client.post("/analyze", content=body, headers={"content-type": kind})
    assert good.status_code == 200 and "analyze another video" in good.text


def _post(url: str, clip: bytes, results: list, index: int) -> None:
    body, kind = multipart(clip)
    request = urllib.request.Request(f"{url}analyze", data=body, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            results[index] = response.status
    except urllib.error.HTTPError as err:
        results[index] = err.code


@pytest.mark.slow
def test_a_busy_server_answers_the_page_says_busy_and_stops_on_sigterm(eval_model: Path, clip: bytes) -> None:
    port = free_port()
    command = [str(VAUR1), "serve", "--model", f"tiny={eval_model}", "--port", str(port), "--device", "cpu"]
    command += ["--mode", "think", "--max-new-tokens", "4096", "--queue", "1"]  # ~10 s of analysis
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.2)
        results: list = [None] * 3
        threads = []
        for index in range(3):  # one analysed, one waiting, one told the server is busy
            threads.append(threading.Thread(target=_post, args=(url, clip, results, index), daemon=True))
            threads[-1].start()
            time.sleep(1.0)
        started = time.perf_counter()
        assert b"vaur1: video anomaly analysis" in urllib.request.urlopen(url, timeout=10).read()
        assert time.perf_counter() - started < 2.0  # the page does not wait for the model
        threads[2].join(timeout=10)
        assert results[2] == 503
        assert results[0] is None  # still analysing: SIGTERM now
        process.send_signal(signal.SIGTERM)
        stopped = time.perf_counter()
        process.wait(timeout=20)
        assert time.perf_counter() - stopped < 15
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_refuses_a_port_out_of_range() -> None:
    result = run_cli("serve", "--port", "99999", "--model", "x")
    assert result.returncode == 2 and "99999 is not a port (1-65535)" in result.stderr


def test_a_long_video_is_scanned_in_the_background_behind_a_page_of_its_own(
    eval_model: Path, tmp_path
) -> None:
    from vaur1.bench.synth_long import generate_recordings
    from vaur1.eval.scan_config import ScanConfig
    from vaur1.video.spec import VideoSpec

    folder = generate_recordings(tmp_path / "long", count=1, minutes=3, events=1, seed=0)
    video = (folder / "videos" / "recording_000.mp4").read_bytes()
    options = AnalyzeOptions(mode="direct")
    options.sampling.max_new_tokens = 4
    spec = VideoSpec(fps=None, num_frames=4, min_pixels=784, max_pixels=3136)
    app = build_app(
        {"tiny": str(eval_model)},
        lambda _: spec,
        options,
        device="cpu",
        scan=ScanConfig(window=32, stride=32),
    )
    client = TestClient(app, base_url="http://127.0.0.1")
    body, kind = multipart(video, "camera.mp4")
    started = client.post("/analyze", content=body, headers={"content-type": kind}, follow_redirects=False)
    # answered at once with the scan's own page, which refreshes itself until the timeline is there
    assert started.status_code == 303 and started.headers["location"].startswith("/scans/")
    key = started.headers["location"].removeprefix("/scans/")
    assert len(key) >= 20
    first = client.get(started.headers["location"])
    assert first.status_code == 200 and "camera.mp4" in first.text
    deadline = time.time() + 120
    page = first.text
    while "<polyline" not in page and time.time() < deadline:
        assert 'http-equiv="refresh"' in page and "<progress" in page
        time.sleep(0.5)
        page = client.get(started.headers["location"]).text
    assert "<polyline" in page and "6 windows of 32 s every 32 s" in page, page[:2000]
    assert client.get("/scans/not-a-scan").status_code == 404
    from vaur1.serve import ScanJob, progress_page

    running = progress_page(ScanJob("camera.mp4", done=3, total=10))
    assert (
        'http-equiv="refresh"' in running and 'value="3" max="10"' in running and "3 of 10 windows" in running
    )
