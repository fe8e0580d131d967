"""Step time and peak memory per process of each distributed engine, on 2 CPU processes.

    .venv/bin/python benchmarks/engines.py [--steps 6] [--generations 4] [--tokens 16] [--workdir DIR]

The same GRPO run (tiny Qwen2.5-VL, SynthVAU clips, 2 prompts per step, a frozen reference: beta 0.04,
fp32) under one plain process (the baseline, both prompts in one micro-batch) and under DDP, DeepSpeed
ZeRO-2, ZeRO-3 and FSDP2 with 2 processes on gloo (one prompt each), launched exactly as the tests
launch them (`tests/engine_helpers.py`; FSDP2 through its CPU test helper). Reported per engine: the
median step time after the first step, from metrics.jsonl, and the peak resident memory of the largest
process (each rank writes its `ru_maxrss` at exit), both also as a ratio to DDP in the same run.

On a 2-core CPU the processes share two cores, so what this measures is each engine's overhead
(collectives over gloo, gathering and partitioning), not a GPU speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import engine_helpers  # noqa: E402
import train_helpers  # noqa: E402
import vaur1.model  # noqa: E402, F401  (the torchvision shim)
from vaur1.bench.synth import generate_synthvau  # noqa: E402
from vaur1.config import save_config  # noqa: E402
from vaur1.model import build_tiny_model  # noqa: E402

ENGINES = {
    "one process": (None, 1),
    "ddp": ("ddp-cpu", 2),
    "zero2": ("zero2", 2),
    "zero3": ("zero3", 2),
    "fsdp2": ("fsdp", 2),
}

# Each rank records its peak memory when it exits (the launcher's atexit runs before vaur1's clean exit).
PEAK_HOOK = """
import atexit, os, resource
def _peak():
    folder = os.environ.get("PEAK_DIR")
    if folder:
        rank = os.environ.get("RANK", "0")
        with open(os.path.join(folder, f"peak-{rank}.txt"), "w") as handle:
            handle.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(_peak)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="vaur1-engines-"))
    work.mkdir(parents=True, exist_ok=True)

    model = build_tiny_model("qwen2_5_vl", work / "tiny")
    bench = generate_synthvau(
        work / "bench",
        n=12,
        seed=5,
        split_ratio=(0.7, 0.1, 0.2),
        size=(64, 48),
        duration=(2.0, 4.0),
        workers=1,
    )
    train_helpers.register_toy_reward()
    overrides = [
        *train_helpers.TOY,
        f"num_generations={args.generations}",
        f"max_completion_length={args.tokens}",
        "loss.beta=0.04",
        f"run.max_steps={args.steps}",
        "run.save_steps=1000",
    ]
    config = work / "grpo.yaml"
    save_config(train_helpers.grpo_config(work / "unused", model, bench, overrides), config)
    script = engine_helpers.launcher(work)
    script.write_text(script.read_text().replace("import os, sys", "import os, sys" + PEAK_HOOK, 1))

    results = {}
    for name, (engine, processes) in ENGINES.items():
        out = work / name.replace(" ", "-")
        peaks = out.with_name(out.name + "-peaks")
        peaks.mkdir(exist_ok=True)
        per_device = 2 // processes
        engine_helpers.launch(
            out,
            "grpo",
            config,
            engine,
            processes,
            f"per_device_train_batch_size={per_device}",
            env={"PEAK_DIR": str(peaks)},
        )
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        step = statistics.median(r["time/step"] for r in records[1:])
        peak = max(int(p.read_text()) for p in peaks.glob("peak-*.txt")) / 1024  # KiB -> MiB
        results[name] = {"step_seconds": step, "peak_mib_per_process": peak, "processes": processes}
        print(f"{name:12s} step {step:.3f} s  peak {peak:.0f} MiB/process", flush=True)

    base = results["ddp"]
    print("\n| engine | processes | step time (s) | vs DDP | peak memory per process (MiB) | vs DDP |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['processes']} | {r['step_seconds']:.3f} | {r['step_seconds'] / base['step_seconds']:.2f}x "
            f"| {r['peak_mib_per_process']:.0f} | {r['peak_mib_per_process'] / base['peak_mib_per_process']:.2f}x |"
        )
    (work / "engines.json").write_text(json.dumps(results, indent=2))
    print(f"\n{work / 'engines.json'}")


if __name__ == "__main__":
    main()
