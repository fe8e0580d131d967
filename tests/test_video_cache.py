"""The frame cache, video roots and the prefetching dataset, on real mp4 files."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from vaur1.bench.tasks import Example
from vaur1.errors import ConfigError
from vaur1.video.cache import CacheConfig, CachedDecoder
from vaur1.video.dataset import LoaderConfig, SkipLog, VideoDataset, iter_batches, iter_videos, video_loader
from vaur1.video.decode import decode
from vaur1.video.roots import VideoRoots
from vaur1.video.spec import VideoSpec
from video_helpers import read_stamp, write_stamped_video

SPEC = VideoSpec(fps=None, num_frames=6, factor=16, min_pixels=256, total_pixels=None)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for name, frames in (("a", 30), ("b", 24), ("c", 18)):
        write_stamped_video(folder / f"{name}.mp4", frames, fps=10, gop=6)
    return folder


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.frames"))


def test_hit_returns_identical_frames_and_metadata(videos, tmp_path):
    decoder = CachedDecoder(SPEC, tmp_path / "cache")
    first = decoder.get(videos / "a.mp4")
    second = decoder.get(videos / "a.mp4")
    assert (decoder.stats.misses, decoder.stats.hits) == (1, 1)
    assert np.array_equal(first.frames, second.frames) and second.frames.flags.writeable
    for field in (
        "indices",
        "timestamps",
        "fps",
        "num_frames_total",
        "duration",
        "height",
        "width",
        "padded",
    ):
        assert getattr(first, field) == getattr(second, field), field
    assert [read_stamp(f) for f in second.frames] == second.indices
    fresh = CachedDecoder(SPEC, tmp_path / "cache")  # another process or run: same entry
    assert np.array_equal(fresh.get(videos / "a.mp4").frames, first.frames) and fresh.stats.hits == 1


def test_changed_file_or_spec_misses(videos, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes((videos / "a.mp4").read_bytes())
    decoder = CachedDecoder(SPEC, tmp_path / "cache")
    decoder.get(video)
    other_spec = CachedDecoder(
        VideoSpec(fps=None, num_frames=4, factor=16, min_pixels=256), tmp_path / "cache"
    )
    assert other_spec.lookup(video) is None
    write_stamped_video(video, 12, fps=10)  # new content, size and mtime
    assert decoder.lookup(video) is None
    assert decoder.get(video).num_frames_total == 12
    assert len(entries(tmp_path / "cache")) == 2  # the stale entry is left for LRU eviction


def _write_entry_in_process(cache_dir: str, path: str, queue) -> None:
    decoder = CachedDecoder(SPEC, cache_dir)
    for _ in range(5):
        decoder.get(path)
        for entry in Path(cache_dir).rglob("*.frames"):
            entry.unlink(missing_ok=True)  # force the next get() to write again, racing the other writer
    queue.put(decoder.get(path).frames.sum())


def test_two_concurrent_writers_never_leave_a_broken_entry(videos, tmp_path):
    cache_dir = tmp_path / "cache"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    writers = [
        context.Process(target=_write_entry_in_process, args=(str(cache_dir), str(videos / "b.mp4"), queue))
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    expected = decode(videos / "b.mp4", SPEC).frames
    assert queue.get(timeout=5) == queue.get(timeout=5) == expected.sum()
    decoder = CachedDecoder(SPEC, cache_dir)
    decoder.get(videos / "b.mp4")
    assert np.array_equal(decoder.get(videos / "b.mp4").frames, expected) and decoder.stats.unreadable == 0
    assert not list(cache_dir.rglob("*.tmp"))


def test_size_limit_evicts_the_least_recently_used(videos, tmp_path):
    cache_dir = tmp_path / "cache"
    probe = CachedDecoder(SPEC, cache_dir)
    probe.get(videos / "a.mp4")
    one_entry = entries(cache_dir)[0].stat().st_size
    decoder = CachedDecoder(SPEC, cache_dir, max_bytes=int(2.5 * one_entry))
    decoder.get(videos / "b.mp4")
    paths = {p.name: p for p in entries(cache_dir)}
    assert len(paths) == 2
    past = time.time() - 100
    for age, entry in enumerate(paths.values()):
        os.utime(entry, (past + age, past + age))  # both written "long ago"
    decoder.get(videos / "a.mp4")  # a hit makes a the most recently used
    decoder.get(videos / "c.mp4")  # three entries do not fit: the least recently used (b) goes
    assert decoder.stats.evicted == 1
    assert decoder.lookup(videos / "a.mp4") is not None and decoder.lookup(videos / "c.mp4") is not None
    assert decoder.lookup(videos / "b.mp4") is None
    assert decoder.size_bytes() <= 2.5 * one_entry


def test_unreadable_entry_is_decoded_again(videos, tmp_path):
    decoder = CachedDecoder(SPEC, tmp_path / "cache")
    good = decoder.get(videos / "c.mp4")
    entry = entries(tmp_path / "cache")[0]
    entry.write_bytes(entry.read_bytes()[:-10])  # as a foreign tool might leave it
    again = decoder.get(videos / "c.mp4")
    assert decoder.stats.unreadable == 1 and decoder.stats.misses == 2
    assert np.array_equal(again.frames, good.frames)


def test_cache_config_and_disabled_cache(videos, tmp_path):
    config = CacheConfig(dir=str(tmp_path / "c"), max_gb=0.5)
    decoder = CachedDecoder.from_config(SPEC, config)
    assert decoder.dir == tmp_path / "c" and decoder.max_bytes == 500_000_000
    off = CachedDecoder.from_config(SPEC, CacheConfig(enabled=False))
    off.get(videos / "a.mp4")
    assert off.dir is None and off.stats.misses == 1 and off.lookup(videos / "a.mp4") is None
    with pytest.raises(ConfigError):
        CacheConfig(max_gb=0).validate()


def test_roots_resolve_per_source_and_default(tmp_path):
    roots = VideoRoots(default=str(tmp_path / "all"), ucf=str(tmp_path / "ucf"))
    assert (
        roots.resolve(Example(task="qa", id="ucf_x.mp4", source="ucf", video="x.mp4"))
        == tmp_path / "ucf/x.mp4"
    )
    assert (
        roots.resolve(Example(task="qa", id="synth_1.mp4", source="synth", video="1.mp4"))
        == tmp_path / "all/1.mp4"
    )
    with pytest.raises(ConfigError, match="video_roots.msad"):
        VideoRoots(ucf="u").resolve(Example(task="qa", id="msad_y.mp4", source="msad", video="y.mp4"))


def example(name: str, task: str = "qa") -> Example:
    return Example(task=task, id=f"synth_{name}", split="train", source="synth", video=name)


def test_dataset_skips_and_records_bad_videos_with_worker_prefetch(videos, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes((videos / name).read_bytes())
    (folder / "broken.mp4").write_text("not a video")
    roots = VideoRoots(synth=str(folder))
    names = [("a.mp4", "qa"), ("missing.mp4", "qa"), ("broken.mp4", "qa"), ("b.mp4", "qa"), ("a.mp4", "tag")]
    examples = [example(name, task) for name, task in names]
    decoder = CachedDecoder(SPEC, tmp_path / "cache")
    log = SkipLog(tmp_path / "run" / "skipped.jsonl")
    got = list(iter_videos(examples, roots, decoder, log, LoaderConfig(num_workers=2, prefetch_factor=2)))
    assert [e.key for e, _ in got] == [
        "train/synth_a.mp4/qa",
        "train/synth_b.mp4/qa",
        "train/synth_a.mp4/tag",
    ]
    assert [read_stamp(f) for f in got[1][1].frames] == got[1][1].indices
    assert log.count == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == ["train/synth_missing.mp4/qa", "train/synth_broken.mp4/qa"]
    assert "no such file" in records[0]["reason"] and records[0]["video"].endswith("missing.mp4")
    assert "not a readable video" in records[1]["reason"]


def test_batches_shrink_instead_of_borrowing_other_samples(videos, tmp_path):
    roots = VideoRoots(default=str(videos))
    dataset = VideoDataset(
        [example("a.mp4"), example("nope.mp4"), example("c.mp4")], roots, CachedDecoder(SPEC, None)
    )
    log = SkipLog()
    batches = list(iter_batches(video_loader(dataset, batch_size=2, loader=LoaderConfig(num_workers=0)), log))
    assert [[item.example.video for item in batch] for batch in batches] == [["a.mp4"], ["c.mp4"]]
    assert log.count == 1 and log.path is None
