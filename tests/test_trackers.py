"""Experiment trackers through accelerate (`run.report_to`, TRL's name and values) and TRL's flat option
names on the command line and in config files."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from train_helpers import read_jsonl, synth_bench
from vaur1.errors import ConfigError
from vaur1.layout import TrainRun
from vaur1.rl.config import GRPOTrainConfig
from vaur1.sft.config import SFTTrainConfig
from vaur1.train.aliases import load_training_config
from vaur1.train.logging import MetricsLogger, resolve_report_to

synth_bench = synth_bench
SAMPLE = {
    "key": "train/a.mp4/qa",
    "task": "qa",
    "prompt": "Which event?",
    "completion": "<answer>A</answer>",
    "reward": 1.0,
}


def test_tensorboard_and_mlflow_receive_metrics_config_and_completions(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = TrainRun(tmp_path / "run")
    config = {"optim": {"learning_rate": 1e-6}, "data": {"tasks": ["qa", "tag"]}}
    with MetricsLogger(run, report_to=["tensorboard", "mlflow"], config=config) as logger:
        logger.log(1, {"loss": 0.5, "reward": 0.25, "task": "qa"})
        logger.log(2, {"loss": 0.25, "reward": 0.5})
        logger.log_samples(2, [SAMPLE])
    events = EventAccumulator(str(run.tensorboard), size_guidance={"tensors": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 0.5), (2, 0.25)]
    assert "completions/text_summary" in events.Tags()["tensors"]
    client = MlflowClient(tracking_uri=store)
    (found,) = client.search_runs([client.get_experiment_by_name("vaur1").experiment_id])
    assert [m.value for m in client.get_metric_history(found.info.run_id, "reward")] == [0.25, 0.5]
    assert found.data.params["optim.learning_rate"] == "1e-06"
    assert len(read_jsonl(run.metrics)) == 2  # metrics.jsonl stays the always-on log


TRACKER_RUN = """
import vaur1.model
from pathlib import Path
from accelerate import PartialState
from vaur1.layout import TrainRun
from vaur1.train.logging import MetricsLogger

PartialState()  # the trainers' Accelerator does this; accelerate's tracker logs through it
run = TrainRun(Path({run!r}))
with MetricsLogger(run, report_to=[{tracker!r}], config={{"optim": {{"learning_rate": 1e-6}}}}) as logger:
    logger.log(1, {{"loss": 0.5, "reward": 0.25, "task": "qa"}})
    logger.log(2, {{"loss": 0.25, "reward": 0.5}})
    logger.log_samples(2, [{{"key": "k", "task": "qa", "prompt": "Which event?", "completion": "<answer>A</answer>", "reward": 1.0}}])
