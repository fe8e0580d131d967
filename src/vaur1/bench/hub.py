"""Fetch the VAU-Bench annotations from the Hugging Face Hub (dataset `7xiang/VAU-Bench`)."""

from __future__ import annotations

from pathlib import Path

from vaur1.errors import VaurError

HUB_REPO = "7xiang/VAU-Bench"


def download_annotations(repo_id: str = HUB_REPO, cache_dir: str | None = None) -> Path:
    """Download the annotation CSVs and return the folder that holds them."""
    from huggingface_hub import snapshot_download

    try:
        root = Path(
            snapshot_download(
                repo_id=repo_id,
                repo_type="dataset",
                allow_patterns=["*.csv", "**/*.csv"],
                cache_dir=cache_dir,
            )
        )
    except Exception as err:  # hub errors come in many classes (offline, auth, HTTP); all mean the same here
        raise VaurError(
            f"cannot download the VAU-Bench annotations from the Hugging Face dataset {repo_id!r} "
            f"({type(err).__name__}). Offline? Point vaur1 at local files instead: a CSV file, or a "
            "folder holding train.csv, val.csv and test_*.csv (e.g. `vaur1 data stats path/to/vau-bench`)."
        ) from None
    folders = sorted({p.parent for p in root.rglob("*.csv")}, key=lambda p: len(p.parts))
    if not folders:
        raise VaurError(f"the Hugging Face dataset {repo_id!r} holds no CSV files")
    return folders[0]
