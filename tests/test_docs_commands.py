"""The training commands the README and the guide show load: their configs and overrides exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vaur1.config import load_config
from vaur1.rl.config import GRPOTrainConfig
from vaur1.sft.config import SFTTrainConfig

REPO = Path(__file__).resolve().parents[1]
TRAINERS = {"grpo": GRPOTrainConfig, "sft": SFTTrainConfig}


def train_commands(doc: Path) -> list[tuple[str, list[str]]]:
    """Each `vaur1 train JOB ...` in a fenced block of `doc`: (job, its arguments)."""
    blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#", 1)[0].replace("$(", "").replace(")", ""))
            if "train" in words and words[words.index("train") - 1] == "vaur1":
                at = words.index("train")
                commands.append((words[at + 1], words[at + 2 :]))
    return commands


COMMANDS = [
    pytest.param(job, args, id=f"{doc}:{job}:{' '.join(args)[:40]}")
    for doc in ("README.md", "docs/guide.md")
    for job, args in train_commands(REPO / doc)
]


def test_the_docs_show_training_commands():
    assert len(COMMANDS) >= 4
    assert any("optim.learning_rate=1e-6" in param.values[1] for param in COMMANDS)


@pytest.mark.parametrize(("job", "args"), COMMANDS)
def test_every_documented_training_command_loads(job, args):
    config = args[args.index("--config") + 1]
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    cfg = load_config(TRAINERS[job], config, overrides)
    for override in overrides:
        key, value = override.split("=", 1)
        node = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert str(node) == value or node == float(value), override


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
