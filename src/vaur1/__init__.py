"""vaur1: video anomaly understanding with multimodal LLMs trained by reinforcement fine-tuning."""

from __future__ import annotations

import os
from pathlib import Path

from vaur1._torchvision_shim import install_torchvision_shim

__version__ = "0.1.0"

install_torchvision_shim()


def subprocess_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for child Python processes that applies the torchvision shim at start-up."""
    env = dict(os.environ if env is None else env)
    site_dir = str(Path(__file__).parent / "_subprocess")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site_dir, env.get("PYTHONPATH", "")) if p)
    return env
