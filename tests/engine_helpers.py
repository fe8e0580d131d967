"""Launching vaur1's trainers under accelerate's engines on this CPU, as a user launches them on GPUs.

    out = launch(tmp_path / "z2", "grpo", config, engine="zero2", processes=2)

`engine` is a shipped accelerate config (`accelerate/<engine>`), or "ddp-cpu" for plain data
parallel (`--multi_gpu`, gloo), or None for one plain process. DeepSpeed runs on gloo with
`DS_ACCELERATOR=cpu`; its shared-memory op is compiled once per machine and cached. accelerate never
selects FSDP on a CPU, so an "fsdp" launch switches its state to FSDP2 in each process
(`train_helpers.fsdp_on_cpu`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import vaur1
from vaur1.config import config_path

# The console entry point with the toy reward registered first (see train_helpers.register_toy_reward),
# the one script every multi-process test launches. NAN_AT_CALLS="1,3" makes GRPO's loss NaN on those
# calls of `policy_loss` in every process; RECORD_ROLLOUTS_TO=<folder> appends each process's sampled
# completions to <folder>/texts-<rank>.jsonl.
LAUNCHER = """
import json, os, sys
sys.path.insert(0, {tests!r})
import train_helpers
import vaur1.rl.trainer as trainer
from vaur1.cli import main

train_helpers.register_toy_reward()
nan_at = {{int(n) for n in os.environ.get("NAN_AT_CALLS", "").split(",") if n}}
real_loss, calls = trainer.policy_loss, [0]

def sometimes_nan(*args, **kwargs):
    loss, stats = real_loss(*args, **kwargs)
    calls[0] += 1
    return (loss * float("nan") if calls[0] in nan_at else loss), stats

trainer.policy_loss = sometimes_nan
record_to, real_collect = os.environ.get("RECORD_ROLLOUTS_TO"), trainer.collect

def recording_collect(*args, **kwargs):
    rollout = real_collect(*args, **kwargs)
    with open(os.path.join(record_to, "texts-" + os.environ.get("RANK", "0") + ".jsonl"), "a") as handle:
        handle.write(json.dumps({{"keys": rollout.keys, "texts": rollout.texts}}) + "\\n")
    return rollout

if record_to:
    trainer.collect = recording_collect
if os.environ.get("FSDP_ON_CPU"):
    train_helpers.fsdp_on_cpu()
sys.exit(main(sys.argv[1:]))
"""
TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launcher(folder: Path) -> Path:
    script = folder / "launch_vaur1.py"
    if not script.exists():
        script.write_text(LAUNCHER.format(tests=str(TESTS)))
    return script


def launch_command(script: Path, engine: str | None, processes: int) -> list[str]:
    if engine is None:
        return [sys.executable, str(script)]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if engine == "ddp-cpu":
        command += ["--multi_gpu"]
    else:
        command += ["--config_file", str(config_path(f"accelerate/{engine}"))]
    return [*command, "--main_process_port", str(free_port()), str(script)]


def launch(
    out: Path,
    job: str,
    config: Path,
    engine: str | None = None,
    processes: int = 1,
    *overrides: str,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run `vaur1 train <job>` into `out`; with `check`, fails the test with the last of stderr if it fails."""
    command = launch_command(launcher(out.parent), engine, processes)
    command += ["train", job, "--config", str(config), f"run.output_dir={out}", *overrides]
    env = vaur1.subprocess_env() | {"OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"} | (env or {})
    if engine == "fsdp":
        env["FSDP_ON_CPU"] = "1"
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0 or not check, result.stderr[-4000:]
    return result


def launch_machines(
    out: Path, job: str, config: Path, machines: int = 2, *overrides: str
) -> list[subprocess.CompletedProcess]:
    """`machines` one-process "machines" on 127.0.0.1 forming one DDP job through accelerate's standard
    multi-node launch (--num_machines, --machine_rank, --main_process_ip), as on a cluster."""
    port = free_port()
    env = vaur1.subprocess_env() | {"OMP_NUM_THREADS": "1"}
    script = launcher(out.parent)
    running = []
    for rank in range(machines):
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_machines",
            str(machines),
            "--num_processes",
            str(machines),
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(port),
            str(script),
            "train",
            job,
            "--config",
            str(config),
            f"run.output_dir={out}",
            *overrides,
        ]
        running.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        )
    results = []
    for process in running:
        stdout, stderr = process.communicate(timeout=900)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    for result in results:
        assert result.returncode == 0, result.stderr[-4000:]
    return results
