"""Scanning long recordings: throughput, memory against video length, and one decoding pass against
a pass per window.

    .venv/bin/python benchmarks/scan.py [--minutes 10 30] [--window 8] [--stride 4] [--model DIR]

SynthVAU long recordings (`vaur1 data synth --long`, 112x84 at 8 fps) of each length are scanned by
`vaur1.eval.scan.scan_video` in a fresh process each, so that each peak resident memory is its own:
printed are the wall time, video-minutes per minute, the resident memory with the model loaded and
its peak during the scan (sampled every 5 ms);
the ratio of the longest recording's peak to the shortest's is the check that memory stays flat in
video length. The model is a tiny random Qwen2.5-VL of the demo's size unless --model names one (the
numbers then include its generation). Last, the longest recording's windows are decoded once with
`decode_windows` (one open, one frame table, a frame shared by two windows decoded once) against a
call per window, which opens the file and reads its table each time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, threading, time
import vaur1.model
from vaur1.eval.config import EVAL_DEFAULTS
from vaur1.model.generators import load_generator
from vaur1.eval.scan import scan_video
from vaur1.eval.scan_config import ScanConfig
from vaur1.model.generate import SamplingConfig
from vaur1.model.load import ModelConfig
from vaur1.video.spec import VideoSpec

model, video, window, stride = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
spec = VideoSpec(fps=None, num_frames=16, min_pixels=784, max_pixels=3136)
sampling = SamplingConfig(**{**EVAL_DEFAULTS["sampling"], "max_new_tokens": 16})
generator = load_generator(ModelConfig(name_or_path=model, device="cpu"), sampling, spec)
def resident_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20

highest, running = [0.0], [True]
def sample():  # the resident memory every 5 ms while the scan runs: its own peak, not the load's
    while running[0]:
        highest[0] = max(highest[0], resident_mb())
        time.sleep(0.005)

loaded = resident_mb()
sampler = threading.Thread(target=sample)
sampler.start()
started = time.perf_counter()
result = scan_video(video, generator, spec, ScanConfig(window=window, stride=stride))
seconds = time.perf_counter() - started
running[0] = False
sampler.join()
peak = highest[0]
print(json.dumps({"seconds": seconds, "loaded_mb": loaded, "peak_mb": peak,
                  "windows": len(result["windows"]), "duration": result["duration"]}))
"""


def scan_in_child(model: Path, video: Path, window: float, stride: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(video), str(window), str(stride)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_once_against_per_window(video: Path, window: float, stride: float) -> tuple[float, float]:
    from vaur1.video.decode import probe
    from vaur1.video.spec import VideoSpec
    from vaur1.video.windows import decode_windows, scan_windows

    spec = VideoSpec(fps=None, num_frames=16, min_pixels=784, max_pixels=3136)
    windows = scan_windows(probe(video).duration, window, stride)
    started = time.perf_counter()
    for _ in decode_windows(video, spec, windows):
        pass
    once = time.perf_counter() - started
    started = time.perf_counter()
    for item in windows:
        for _ in decode_windows(video, spec, [item]):
            pass
    return once, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--stride", type=float, default=4.0)
    parser.add_argument(
        "--model", type=Path, help="a checkpoint (default: a tiny random one of the demo's size)"
    )
    args = parser.parse_args()

    import vaur1.model  # noqa: F401  (the torchvision shim, before transformers)
    from vaur1.bench.synth_long import generate_recordings
    from vaur1.demo.config import DemoModel
    from vaur1.model import build_tiny_model

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model = args.model
        if model is None:
            shape = DemoModel()
            model = build_tiny_model(
                "qwen2_5_vl",
                root / "model",
                hidden_size=shape.hidden_size,
                num_layers=shape.num_layers,
                num_heads=shape.num_heads,
                num_kv_heads=shape.num_kv_heads,
            )
        rows = []
        for minutes in args.minutes:
            folder = generate_recordings(
                root / f"rec-{minutes:g}", count=1, minutes=minutes, events=3, seed=0
            )
            video = folder / "videos" / "recording_000.mp4"
            result = scan_in_child(model, video, args.window, args.stride)
            rows.append((minutes, video, result))
            rate = result["duration"] / 60 / (result["seconds"] / 60)
            print(
                f"{minutes:g} min: {result['windows']} windows in {result['seconds']:.1f} s "
                f"({rate:.1f} video-min/min); resident memory {result['loaded_mb']:.0f} MB with the model loaded, "
                f"{result['peak_mb']:.0f} MB at the scan's peak"
            )
        shortest, longest = rows[0][2], rows[-1][2]
        print(
            f"peak resident memory during the scan, {rows[-1][0]:g} min / {rows[0][0]:g} min: {longest['peak_mb'] / shortest['peak_mb']:.3f}x "
            f"(scan's own growth: {shortest['peak_mb'] - shortest['loaded_mb']:.0f} MB and "
            f"{longest['peak_mb'] - longest['loaded_mb']:.0f} MB)"
        )
        once, per_window = decode_once_against_per_window(rows[-1][1], args.window, args.stride)
        print(
            f"decoding the {rows[-1][0]:g}-min recording's windows: {once:.1f} s in one pass, {per_window:.1f} s "
            f"with a pass per window ({per_window / once:.2f}x)"
        )


if __name__ == "__main__":
    main()
