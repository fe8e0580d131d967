"""`vaur1 demo --quick` through the console script: every stage runs, report.json has the promised shape,
report.html parses, a second run reuses every stage, and a changed setting redoes only what reads it."""

from __future__ import annotations

import collections
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

import vaur1
from conftest import VAUR1
from vaur1.bench import load_bench
from vaur1.bench.tasks import task_view
from vaur1.demo import STAGES, eval_config, load_demo_config, sft_train_config, stage_hash
from vaur1.demo.report import budget_table
from vaur1.errors import ConfigError
from vaur1.layout import DemoRun

STAGE_NAMES = [stage.name for stage in STAGES]
# The headline keys of each task block, as `vaur1 eval metrics --json` prints them.
METRIC_KEYS = {
    "qa": {"n", "accuracy", "missing", "unparsed", "ci"},
    "tag": {"n", "miou", "r@0.3", "r@0.5", "r@0.7", "false_alarm_rate", "n_normal", "ci"},
    "cls": {"n", "binary_accuracy", "multiclass_accuracy", "macro_f1", "ci"},
}


def vaur1_demo(*args: str) -> subprocess.CompletedProcess:
    env = vaur1.subprocess_env() | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(VAUR1), "demo", "--quick", *args], capture_output=True, text=True, timeout=300, env=env
    )


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def stage_lines(output: str) -> dict[str, str]:
    """Each stage's header line: `[n/8] name: ...`."""
    lines = {}
    for line in output.splitlines():
        for name in STAGE_NAMES:
            if f"] {name}: " in line:
                lines[name] = line
    return lines


