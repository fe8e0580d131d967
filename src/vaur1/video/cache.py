"""A disk cache of decoded frames, shared by every worker and every run that uses the same spec.

An entry is keyed by the video's identity (resolved path, size, modification time) and the
spec's hash, so a changed file or spec never reads stale frames. One entry is one file: a small
JSON header followed by the raw uint8 frames, read back with a single `readinto`. Writers write
a private temporary file and `os.replace` it into place, so concurrent workers never see half an
entry. A hit refreshes the entry's modification time; when the cache grows past `max_bytes`, the
least recently used entries are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaur1.errors import ConfigError
from vaur1.video.decode import VideoInfo, check_decoder, decode
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec

MAGIC = b"VAURFRM1"
SUFFIX = ".frames"
_HEADER_LENGTH = struct.Struct("<Q")
STALE_TEMP_SECONDS = 3600  # a temporary file this old belongs to a writer that died
RESCAN_EVERY = 100  # writes between full scans; other workers' writes are only seen by a scan

log = logging.getLogger("vaur1.video")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/vaur1/frames, or ~/.cache/vaur1/frames."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaur1" / "frames"


@dataclass(frozen=True)
class CacheConfig:
    """Where decoded frames are kept and how much disk they may take."""

    enabled: bool = True  # keep decoded frames on disk for the next epoch and the next run
    dir: str | None = None  # None: default_cache_dir()
    max_gb: float = 20.0  # the least recently used entries are removed beyond this size

    def validate(self) -> None:
        if not self.max_gb > 0:
            raise ConfigError(f"cache.max_gb: must be positive, got {self.max_gb}")

    @property
    def path(self) -> Path:
        return Path(self.dir).expanduser() if self.dir else default_cache_dir()

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * 1e9)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    unreadable: int = 0  # entries that failed to read back and were decoded again
    evicted: int = 0


def entry_bytes(spec: VideoSpec, info: VideoInfo) -> int:
    """Bytes of the frames the cache keeps for a video described by `info` (uint8 RGB, padded)."""
    frames, height, width = spec.model_input_shape(info.num_frames_total, info.fps, info.height, info.width)
    return frames * height * width * 3


def file_identity(path: str | Path) -> str:
    """What makes a video file the same file: resolved path, size and modification time."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}"


def _write_entry(target: Path, video: DecodedVideo) -> None:
    header = {
        "shape": list(video.frames.shape),
        "path": video.path,
        "timestamps": video.timestamps,
        "indices": video.indices,
        "fps": video.fps,
        "num_frames_total": video.num_frames_total,
        "duration": video.duration,
        "height": video.height,
        "width": video.width,
        "padded": video.padded,
    }
    encoded = json.dumps(header).encode()
    temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temp.open("wb") as handle:
            handle.write(MAGIC + _HEADER_LENGTH.pack(len(encoded)) + encoded)
            handle.write(np.ascontiguousarray(video.frames, dtype=np.uint8).data)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _read_entry(source: Path) -> DecodedVideo:
    """An entry as written by `_write_entry`; ValueError if it is not one."""
    with source.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ValueError("bad magic")
        (length,) = _HEADER_LENGTH.unpack(handle.read(_HEADER_LENGTH.size))
        header = json.loads(handle.read(length))
        frames = np.empty(header.pop("shape"), dtype=np.uint8)
        if handle.readinto(memoryview(frames).cast("B")) != frames.nbytes or handle.read(1):
            raise ValueError("size does not match the header")
    return DecodedVideo(frames=frames, **header)


