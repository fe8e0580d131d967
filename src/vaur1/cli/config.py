"""`vaur1 config list|show|path`: the shipped configs, and every setting of a job with its default and help.

vaur1 config list                                   # grpo/tiny_cpu, qwen2_5_vl_3b/cotrain, accelerate/zero2, ...
vaur1 config show grpo                              # every GRPO setting: default and one line of help
vaur1 config show grpo --config qwen2_5_vl_3b/tag optim.learning_rate=2e-6   # the values a run would use
vaur1 config path accelerate/zero2                  # the file, e.g. for accelerate launch --config_file
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from vaur1.console import output_console

JOBS = {
    "grpo": ("vaur1.rl.config", "GRPOTrainConfig"),
    "sft": ("vaur1.sft.config", "SFTTrainConfig"),
    "eval": ("vaur1.eval.config", "EvalConfig"),
    "demo": ("vaur1.demo.config", "DemoConfig"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="shipped configs, and every setting of a job with its help")
    config = parser.add_subparsers(dest="config_command", required=True, metavar="COMMAND")

    listing = config.add_parser("list", help="the configs that ship with vaur1")
    listing.set_defaults(func=run_list)

    show = config.add_parser(
        "show",
        help="every setting of a job: its value (the default, or from --config and overrides) and help",
    )
    # One sub-command per job, as in `vaur1 train grpo`: argparse cannot take dotted overrides after
    # --config when they follow another positional argument.
    jobs = show.add_subparsers(dest="job", required=True, metavar="JOB")
    for job in JOBS:
        one = jobs.add_parser(
            job,
            help=f"every {job} setting",
            description=f"Every {job} setting as a dotted key, the key=value overrides and YAML files use. "
            "Without --config the values are the defaults; with it, what a run with that file would use.",
        )
        one.add_argument("--config", help="a config file or a shipped config name (see vaur1 config list)")
        one.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
        one.add_argument("--json", action="store_true", help="print JSON instead of a table")
        one.set_defaults(func=run_show)

    path = config.add_parser("path", help="the file of a shipped config, e.g. for accelerate --config_file")
    path.add_argument("name", help="e.g. accelerate/zero2 or qwen2_5_vl_3b/cotrain")
    path.set_defaults(func=run_path)


def run_list(args: argparse.Namespace) -> int:
    from vaur1.config import SHIPPED, shipped_configs

    console = output_console(highlight=False)
    for name in shipped_configs():
        about = first_sentence((SHIPPED / f"{name}.yaml").read_text(encoding="utf-8"))
        console.print(f"[bold]{name}[/]  {about}")
    return 0


def first_sentence(text: str) -> str:
    """The first sentence of a config file's leading comment (which may span lines), without a closing
    colon that introduces a command."""
    words: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#") or not line.strip("# ") or line.startswith("#  "):
            break  # the comment ended, or a blank comment line, or an indented command
        words.append(line.lstrip("#").strip())
    sentence = " ".join(words).split(". ")[0]
    return sentence.rstrip(":").rstrip(".") + ("." if sentence else "")


def job_config(job: str, config: str | None, overrides: list[str]):
    """The job's config class, built from its defaults, `config` and `overrides` (validated)."""
    import importlib

    from vaur1.config import load_config

    module, name = JOBS[job]
    cls = getattr(importlib.import_module(module), name)
    if job == "eval":
        from vaur1.eval.config import load_eval_config

        return load_eval_config(config, overrides, flags={} if config else {"model.name_or_path": "<model>"})
    if config is None and not overrides:
        return cls
    return load_config(cls, config, overrides)


def run_show(args: argparse.Namespace) -> int:
    from vaur1.config import settings

    found = settings(job_config(args.job, args.config, args.overrides))
    if args.json:
        print(
            json.dumps(
                [{"key": s.key, "value": s.default, "type": s.type, "help": s.help} for s in found], indent=2
            )
        )
        return 0
    table = Table(title=f"vaur1 {args.job} settings" + (f" ({args.config})" if args.config else ""))
    for column in ("key", "value", "help"):
        table.add_column(column, overflow="fold")
    for setting in found:
        value = json.dumps(setting.default) if not isinstance(setting.default, str) else setting.default
        table.add_row(setting.key, value if len(value) <= 60 else value[:57] + "...", setting.help)
    output_console().print(table)
    return 0


def run_path(args: argparse.Namespace) -> int:
    from vaur1.config import config_path

    print(config_path(args.name).resolve())
    return 0
