"""Rollout speed and GRPO step time: vLLM against transformers' generate, same model, prompts and run.

    .venv/bin/python benchmarks/rollout.py [--steps 8] [--generations 8] [--tokens 64] [--arch qwen2_5_vl]
    .venv/bin/python benchmarks/rollout.py --model DIR --frames 16 --tokens 1024   # e.g. a 3B copy on a GPU

The same GRPO run (SynthVAU clips, 2 prompts per step, G completions each, a LoRA-free policy) twice,
`rollout.backend=hf` then `rollout.backend=vllm`, each in a fresh process through the real CLI. Reported
per backend from metrics.jsonl, medians over the steps after the first: rollout tokens per second
(completion tokens generated per second of generation), `time/rollout`, `time/weight_push` and
`time/step`, and vLLM's ratio to HF from the same invocation. With `--model` a given checkpoint is used
(e.g. `vaur1 model tiny --like qwen2_5_vl_3b --full --out DIR` with random bf16 weights); otherwise a
tiny random model is built. On a CPU with the tiny model the two engines are at parity: vLLM's gain is
on GPUs at real sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

VAUR1 = [sys.executable, "-m", "vaur1"]


def median_after_first(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records[1:] if key in r]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64, help="max_completion_length")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--arch", default="qwen2_5_vl", help="the tiny model's architecture")
    parser.add_argument("--model", help="a checkpoint directory instead of a tiny model")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vaur1-rollout-"))
    model = args.model
    if model is None:
        model = str(work / "tiny")
        subprocess.run([*VAUR1, "model", "tiny", "--arch", args.arch, "--out", model], check=True)
    bench = work / "synth"
    subprocess.run(
        [*VAUR1, "data", "synth", "--out", str(bench), "--n", "24", "--split-ratio", "1.0"], check=True
    )
    results = {}
    for backend in ("hf", "vllm"):
        out = work / backend
        config = {
            "model": {"name_or_path": model, "dtype": args.dtype},
            "data": {"bench": str(bench), "split": "train", "tasks": ["qa", "tag", "cls"]},
            "video": {
                "fps": None,
                "num_frames": args.frames,
                "min_pixels": 784,
                "max_pixels": 12544,
                "total_pixels": None,
            },
            "cache": {"enabled": False},
            "loader": {"num_workers": 1},
            "num_generations": args.generations,
            "max_completion_length": args.tokens,
            "per_device_train_batch_size": 2,
            "rollout": {"backend": backend},
            "optim": {"learning_rate": 1e-5},
            "run": {"output_dir": str(out), "max_steps": args.steps, "save_steps": 10_000, "resume": "never"},
        }
        path = work / f"{backend}.yaml"
        path.write_text(yaml.safe_dump(config))
        subprocess.run([*VAUR1, "train", "grpo", "--config", str(path)], check=True, capture_output=True)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        results[backend] = {
            "rollout_tokens_per_second": median_after_first(records, "rollout_tokens_per_second"),
            "time/rollout": median_after_first(records, "time/rollout"),
            "time/weight_push": median_after_first(records, "time/weight_push"),
            "time/step": median_after_first(records, "time/step"),
        }
    hf, vllm = results["hf"], results["vllm"]
    results["vllm_over_hf"] = {
        "rollout_tokens_per_second": vllm["rollout_tokens_per_second"] / hf["rollout_tokens_per_second"],
        "time/step": vllm["time/step"] / hf["time/step"],
    }
    print(
        json.dumps(
            {"model": model, "generations": args.generations, "tokens": args.tokens, **results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
