"""What every run directory records: the resolved config, package versions, the git revision
and hashes of the data files, so that a result can be traced back to what produced it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vaur1.config import save_config
from vaur1.files import file_sha256, write_json
from vaur1.layout import CONFIG, RUN_INFO

PACKAGES = (
    "vaur1",
    "torch",
    "torchvision",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "av",
    "numpy",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(cwd: str | Path | None = None) -> dict[str, Any]:
    """The commit of the vaur1 checkout (or of `cwd`), and whether it had uncommitted changes."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": rev, "dirty": bool(dirty)}


def write_run_metadata(
    run_dir: str | Path,
    config: Any,
    data_files: list[str | Path] | tuple = (),
    command: list[str] | None = None,
) -> Path:
    """Write config.yaml and run_info.json into `run_dir` (created if needed)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG)
    info = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "versions": package_versions(),
        "git": git_revision(),
        "data_files": {str(p): file_sha256(p) for p in data_files if Path(p).is_file()},
    }
    write_json(run_dir / RUN_INFO, info)
    return run_dir
