"""`vaur1 rewards`: score completions from a JSONL file with every reward that applies."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vaur1.config import shown
from vaur1.console import output_console
from vaur1.errors import VaurError
from vaur1.vocab import SCORED_TASKS

INPUT_HELP = (
    'one JSON object a line: {"completion": "...", "sample": {"answer": "B" | null, '
    '"interval": [s, e] | [0, 0] | null, "class": "Fighting" | null}} ([0, 0]: a normal video; '
    "null: not known). Optional sample key: options (the option texts, for answers that quote one)."
)
SAMPLE_KEYS = ("answer", "interval", "class", "options")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rewards",
        help="score completions with every reward that applies to their task",
        description="Score each completion of a JSONL file with every reward that applies; `total` "
        "is the weighted sum with the default weights (the paper's), or those of --config and the "
        "rewards.* settings, rewards of your own included. A malformed line is reported with its line "
        "number, the others are still scored, and the exit status is then 1.",
    )
    parser.add_argument("--task", required=True, choices=SCORED_TASKS)
    parser.add_argument("--input", required=True, type=Path, metavar="FILE.jsonl", help=INPUT_HELP)
    parser.add_argument("--json", action="store_true", help="one JSON line per input line instead of a table")
    parser.add_argument(
        "--config",
        type=Path,
        help="a YAML file whose `rewards:` section sets the weights and rewards of your own (a GRPO config works)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="reward settings, e.g. rewards.custom.brevity=my_rewards:brevity rewards.qa.brevity=0.5",
    )
    parser.set_defaults(func=run_rewards)


def reward_config(path: Path | None, overrides: list[str]):
    """The `rewards:` section of `path` (or the defaults) with `rewards.*` overrides applied, validated."""
    from vaur1.config import apply_overrides, from_dict, read_config_file
    from vaur1.errors import ConfigError
    from vaur1.rewards import RewardConfig

    wrong = [o for o in overrides if not o.startswith("rewards.")]
    if wrong:
        raise ConfigError(f"{shown(wrong[0])}: vaur1 rewards takes rewards.* settings only")
    section = (read_config_file(path) if path else {}).get("rewards") or {}
    config = from_dict(RewardConfig, apply_overrides({"rewards": section}, overrides)["rewards"], "rewards")
    config.validate()
    return config


def _interval(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    numbers = isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )
    if not numbers or len(value) != 2 or not all(math.isfinite(v) for v in value):
        raise ValueError(f"interval must be [start, end] in seconds, [0, 0] or null, got {shown(value)}")
    start, end = float(value[0]), float(value[1])
    if (start, end) == (-1.0, -1.0):
        raise ValueError(
            "interval [-1, -1] is ambiguous: write [0, 0] for a normal video, null when not known"
        )
    if (start, end) != (0.0, 0.0) and not 0 <= start < end:
        raise ValueError(
            f"interval must have 0 <= start < end (or be [0, 0] for a normal video), got {shown(value)}"
        )
    return (start, end)


def _example(task: str, sample: object, line: int):
    from vaur1.bench.schema import LETTERS, normalize_class
    from vaur1.bench.tasks import Example

    if not isinstance(sample, dict):
        raise ValueError(f'"sample" must be an object, got {shown(sample)}')
    unknown = sorted(set(sample) - set(SAMPLE_KEYS))
    if unknown:
        raise ValueError(f"unknown sample key {shown(unknown[0])} (keys: {', '.join(SAMPLE_KEYS)})")
    answer = sample.get("answer")
    if answer is not None and answer not in LETTERS:
        raise ValueError(f"answer must be one of {', '.join(LETTERS)} or null, got {shown(answer)}")
    raw_class = sample.get("class")
    anomaly_class = None
    if raw_class is not None:
        anomaly_class = normalize_class(raw_class) if isinstance(raw_class, str) else None
        if anomaly_class is None:
            raise ValueError(f"unknown class {shown(raw_class)}")
    options = sample.get("options")
    if options is not None and (
        not isinstance(options, list)
        or not all(isinstance(o, str) for o in options)
        or len(options) > len(LETTERS)
    ):
        raise ValueError(f"options must be a list of at most {len(LETTERS)} strings, got {shown(options)}")
    return Example(
        task=task,  # type: ignore[arg-type]
        id=f"line {line}",
        answer=answer,
        interval=_interval(sample.get("interval")),
        anomaly_class=anomaly_class,
        options=tuple(options) if options is not None else None,
    )


def _score_line(task: str, text: str, line: int, config) -> dict:
    from vaur1.rewards import applicable_rewards, score

    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("completion"), str):
        raise ValueError('"completion" must be a string')
    if "sample" not in record:
        raise ValueError('missing "sample"')
    example = _example(task, record["sample"], line)
    completion = record["completion"]
    total, _ = score(completion, example, config)
    return {"line": line, "rewards": applicable_rewards(completion, example, config), "total": total}


def run_rewards(args: argparse.Namespace) -> int:
    config = reward_config(args.config, args.overrides)
    try:
        # JSONL lines end at "\n" only: str.splitlines would also split inside a string holding U+2029
        lines = args.input.read_text(encoding="utf-8").split("\n")
    except OSError as err:
        raise VaurError(f"{args.input}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise VaurError(f"{args.input}: not UTF-8 text: {err}") from None
    results, errors = [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            results.append(_score_line(args.task, text, number, config))
        except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError; deep nesting recurses
            errors.append({"line": number, "error": str(err) or type(err).__name__})
            results.append(errors[-1])
    err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    for error in errors:
        err_console.print(f"[red]{args.input}:{error['line']}:[/] {error['error']}")
    if args.json:
        for result in results:
            print(json.dumps(result))
    else:
        _print_table(args.task, args.input, results, list(config.custom))
    return 1 if errors else 0


def _print_table(task: str, path: Path, results: list[dict], custom: list[str]) -> None:
    from vaur1.rewards import REWARD_TASKS

    names = [name for name, tasks in REWARD_TASKS.items() if task in tasks] + custom
    table = Table(title=f"{task} rewards: {path}")
    table.add_column("line", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for result in results:
        if "error" in result:
            table.add_row(str(result["line"]), *(["[red]malformed[/]"] + [""] * len(names)))
            continue
        cells = [f"{result['rewards'][n]:.3f}" if n in result["rewards"] else "-" for n in names]
        table.add_row(str(result["line"]), *cells, f"{result['total']:.3f}")
    console = output_console()
    if not console.is_terminal:  # in a pipe or a file every column keeps its whole name
        needed = sum(max(len(name), 6) + 3 for name in ["line", *names, "total"]) + 1
        console = output_console(width=max(console.width, needed))
    console.print(table)
