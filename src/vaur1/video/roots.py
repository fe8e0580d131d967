"""Where each source's videos live on disk: one folder per VAU-Bench source, or one for all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vaur1.errors import ConfigError


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
