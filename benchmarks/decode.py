"""Video decoding speed: vaur1 cold decode, vaur1 frame-cache hit, and qwen-vl-utils `fetch_video`.

    .venv/bin/python benchmarks/decode.py [--clips 3] [--repeats 3] [--workdir DIR]

The clips are SynthVAU scenes, 60 s, 320x240, 30 fps, H.264 (x264 preset medium, a keyframe every
2 s, B-frames). They are written once into --workdir and reused. Two samplings: 16 uniformly
spaced frames, and 1 fps (60 frames). Every method returns the same frame count at the same size,
224x308 (Qwen's smart_resize of 240x320 with max_pixels = 320*240, factor 28).

Each cell is the median over clips x repeats, after one warm-up per clip (the file is in the page
cache for everybody). qwen-vl-utils is optional (`pip install qwen-vl-utils==0.0.14 decord==0.6.0`);
it picks its own backend (torchcodec > decord > torchvision) and the run says which. Where
torchcodec imports, vaur1's torchcodec decoder gets a row too.
Targets: cold decode >= 2x faster than fetch_video; a cache hit >= 20x faster than a cold decode.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import vaur1.model  # noqa: F401  (the torchvision shim, before qwen-vl-utils imports torchvision)
from vaur1.bench.synth import ANOMALY_CLASSES, plan_clip, write_clip
from vaur1.errors import VaurError
from vaur1.video.cache import CachedDecoder
from vaur1.video.decode import check_decoder, decode
from vaur1.video.spec import VideoSpec

SECONDS, FPS, SIZE = 60, 30, (320, 240)
PIXELS = {"min_pixels": 4 * 28 * 28, "max_pixels": SIZE[0] * SIZE[1]}
SAMPLINGS = {
    "16 frames": (VideoSpec(fps=None, num_frames=16, total_pixels=None, **PIXELS), {"nframes": 16}),
    "1 fps": (VideoSpec(fps=1.0, total_pixels=None, **PIXELS), {"fps": 1.0}),
}


def make_clips(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for index in range(count):
        path = folder / f"bench_{SECONDS}s_{SIZE[0]}x{SIZE[1]}_{FPS}fps_{index}.mp4"
        if not path.is_file():
            anomaly = ANOMALY_CLASSES[index % len(ANOMALY_CLASSES)]
            plan = plan_clip(index, 0, anomaly, size=SIZE, duration=(SECONDS, SECONDS), fps=FPS)
            started = time.perf_counter()
            write_clip(plan, path, gop=2 * FPS, preset="medium")
            print(f"wrote {path.name} in {time.perf_counter() - started:.1f} s")
        clips.append(path)
    return clips


def qwen_fetch() -> tuple[Callable | None, str]:
    """qwen-vl-utils' fetch_video and its backend, or None and why not."""
    try:
        from qwen_vl_utils import vision_process
    except ImportError as err:
        return None, f"not installed ({err})"
    with contextlib.redirect_stderr(io.StringIO()):
        backend = vision_process.get_video_reader_backend()
    return vision_process.fetch_video, backend


def torchcodec_usable() -> bool:
    try:
        check_decoder("torchcodec")
    except VaurError:
        return False
    return True


def measure(
    methods: dict[str, Callable[[Path], object]], clips: list[Path], repeats: int
) -> dict[str, float]:
    """Median ms per clip of each method. Methods take turns on each clip, so load spikes on this
    shared machine hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for clip in clips:
        for run in methods.values():
            run(clip)  # warm-up: page cache, lazy imports, the cache entry for hits
    for _ in range(repeats):
        for clip in clips:
            for name, run in methods.items():
                started = time.perf_counter()
                run(clip)
                times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vaur1-bench-decode")
    args = parser.parse_args()

    clips = make_clips(args.workdir / "clips", args.clips)
    fetch_video, backend = qwen_fetch()
    print(f"{len(clips)} clips of {SECONDS} s, {SIZE[0]}x{SIZE[1]}, {FPS} fps; qwen-vl-utils: {backend}\n")
    print(f"{'sampling':<10} {'method':<32} {'ms/clip':>9}   ratio")
    cache_dir = tempfile.TemporaryDirectory(dir=args.workdir, prefix="cache-")  # removed at exit
    for name, (spec, qwen_args) in SAMPLINGS.items():
        cache = CachedDecoder(spec, cache_dir.name)
        ours = decode(clips[0], spec)
        methods = {
            "cold": lambda clip, spec=spec: decode(clip, spec),
            "cold2": lambda clip, spec=spec: decode(clip, spec, threads=2),
            "hit": cache.get,
        }
        if torchcodec_usable():
            with_torchcodec = dataclasses.replace(spec, decoder="torchcodec")
            methods["torchcodec"] = lambda clip, spec=with_torchcodec: decode(clip, spec)
        if fetch_video is not None:
            theirs = fetch_video({"video": str(clips[0]), **qwen_args, **PIXELS})
            expected = (ours.frames.shape[0], 3, *ours.frames.shape[1:3])
            assert tuple(theirs.shape) == expected, (theirs.shape, ours.frames.shape)
            methods["qwen"] = lambda clip, a=qwen_args: fetch_video({"video": str(clip), **a, **PIXELS})
        ms = measure(methods, clips, args.repeats)
        print(f"{name:<10} {'vaur1 decode (cold)':<32} {ms['cold']:9.1f}")
        print(f"{name:<10} {'vaur1 decode (cold, 2 threads)':<32} {ms['cold2']:9.1f}")
        print(
            f"{name:<10} {'vaur1 cache hit':<32} {ms['hit']:9.1f}   "
            f"{ms['cold'] / ms['hit']:6.1f}x faster than cold (target 20x)"
        )
        if "torchcodec" in ms:
            print(
                f"{name:<10} {'vaur1 decode (torchcodec)':<32} {ms['torchcodec']:9.1f}   "
                f"{ms['torchcodec'] / ms['cold']:.2f}x the time of pyav"
            )
        if "qwen" in ms:
            print(
                f"{name:<10} {'qwen-vl-utils fetch_video':<32} {ms['qwen']:9.1f}   "
                f"vaur1 cold is {ms['qwen'] / ms['cold']:.2f}x faster, "
                f"{ms['qwen'] / ms['cold2']:.2f}x with 2 threads (target 2x)"
            )
        else:
            print(f"{name:<10} {'qwen-vl-utils fetch_video':<32} {'-':>9}   (not installed)")
    print(f"\nframes per clip: 16 and {SECONDS}; output {ours.frames.shape[2]}x{ours.frames.shape[1]}")


if __name__ == "__main__":
    main()