"""


def test_trackio_logs_locally(tmp_path):
    """trackio (from locks/trackio.txt) in its local mode: a SQLite file per project under TRACKIO_DIR.
    In a child process: trackio reads TRACKIO_DIR once, at import, and finishes its run at exit."""
    pytest.importorskip("trackio", reason="trackio is installed by `make trackio`")
    store = tmp_path / "trackio"
    env = {**os.environ, "TRACKIO_DIR": str(store)}
    script = TRACKER_RUN.format(tracker="trackio", run=str(tmp_path / "grpo-run"))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300, capture_output=True)
    read_back = (
        "from trackio.sqlite_storage import SQLiteStorage as S; import json; (run,) = S.get_runs('grpo-run'); "
        "print(json.dumps([S.get_logs('grpo-run', run), S.get_run_config('grpo-run', run)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", read_back], env=env, check=True, timeout=120, capture_output=True, text=True
    )
    logs, config = json.loads(result.stdout)
    assert [(r["step"], r["loss"], r["reward"]) for r in logs] == [(1, 0.5, 0.25), (2, 0.25, 0.5)]
    assert config["optim.learning_rate"] == 1e-6


def test_wandb_logs_offline(tmp_path):
    """wandb offline, in a child process whose output goes to a file: in the test process its service
    once held the suite for 15 minutes. wandb 0.31 has no reader for its .wandb files, so the metrics are
    checked by their names in the file, the completions in the table it writes next to it."""
    pytest.importorskip("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    with (tmp_path / "child.log").open("w") as log:
        subprocess.run(
            [sys.executable, "-c", TRACKER_RUN.format(tracker="wandb", run=str(tmp_path / "grpo-run"))],
            env=env, check=True, timeout=300, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (records,) = run_dir.glob("run-*.wandb")
    data = records.read_bytes()
    assert all(name in data for name in (b"loss", b"reward", b"optim.learning_rate"))
    (table,) = (run_dir / "files" / "media" / "table").glob("completions_2_*.table.json")
    assert json.loads(table.read_text())["data"] == [["k", "qa", "Which event?", "<answer>A</answer>", "1.0"]]


def test_report_to_takes_trls_values(monkeypatch):
    assert resolve_report_to("none") == [] and resolve_report_to([]) == []
    assert "tensorboard" in resolve_report_to("all") and "mlflow" in resolve_report_to("all")
    assert resolve_report_to(["mlflow"]) == ["mlflow"]
    result = run_cli("config", "show", "sft", "run.report_to=[comet]")
    assert result.returncode == 2 and "run.report_to: 'comet' is not one of" in result.stderr


def test_trl_flags_are_aliases_of_vaurs_keys(tmp_path):
    cfg = load_training_config(
        SFTTrainConfig,
        None,
        [
            "model.name_or_path=m",
            "--learning_rate",
            "1e-6",
            "--num_train_epochs=2",
            "--output_dir",
            str(tmp_path / "out"),
            "--lr_scheduler_type",
            "cosine",
            "--use_peft",
            "--lora_r",
            "8",
            "--report_to",
            "tensorboard,mlflow",
            "--bf16",
            "--per_device_train_batch_size",
            "4",
            "run.seed=7",
        ],
    )
    assert cfg.optim.learning_rate == 1e-6 and cfg.run.num_epochs == 2 and cfg.optim.lr_scheduler == "cosine"
    assert (
        cfg.model.lora.enabled and cfg.model.lora.r == 8 and cfg.bf16 and cfg.per_device_train_batch_size == 4
    )
    assert cfg.run.report_to == ["tensorboard", "mlflow"] and cfg.run.seed == 7
    grpo = load_training_config(
        GRPOTrainConfig, None, ["model.name_or_path=m", "--use_vllm", "--beta", "0.04"]
    )
    assert grpo.rollout.backend == "vllm" and grpo.loss.beta == 0.04


def test_a_trl_style_yaml_loads_with_the_keys_vaur1_shares(tmp_path, caplog):
    path = tmp_path / "trl.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct",
                "learning_rate": 2e-6,
                "num_train_epochs": 1,
                "per_device_train_batch_size": 1,
                "num_generations": 4,
                "max_completion_length": 512,
                "beta": 0.04,
                "report_to": "tensorboard",
                "logging_strategy": "steps",
                "ddp_timeout": 1800,
                "data": {"bench": "vau-bench"},
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="vaur1.train"):
        cfg = load_training_config(GRPOTrainConfig, str(path), ["--learning_rate", "3e-6"])
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct" and cfg.num_generations == 4
    assert cfg.optim.learning_rate == 3e-6 and cfg.loss.beta == 0.04 and cfg.run.report_to == ["tensorboard"]
    assert "ddp_timeout, logging_strategy" in caplog.text
    path.write_text(yaml.safe_dump({"learning_rate": 1e-6, "optim": {"learning_rate": 2e-6}}))
    with pytest.raises(ConfigError, match="optim.learning_rate is set twice"):
        load_training_config(GRPOTrainConfig, str(path), [])


@pytest.mark.slow
def test_train_cli_takes_trl_flags_and_reports_to_trackers(tiny_models, synth_bench, tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = tmp_path / "sft.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(tiny_models["qwen2_5_vl"]), "dtype": "float32"},
                "data": {"bench": str(synth_bench), "split": "train", "tasks": ["qa"]},
                "video": {
                    "fps": None,
                    "num_frames": 2,
                    "min_pixels": 784,
                    "max_pixels": 3136,
                    "total_pixels": None,
                },
                "cache": {"enabled": False},
                "loader": {"num_workers": 0},
            }
        )
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    result = run_cli(
        "train",
        "sft",
        "--config",
        str(config),
        "--learning_rate",
        "1e-3",
        "--max_steps",
        "2",
        "--output_dir",
        str(out),
        "--report_to",
        "tensorboard,mlflow",
        "--save_steps",
        "100",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optim"]["learning_rate"] == 1e-3 and saved["run"]["report_to"] == ["tensorboard", "mlflow"]
    assert any((out / "tensorboard").iterdir()) and any((tmp_path / "mlruns").iterdir())
    assert len(read_jsonl(out / "metrics.jsonl")) == 2
    assert Path(out / "final").is_dir()


def test_nothing_that_changes_the_training_is_dropped(tmp_path, caplog):
    """A TRL key or flag vaur1 does not implement is an error naming it, unless its value is TRL's
    default or it is about logging or launching (then it is left out with a warning); one it has maps."""
    path = tmp_path / "trl.yaml"
    path.write_text(yaml.safe_dump({"steps_per_generation": 4, "learning_rate": 1e-6}))
    with pytest.raises(ConfigError, match="steps_per_generation=4: a TRL setting vaur1 does not implement"):
        load_training_config(GRPOTrainConfig, str(path), [])
    path.write_text(
        yaml.safe_dump({"steps_per_generation": None, "ddp_timeout": 60, "neftune_noise_alpha": None})
    )
    with caplog.at_level("WARNING", logger="vaur1.train"):
        load_training_config(GRPOTrainConfig, str(path), ["model.name_or_path=x"])
    # at their defaults, or about launching: left out
    assert "ddp_timeout, neftune_noise_alpha, steps_per_generation" in caplog.text
    with pytest.raises(ConfigError, match="--neftune_noise_alpha=5: a TRL setting"):
        load_training_config(GRPOTrainConfig, None, ["--neftune_noise_alpha", "5"])
    with pytest.raises(ConfigError, match=r"beta \(loss.beta\) is a GRPO setting; SFT has no loss.beta"):
        load_training_config(SFTTrainConfig, None, ["--beta", "0.1"])
    result = run_cli("train", "grpo", "--steps_per_generation", "2", "model.name_or_path=x")
    assert result.returncode == 2 and "steps_per_generation=2" in result.stderr
    # TRL's mixed reference model maps onto vaur1's
    flags = ["--sync_ref_model", "--ref_model_mixup_alpha", "0.3", "--beta", "0.04"]
    mixed = load_training_config(GRPOTrainConfig, None, [*flags, "model.name_or_path=x", "data.bench=y"])
    assert (mixed.loss.sync_ref_model, mixed.loss.ref_model_mixup_alpha) == (True, 0.3)
    # a TRL YAML asking for GSPO gets GSPO
    path.write_text(yaml.safe_dump({"importance_sampling_level": "sequence", "loss_type": "grpo"}))
    gspo = load_training_config(GRPOTrainConfig, str(path), ["model.name_or_path=x", "data.bench=y"])
    assert (gspo.loss.importance_sampling_level, gspo.loss.loss_type) == ("sequence", "grpo")


@pytest.mark.parametrize("trainer", ["grpo", "sft"])
def test_every_flag_a_trainers_help_lists_is_one_of_its_settings(trainer):
    from vaur1.config import settings
    from vaur1.train.aliases import GRPO_ONLY, aliases_of, top_level_fields

    cls = {"grpo": GRPOTrainConfig, "sft": SFTTrainConfig}[trainer]
    keys = {setting.key for setting in settings(cls())}
    help_text = " ".join(run_cli("train", trainer, "--help", check=True).stdout.split())
    for flag, key in aliases_of(trainer).items():
        assert f"--{flag} ({key})" in help_text
        assert key in keys or any(k.startswith(f"{key}.") for k in keys), (trainer, flag, key)
    assert top_level_fields(GRPOTrainConfig) - top_level_fields(SFTTrainConfig) == GRPO_ONLY
