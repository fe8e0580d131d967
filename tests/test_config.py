from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from vaur1.config import load_config, save_config
from vaur1.errors import ConfigError
from vaur1.runinfo import write_run_metadata


@dataclass
class Optim:
    learning_rate: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Train:
    optim: Optim = field(default_factory=Optim)
    steps: int = 10
    loss_type: Literal["grpo", "dapo"] = "dapo"
    tasks: list[str] = field(default_factory=lambda: ["qa"])
    weights: dict[str, float] = field(default_factory=dict)
    output_dir: str | None = None
    bf16: bool = False

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError("train.steps must be at least 1")


@dataclass
class Root:
    train: Train = field(default_factory=Train)
    seed: int = 0


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  optim:\n    learning_rate: 1e-6\n  steps: 5\n  tasks: [qa, tag]\nseed: 3\n")
    cfg = load_config(
        Root, path, ["train.optim.learning_rate=2e-6", "train.loss_type=grpo", "train.weights.iou=0.5"]
    )
    assert cfg.train.optim.learning_rate == pytest.approx(2e-6)  # "2e-6" is a YAML string; read as float
    assert cfg.train.steps == 5 and cfg.seed == 3 and cfg.train.tasks == ["qa", "tag"]
    assert cfg.train.loss_type == "grpo" and cfg.train.weights == {"iou": 0.5}
    assert cfg.train.optim.betas == (0.9, 0.999)


def test_defaults_without_file():
    assert load_config(Root).train.optim.learning_rate == 1e-5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.learnig_rate=1", "unknown config key 'train.learnig_rate'"),
        ("train.steps=many", "train.steps: expected an integer"),
        ("train.steps=1.5", "train.steps: expected an integer"),
        ("train.bf16=maybe", "train.bf16: expected true or false"),
        ("train.loss_type=ppo", "train.loss_type: 'ppo' is not one of"),
        ("train.optim.betas=[0.9]", "train.optim.betas: expected 2 items"),
        ("train.steps=0", "train.steps must be at least 1"),
        ("train=3", "train: expected a mapping"),
        ("seed", "not of the form key=value"),
    ],
)
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(Root, None, [override])


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  optim:\n    lr: 1\n")
    with pytest.raises(ConfigError, match="train.optim.lr"):
        load_config(Root, path)


def test_base_file_is_merged(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 7\ntrain:\n  steps: 4\n  bf16: true\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  steps: 9\n")
    cfg = load_config(Root, tmp_path / "child.yaml")
    assert (cfg.seed, cfg.train.steps, cfg.train.bf16) == (7, 9, True)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(Root, None, ["train.steps=3", "train.output_dir=/tmp/x"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(Root, tmp_path / "config.yaml") == cfg


def test_run_metadata(tmp_path):
    data = tmp_path / "val.csv"
    data.write_text("x\n")
    run = write_run_metadata(
        tmp_path / "run", load_config(Root), data_files=[data], command=["vaur1", "test"]
    )
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 10
    info = json.loads((run / "run_info.json").read_text())
    assert info["versions"]["torch"].startswith("2.13")
    assert info["versions"]["transformers"] == "5.23.0"
    assert set(info["git"]) == {"revision", "dirty"}
    assert info["data_files"][str(data)] == hashlib.sha256(b"x\n").hexdigest()
    assert info["command"] == ["vaur1", "test"]


def test_a_key_written_twice_is_an_error_naming_it(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a setting written twice would change the run."""
    from vaur1.config import parse_override, read_yaml

    path = tmp_path / "twice.yaml"
    path.write_text("run:\n  max_steps: 5\n  max_steps: 500\n")
    with pytest.raises(
        ConfigError, match=r"twice.yaml: not valid YAML: the key 'max_steps' appears twice \(line 3"
    ):
        read_yaml(path)
    with pytest.raises(ConfigError, match=r"the key 'learning_rate' appears twice"):
        parse_override("optim={learning_rate: 1, learning_rate: 2}")
    path.write_text("base: &b {a: 1}\nrun:\n  <<: *b\n  a: 2\n")  # a merge overridden is not a repeat
    assert read_yaml(path)["run"] == {"a": 2}
