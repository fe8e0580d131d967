"""Shared fixtures: the released VAU-Bench CSVs, the console script, and (from the helper modules) the
tiny models, SynthVAU folders and training fixtures every module may request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState

import vaur1.model  # noqa: F401  (applies the torchvision shim before any test imports transformers)

# fixtures every test module may request by name: the tiny models, SynthVAU folders, the toy reward
pytest_plugins = ("model_fixtures", "train_helpers", "eval_helpers")

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "vau-bench"
VAUR1 = Path(sys.executable).parent / "vaur1"


@pytest.fixture(scope="session")
def shared_bench() -> Path:
    """The released VAU-Bench annotation CSVs, next to the checkout (never copied into it)."""
    if not (SHARED_BENCH / "val.csv").is_file():
        message = f"released VAU-Bench CSVs not found at {SHARED_BENCH}"
        if os.environ.get("CI"):  # in CI a missing copy is a broken setup, not a reason to test less
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_BENCH


def run_cli(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `vaur1` console script as a user would."""
    result = subprocess.run([str(VAUR1), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"vaur1 {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Every test starts and ends without accelerate's process-wide state, as a new process would: a run
    that set bf16 (or DeepSpeed) must not decide how the next test's Accelerator is built."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)
