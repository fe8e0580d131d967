"""The settings of a scan (`vaur1.eval.scan`), apart so that the command line reads its defaults
without loading the decoder."""

from __future__ import annotations

from dataclasses import dataclass

from vaur1.errors import ConfigError


@dataclass
class ScanConfig:
    window: float = 32.0  # seconds per window
    stride: float = 16.0  # seconds between window starts (at most the window)
    batch: int = 4  # windows per model call (two prompts each)
    threshold: float = 0.5  # a window scoring at least this is anomalous
    frame_rate: float = 1.0  # instants per second at which frame-level AUC / AP are computed

    def validate(self) -> None:
        if not (self.window > 0 and self.stride > 0):
            raise ConfigError(
                f"scan: window and stride must be positive seconds, got {self.window} and {self.stride}"
            )
        if self.stride > self.window:
            raise ConfigError(
                f"scan: a stride of {self.stride} s above the window of {self.window} s leaves gaps unseen"
            )
        if self.batch < 1:
            raise ConfigError(f"scan.batch must be at least 1, got {self.batch}")
        if not self.frame_rate > 0:
            raise ConfigError(f"scan.frame_rate must be positive, got {self.frame_rate}")
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f"scan.threshold must be in [0, 1], got {self.threshold}")
