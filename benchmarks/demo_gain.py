"""RFT vs SFT in miniature: `vaur1 demo` for several seeds, and GRPO's gain over SFT alone.

    .venv/bin/python benchmarks/demo_gain.py [--seeds 0 1 2] [--out runs/demo-gain] [--quick | --full] [key=value ...]

Each seed runs the whole demo (data, model, SFT with early stopping, GRPO, evaluation) in its own
folder, OUT/seed-N, through `vaur1.demo.run_demo`; finished stages are reused, so a rerun only
prints. Printed: per seed and as a mean, the held-out test metrics of a constant answer (what a model
that ignores the video scores) and of the untrained, SFT and GRPO models (in the demo's prompt mode,
points), GRPO - SFT with a 95% paired-bootstrap interval of its mean over the test items, both training
budgets and the demo's wall time.
Target: GRPO after SFT beats SFT alone by at least +5 TAG mIoU and +3 QA accuracy, as
the mean over 3 seeds. The result is also written to OUT/gain.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import vaur1.model  # noqa: F401  (the torchvision shim, before transformers)
from vaur1.demo import load_demo_config, run_demo
from vaur1.eval.paired import paired_gain
from vaur1.present.report import load_run

METRICS = (
    ("qa.accuracy", "QA acc"),
    ("tag.miou", "TAG mIoU"),
    ("tag.r@0.7", "TAG R@0.7"),  # where a constant interval, which scores well on mIoU, falls behind
    ("cls.multiclass_accuracy", "CLS acc"),
)
TARGET = {"qa.accuracy": 3.0, "tag.miou": 5.0}


def row(label: str, values: list[float | None]) -> str:
    cells = "".join(f"{'-' if v is None else f'{v:.1f}':>9}" for v in values)
    return f"{label:<16}{cells}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/demo-gain")
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="the --quick preset (a smoke test, no claim)")
    preset.add_argument("--full", action="store_true", help="the --full preset (the long version)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="demo settings for every seed")
    args = parser.parse_args()

    results = {}
    scores = {}  # seed -> (SFT's, GRPO's) test sample scores
    for seed in args.seeds:
        out = Path(args.out) / f"seed-{seed}"
        cfg = load_demo_config(args.quick, [*args.overrides, f"seed={seed}", f"out={out}"], full=args.full)
        started = time.perf_counter()
        report = run_demo(cfg)
        results[seed] = {
            "headline": report["headline"],
            "constant": report["constant"]["metrics"],
            "gains": report["gains"]["grpo_over_sft"],
            "budgets": report["budgets"],
            "demo_seconds": sum(report["times"].values()),
            "this_run_seconds": time.perf_counter() - started,
            "reused": report["reused"],
            "mode": report["mode"],
        }
        scores[seed] = (load_run(out / "eval_sft").sample_scores, load_run(out / "eval_grpo").sample_scores)

    modes = sorted({result["mode"] for result in results.values()})
    print(f"\nheld-out SynthVAU test split, {', '.join(modes)} prompts, points (0-100)")
    header = "".join(f"{name:>9}" for name in ("constant", "base", "SFT", "GRPO", "GRPO-SFT"))
    means: dict[str, float] = {}
    intervals: dict[str, list[float] | None] = {}
    for key, label in METRICS:
        print(f"\n{label:<16}{header}")
        for seed, result in results.items():
            headline = result["headline"]
            values = [result["constant"][key], *(headline[stage][key] for stage in ("base", "sft", "grpo"))]
            print(row(f"seed {seed}", [*values, result["gains"][key]]))
        columns = [
            [r["constant"][key] for r in results.values()],
            *([r["headline"][stage][key] for r in results.values()] for stage in ("base", "sft", "grpo")),
        ]
        gains = [r["gains"][key] for r in results.values()]
        means[key] = statistics.fmean(gains)
        print(row("mean", [*(statistics.fmean(c) for c in columns), means[key]]))
        pooled = paired_gain(list(scores.values()), key)
        intervals[key] = None if pooled is None else pooled["ci"]
        if pooled is not None:
            low, high = pooled["ci"]
            print(f"{'':<16}{'':>36}  95% [{low:+.1f}, {high:+.1f}] over the {pooled['n']} test items")

    print("\nbudgets: SFT steps (best) / samples | GRPO steps / prompts / completions | demo wall time")
    for seed, result in results.items():
        sft, grpo = result["budgets"]["sft"], result["budgets"]["grpo"]
        print(
            f"seed {seed}: SFT {sft['steps']} ({sft['best_step']}) / {sft['samples']}, {sft['seconds']:.0f} s | "
            f"GRPO {grpo['steps']} / {grpo['samples']} / {grpo['completions']}, {grpo['seconds']:.0f} s | "
            f"demo {result['demo_seconds']:.0f} s"
        )
    met = all(means[key] >= target for key, target in TARGET.items())
    verdict = "met" if met else "NOT met"
    print(
        f"\nmean GRPO - SFT: QA {means['qa.accuracy']:+.1f} (target +3), TAG mIoU {means['tag.miou']:+.1f} "
        f"(target +5): {verdict}"
    )
    print(
        "(paired bootstrap over the test items, each seed's items redrawn separately: it says how sure the\n"
        " mean is for these trained models, not how much another set of seeds would differ)"
    )
    summary = {"seeds": results, "mean_gain": means, "mean_gain_ci": intervals, "target": TARGET, "met": met}
    (Path(args.out) / "gain.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
