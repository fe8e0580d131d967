"""`vaur1 video ...`: inspect how a video is sampled, and pre-decode a benchmark into the frame cache."""

from __future__ import annotations

import argparse
import json

from vaur1.console import output_console


def _total_pixels(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


SPEC_FIELDS = (
    "min_frames",
    "max_frames",
    "min_pixels",
    "max_pixels",
    "total_pixels",
    "factor",
    "temporal_patch",
    "decoder",
    "interpolation",
)


def add_spec_options(parser: argparse.ArgumentParser) -> None:
    """The VideoSpec fields as options; an option not given keeps the spec file's value or the default."""
    group = parser.add_argument_group(
        "video spec (an option not given keeps the value of --spec, else of the spec stored with the model where there is one, else the default)"
    )
    group.add_argument("--spec", metavar="YAML", help="a VideoSpec, at the top level or under `video:`")
    unset = argparse.SUPPRESS  # absent from the namespace unless given
    frames = group.add_mutually_exclusive_group()
    frames.add_argument(
        "--fps", type=float, default=unset, help="sample this many frames per second of video"
    )
    frames.add_argument(
        "--num-frames", type=int, default=unset, help="sample this many frames, spread uniformly"
    )
    group.add_argument("--min-frames", type=int, default=unset)
    group.add_argument("--max-frames", type=int, default=unset)
    group.add_argument("--min-pixels", type=int, default=unset, help="per frame")
    group.add_argument("--max-pixels", type=int, default=unset, help="per frame")
    group.add_argument("--total-pixels", type=_total_pixels, default=unset, help="over all frames, or `none`")
    group.add_argument("--factor", type=int, default=unset, help="28 for Qwen2/2.5-VL, 32 for Qwen3-VL")
    group.add_argument("--temporal-patch", type=int, default=unset)
    group.add_argument("--decoder", choices=("pyav", "torchcodec"), default=unset)
    group.add_argument("--interpolation", choices=("bicubic", "bilinear", "area"), default=unset)


def spec_from_args(args: argparse.Namespace, base: dict | None = None):
    """The spec file's VideoSpec (or `base`, or the defaults) with the options given on the command line."""
    from vaur1.config import from_dict, read_yaml
    from vaur1.errors import ConfigError
    from vaur1.video.spec import VideoSpec

    data: dict = dict(base or {})
    if args.spec:
        data = read_yaml(args.spec)
        data = data.get("video", data)
        if not isinstance(data, dict):
            raise ConfigError(f"{args.spec}: `video` must be a mapping")
    given = vars(args)
    if "fps" in given:
        data = {**data, "fps": given["fps"], "num_frames": None}
    if "num_frames" in given:
        data = {**data, "num_frames": given["num_frames"], "fps": None}
    data = {**data, **{name: given[name] for name in SPEC_FIELDS if name in given}}
    return from_dict(VideoSpec, data, prefix="video")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("video", help="inspect video sampling and fill the frame cache")
    video = parser.add_subparsers(dest="video_command", required=True, metavar="COMMAND")

    probe = video.add_parser(
        "probe", help="metadata, chosen frames, output size and decode time of one video"
    )
    probe.add_argument("file")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    probe.add_argument("--threads", type=int, default=1, help="decoding threads for this video")
    add_spec_options(probe)
    probe.set_defaults(func=run_probe)

    cache = video.add_parser("cache", help="pre-decode every video of a benchmark into the frame cache")
    cache.add_argument("bench", metavar="BENCH_OR_CSV", help="a CSV file or a folder of VAU-Bench CSVs")
    cache.add_argument("--videos", required=True, metavar="ROOT", help="the folder holding the video files")
    cache.add_argument("--cache-dir", help="default: $XDG_CACHE_HOME/vaur1/frames")
    cache.add_argument("--max-gb", type=float, default=20.0, help="cache size limit (LRU eviction)")
    cache.add_argument("--workers", type=int, default=2, help="decoding processes")
    cache.add_argument("--run-dir", help="write skipped videos to RUN_DIR/skipped.jsonl")
    add_spec_options(cache)
    cache.set_defaults(func=run_cache)


def run_probe(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from vaur1.config import to_dict
    from vaur1.video.decode import decode, probe

    spec = spec_from_args(args)
    info = probe(args.file)
    video = decode(args.file, spec, threads=args.threads)
    height, width = video.frames.shape[1:3]
    result = {
        "path": info.path,
        "codec": info.codec,
        "fps": info.fps,
        "num_frames_total": info.num_frames_total,
        "duration": info.duration,
        "height": info.height,
        "width": info.width,
        "rotation": info.rotation,
        "keyframes": info.keyframes,
        "size_bytes": info.size_bytes,
        "spec": to_dict(spec),
        "spec_hash": spec.hash(),
        "indices": video.indices,
        "timestamps": [round(t, 6) for t in video.timestamps],
        "padded": video.padded,
        "sample_fps": video.sample_fps,
        "output_height": int(height),
        "output_width": int(width),
        "decode_ms": round(video.decode_seconds * 1000, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = output_console()
    table = Table(title=escape(info.path), show_header=False)
    table.add_row("codec", info.codec)
    turned = f", turned {info.rotation} degrees clockwise" if info.rotation else ""
    table.add_row(
        "source", f"{info.width}x{info.height}{turned}, {info.fps:g} fps, {info.num_frames_total} frames"
    )
    table.add_row("duration", f"{info.duration:.3f} s")
    table.add_row("keyframes", str(info.keyframes))
    table.add_row("spec", escape(spec.describe()))
    table.add_row(
        "frames", f"{len(video.indices)} (padded {video.padded}), sample fps {video.sample_fps:.3f}"
    )
    table.add_row("output", f"{width}x{height}")
    table.add_row("decode", f"{video.decode_seconds * 1000:.1f} ms")
    console.print(table)
    console.print("indices:    " + " ".join(str(i) for i in video.indices), highlight=False)
    console.print("timestamps: " + " ".join(f"{t:.3f}" for t in video.timestamps), highlight=False)
    return 0


_WORKER_DECODER = None


def _die_with(parent: int) -> None:
    """End this worker when the command ends, even killed: Linux sends it SIGKILL when its parent dies
    (otherwise an orphaned worker decodes on for minutes)."""
    import os
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)


def _start_worker(spec, cache_dir: str, max_bytes: int, parent: int) -> None:
    global _WORKER_DECODER
    from vaur1.video.cache import CachedDecoder

    _die_with(parent)
    _WORKER_DECODER = CachedDecoder(spec, cache_dir, max_bytes)


def _cache_one(path: str) -> tuple[str, str, str | None]:
    """(path, "hit" | "decoded" | "skipped", reason) for one video, in a worker."""
    from vaur1.errors import VideoError

    try:
        if _WORKER_DECODER.lookup(path) is not None:
            return path, "hit", None
        _WORKER_DECODER.get(path)
        return path, "decoded", None
    except VideoError as err:
        return path, "skipped", str(err)


def _entry_bytes(path: str) -> int:
    """Bytes the cache will hold for one video at the worker's spec (0 for a file that cannot be read)."""
    from vaur1.errors import VideoError
    from vaur1.video.cache import entry_bytes
    from vaur1.video.decode import probe

    try:
        return entry_bytes(_WORKER_DECODER.spec, probe(path))
    except (VideoError, OSError):
        return 0


def run_cache(args: argparse.Namespace) -> int:
    import os
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vaur1.bench import load_bench
    from vaur1.errors import VaurError
    from vaur1.layout import TrainRun
    from vaur1.video.cache import CacheConfig, CachedDecoder
    from vaur1.video.dataset import Skip, SkipLog
    from vaur1.video.roots import VideoRoots

    spec = spec_from_args(args)
    config = CacheConfig(dir=args.cache_dir, max_gb=args.max_gb)
    config.validate()
    if args.workers < 1:
        raise VaurError(f"--workers: need at least 1, got {args.workers}")
    roots = VideoRoots(default=args.videos)
    bench = load_bench(args.bench)
    owners: dict[str, str] = {}  # video path -> the first sample that names it
    for sample in bench.samples:
        owners.setdefault(str(roots.resolve(sample)), f"{sample.split}/{sample.id}")
    console = output_console()
    console.print(f"{len(owners)} videos, spec: {spec.describe()}", highlight=False, markup=False)
    console.print(f"cache: {config.path} (limit {config.max_gb:g} GB)", highlight=False, markup=False)
    CachedDecoder(spec, config.path, config.max_bytes)  # checks the decoder and creates the folder

    skip_log = SkipLog(TrainRun(args.run_dir).skipped if args.run_dir else None)
    outcomes = {"hit": 0, "decoded": 0, "skipped": 0}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        Progress(*columns, console=console) as progress,
        ProcessPoolExecutor(
            args.workers,
            initializer=_start_worker,
            initargs=(spec, str(config.path), config.max_bytes, os.getpid()),
        ) as pool,
    ):
        needed = sum(pool.map(_entry_bytes, owners, chunksize=8))
        if needed > config.max_bytes:
            progress.console.print(
                f"[yellow]warning: these videos need {needed / 1e9:.1f} GB of frame cache at this spec, more "
                f"than --max-gb {config.max_gb:g}: the oldest entries will be evicted and decoded again; "
                f"give --max-gb {needed / 1e9 * 1.05:.0f} or more[/]",
                highlight=False,
            )
        task = progress.add_task("decoding", total=len(owners))
        for path, outcome, reason in pool.map(_cache_one, owners, chunksize=4):
            outcomes[outcome] += 1
            if reason is not None:
                skip_log.record(Skip(key=owners[path], video=path, reason=reason))
            progress.advance(task)
    size = CachedDecoder(spec, config.path, config.max_bytes).size_bytes()
    console.print(
        f"{outcomes['hit']} already cached, {outcomes['decoded']} decoded, {outcomes['skipped']} skipped; "
        f"cache holds {size / 1e6:.1f} MB",
        highlight=False,
    )
    if skip_log.path is not None and skip_log.count:
        console.print(f"skipped videos written to {skip_log.path}", highlight=False, markup=False)
    return 1 if owners and outcomes["skipped"] == len(owners) else 0
