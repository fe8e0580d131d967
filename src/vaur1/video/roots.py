"""Where each source's videos live on disk: one folder per VAU-Bench source, or one for all."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from vaur1.errors import ConfigError, VaurError


class HasVideo(Protocol):
    """Anything naming a video by source and file name: a `Sample` or an `Example`."""

    id: str
    source: str
    video: str


@dataclass(frozen=True)
class VideoRoots:
    """Video folders by source (msad, ucf, ecva, synth); `default` serves any source not set."""

    default: str | None = None  # the folder of every source not set below
    msad: str | None = None  # MSAD's videos
    ucf: str | None = None  # UCF-Crime's videos
    ecva: str | None = None  # ECVA's videos
    synth: str | None = None  # SynthVAU's videos (a SynthVAU folder's videos/ by default)

    def folder(self, source: str) -> Path:
        root = getattr(self, source, None) if source in ("msad", "ucf", "ecva", "synth") else None
        root = root or self.default
        if root is None:
            raise ConfigError(
                f"no video folder for source {source!r}: set video_roots.{source} or video_roots.default"
            )
        return Path(root).expanduser()

    def resolve(self, item: HasVideo) -> Path:
        """The video file of a sample or example (which need not exist yet)."""
        return self.folder(item.source) / item.video


Item = TypeVar("Item", bound=HasVideo)


def check_videos(
    items: Sequence[Item], roots: VideoRoots, max_missing: float
) -> tuple[list[Item], list[Item]]:
    """(the items whose video file exists, those whose file is missing), checked before a run starts.

    More than `max_missing` (a share) missing means the roots are wrong, not a few files: one error
    naming the folder and a missing file, instead of a run that skips everything and succeeds on
    nothing. Within the share, the caller skips and lists the missing ones.
    """
    present: list[Item] = []
    missing: list[Item] = []
    exists: dict[Path, bool] = {}
    for item in items:
        path = roots.resolve(item)
        if path not in exists:
            try:
                exists[path] = os.path.isfile(path)
            except (OSError, ValueError):  # a name too long or holding a NUL byte
                exists[path] = False
        (present if exists[path] else missing).append(item)
    if items and len(missing) > max_missing * len(items):
        first = missing[0]
        raise VaurError(
            f"{roots.folder(first.source)}: {len(missing)} of {len(items)} samples have no video file "
            f"(e.g. {str(roots.resolve(first))[:300]}); are the video roots right? (data.video_roots.*; "
            f"data.max_missing_videos={max_missing} allows that share to be skipped)"
        )
    return present, missing
