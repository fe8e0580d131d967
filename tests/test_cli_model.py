from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import VAUR1, run_cli
from model_fixtures import load_tiny, make_video, video_prompt
from vaur1.console import QUIET_ENV
from vaur1.model import SamplingConfig, build_inputs, generate


def test_model_tiny_through_the_console_script_loads_and_generates(tmp_path):
    out = tmp_path / "tiny"
    result = run_cli(
        "model",
        "tiny",
        "--arch",
        "qwen2_5_vl",
        "--out",
        str(out),
        "--hidden-size",
        "64",
        "--layers",
        "1",
        "--seed",
        "3",
        check=True,
    )
    assert f"built qwen2_5_vl in {out}" in result.stdout
    # other libraries' bars and start-up warnings stay off the console unless asked for with -v
    assert result.stderr == "", result.stderr
    # the environment a user's shell has (a command run in this test process may have set the quiet ones)
    env = {name: value for name, value in os.environ.items() if name not in QUIET_ENV}
    loud = subprocess.run(
        [
            str(VAUR1),
            "-v",
            "model",
            "tiny",
            "--arch",
            "qwen2_5_vl",
            "--out",
            str(tmp_path / "loud"),
            "--layers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert "Writing model shards" in loud.stderr
    model, processor = load_tiny(out)
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers) == (64, 1)
    inputs = build_inputs(processor, [video_prompt()], [make_video(processor)])
    assert len(generate(model, processor, inputs, SamplingConfig(max_new_tokens=4)).texts) == 1

    info = json.loads(run_cli("model", "info", str(out), "--json", check=True).stdout)
    assert info["arch"] == "qwen2_5_vl"
    assert info["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert info["processor"]["factor"] == 28 and info["processor"]["temporal_patch"] == 2
    assert info["processor"]["chat_template"] == "official"
    assert info["text"]["hidden_size"] == 64

    table = run_cli("model", "info", str(out), check=True).stdout
    assert "Qwen2_5_VLProcessor" in table and "processor.video_max_pixels" in table

    again = run_cli("model", "tiny", "--arch", "qwen2_5_vl", "--out", str(out))
    assert again.returncode == 2
    assert f"{out}: directory is not empty (pass --force to write into it)" in again.stderr


def test_model_commands_report_bad_input_in_one_line(tmp_path):
    missing = run_cli("model", "info", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert f"{tmp_path / 'nowhere'}: no such checkpoint directory" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad_arch = run_cli("model", "tiny", "--arch", "llava", "--out", str(tmp_path / "x"))
    assert bad_arch.returncode == 2 and "invalid choice: 'llava'" in bad_arch.stderr

    bad_size = run_cli(
        "model", "tiny", "--arch", "qwen3_vl", "--out", str(tmp_path / "y"), "--hidden-size", "40"
    )
    assert bad_size.returncode == 2 and "hidden_size 40" in bad_size.stderr


def test_deepspeeds_warnings_are_kept_off_the_console_unless_verbose():
    """DeepSpeed resets its logger's level when it loads, so vaur1 filters its records instead."""
    script = (
        "import sys\n"
        "from vaur1.console import quiet_third_party\n"
        "quiet_third_party(verbose=sys.argv[1] == 'loud')\n"
        "from deepspeed.utils import logger\n"
        "logger.warning('a start-up note')\n"
        "logger.error('a real error')\n"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", script, "quiet"], capture_output=True, text=True, timeout=300
    )
    loud = subprocess.run([sys.executable, "-c", script, "loud"], capture_output=True, text=True, timeout=300)
    quiet_output, loud_output = (
        quiet.stdout + quiet.stderr,
        loud.stdout + loud.stderr,
    )  # DeepSpeed prints to stdout
    assert "a real error" in quiet_output and "a start-up note" not in quiet_output
    assert "a start-up note" in loud_output
