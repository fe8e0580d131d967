"""`vaur1 demo [--quick | --full] [--out DIR] [key=value ...]`: the whole pipeline end to end on a CPU."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="SynthVAU -> tiny Qwen2.5-VL -> SFT -> GRPO -> evaluation and report, on a CPU",
        description="Generates SynthVAU, builds a tiny Qwen2.5-VL, trains SFT (early stopping on the val "
        "split) and GRPO from the SFT checkpoint, evaluates the untrained, SFT and GRPO models on the test "
        "split and writes OUT/report.{md,html,json}. Finished stages are reused by the next run; a "
        "changed setting redoes the stages that read it. Settings: vaur1 config show demo.",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick", action="store_true", help="fewer clips and steps: a smoke test of every stage"
    )
    preset.add_argument(
        "--full", action="store_true", help="the long version: SFT until patience stops it, 300 GRPO steps"
    )
    parser.add_argument(
        "--out",
        help="output folder (default runs/demo; runs/demo-quick with --quick, runs/demo-full with --full)",
    )
    parser.add_argument("--seed", type=int, help="seed of the data, the model and training (default 0)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. grpo.run.max_steps=80 (see vaur1 config show demo)",
    )
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    import json

    from vaur1.demo import load_demo_config, run_demo

    flags = [
        f"{key}={json.dumps(value)}"
        for key, value in (("out", args.out), ("seed", args.seed))
        if value is not None
    ]
    run_demo(load_demo_config(quick=args.quick, overrides=[*flags, *args.overrides], full=args.full))
    return 0
