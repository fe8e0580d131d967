"""VAU-Bench from the Hub, the default `data.bench` of every shipped config for the real checkpoints:
the annotations are downloaded by `huggingface_hub` itself from tests/fake_hub.py, a local stand-in of
the Hub serving the released CSVs, and read exactly as the same files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import VAUR1
from fake_hub import FakeHub
from vaur1.bench.hub import HUB_REPO
from vaur1.config import shipped_configs

# The shipped trainer configs (a name starting with _ is a base the others extend)
TRAINER_CONFIGS = [
    name
    for name in shipped_configs()
    if not name.startswith("accelerate/") and not name.split("/")[-1].startswith("_")
]


@pytest.fixture
def hub(shared_bench: Path):
    """The stand-in serving the released CSVs; the train split, which the test data lacks, is the val
    file's rows under the train name (the loader reads it like any split)."""
    files = {path.name: path.read_bytes() for path in sorted(shared_bench.glob("*.csv"))}
    files["train.csv"] = files["val.csv"]
    with FakeHub() as server:
        server.datasets[HUB_REPO] = files
        yield server


def hub_env(hub: FakeHub, home: Path) -> dict[str, str]:
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_OFFLINE="0")


def test_data_stats_of_the_hub_name_equal_those_of_the_files(hub, shared_bench, tmp_path):
    downloaded = subprocess.run(
        [str(VAUR1), "data", "stats", "vau-bench", "--json"],
        capture_output=True,
        text=True,
        env=hub_env(hub, tmp_path / "hf"),
        timeout=300,
    )
    assert downloaded.returncode == 0, downloaded.stderr
    assert "Fetching" not in downloaded.stderr  # huggingface_hub's bar, shown with -v only
    local = subprocess.run(
        [str(VAUR1), "data", "stats", str(shared_bench), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    served = json.loads(downloaded.stdout)["files"]
    assert served["val.csv"]["rows"] == 734
    assert {name: served[name] for name in json.loads(local.stdout)["files"]} == json.loads(local.stdout)[
        "files"
    ]
    assert any(path.endswith("/resolve/" + "1" * 40 + "/test_msad.csv") for _, path, _ in hub.requests)


def test_every_shipped_config_for_real_checkpoints_loads_its_data_from_the_hub(hub, tmp_path):
    script = (
        "import json, sys\n"
        "from vaur1.config import load_config\n"
        "from vaur1.rl.config import GRPOTrainConfig\n"
        "from vaur1.sft.config import SFTTrainConfig\n"
        "counts = {}\n"
        "for name in sys.argv[1:]:\n"
        "    cfg = load_config(SFTTrainConfig if 'sft' in name.split('/') else GRPOTrainConfig, name)\n"
        "    if cfg.data.bench != 'vau-bench':\n"
        "        continue\n"
        "    train = cfg.data.load()\n"
        "    val = cfg.validation.data(cfg.data).load() if cfg.validation.enabled else []\n"
        "    counts[name] = [len(train), len(val), sorted({e.task for e in train})]\n"
        "print(json.dumps(counts))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *TRAINER_CONFIGS],
        capture_output=True,
        text=True,
        env=hub_env(hub, tmp_path / "hf"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    # every config for the real checkpoints reads the Hub; the tiny ones read SynthVAU
    assert sorted(counts) == [name for name in TRAINER_CONFIGS if name.startswith("qwen2_5_vl_3b/")]
    for name, (examples, _, _) in counts.items():
        assert examples > 0, name
    assert counts["qwen2_5_vl_3b/cotrain"][2] == ["cls", "qa", "tag"]
    assert counts["qwen2_5_vl_3b/tag"][2] == ["tag"]
