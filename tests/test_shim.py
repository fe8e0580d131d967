"""The torchvision shim: transformers' video processor and TRL import next to the CPU torch."""

from __future__ import annotations

import subprocess
import sys

import vaur1

IMPORTS = "from transformers import Qwen2VLVideoProcessor; from trl import GRPOConfig; print('ok')"


def test_the_model_package_makes_transformers_video_and_trl_importable():
    result = subprocess.run(
        [sys.executable, "-c", f"import vaur1.model; {IMPORTS}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_child_processes_get_the_shim_without_importing_vaur1():
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS],
        capture_output=True,
        text=True,
        timeout=300,
        env=vaur1.subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_shim_is_a_no_op_once_torchvision_is_imported():
    import torchvision  # noqa: F401

    from vaur1._torchvision_shim import install_torchvision_shim

    assert install_torchvision_shim() is False
