"""The torchvision shim: transformers' video processor and TRL import next to the CPU torch."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

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


def test_the_environment_wide_hook_fixes_plain_transformers_and_trl_in_a_fresh_venv(tmp_path):
    """A fresh venv that sees this environment's packages as plain sys.path entries (its .pth files,
    vaur1's hook included, are not run): plain `from transformers import AutoProcessor` and TRL's
    `trl grpo --help` fail there until `python -m vaur1._torchvision_shim` (what `make venv` runs)
    writes the hook's .pth into the fresh venv's site-packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    fresh_site = subprocess.run(
        [python, "-c", where], capture_output=True, text=True, check=True
    ).stdout.strip()
    shared = [sysconfig.get_paths()["purelib"], str(Path(vaur1.__file__).resolve().parents[1])]
    Path(fresh_site, "shared.pth").write_text("\n".join(shared) + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=300)

    plain = "from transformers import AutoProcessor; print('ok')"
    trl_help = "import sys; from trl.cli import main; sys.argv = ['trl', 'grpo', '--help']; main()"
    before = run(plain)
    assert before.returncode != 0 and "torchvision" in before.stderr
    written = subprocess.run(
        [python, "-m", "vaur1._torchvision_shim"], capture_output=True, text=True, env=env, timeout=300
    )
    assert written.returncode == 0 and written.stdout.strip().startswith(fresh_site), written.stderr[-2000:]
    after = run(plain)
    assert after.returncode == 0 and after.stdout.strip() == "ok", after.stderr[-2000:]
    helped = run(trl_help)
    assert helped.returncode == 0 and "--learning_rate" in helped.stdout, helped.stderr[-2000:]
