"""Qwen2.5-VL-3B at full size on a CPU: one GRPO step and one SFT step with LoRA, against `vaur1 plan`.

    .venv/bin/python benchmarks/full_size_cpu.py [--workdir DIR] [--arch qwen2_5_vl_3b] [--keep]

Builds the real architecture (the shipped config.json: 36 layers, a 32-block vision tower, 3.75 B
parameters) with random bf16 weights and vaur1's tiny tokenizer, then runs through the real CLI:

  * `vaur1 train grpo`: LoRA r=16 on the language model's projections, bf16 autocast, gradient
    checkpointing, 2 completions of 16 new tokens for one SynthVAU clip of 4 frames at 112x112
    (the reference is the policy with its adapter disabled: no second model);
  * `vaur1 train sft`: the same model and clip, LoRA, one answer target.

Each run is a fresh process started with MALLOC_MMAP_THRESHOLD_=65536, so that freed tensors leave
the resident set at once and the peak follows live memory; the trainer logs its peak anonymous memory
above what the process held before the model loaded (`memory/peak_gib`) and where the time went
(`time/*`). `vaur1 plan --device cpu` plans the same configs; the script prints both and their ratio.
It needs ~12 GB of memory and ~10 GB of disk, and takes minutes: it is run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

VAUR1 = [sys.executable, "-m", "vaur1"]
STEP = {
    "cache": {"enabled": False},
    "loader": {"num_workers": 0},
    "video": {"fps": None, "num_frames": 4, "min_pixels": 3136, "max_pixels": 12544, "total_pixels": None},
    "bf16": True,
    "gradient_checkpointing": True,
    "per_device_train_batch_size": 1,
}


def run(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


def measured(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    return {key: value for key, value in last.items() if key.startswith(("time/", "memory/"))}


def planned(config: Path, job: str) -> dict:
    out = subprocess.run(
        [*VAUR1, "plan", "--config", str(config), "--job", job, "--device", "cpu", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, removed afterwards")
    parser.add_argument(
        "--arch", default="qwen2_5_vl_3b", help="a shipped architecture (vaur1 plan lists them)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the 7.5 GB model)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="vaur1-full-size-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir, bench = work / "model", work / "synth"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    try:
        if not (model_dir / "config.json").is_file():
            built = run(
                [*VAUR1, "model", "tiny", "--like", args.arch, "--full", "--out", str(model_dir), "--force"]
            )
            print(f"built {args.arch} with random bf16 weights in {built:.0f} s")
        if not (bench / "train.csv").is_file():
            run(
                [
                    *VAUR1,
                    "data",
                    "synth",
                    "--out",
                    str(bench),
                    "--n",
                    "4",
                    "--size",
                    "112x112",
                    "--split-ratio",
                    "1.0",
                ]
            )
        results = {}
        for job, extra in (
            ("grpo", {"num_generations": 2, "max_completion_length": 16, "data": {"tasks": ["tag"]}}),
            ("sft", {"data": {"tasks": ["tag"]}}),
        ):
            config = work / f"{job}.yaml"
            run_dir = work / f"run-{job}"
            shutil.rmtree(run_dir, ignore_errors=True)
            body = {
                **STEP,
                **extra,
                "model": {"name_or_path": str(model_dir), "dtype": "bfloat16", "lora": {"enabled": True}},
                "data": {"bench": str(bench), "split": "train", **extra.get("data", {})},
                "run": {"output_dir": str(run_dir), "max_steps": 1, "save_steps": 100, "resume": "never"},
            }
            config.write_text(yaml.safe_dump(body, sort_keys=False))
            wall = run([*VAUR1, "train", job, "--config", str(config)], env=env)
            got, plan = measured(run_dir), planned(config, job)
            peak = got["memory/peak_gib"]
            estimate = plan["per_gpu_bytes"]["total"] / 2**30
            results[job] = {
                "wall_s": round(wall, 1),
                "measured_peak_gib": peak,
                "planned_gib": round(estimate, 3),
                "plan_over_measured": round(estimate / peak, 3),
                "times": {key: round(value, 2) for key, value in got.items() if key.startswith("time/")},
                "planned": {
                    key: round(value / 2**30, 3) for key, value in plan["per_gpu_bytes"].items() if value
                },
            }
        print(json.dumps({"arch": args.arch, "results": results}, indent=2))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
