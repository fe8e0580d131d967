"""`vaur1 train grpo|sft --config FILE.yaml [key=value ...]`."""

from __future__ import annotations

import argparse

from vaur1.train.aliases import aliases_of


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="fine-tune a Qwen-VL model: GRPO (RFT) or SFT")
    train = parser.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    for name, help_text, handler in (
        ("grpo", "reinforcement fine-tuning with GRPO on video prompts", run_grpo),
        ("sft", "supervised fine-tuning (the paper's baseline and GRPO's warm start)", run_sft),
    ):
        command = train.add_parser(
            name,
            help=help_text,
            description=f"{help_text}. Every setting, its default and one line of help: vaur1 config show {name}.",
            epilog="TRL's flags, as aliases: "
            + ", ".join(f"--{flag} ({key})" for flag, key in aliases_of(name).items())
            + (", --use_vllm (rollout.backend=vllm)" if name == "grpo" else "")
            + ", and every top-level setting by its name (--bf16, "
            + ("--num_generations 8, ...)." if name == "grpo" else "--target cot, ...).")
            + " A TRL flag vaur1 does not implement is an error unless it is about logging or launching.",
        )
        command.add_argument(
            "--config", help="a YAML config file, or a shipped config name such as qwen2_5_vl_3b/cotrain"
        )
        command.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help="dotted overrides, e.g. optim.learning_rate=1e-6 (see vaur1 config show), or TRL's flags, "
            "e.g. --learning_rate 1e-6 --num_train_epochs 2 --use_peft --report_to tensorboard",
        )
        command.set_defaults(func=handler)


def run_grpo(args: argparse.Namespace) -> int:
    from vaur1.rl.config import GRPOTrainConfig
    from vaur1.rl.trainer import train
    from vaur1.train.aliases import load_training_config
    from vaur1.train.distributed import end_distributed_run

    train(load_training_config(GRPOTrainConfig, args.config, args.overrides))
    end_distributed_run()
    return 0


def run_sft(args: argparse.Namespace) -> int:
    from vaur1.sft.config import SFTTrainConfig
    from vaur1.sft.trainer import train
    from vaur1.train.aliases import load_training_config
    from vaur1.train.distributed import end_distributed_run

    train(load_training_config(SFTTrainConfig, args.config, args.overrides))
    end_distributed_run()
    return 0