class CachedDecoder:
    """`decode(path, spec)` through the disk cache. With `cache_dir=None` it only decodes."""

    def __init__(
        self, spec: VideoSpec, cache_dir: str | Path | None, max_bytes: int = int(20e9), threads: int = 1
    ):
        check_decoder(spec.decoder)
        self.spec = spec
        self.threads = threads  # decoding threads per video on a miss (see `decode`)
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._spec_hash = spec.hash()
        self._estimated_bytes: int | None = None  # this process's view of the cache size
        self._writes_since_scan = 0
        self._write_failed = False  # set at the first failed write: the rest decode without caching
        if self.dir is not None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                self._write_failed = True
                log.warning(
                    "frame cache %s: cannot create it (%s); decoding without caching", self.dir, err.strerror
                )

    @classmethod
    def from_config(cls, spec: VideoSpec, config: CacheConfig, threads: int = 1) -> CachedDecoder:
        return cls(spec, config.path if config.enabled else None, config.max_bytes, threads)

    def entry_path(self, video_path: str | Path) -> Path:
        """Where the entry for this file and spec lives (it may not exist)."""
        assert self.dir is not None
        try:
            identity = file_identity(video_path)
        except OSError:
            identity = str(Path(video_path).resolve())  # a missing file: decode reports it
        key = hashlib.sha256(f"{identity}|{self._spec_hash}".encode()).hexdigest()[:32]
        return self.dir / key[:2] / f"{key}{SUFFIX}"

    def lookup(self, path: str | Path) -> DecodedVideo | None:
        """The cached frames of `path`, or None (counts a hit, never a miss)."""
        if self.dir is None:
            return None
        entry = self.entry_path(path)
        started = time.perf_counter()
        try:
            video = _read_entry(entry)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
            self.stats.unreadable += 1
            with contextlib.suppress(OSError):
                entry.unlink(missing_ok=True)
            return None
        # the modification time is the LRU clock; another worker may have evicted the entry since we
        # read it, which leaves the frames we hold just as good
        with contextlib.suppress(FileNotFoundError):
            os.utime(entry)
        self.stats.hits += 1
        video.path = str(path)
        video.decode_seconds = time.perf_counter() - started
        return video

    def get(self, path: str | Path) -> DecodedVideo:
        """Frames of `path` under the spec: from the cache, or decoded and stored."""
        cached = self.lookup(path)
        if cached is not None:
            return cached
        video = decode(path, self.spec, threads=self.threads)
        self.stats.misses += 1
        if self.dir is not None and not self._write_failed:
            entry = self.entry_path(path)
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                _write_entry(entry, video)
            except OSError as err:
                # a full or read-only cache disk costs speed, never a sample: decode without caching
                self._write_failed = True
                log.warning(
                    "frame cache %s: cannot write (%s); decoding without caching", self.dir, err.strerror
                )
            else:
                self._account(video.frames.nbytes)
        return video

    def _account(self, written: int) -> None:
        """Track the cache size cheaply; evict once it may be over the limit."""
        self._writes_since_scan += 1
        if self._estimated_bytes is None or self._writes_since_scan >= RESCAN_EVERY:
            self._estimated_bytes = self.size_bytes()
            self._writes_since_scan = 0
        else:
            self._estimated_bytes += written
        if self._estimated_bytes > self.max_bytes:
            self.evict()

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every entry; removes temporary files of dead writers."""
        assert self.dir is not None
        found = []
        now = time.time()
        for sub in self.dir.iterdir():
            if not sub.is_dir():
                continue
            for item in os.scandir(sub):
                try:
                    stat = item.stat()
                except FileNotFoundError:
                    continue
                if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                    found.append((stat.st_mtime, stat.st_size, Path(item.path)))
                elif item.name.endswith(".tmp") and now - stat.st_mtime > STALE_TEMP_SECONDS:
                    Path(item.path).unlink(missing_ok=True)
        return found

    def evict(self) -> None:
        """Remove least recently used entries until the cache fits in `max_bytes`."""
        if self.dir is None:
            return
        entries = sorted(self._entries(), key=lambda e: (e[0], str(e[2])))
        total = sum(size for _, size, _ in entries)
        for _, size, entry in entries:
            if total <= self.max_bytes:
                break
            entry.unlink(missing_ok=True)
            total -= size
            self.stats.evicted += 1
        self._estimated_bytes = total
        self._writes_since_scan = 0
