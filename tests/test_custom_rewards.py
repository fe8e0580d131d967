"""Rewards of your own, without editing vaur1: `rewards.custom.<name>: package.module:function`, in GRPO,
in `vaur1 rewards` and in the logged per-reward metrics; the shipped example runs here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, VAUR1
from train_helpers import grpo_config, read_jsonl
from vaur1.errors import ConfigError, VaurError
from vaur1.rewards import RewardConfig, RewardError
from vaur1.rl.trainer import train

EXAMPLE = REPO / "examples" / "rewards"
TAG_WEIGHTS = "rewards.tag={format: 1, accuracy: 1, iou: 1, interval_precision: 0.5}"


def test_the_example_scores_outputs_through_vaur1_rewards(tmp_path: Path) -> None:
    lines = [
        {"completion": "<answer>Anomaly</answer><glue>[2, 4]</glue>", "sample": {"interval": [2, 6]}},
        {"completion": "<answer>Anomaly</answer><glue>[0, 60]</glue>", "sample": {"interval": [2, 7]}},
        {"completion": "Anomaly [2, 4]", "sample": {"interval": [2, 6]}},  # outside the answer format
        {"completion": "<answer>Normal</answer><glue>[-1, -1]</glue>", "sample": {"interval": [0, 0]}},
    ]
    completions = tmp_path / "c.jsonl"
    completions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    command = [
        str(VAUR1),
        "rewards",
        "--task",
        "tag",
        "--input",
        str(completions),
        "--config",
        "rewards.yaml",
    ]
    result = subprocess.run([*command, "--json"], cwd=EXAMPLE, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    scored = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rewards"].get("interval_precision") for r in scored] == [1.0, 1 / 12, 0.0, None]
    # format (think) 0 + accuracy 1 + iou 0.5 + interval_precision 1 at weight 0.5
    assert scored[0]["total"] == 0 + 1 + 0.5 + 0.5 * 1.0
    table = subprocess.run(command, cwd=EXAMPLE, capture_output=True, text=True, check=False)
    assert table.returncode == 0 and "interval_precision" in table.stdout  # a pipe gets whole names


def test_grpo_trains_with_a_reward_of_ones_own_and_logs_it(
    tiny_models, synth_bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLE)  # as a user runs it: the module lies in the current folder
    overrides = [
        "rewards.custom.interval_precision=interval_precision:interval_precision",
        TAG_WEIGHTS,
        "data.tasks=[tag]",
    ]
    train(grpo_config(tmp_path / "run", tiny_models["qwen2_5_vl"], synth_bench, overrides))
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    logged = [r["rewards/interval_precision/mean"] for r in records if "rewards/interval_precision/mean" in r]
    assert logged and all(0.0 <= value <= 1.0 for value in logged)


def test_a_failing_reward_stops_the_step_naming_reward_sample_and_error(
    tiny_models, synth_bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_reward.py").write_text(
        "def broken(completion, example):\n    return 1 / 0\n\ndef text(completion, example):\n    return 'high'\n"
    )
    monkeypatch.chdir(tmp_path)
    for function, error in (("broken", "ZeroDivisionError: division by zero"), ("text", "returned 'high'")):
        overrides = [f"rewards.custom.mine=broken_reward:{function}", "rewards.cls={format: 1, mine: 1}"]
        overrides.append("data.tasks=[cls]")
        with pytest.raises(
            RewardError, match=rf"reward 'mine' \(broken_reward:{function}\) on train/\S+/cls: {error}"
        ):
            train(grpo_config(tmp_path / function, tiny_models["qwen2_5_vl"], synth_bench, overrides))


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"iou": "m:f"}, "rewards.custom.iou: a reward's name is an identifier that no built-in reward has"),
        ({"mine": "no colon"}, "rewards.custom.mine: 'no colon' is not package.module:function"),
        ({"mine": "no_such_module_xyz:f"}, "rewards.custom.mine: cannot import no_such_module_xyz"),
        ({"mine": "json:no_such_function"}, "rewards.custom.mine: json has no function 'no_such_function'"),
    ],
)
def test_a_bad_reward_setting_is_a_config_error(custom: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RewardConfig(custom=custom).validate()
    with pytest.raises(VaurError, match="rewards.qa.mine: unknown reward"):
        RewardConfig(qa={"format": 1.0, "mine": 1.0}).validate()
