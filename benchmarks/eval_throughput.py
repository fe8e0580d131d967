"""Evaluation throughput: batched inference (batch 8) against one sample at a time, as the official
VAU-R1 scripts run, with the same tiny model, data and pipeline in one run.

    .venv/bin/python benchmarks/eval_throughput.py [--clips 32] [--batch 8] [--max-new-tokens 128] [--workdir DIR]

Data: SynthVAU clips (160x120, 8-16 s, 8 fps) in --workdir, written once and reused. Model: the
default tiny Qwen2.5-VL (hidden 128, 2 layers), loaded once and shared by every measurement.
Each measurement is `vaur1.eval.infer.run_inference` into a fresh run directory: the QA, TAG and
CLS prompts of every clip in direct mode, greedy, frames from a frame cache warmed beforehand
(decoding is measured by benchmarks/decode.py). A random tiny model never ends its turn, so every
prompt generates exactly `--max-new-tokens` tokens; the default 128 is the length of a think-mode
answer (the official scripts allow 1024). Batch sizes are measured in turns, `--repeats` times
each, and the median is reported.
Target: batch 8 at least 3x the samples per second of batch 1 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import vaur1.model  # noqa: F401  (the torchvision shim, before transformers)
from vaur1.bench.synth import generate_synthvau
from vaur1.eval.config import load_eval_config, load_examples
from vaur1.eval.infer import run_inference, work_items
from vaur1.model import build_tiny_model
from vaur1.model.generators import load_generator
from vaur1.video.cache import CachedDecoder


def prepare(workdir: Path, clips: int) -> tuple[Path, Path]:
    bench, model = workdir / f"synth-{clips}", workdir / "tiny-qwen2_5_vl"
    if not (bench / "synthvau.json").is_file():
        generate_synthvau(bench, n=clips, seed=0, split_ratio=(0.5, 0.5))
    if not (model / "config.json").is_file():
        build_tiny_model("qwen2_5_vl", model)
    return bench, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=int, default=32, help="SynthVAU clips (half of them in the test split)"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vaur1-bench-eval")
    args = parser.parse_args()

    bench, model = prepare(args.workdir, args.clips)
    flags = {
        "model.name_or_path": str(model),
        "model.device": "cpu",
        "data.bench": str(bench),
        "data.split": "test",
        "data.tasks": ["qa", "tag", "cls"],
        "modes": ["direct"],
        "sampling.max_new_tokens": args.max_new_tokens,
        "cache.dir": str(args.workdir / "frames"),
        "offline_scorer": False,
    }
    base = load_eval_config(None, [], flags)
    examples, _ = load_examples(base.data, base.splits)
    items = len(work_items(examples, base.modes))
    decoder = CachedDecoder.from_config(base.video, base.cache)
    for example in examples:
        decoder.get(base.data.roots().resolve(example))  # warm the frame cache
    generator = load_generator(base.model, base.sampling, base.video)
    print(
        f"{items} prompts ({len(examples)} examples x {len(base.modes)} mode), {torch.get_num_threads()} threads"
    )
    print(f"video: {base.video.describe()}")

    def measure(batch_size: int, run: int) -> float:
        cfg = load_eval_config(None, [], {**flags, "batch_size": batch_size, "out": ""})
        run_dir = args.workdir / "runs" / f"batch{batch_size}-{run}-{time.time_ns()}"
        started = time.perf_counter()
        summary = run_inference(cfg, examples, run_dir, generator, progress=False)
        seconds = time.perf_counter() - started
        assert summary.predicted == items, summary
        return items / seconds

    measure(args.batch, -1)  # warm-up: allocator, kernels, worker start-up
    rates: dict[int, list[float]] = {1: [], args.batch: []}
    for run in range(args.repeats):
        for batch_size in rates:
            rates[batch_size].append(measure(batch_size, run))
            print(f"  batch {batch_size}, run {run + 1}: {rates[batch_size][-1]:.2f} samples/s")
    one, batched = statistics.median(rates[1]), statistics.median(rates[args.batch])
    print()
    print("| batch | samples/s (median) | runs | vs batch 1 |")
    print("|---|---|---|---|")
    print(f"| 1 (one at a time) | {one:.2f} | {', '.join(f'{r:.2f}' for r in rates[1])} | 1.00x |")
    print(
        f"| {args.batch} | {batched:.2f} | {', '.join(f'{r:.2f}' for r in rates[args.batch])} | "
        f"{batched / one:.2f}x |"
    )
    verdict = "meets" if batched / one >= 3 else "misses"
    print(f"\nbatch {args.batch} is {batched / one:.2f}x batch 1: {verdict} the 3x target")


if __name__ == "__main__":
    main()
