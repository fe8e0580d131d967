"""vaur1: video anomaly understanding with multimodal LLMs trained by reinforcement fine-tuning.

Importing the package loads nothing heavy: torch, transformers and the torchvision shim come with
`vaur1.model`, where models are loaded, so the CLI and the data tools start at once.
"""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"


def subprocess_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for child Python processes that applies the torchvision shim at start-up."""
    env = dict(os.environ if env is None else env)
    site_dir = str(Path(__file__).parent / "_subprocess")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site_dir, env.get("PYTHONPATH", "")) if p)
    return env
