"""The GRPO family on the demo's setup: each algorithm's GRPO stage from the same SFT checkpoint per seed.

    .venv/bin/python benchmarks/algorithms.py [--seeds 0 1 2] [--out runs/algorithms]
                                              [--families grpo dapo ...] [key=value ...]

For each seed, `vaur1 demo` runs once into OUT/seed-N/sft-run (data, model, SFT, its evaluation). Each
algorithm then gets its own demo folder, OUT/seed-N/<family>, whose data, model, base evaluation, SFT
and SFT evaluation are that run's own folders (linked, so the demo reuses them: their settings are the
same) and whose GRPO and GRPO evaluation run with the algorithm's keys below, everything else at the
demo's defaults (the same steps, prompts per step, G, learning rate, beta and rewards). No algorithm
is tuned: each takes its paper's clipping where the paper sets one, and vaur1's defaults otherwise.

Printed: per algorithm, the mean over seeds of GRPO - SFT on the held-out test split with a 95%
paired-bootstrap interval (each seed's items redrawn separately), and the GRPO stage's wall time.
Written to OUT/algorithms.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import vaur1.model  # noqa: F401  (the torchvision shim, before transformers)
from vaur1.demo import load_demo_config, run_demo
from vaur1.eval.paired import paired_gain
from vaur1.present.report import load_run
from vaur1.runlock import claim_run

FAMILIES: dict[str, list[str]] = {
    "grpo": ["grpo.loss.loss_type=grpo"],
    "dapo": ["grpo.loss.loss_type=dapo", "grpo.loss.epsilon_high=0.28"],
    "gspo": [
        "grpo.loss.loss_type=grpo",
        "grpo.loss.importance_sampling_level=sequence",
        "grpo.loss.epsilon=3e-4",
        "grpo.loss.epsilon_high=4e-4",
    ],
    "cispo": ["grpo.loss.loss_type=cispo", "grpo.loss.epsilon_high=5.0"],
    "sapo": ["grpo.loss.loss_type=sapo"],
    "dapo+dynamic": [
        "grpo.loss.loss_type=dapo",
        "grpo.loss.epsilon_high=0.28",
        "grpo.rollout.dynamic_sampling=true",
    ],
    "t-grpo": ["grpo.loss.loss_type=dapo", "grpo.rollout.temporal.enabled=true"],
}
SHARED_STAGES = ("data", "model", "eval_base", "sft", "eval_sft")
METRICS = (("qa.accuracy", "QA"), ("tag.miou", "TAG mIoU"), ("cls.multiclass_accuracy", "CLS"))


def link_shared(source: Path, target: Path) -> None:
    """The family's demo folder, its shared stages the seed's own."""
    with claim_run(target, "demo"):
        for stage in SHARED_STAGES:
            link = target / stage
            if not link.exists():
                link.symlink_to((source / stage).resolve(), target_is_directory=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/algorithms"))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="demo settings for every run")
    args = parser.parse_args()

    runs: dict[str, dict[int, dict]] = {family: {} for family in args.families}
    for seed in args.seeds:
        base = args.out / f"seed-{seed}" / "sft-run"
        run_demo(load_demo_config(overrides=[*args.overrides, f"seed={seed}", f"out={base}"]))
        sft = load_run(base / "eval_sft").sample_scores
        for family in args.families:
            out = args.out / f"seed-{seed}" / family
            link_shared(base, out)
            report = run_demo(
                load_demo_config(overrides=[*args.overrides, *FAMILIES[family], f"seed={seed}", f"out={out}"])
            )
            stage = json.loads((out / "grpo" / "stage.json").read_text())
            runs[family][seed] = {
                "scores": (sft, load_run(out / "eval_grpo").sample_scores),
                "grpo_seconds": stage["seconds"],
                "headline": report["headline"],
            }

    print(f"\nGRPO - SFT on the held-out test split, mean over seeds {args.seeds} [95% paired bootstrap]")
    header = f"{'algorithm':<14}" + "".join(f"{label:>24}" for _, label in METRICS) + f"{'GRPO stage, s':>16}"
    print(header)
    summary = {}
    for family, seeds in runs.items():
        cells, entry = [], {"overrides": FAMILIES[family], "seeds": {}}
        for key, _ in METRICS:
            pooled = paired_gain([seeds[s]["scores"] for s in args.seeds], key)
            if pooled is None:
                cells.append("-")
                continue
            low, high = pooled["ci"]
            cells.append(f"{pooled['gain']:+.1f} [{low:+.1f}, {high:+.1f}]")
            entry[key] = {"gain": pooled["gain"], "ci": pooled["ci"], "n": pooled["n"]}
        seconds = statistics.fmean(seeds[s]["grpo_seconds"] for s in args.seeds)
        entry["grpo_seconds_mean"] = seconds
        entry["seeds"] = {
            s: {"grpo_seconds": seeds[s]["grpo_seconds"], "headline": seeds[s]["headline"]}
            for s in args.seeds
        }
        summary[family] = entry
        print(f"{family:<14}" + "".join(f"{cell:>24}" for cell in cells) + f"{seconds:>16.0f}")
    (args.out / "algorithms.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
