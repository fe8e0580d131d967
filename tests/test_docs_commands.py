"""Every command the README and the documentation site show: each parses with vaur1's own argument
parser, each training command loads its config and overrides, and the offline ones run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vaur1.cli import parse_arguments
from vaur1.config import load_config
from vaur1.rl.config import GRPOTrainConfig
from vaur1.sft.config import SFTTrainConfig

REPO = Path(__file__).resolve().parents[1]
TRAINERS = {"grpo": GRPOTrainConfig, "sft": SFTTrainConfig}
PAGES = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md"))]
# Commands that need neither data, a model nor a network: the tests run them as shown.
OFFLINE = {("config", "list"), ("config", "show"), ("config", "path"), ("plan",)}
# Config files the docs show as the reader's own: their commands are parsed, not loaded or run.
READERS_FILES = {"my_trl_grpo.yaml", "my_eval.yaml"}


def names_readers_file(args: list[str]) -> bool:
    return any(word in READERS_FILES for word in args)


def documented_commands(doc: Path) -> list[list[str]]:
    """The arguments of each `vaur1 ...` (or `-m vaur1 ...`) in a fenced bash block of `doc`; a line
    with a `...` placeholder is a pattern, not a command."""
    blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r" #| [|>] ", line, maxsplit=1)[0]  # a comment, a pipe or a redirection ends it
            if "..." in line or line.lstrip().startswith("#"):
                continue
            # `$(vaur1 config path X)` inside another command is a command of its own
            for inner in re.findall(r"\$\((vaur1 [^)]*)\)", line):
                commands.append(shlex.split(inner)[1:])
            words = shlex.split(re.sub(r"\$\([^)]*\)", "FILE", line))
            if "vaur1" in words and (words[0] == "vaur1" or words[words.index("vaur1") - 1] == "-m"):
                commands.append(words[words.index("vaur1") + 1 :])
    return commands


COMMANDS = [
    pytest.param(args, id=f"{page}:{' '.join(args)[:50]}")
    for page in PAGES
    for args in documented_commands(REPO / page)
]
TRAIN_COMMANDS = [p for p in COMMANDS if p.values[0][:1] == ["train"] and not names_readers_file(p.values[0])]
OFFLINE_COMMANDS = [
    p
    for p in COMMANDS
    if (tuple(p.values[0][:2]) in OFFLINE or p.values[0][:1] == ["plan"])
    and not names_readers_file(p.values[0])
]


def test_the_docs_show_commands_of_every_kind():
    shown = {tuple(param.values[0][:2]) for param in COMMANDS}
    assert len(COMMANDS) >= 40
    for command in [
        ("train", "grpo"),
        ("train", "sft"),
        ("eval", "run"),
        ("data", "stats"),
        ("config", "show"),
    ]:
        assert command in shown
    assert any("optim.learning_rate=1e-6" in param.values[0] for param in TRAIN_COMMANDS)


def test_the_command_reader_skips_patterns_and_reads_continuations(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nvaur1 eval run ... data.cleaning=[x]\nvaur1 data stats a \\\n  --json   # b\n"
        "accelerate launch --config_file $(vaur1 config path accelerate/zero2) -m vaur1 train grpo\n```\n"
    )
    assert documented_commands(page) == [
        ["data", "stats", "a", "--json"],
        ["config", "path", "accelerate/zero2"],
        ["train", "grpo"],
    ]


@pytest.mark.parametrize("args", COMMANDS)
def test_every_documented_command_parses(args):
    try:
        parse_arguments(args)
    except SystemExit as exit:
        pytest.fail(f"vaur1 {' '.join(args)}: rejected by the argument parser (exit {exit.code})")


def test_overrides_may_follow_options_after_a_positional():
    args = parse_arguments(["eval", "judge", "runs/a", "--judge-model", "m", "judge.timeout_s=60"])
    assert (str(args.run_dir), args.overrides) == ("runs/a", ["judge.timeout_s=60"])
    with pytest.raises(SystemExit):
        parse_arguments(["eval", "judge", "runs/a", "--judge-model", "m", "--no-such-flag"])


def _same(node, value: str) -> bool:
    if str(node) == value or node == yaml.safe_load(value):
        return True
    try:
        return node == float(value)
    except (TypeError, ValueError):
        return False


@pytest.mark.parametrize("args", TRAIN_COMMANDS)
def test_every_documented_training_command_loads(args):
    job, args = args[1], args[2:]
    config = args[args.index("--config") + 1]
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    cfg = load_config(TRAINERS[job], config, overrides)
    for override in overrides:
        key, value = override.split("=", 1)
        node = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert _same(node, value), override


@pytest.mark.parametrize("args", OFFLINE_COMMANDS)
def test_every_offline_documented_command_runs(args):
    done = subprocess.run(
        [sys.executable, "-m", "vaur1", *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_the_extension_examples_in_the_algorithms_guide_register_what_they_say(monkeypatch):
    """The objective and the advantage estimator docs/algorithms.md shows register and compute."""
    import torch

    from vaur1.rl.loss import ADVANTAGE_ESTIMATORS, AdvantageInputs
    from vaur1.rl.objectives import LOSSES

    monkeypatch.setattr("vaur1.rl.objectives.LOSSES", dict(LOSSES))
    monkeypatch.setattr("vaur1.rl.loss.ADVANTAGE_ESTIMATORS", dict(ADVANTAGE_ESTIMATORS))
    blocks = re.findall(
        r"```python\n(.*?)```", (REPO / "docs" / "algorithms.md").read_text(encoding="utf-8"), re.S
    )
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/algorithms.md", "exec"), {})
    from vaur1.rl import loss, objectives

    assert "my_loss" in objectives.LOSSES and "my_loss" not in LOSSES
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5])
    inputs = AdvantageInputs(rewards, rewards[:, None], torch.ones(4, 1), 2, "group")
    assert loss.ADVANTAGE_ESTIMATORS["sign"](inputs).advantages.tolist() == [1.0, -1.0, 0.0, 0.0]
