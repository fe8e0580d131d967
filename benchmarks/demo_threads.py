"""Torch threads for the demo's training steps: SFT and GRPO steps of `vaur1 demo` at 1 and 2 threads.

    .venv/bin/python benchmarks/demo_threads.py [--threads 1 2] [--sft-steps 60] [--grpo-steps 8]
                                                [--rounds 2] [--workdir DIR] [key=value ...]

Both sides train in one process, taking turns for --rounds rounds: the demo's SFT for --sft-steps
steps and its GRPO for --grpo-steps steps, from the demo's own untrained tiny model on its own SynthVAU
(`data.extra_test=0`; key=value overrides the demo's settings), with the trainer configs the demo
builds (`sft_train_config`, `grpo_train_config`), a loader worker and the frame cache included. An
untrained model's GRPO completions run to the length limit, so its GRPO steps are longer than the
demo's. Reported: the median step time per thread count after each run's first 5 SFT steps or first
GRPO step, the ratio against the first thread count, and whether the SFT losses were the same at
every thread count (the demo's results stay the same when its thread count changes).

Run it on an otherwise idle machine: next to other busy processes, more threads than free cores
slow every step down many times over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

import vaur1.model  # noqa: F401  (the torchvision shim, before transformers)
from vaur1.demo import grpo_train_config, load_demo_config, run_data, run_model, sft_train_config

SFT_WARMUP = 5


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train_round(cfg, model: str, out: Path, args: argparse.Namespace) -> dict[str, list]:
    from vaur1.rl.trainer import train as train_grpo
    from vaur1.sft.trainer import train as train_sft

    train_sft(sft_train_config(cfg, model, out / "sft", args.sft_steps))
    AcceleratorState._reset_state(True)  # each trainer builds its own Accelerator
    train_grpo(grpo_train_config(cfg, model, out / "grpo", args.grpo_steps))
    AcceleratorState._reset_state(True)
    sft = metrics(out / "sft")
    return {
        "sft": [r["time/step"] for r in sft[SFT_WARMUP:]],
        "grpo": [r["time/step"] for r in metrics(out / "grpo")[1:]],
        "losses": [r["loss"] for r in sft],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="the first is the baseline")
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--grpo-steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="data, model and runs (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="demo settings")
    args = parser.parse_args()
    if args.sft_steps <= SFT_WARMUP or args.grpo_steps < 2:
        parser.error(f"--sft-steps must exceed {SFT_WARMUP} and --grpo-steps must be at least 2")

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        cfg = load_demo_config(overrides=["data.extra_test=0", *args.overrides, f"out={workdir}"])
        run_data(cfg, workdir / "data", {})
        model = run_model(cfg, workdir / "model", {})["model"]
        results = {n: {"sft": [], "grpo": [], "losses": []} for n in args.threads}
        for round_index in range(args.rounds):
            for threads in args.threads:
                torch.set_num_threads(threads)
                out = workdir / "runs" / f"round-{round_index}-threads-{threads}"
                shutil.rmtree(out, ignore_errors=True)
                for key, values in train_round(cfg, model, out, args).items():
                    results[threads][key].append(values)
            print(f"round {round_index + 1}/{args.rounds} done")

    base = args.threads[0]
    medians = {
        n: {
            stage: statistics.median(t for run in results[n][stage] for t in run) for stage in ("sft", "grpo")
        }
        for n in args.threads
    }
    print(
        f"\n{'torch threads':<16}{'SFT step, s':>14}{'vs ' + str(base):>10}{'GRPO step, s':>15}{'vs ' + str(base):>10}"
    )
    for n in args.threads:
        sft, grpo = medians[n]["sft"], medians[n]["grpo"]
        print(
            f"{n:<16}{sft:>14.4f}{medians[base]['sft'] / sft:>9.2f}x{grpo:>15.3f}{medians[base]['grpo'] / grpo:>9.2f}x"
        )
    losses = [run for n in args.threads for run in results[n]["losses"]]
    print(f"\nSFT losses the same at every thread count and round: {all(run == losses[0] for run in losses)}")


if __name__ == "__main__":
    main()
