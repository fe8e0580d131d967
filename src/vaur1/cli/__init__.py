"""The `vaur1` command line: one entry point, subcommands grouped by job.

Each job lives in its own module under `vaur1.cli` with a `register(subparsers)` function.
Command modules import heavy libraries (torch, transformers) inside their handlers, so that
`vaur1 --help` and the data commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rich.console import Console

from vaur1 import __version__
from vaur1.console import quiet_third_party
from vaur1.errors import VaurError

COMMAND_MODULES: tuple[str, ...] = (
    "data",
    "model",
    "video",
    "rewards",
    "eval",
    "train",
    "plan",
    "push",
    "report",
    "analyze",
    "demo",
    "config",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaur1",
        description="Video anomaly understanding with multimodal LLMs trained by reinforcement fine-tuning.",
    )
    parser.add_argument("--version", action="version", version=f"vaur1 {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show other libraries' progress bars and warnings (transformers, huggingface_hub, DeepSpeed)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"vaur1.cli.{name}").register(subparsers)
    return parser


def trainer_arguments(argv: list[str]) -> list[str]:
    """`train grpo|sft` takes TRL's flat flags (`--learning_rate 1e-6`) next to key=value overrides: all
    but `--config` and `--help` go to the overrides (after `--`), where `vaur1.train.aliases` reads them."""
    if len(argv) < 2 or argv[0] != "train" or argv[1] not in ("grpo", "sft"):
        return argv
    kept, rest, index = argv[:2], [], 2
    while index < len(argv):
        token = argv[index]
        if token in ("-h", "--help"):
            kept.append(token)
        elif token == "--config" and index + 1 < len(argv):
            kept += argv[index : index + 2]
            index += 1
        elif token.startswith("--config="):
            kept.append(token)
        elif token != "--":
            rest.append(token)
        index += 1
    return [*kept, "--", *rest] if rest else kept


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line's arguments. Dotted overrides may come anywhere, also after options that follow
    a positional (`eval judge RUN_DIR --judge-url U judge.timeout_s=60`), which argparse alone rejects
    once it has matched the positionals."""
    parser = build_parser()
    args, extra = parser.parse_known_args(trainer_arguments(argv))
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and all(
            "=" in word and not word.startswith("-") for word in extra
        ):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(list(sys.argv[1:] if argv is None else argv))
    quiet_third_party(args.verbose)
    try:
        return int(args.func(args) or 0)
    except VaurError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    except OSError as err:
        # a read-only, full or missing output, cache, checkpoint or report directory: the user's to fix
        where = f"{err.filename}: " if err.filename else ""
        reason = err.strerror or str(err)
        Console(stderr=True).print(f"[bold red]error:[/] {where}{reason}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