@pytest.mark.slow
def test_quick_demo_runs_reports_reuses_and_redoes_only_changed_stages(tmp_path):
    out = tmp_path / "demo"
    first = vaur1_demo("--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "GRPO - SFT" in first.stdout and "Training budgets" in first.stdout
    # the last line says where the report is
    assert (
        first.stdout.rstrip().splitlines()[-1]
        == f"report: {out / 'report.html'} (also report.md and report.json there)"
    )

    report = json.loads((out / "report.json").read_text())
    assert set(report["stages"]) == {"base", "sft", "grpo"}
    for stage in report["stages"].values():
        for task, keys in METRIC_KEYS.items():
            assert keys <= set(stage[task]), (task, keys - set(stage[task]))
            assert stage[task]["n"] > 0
    constant = report["constant"]  # a blind model's scores, answers chosen on the train split
    assert set(constant["metrics"]) == set(report["headline"]["sft"])
    assert constant["label"] == "constant answer (chosen on train)"
    assert "Constant: one answer for every clip, chosen on the train split" in " ".join(first.stdout.split())
    # how many answers were missing or unreadable, per stage (they count as wrong)
    unanswered = [
        sum(
            block[key]
            for block in report["stages"][stage].values()
            if isinstance(block, dict) and key in block
        )
        for stage in ("base", "sft", "grpo")
        for key in ("missing", "unparsed")
    ]
    cells = " | ".join(f"{unanswered[i]} / {unanswered[i + 1]}" for i in range(0, 6, 2))
    assert f"| missing / unreadable items | - | {cells} |" in (out / "report.md").read_text(encoding="utf-8")
    train_letters = collections.Counter(
        e.answer for e in task_view(load_bench(out / "data" / "synthvau").split("train"), "qa")
    )
    assert constant["answers"]["qa"] == {"synth": f"<answer>{train_letters.most_common(1)[0][0]}</answer>"}
    assert constant["metrics"]["tag.false_alarm_rate"] == 100.0
    interval = re.fullmatch(
        r"<answer>Anomaly</answer><glue>(\[.*\])</glue>", constant["answers"]["tag"]["synth"]
    )
    assert f"TAG: Anomaly {interval.group(1)}" in " ".join(first.stdout.split())
    budgets = report["budgets"]
    assert budgets["sft"]["steps"] >= budgets["sft"]["best_step"] > 0 and budgets["sft"]["seconds"] > 0
    assert budgets["grpo"]["completions"] == budgets["grpo"]["samples"] * 2  # quick: G = 2
    # 16 SFT steps seldom teach the tiny model to read the video; the report says whether they did
    read = any(record["cls"] >= budgets["sft"]["reading_level_cls"] for record in report["sft_validation"])
    assert budgets["sft"]["read_the_video"] is read
    assert ("never beat the best constant answer" in " ".join(first.stdout.split())) is not read
    # GRPO is scored on val at steps 2 and 3, one continuing run, and its best checkpoint is evaluated
    grpo_validation = report["grpo_validation"]
    assert [record["step"] for record in grpo_validation] == [2, 3]
    best = max(grpo_validation, key=lambda record: record["score"])
    assert budgets["grpo"]["best_step"] == best["step"] and budgets["grpo"]["validation_evaluations"] == 2
    trained = [json.loads(line)["step"] for line in (out / "grpo" / "metrics.jsonl").open()]
    for stage in ("sft", "grpo"):  # both trainers ran the demo's training mix
        assert yaml.safe_load((out / stage / "config.yaml").read_text())["task_repeats"] == {"qa": 3}
    assert sorted(set(trained)) == [1, 2, 3] and len(trained) == len(set(trained))
    # the demo ends with the model `vaur1 analyze` reads by default
    assert json.loads((out / "eval_grpo" / "stage.json").read_text())["model"] == str(
        DemoRun(out).chosen_model
    )
    gains = report["gains"]["grpo_over_sft"]
    headline = report["headline"]
    assert gains["tag.miou"] == pytest.approx(headline["grpo"]["tag.miou"] - headline["sft"]["tag.miou"])
    for metric in ("qa.accuracy", "tag.miou", "cls.multiclass_accuracy"):  # paired intervals over test items
        low, high = report["gains"]["grpo_over_sft_ci"][metric]
        assert low - 0.02 <= gains[metric] <= high + 0.02, metric
    low, high = report["gains"]["grpo_over_sft_ci"]["qa.accuracy"]
    assert f"[{low:+.1f}, {high:+.1f}]" in (out / "report.md").read_text()
    # R@0.7 is in the table: it separates placing the event from hedging with one interval
    assert headline["sft"]["tag.r@0.7"] == report["stages"]["sft"]["tag"]["r@0.7"]
    assert re.search(r"^\| TAG R@0\.7 \|", (out / "report.md").read_text(), re.MULTILINE)
    assert report["stages"]["sft"]["qa"]["accuracy"] == pytest.approx(
        json.loads((out / "eval_sft" / "metrics.json").read_text())["tasks"]["qa"]["direct"]["accuracy"]
    )

    page = _Tags()
    page.feed((out / "report.html").read_text())
    assert page.tags.count("table") >= 5
    assert "Untrained vs SFT vs GRPO after SFT" in page.text and "Training budgets" in page.text
    assert (out / "report.md").read_text().startswith("# ")

    finished = {name: (out / name / "stage.json").stat().st_mtime_ns for name in STAGE_NAMES}
    second = vaur1_demo("--out", str(out))
    assert second.returncode == 0, second.stderr[-3000:]
    lines = stage_lines(second.stderr)
    assert all("reused" in lines[name] for name in STAGE_NAMES), lines
    assert finished == {name: (out / name / "stage.json").stat().st_mtime_ns for name in STAGE_NAMES}
    assert json.loads((out / "report.json").read_text())["stages"] == report["stages"]

    third = vaur1_demo("--out", str(out), "grpo.run.max_steps=4", "grpo.loss.scale_rewards=batch")
    assert third.returncode == 0, third.stderr[-3000:]
    lines = stage_lines(third.stderr)
    redone = {"grpo", "eval_grpo"}
    assert {name for name in STAGE_NAMES if "reused" not in lines[name]} == redone, lines
    assert json.loads((out / "report.json").read_text())["budgets"]["grpo"]["steps"] == 4
    assert yaml.safe_load((out / "grpo" / "config.yaml").read_text())["loss"]["scale_rewards"] == "batch"


def test_settings_and_errors(tmp_path):
    quick = load_demo_config(quick=True, overrides=["grpo.rewards.tag={format: 1.0, iou: 2.0}"])
    default = load_demo_config()
    assert quick.out == "runs/demo-quick" and default.out == "runs/demo"
    assert quick.data.n < default.data.n and quick.grpo["rewards"]["tag"] == {"format": 1.0, "iou": 2.0}
    assert quick.video == default.video  # a partial override would keep the other VideoSpec defaults
    assert quick.data.extra_test == 0 and default.data.extra_test > 0
    # --full: the same demo with the long budgets, in its own folder; an override still wins
    full = load_demo_config(full=True, overrides=["grpo.run.max_steps=250"])
    assert full.out == "runs/demo-full" and full.data == default.data and full.video == default.video
    assert full.sft["run"]["max_steps"] > default.sft["run"]["max_steps"]
    assert (full.grpo["run"]["max_steps"], default.grpo["run"]["max_steps"]) == (250, 60)
    with pytest.raises(ConfigError, match="--quick and --full"):
        load_demo_config(quick=True, full=True)
    with pytest.raises(ConfigError, match="split_ratio"):
        load_demo_config(overrides=["data.split_ratio=0.8"])
    with pytest.raises(ConfigError, match="torch_threads: need at least 1, got 0"):
        load_demo_config(overrides=["torch_threads=0"])
    with pytest.raises(ConfigError, match="data.extra_test"):
        load_demo_config(overrides=["data.extra_test=-1"])
    with pytest.raises(
        ConfigError, match="grpo: loss.scale_rewards: 'nope' is not one of 'group', 'batch', 'none'"
    ):
        load_demo_config(overrides=["grpo.loss.scale_rewards=nope"])
    with pytest.raises(ConfigError, match="grpo: task_repeats: 'reasoning' is not one of data.tasks"):
        load_demo_config(overrides=["grpo.task_repeats={reasoning: 2}"])
    # the trainers' own keys, checked before any stage runs
    custom = load_demo_config(overrides=["sft.optim.learning_rate=1e-3"])
    assert sft_train_config(custom, "model", tmp_path).optim.learning_rate == 1e-3
    # every evaluation, the validation ones of early stopping included, decodes greedily
    harness = eval_config(full, str(tmp_path / "model"), "val", tmp_path / "eval")
    assert not harness.sampling.do_sample and harness.sampling.max_new_tokens == full.eval.max_new_tokens
    assert (harness.data.split, harness.modes, harness.video) == ("val", [full.mode], full.video)
    bad = vaur1_demo("--out", str(tmp_path), "grpo.run.max_stepz=2")
    assert bad.returncode == 2 and "grpo: unknown config key 'run.max_stepz'" in bad.stderr
    assert not Path(tmp_path, "data").exists()


def test_the_model_stage_builds_the_configured_attention(tmp_path):
    from vaur1.demo.pipeline import run_model

    cfg = load_demo_config(overrides=["model.num_heads=4", "model.num_kv_heads=2"])
    model_dir = Path(run_model(cfg, tmp_path, {})["model"])
    text = json.loads((model_dir / "config.json").read_text())["text_config"]
    assert (text["num_attention_heads"], text["num_key_value_heads"]) == (4, 2)


def test_the_data_stage_adds_the_extra_clips_to_test_alone(tmp_path):
    from vaur1.demo.pipeline import run_data

    cfg = load_demo_config(
        overrides=[f"out={tmp_path}", "data.n=8", "data.extra_test=4", "data.duration=[1.0, 1.0]"]
    )
    assert run_data(cfg, tmp_path / "data", {})["clips"] == {"train": 5, "val": 1, "test": 6}


def test_a_new_tokenizer_corpus_rebuilds_the_model(monkeypatch):
    import vaur1.model.tiny as tiny

    cfg = load_demo_config()
    model_stage = next(stage for stage in STAGES if stage.name == "model")
    before = stage_hash(model_stage, cfg, {})
    corpus = tiny.training_corpus()
    monkeypatch.setattr(tiny, "training_corpus", lambda: [*corpus, "a word the tokenizer did not know"])
    assert stage_hash(model_stage, cfg, {}) != before


def test_the_constant_answer_level_is_the_most_common_class_share_of_val(tmp_path):
    import csv

    from vaur1.demo.config import split_examples
    from vaur1.demo.pipeline import run_data
    from vaur1.eval.baselines import constant_class_accuracy

    cfg = load_demo_config(
        overrides=[f"out={tmp_path}", "data.n=40", "data.extra_test=0", "data.duration=[1.0, 1.0]"]
    )
    run_data(cfg, tmp_path / "data", {})
    with (tmp_path / "data" / "synthvau" / "val.csv").open(newline="") as f:
        classes = [row["Anomaly Class"] for row in csv.DictReader(f)]
    assert len(classes) == 6
    share = max(classes.count(name) for name in set(classes)) / len(classes)
    val_cls = [e for e in split_examples(cfg, "val") if e.task == "cls"]
    assert constant_class_accuracy(val_cls) == pytest.approx(
        100 * share, abs=0.005
    )  # metrics keep 2 decimals


def test_the_budget_table_warns_when_sft_never_read_the_video():
    sft = {
        "steps": 400,
        "best_step": 200,
        "samples": 3200,
        "samples_to_best": 1600,
        "validation_evaluations": 2,
        "stopped_by": "max_steps",
        "seconds": 30.0,
        "read_the_video": False,
        "constant_answer_cls": 33.3,
        "reading_level_cls": 46.3,
    }
    grpo = {
        "steps": 10,
        "best_step": 5,
        "samples": 80,
        "completions": 640,
        "seconds": 20.0,
        "validation_evaluations": 2,
    }
    blind = budget_table({"budgets": {"sft": sft, "grpo": grpo}})
    assert "never beat the best constant answer (33.3%) beyond chance (it needed 46.3%)" in blind.note
    # a stage from before the level
    earlier = {key: value for key, value in sft.items() if key != "reading_level_cls"}
    assert (
        "answer (33.3%) beyond chance: SFT did not"
        in budget_table({"budgets": {"sft": earlier, "grpo": grpo}}).note
    )
    sighted = budget_table({"budgets": {"sft": {**sft, "read_the_video": True}, "grpo": grpo}})
    assert "WARNING" not in sighted.note
