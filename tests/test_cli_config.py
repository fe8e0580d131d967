"""`vaur1 config`: the shipped configs, every setting with its help, and configs inside the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import run_cli
from vaur1.cli.config import JOBS
from vaur1.config import SHIPPED, config_path, shipped_configs
from vaur1.vocab import ARCHITECTURES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_setting_of_every_job_has_a_default_and_one_line_of_help(job):
    found = json.loads(run_cli("config", "show", job, "--json", check=True).stdout)
    keys = [s["key"] for s in found]
    assert len(keys) == len(set(keys)) > 10
    missing = [s["key"] for s in found if not s["help"].strip()]
    assert missing == [], f"{job}: settings without help: {missing}"
    assert all("\n" not in s["help"] for s in found)


def test_show_with_a_shipped_config_and_an_override_gives_the_values_a_run_would_use():
    found = json.loads(
        run_cli(
            "config",
            "show",
            "grpo",
            "--config",
            "qwen2_5_vl_3b/tag",
            "optim.learning_rate=3e-6",
            "--json",
            check=True,
        ).stdout
    )
    values = {s["key"]: s["value"] for s in found}
    assert values["optim.learning_rate"] == 3e-6
    assert values["model.name_or_path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert values["data.tasks"] == ["tag"]


def test_show_names_a_bad_override_key():
    result = run_cli("config", "show", "grpo", "train.learning_rate=1e-6")
    assert result.returncode == 2
    assert "train" in result.stderr and "Traceback" not in result.stderr


def test_list_and_path_cover_every_shipped_file():
    listed = run_cli("config", "list", check=True).stdout
    names = shipped_configs()
    assert {"grpo/tiny_cpu", "sft/tiny_cpu", "qwen2_5_vl_3b/cotrain", "accelerate/zero2"} <= set(names)
    for name in names:
        assert name in listed
    path = Path(run_cli("config", "path", "accelerate/zero2", check=True).stdout.strip())
    assert path == (SHIPPED / "accelerate" / "zero2.yaml").resolve() and path.is_file()
    assert config_path("configs/grpo/tiny_cpu.yaml").resolve() == (SHIPPED / "grpo/tiny_cpu.yaml").resolve()


@pytest.mark.slow
def test_the_wheel_ships_every_config(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("vaur1-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    for name in shipped_configs():
        assert f"vaur1/configs/{name}.yaml" in inside, name
    for name in ARCHITECTURES:  # vaur1 plan and model tiny --like read them offline
        assert f"vaur1/model/architectures/{name}.json" in inside, name


def test_tables_print_whole_in_a_pipe(shared_bench):
    """Not a terminal: rich would assume 80 columns and cut or fold keys; the output keeps them whole."""
    shown = run_cli("config", "show", "grpo", check=True).stdout
    line = next(row for row in shown.splitlines() if "model.attn_implementation" in row)
    assert "flash_attention_2 where flash-attn is installed" in line  # key, value and help on one line
    stats = run_cli("data", "stats", str(shared_bench), check=True).stdout
    assert "test_ucf_crime.csv" in stats and "skipped" in stats and "…" not in stats
    listed = run_cli("config", "list", check=True).stdout
    assert (
        "accelerate/zero2  DeepSpeed ZeRO-2 (optimizer states and gradients sharded) on one machine with 8 GPUs"
        in listed
    )
    assert "(set num_processes to your GPU count)." in listed
