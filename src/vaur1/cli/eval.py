"""`vaur1 eval ...`: run a model on a benchmark, and score model outputs against it.

vaur1 eval run --model PATH --bench synth --videos runs/synth --split test --mode both --out RUN_DIR
vaur1 eval judge RUN_DIR --judge-url https://api.deepseek.com/v1   # score a finished run again
vaur1 eval metrics --task tag --bench test_msad.csv --predictions preds.jsonl [--mode think] [--json]
vaur1 eval baselines --bench test_msad.csv --fit-on val.csv [--task tag] [--json]   # blind models' scores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vaur1.cli.eval_scan import register_scan
from vaur1.console import output_console
from vaur1.errors import VaurError
from vaur1.vocab import BACKENDS, HEADLINE_METRICS, MODES, SCORED_TASKS, TASKS, task_metrics

PREDICTIONS_HELP = (
    'one JSON object a line: {"video": "<Video Name as in the CSV>", "output": "<raw model text>"}'
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate model outputs on a benchmark")
    commands = parser.add_subparsers(dest="eval_command", required=True, metavar="COMMAND")

    metrics = commands.add_parser(
        "metrics",
        help="task metrics of a predictions file against a VAU-Bench CSV",
        description="Task metrics of raw model outputs against a VAU-Bench CSV, overall and per source, "
        "with bootstrap 95% intervals. Unknown videos, duplicate lines (the first one counts) and "
        "malformed lines are reported with their line numbers; malformed lines make the exit status 1.",
    )
    metrics.add_argument("--task", required=True, choices=SCORED_TASKS)
    metrics.add_argument("--bench", required=True, help="a VAU-Bench CSV (or a folder of them)")
    metrics.add_argument(
        "--predictions", required=True, type=Path, metavar="FILE.jsonl", help=PREDICTIONS_HELP
    )
    metrics.add_argument("--json", action="store_true", help="print JSON instead of tables")
    metrics.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    metrics.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    metrics.add_argument(
        "--mode",
        choices=MODES,
        help='only lines of this prompt mode (lines that carry a "mode", as vaur1 eval run writes them)',
    )
    metrics.set_defaults(func=run_metrics)

    baselines = commands.add_parser(
        "baselines",
        help="what a model that ignores the video scores on a VAU-Bench CSV",
        description="The constant answers' metrics: QA always the most common answer letter; TAG always "
        "Normal, or always Anomaly with the constant interval of best mean IoU; CLS always Normal, or always "
        "the most common anomaly class. The letter, interval and class are chosen per source on --fit-on "
        "(a blind model's honest score); without it, on the scored file itself (an oracle, labelled so).",
    )
    baselines.add_argument("--bench", required=True, help="a VAU-Bench CSV (or a folder of them) to score")
    baselines.add_argument("--fit-on", help="a VAU-Bench CSV (or folder) to choose the constant answers on")
    baselines.add_argument("--task", choices=SCORED_TASKS, help="one task (default all three)")
    baselines.add_argument("--json", action="store_true", help="print JSON instead of a table")
    baselines.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    baselines.set_defaults(func=run_baselines)

    register_run(commands)
    register_scan(commands)


def run_metrics(args: argparse.Namespace) -> int:
    from vaur1.bench import load_bench
    from vaur1.bench.tasks import task_view
    from vaur1.eval.metrics import compute_metrics
    from vaur1.eval.predictions import read_prediction_file

    bench = load_bench(args.bench)
    names: dict[str, str] = {}
    for sample in bench.samples:
        if sample.id in names:
            raise VaurError(
                f"{args.bench}: video {sample.id!r} is in both {names[sample.id]} and {sample.split}"
            )
        names[sample.id] = sample.split
    predictions = read_prediction_file(args.predictions, set(names), args.task, args.mode)
    examples = task_view(bench.samples, args.task)
    outputs = {e.key: predictions.outputs[e.id] for e in examples if e.id in predictions.outputs}
    result = compute_metrics(args.task, examples, outputs, resamples=args.resamples, seed=args.seed)
    result["predictions"] = predictions.report(len(outputs), len(predictions.outputs) - len(outputs))

    err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    for number, error in predictions.malformed:
        err_console.print(f"[red]{args.predictions}:{number}:[/] {error}")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_tables(args.task, result)
    return 1 if predictions.malformed else 0


def run_baselines(args: argparse.Namespace) -> int:
    from vaur1.bench import load_bench
    from vaur1.bench.tasks import task_view
    from vaur1.eval.baselines import ORACLE, best_constants, blind_baselines, constant_label, shown_answer

    tasks = [args.task] if args.task else list(SCORED_TASKS)
    scored_samples = load_bench(args.bench).samples
    scored = [e for task in tasks for e in task_view(scored_samples, task)]
    fitted = (
        [e for task in tasks for e in task_view(load_bench(args.fit_on).samples, task)]
        if args.fit_on
        else None
    )
    chosen_on = args.fit_on or ORACLE
    result = blind_baselines(scored, fitted, tasks=tasks, resamples=args.resamples)
    best = {
        task: chosen["kind"] for task, chosen in best_constants(scored, fitted, tasks, resamples=1).items()
    }
    if args.json:
        print(
            json.dumps(
                {
                    "bench": args.bench,
                    "fit_on": args.fit_on or args.bench,
                    "chosen_on": chosen_on,
                    "label": constant_label(chosen_on),
                    "best": best,
                    "baselines": result,
                },
                indent=2,
            )
        )
        return 0
    console = output_console(highlight=False)
    where = (
        f"on {args.fit_on}"
        if args.fit_on
        else "on the scored items themselves (an oracle that flatters them)"
    )
    console.print(f"Constant answers on {args.bench}, chosen per source {where}; * the best on that choice")
    for task, kinds in result.items():
        table = Table(title=f"{task} (%)")
        for column in ("baseline", "source", "answer", "n", *(metric.key for metric in task_metrics(task))):
            table.add_column(
                column, justify="left" if column in ("baseline", "source", "answer") else "right"
            )
        unfitted = []
        for kind, baseline in kinds.items():
            unfitted += [f"{kind} has no answer for {source}" for source in baseline["unfitted_sources"]]
            name = f"{kind} *" if best.get(task) == kind else kind
            for source, answer in baseline["answers"].items():
                block = baseline["metrics"]["by_source"][source]
                values = ("-" if block[m.key] is None else f"{block[m.key]:.2f}" for m in task_metrics(task))
                table.add_row(name, source, shown_answer(answer), str(block["n"]), *values)
        console.print(table)
        for line in unfitted:
            console.print(f"{task}: {line}: the examples it is chosen on have none of that source")
    return 0


def _print_tables(task: str, result: dict) -> None:
    console = output_console(highlight=False)
    table = Table(title=f"{task} metrics (%)")
    for column in ("source", "metric", "value", "95% interval"):
        table.add_column(column, justify="left" if column in ("source", "metric") else "right")
    blocks = [("all", result), *sorted(result["by_source"].items())]
    for index, (source, block) in enumerate(blocks):
        table.add_row(source, "n", str(block["n"]), "", end_section=False)
        for name in (metric.key for metric in task_metrics(task)):
            value, interval = block[name], block["ci"][name]
            table.add_row(
                "",
                name,
                "-" if value is None else f"{value:.2f}",
                f"{interval[0]:.2f} - {interval[1]:.2f}" if interval else "",
            )
        table.add_row(
            "",
            "missing / unparsed",
            f"{block['missing']} / {block['unparsed']}",
            "",
            end_section=index < len(blocks) - 1,
        )
    console.print(table)
    report = result["predictions"]
    console.print(
        f"{report['lines']} prediction lines: {report['matched']} scored, "
        f"{report['not_scored_for_task']} for videos this task does not score"
    )
    for kind in ("unknown_videos", "duplicates", "malformed"):
        problem = report[kind]
        if problem["count"]:
            listed = problem["lines"] if kind != "malformed" else [p["line"] for p in problem["lines"]]
            more = " ..." if problem["count"] > len(listed) else ""
            console.print(
                f"[yellow]{problem['count']} {kind.replace('_', ' ')}[/] at lines {', '.join(map(str, listed))}{more}"
            )


# ---- vaur1 eval run / judge -----------------------------------------------------------------

BENCH_HELP = (
    "vau-bench (the Hub annotations), a CSV file, a folder of VAU-Bench CSVs, or `synth`: the SynthVAU "
    "folder given by --videos (its CSVs and its videos/ subfolder)"
)


def _add_judge_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "VAU-Eval judge (any OpenAI-compatible endpoint; the key is never logged)"
    )
    group.add_argument("--judge-url", help="base URL, e.g. https://api.deepseek.com/v1")
    group.add_argument("--judge-model", help="judge model name (default deepseek-chat)")
    group.add_argument("--judge-key-env", help="NAME of the environment variable holding the API key")
    group.add_argument(
        "--no-offline-scorer", action="store_true", help="skip the MiniLM + ROUGE-L reasoning scorer"
    )


def register_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="run a model on a benchmark: predictions.jsonl, metrics.json and a report",
        description="Batched inference of every task and mode, appended to RUN_DIR/predictions.jsonl as it "
        "is produced; a rerun continues where a killed run stopped. Then RUN_DIR/metrics.json (overall and "
        "per source, with 95% intervals) and RUN_DIR/report.{md,html}. Flags set config keys; --config FILE "
        "and dotted key=value overrides (applied last) set any other.",
    )
    run.add_argument("--config", help="an EvalConfig YAML file")
    run.add_argument("--model", help="checkpoint directory or Hub id (model.name_or_path)")
    run.add_argument("--bench", help=BENCH_HELP)
    run.add_argument(
        "--split", help="split(s), comma-separated, e.g. test or test_msad,test_ucf_crime,test_ecva"
    )
    run.add_argument("--tasks", help=f"comma-separated: {','.join(TASKS)} (default all)")
    run.add_argument("--mode", choices=(*MODES, "both"), help="prompt mode (default both)")
    run.add_argument("--videos", metavar="ROOT", help="the folder holding the videos (video_roots.default)")
    run.add_argument("--out", metavar="RUN_DIR", help="the run directory")
    run.add_argument("--batch-size", type=int, help="prompts per generate call (default 8)")
    run.add_argument("--max-new-tokens", type=int, help="default 1024")
    run.add_argument("--max-per-task", type=int, help="only the first N examples of each task and split")
    run.add_argument(
        "--backend",
        choices=BACKENDS,
        help="hf (transformers, default) or vllm (same outputs, faster on GPUs)",
    )
    run.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    run.add_argument("--workers", type=int, help="video decoding worker processes (default 2)")
    run.add_argument("--cache-dir", help="frame cache folder (default $XDG_CACHE_HOME/vaur1/frames)")
    _add_judge_options(run)
    run.add_argument(
        "--scan",
        action="store_true",
        help="also scan each TAG video in windows and score the window scores at the frame level (AUC / AP, "
        "per source) beside the paper's metrics; scan.window, scan.stride, ... set the scan",
    )
    run.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. video.fps=2")
    run.set_defaults(func=run_eval_command)

    judge = commands.add_parser(
        "judge",
        help="score a finished (or stopped) run again, e.g. with the VAU-Eval judge, without the model",
        description="Recompute RUN_DIR/metrics.json and the report from predictions.jsonl and the run's "
        "config.yaml; with --judge-url, the reasoning answers are judged (cached verdicts cost nothing).",
    )
    judge.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _add_judge_options(judge)
    judge.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides of the run's config"
    )
    judge.set_defaults(func=run_judge_command)


def _judge_flags(args: argparse.Namespace) -> dict:
    flags: dict = {}
    for option, key in (
        ("judge_url", "base_url"),
        ("judge_model", "model"),
        ("judge_key_env", "api_key_env"),
    ):
        if getattr(args, option) is not None:
            flags[f"judge.{key}"] = getattr(args, option)
    if args.no_offline_scorer:
        flags["offline_scorer"] = False
    return flags


def eval_flags(args: argparse.Namespace) -> dict:
    """`vaur1 eval run` options as dotted config keys (options not given are left out)."""
    from vaur1.bench.tasks import parse_tasks
    from vaur1.eval.config import parse_modes

    flags: dict = {}
    if args.bench == "synth":
        if not args.videos:
            raise VaurError("--bench synth needs --videos: the SynthVAU folder (with its CSVs and videos/)")
        flags["data.bench"] = args.videos
    else:
        if args.bench is not None:
            flags["data.bench"] = args.bench
        if args.videos is not None:
            flags["data.video_roots.default"] = args.videos
    simple = {
        "model": "model.name_or_path",
        "split": "data.split",
        "out": "out",
        "batch_size": "batch_size",
        "max_new_tokens": "sampling.max_new_tokens",
        "max_per_task": "data.max_per_task",
        "backend": "backend",
        "device": "model.device",
        "workers": "loader.num_workers",
        "cache_dir": "cache.dir",
    }
    for option, key in simple.items():
        if getattr(args, option) is not None:
            flags[key] = getattr(args, option)
    if args.tasks is not None:
        flags["data.tasks"] = list(parse_tasks(args.tasks))
    if args.mode is not None:
        flags["modes"] = parse_modes(args.mode)
    return {**flags, **_judge_flags(args)}


def _print_summary(metrics: dict, run_dir: Path) -> None:
    console = output_console(highlight=False, soft_wrap=True)
    table = Table(title=f"{run_dir}")
    for column in ("task", "mode", "n", "headline", "95% interval"):
        table.add_column(column, justify="left" if column in ("task", "mode", "headline") else "right")
    for task, modes in metrics["tasks"].items():
        for mode, block in modes.items():
            if task in HEADLINE_METRICS:
                name = HEADLINE_METRICS[task]
                value, interval = block[name], block["ci"][name]
                shown = f"{name} {'-' if value is None else f'{value:.2f}'}"
                span = f"{interval[0]:.2f} - {interval[1]:.2f}" if interval else ""
            else:
                judged, offline = block.get("judge"), block.get("offline")
                if judged and judged["mean_total"] is not None:
                    shown, span = f"judge total {judged['mean_total']:.2f}", ""
                elif offline and offline["description_similarity"] is not None:
                    shown, span = f"{offline['scorer']} desc. cos {offline['description_similarity']:.3f}", ""
                else:
                    shown, span = "not scored", ""
            table.add_row(task, mode, str(block["n"]), shown, span)
    console.print(table)
    errors = metrics["video_errors"]
    if errors["videos"]:
        console.print(
            f"[yellow]{errors['videos']} unreadable videos[/] ({errors['items']} items scored as missing); "
            f"listed in {run_dir / 'metrics.json'}"
        )
    console.print(f"metrics: {run_dir / 'metrics.json'}  report: {run_dir / 'report.html'}")


def run_eval_command(args: argparse.Namespace) -> int:
    from vaur1.eval.config import load_eval_config
    from vaur1.present.evaluate import evaluate

    cfg = load_eval_config(args.config, args.overrides, eval_flags(args))
    if args.scan and cfg.scan is None:  # a config's or an override's scan settings stay
        from vaur1.eval.scan_config import ScanConfig

        cfg.scan = ScanConfig()
    metrics = evaluate(cfg)
    _print_summary(metrics, Path(cfg.out))
    return 0


def run_judge_command(args: argparse.Namespace) -> int:
    from vaur1.present.evaluate import rescore

    flags = _judge_flags(args)
    overrides = [f"{key}={json.dumps(value)}" for key, value in flags.items()]
    metrics = rescore(args.run_dir, [*overrides, *args.overrides])
    _print_summary(metrics, args.run_dir)
    return 0
