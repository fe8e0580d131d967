"""Hostile inputs to the parsers and the config loader: linear time, one-line errors, nothing lost."""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
from accelerate.state import AcceleratorState
from hypothesis import given, settings
from hypothesis import strategies as st

import train_helpers
from conftest import run_cli
from train_helpers import sft_config
from vaur1.bench.reasoning import parse_reasoning
from vaur1.config import load_config, save_config
from vaur1.errors import ConfigError, VaurError
from vaur1.parse import parse_completion, parse_interval, tag_prediction
from vaur1.rl.config import GRPOTrainConfig

# Each took 38-68 s before the patterns were made linear; a linear parser takes milliseconds. The
# bound is loose on purpose: it catches a quadratic pattern, not a slow machine.
QUADRATIC_BEFORE = {
    "a tag opened by spaces": (parse_completion, "<" + " " * 20_000),
    "a closing tag padded with spaces": (parse_completion, "</" + " " * 20_000 + "x"),
    "a heading of hashes": (parse_reasoning, "#" * 30_000),
    "a heading without a colon": (parse_reasoning, "## a" + " " * 30_000),
    "many headings": (parse_reasoning, "## Location: x " * 5_000),
}


@pytest.mark.parametrize("name", QUADRATIC_BEFORE)
def test_no_input_makes_a_parser_quadratic(name):
    parse, text = QUADRATIC_BEFORE[name]
    started = time.perf_counter()
    parse(text)
    assert time.perf_counter() - started < 2.0, name


def test_huge_numbers_and_deep_nesting_in_a_completion_are_malformed_not_a_crash():
    assert parse_interval("[" + "9" * 401 + ", 5]") is None  # no OverflowError, no interval
    assert parse_interval("[1e400, 2]") is None and parse_interval("[2, 1e400]") is None  # inf is no time
    completion = parse_completion("<answer>" + "[" * 100_000 + "</answer><glue>[1e400, 2]</glue>")
    # read up to MAX_CHARS: the answer is the brackets, the interval is not there, the TAG label unreadable
    assert completion.answer_tagged and set(completion.answer) == {"["}
    assert parse_interval(completion.glue) is None and tag_prediction(completion, "tagged") is None


# pieces of tags, headings and intervals, joined at random and repeated
HOSTILE_TEXT = st.lists(
    st.sampled_from([*"<>/#:[], -.09eE\n\t", "think", "answer", "glue", "Location", "1e400", "9" * 50])
).map("".join)


@settings(max_examples=300, deadline=2000)
@given(HOSTILE_TEXT.map(lambda s: s * 20))
def test_fuzzed_completions_and_reasoning_cells_never_raise(text):
    parse_completion(text)
    parse_reasoning(text)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.learning_rate=.inf", "optim.learning_rate"),
        ("optim.weight_decay=nan", "optim.weight_decay"),
        ("optim.max_grad_norm=inf", "optim.max_grad_norm"),
        ("optim.betas=[0.9, .nan]", "optim.betas[1]"),
        ("rewards.qa={format: .inf}", "rewards.qa.format"),
        ("loss.beta=-inf", "loss.beta"),
    ],
)
def test_non_finite_numbers_are_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": must be a finite number"):
        load_config(GRPOTrainConfig, "grpo/tiny_cpu", [override])


def test_a_yaml_alias_bomb_is_refused_fast(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than 100,000 values"):
        load_config(GRPOTrainConfig, bomb)
    assert time.perf_counter() - started < 5.0


def test_an_error_never_prints_an_unbounded_value():
    with pytest.raises(ConfigError) as caught:
        load_config(GRPOTrainConfig, "grpo/tiny_cpu", ["optim.learning_rate=" + "y" * 100_000])
    assert len(str(caught.value)) < 300


def test_rewards_reads_a_jsonl_line_holding_u2029_as_one_line_and_names_a_deep_line(tmp_path):
    good = {"completion": "<answer>A</answer>\u2029", "sample": {"answer": "A"}}
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps(good, ensure_ascii=False) + "\n" + '{"completion": ' + "[" * 100_000 + "\n",
        encoding="utf-8",
    )
    result = run_cli("rewards", "--task", "qa", "--input", str(path), "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["line"] for line in lines] == [1, 2]
    assert lines[0]["total"] > 0 and "error" in lines[1]


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A file where a command expects to make a folder: every write under it fails with ENOTDIR."""
    folder = tmp_path_factory.mktemp("blocked")
    (folder / "blocker").write_text("a file, not a folder")
    return folder / "blocker"


def test_an_unwritable_output_is_one_line_and_exit_2_from_every_command(
    blocked, tiny_models, synth_bench, tmp_path
):
    model = tiny_models["qwen2_5_vl"]
    config = tmp_path / "sft.yaml"
    save_config(sft_config(tmp_path / "unused", model, synth_bench), config)
    commands = [
        ["data", "synth", "--out", f"{blocked}/synth", "--n", "4"],
        ["model", "tiny", "--arch", "qwen2_5_vl", "--out", f"{blocked}/model"],
        ["train", "sft", "--config", str(config), f"run.output_dir={blocked}/run"],
        [
            "eval",
            "run",
            "--model",
            str(model),
            "--bench",
            str(synth_bench),
            "--split",
            "test",
            "--tasks",
            "qa",
            "--mode",
            "direct",
            "--out",
            f"{blocked}/eval",
        ],
        ["demo", "--quick", "--out", f"{blocked}/demo"],
    ]
    for command in commands:
        result = run_cli(*command)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and str(blocked) in result.stderr, command
        assert result.stderr.strip().splitlines()[-1].startswith("error:"), command


def test_the_judge_cache_is_checked_writable_before_any_paid_call(blocked):
    from vaur1.errors import VaurError
    from vaur1.eval.judge import JudgeCache

    with pytest.raises(VaurError, match="judge_cache.jsonl: cannot write the judge cache"):
        JudgeCache(blocked / "judge_cache.jsonl")


def videos_with(synth_bench, folder, broken=(), missing=()):
    """A video folder of symlinks to the bench's clips, some replaced by junk or left out."""
    folder.mkdir()
    for clip in (synth_bench / "videos").iterdir():
        if clip.name in missing:
            continue
        if clip.name in broken:
            (folder / clip.name).write_bytes(b"\x00not an mp4" * 10)
        else:
            (folder / clip.name).symlink_to(clip)
    return folder


def train_sft_with(tmp_path, tiny_models, synth_bench, videos, *overrides):
    from vaur1.sft.trainer import train

    cfg = sft_config(
        tmp_path / "run",
        tiny_models["qwen2_5_vl"],
        synth_bench,
        [f"data.video_roots.default={videos}", *overrides],
    )
    return train(cfg)


def test_wrong_video_roots_stop_before_the_run_naming_the_root_and_a_file(tmp_path, tiny_models, synth_bench):
    from vaur1.errors import VaurError

    empty = tmp_path / "videos"
    empty.mkdir()
    with pytest.raises(VaurError, match=rf"{empty}: \d+ of \d+ samples have no video file \(e.g. {empty}/"):
        train_sft_with(tmp_path, tiny_models, synth_bench, empty)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_few_missing_videos_are_left_out_listed_and_counted(tmp_path, tiny_models, synth_bench):
    clips = sorted(p.name for p in (synth_bench / "videos").iterdir())
    videos = videos_with(synth_bench, tmp_path / "videos", missing=clips[:1])
    train_sft_with(tmp_path, tiny_models, synth_bench, videos, "data.max_missing_videos=0.5")
    skipped = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert skipped and all(
        s["reason"] == "no such video file" and s["video"].endswith(clips[0]) for s in skipped
    )
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_a_run_that_skipped_every_sample_fails_and_exports_nothing(tmp_path, tiny_models, synth_bench):
    from vaur1.train.common import TrainingAborted

    clips = [p.name for p in (synth_bench / "videos").iterdir()]
    videos = videos_with(synth_bench, tmp_path / "videos", broken=clips)
    with pytest.raises(TrainingAborted, match="no sample was trained: every clip was skipped"):
        train_sft_with(tmp_path, tiny_models, synth_bench, videos)
    assert not (tmp_path / "run" / "final").exists()


def test_hostile_video_names_are_skipped_rows_not_a_worker_traceback(tmp_path):
    from bench_csv import row, write_csv
    from vaur1.bench.loader import read_csv

    path = write_csv(
        tmp_path / "val.csv",
        [row(), row(**{"Video Name": "msad_\x00x.mp4"}), row(**{"Video Name": "msad_" + "v" * 400 + ".mp4"})],
    )
    samples, report = read_csv(path)
    assert len(samples) == 1 and report.skipped == {"bad_video_name": 2}


def test_a_symlink_loop_is_a_missing_video_and_an_unwritable_cache_only_costs_caching(
    tmp_path, tiny_models, synth_bench, caplog
):
    import logging

    clips = sorted(p.name for p in (synth_bench / "videos").iterdir())
    videos = videos_with(synth_bench, tmp_path / "videos", missing=clips[:1])
    (videos / clips[0]).symlink_to(videos / clips[0])  # a link to itself
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="vaur1"):
        train_sft_with(
            tmp_path,
            tiny_models,
            synth_bench,
            videos,
            "data.max_missing_videos=0.5",
            "cache.enabled=true",
            f"cache.dir={blocker}/frames",
        )
    skipped = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert {s["video"].rsplit("/", 1)[-1] for s in skipped} == {clips[0]}
    assert any("decoding without caching" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "damaged", ["model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"]
)
def test_a_truncated_checkpoint_file_is_named_and_resume_falls_back_to_the_one_before(
    damaged, tmp_path, tiny_models, synth_bench, caplog
):
    import logging

    from vaur1.sft.trainer import train
    from vaur1.train.checkpoint import resolve_resume

    def config(out, *more):
        return sft_config(
            out, tiny_models["qwen2_5_vl"], synth_bench, ["run.max_steps=3", "run.save_steps=1", *more]
        )

    train(config(tmp_path / "whole"))
    out = tmp_path / "run"
    train(config(out))
    shutil.rmtree(out / "final")
    target = out / "checkpoint-3" / "state" / damaged
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(VaurError, match=rf"checkpoint-3/state/{re.escape(damaged)}: its content differs"):
        resolve_resume(str(out / "checkpoint-3"), out)
    AcceleratorState._reset_state(True)
    with caplog.at_level(logging.WARNING, logger="vaur1"):
        train(config(out))
    assert any(f"not resuming from checkpoint-3: {target}" in r.getMessage() for r in caplog.records)
    assert train_helpers.same_weights(tmp_path / "whole" / "final", out / "final")


def test_a_resume_that_changes_a_trained_setting_is_refused_and_a_longer_run_is_recorded(
    tmp_path, tiny_models, synth_bench
):
    from vaur1.sft.trainer import train

    out = tmp_path / "run"
    base = ["run.max_steps=2", "run.save_steps=1"]
    train(sft_config(out, tiny_models["qwen2_5_vl"], synth_bench, base))
    saved = (out / "config.yaml").read_text()
    AcceleratorState._reset_state(True)
    with pytest.raises(
        ConfigError, match=r"resume: optim.learning_rate was 0.001 in .*config.yaml, now 0.002"
    ):
        train(sft_config(out, tiny_models["qwen2_5_vl"], synth_bench, [*base, "optim.learning_rate=2e-3"]))
    assert (out / "config.yaml").read_text() == saved
    AcceleratorState._reset_state(True)
    train(sft_config(out, tiny_models["qwen2_5_vl"], synth_bench, ["run.max_steps=3", "run.save_steps=1"]))
    assert "max_steps: 3" in (out / "config.yaml").read_text()
    assert (out / "checkpoint-3").is_dir()


CSV_PIECES = st.sampled_from(
    [
        ",",
        '"',
        "\n",
        "\r\n",
        "-1",
        "0",
        "3.5",
        "nan",
        "inf",
        "msad_a.mp4",
        "A",
        "Fighting",
        "\x00",
        "\xff",
        "é",
        " ",
    ]
)


@settings(max_examples=200, deadline=2000)
@given(st.lists(CSV_PIECES, max_size=400).map("".join))
def test_fuzzed_csv_rows_are_loaded_or_counted_never_a_traceback(tmp_path_factory, text):
    from bench_csv import row, write_csv
    from vaur1.bench.loader import read_csv
    from vaur1.errors import BenchFormatError

    path = write_csv(tmp_path_factory.mktemp("fuzz") / "val.csv", [row()])
    path.write_bytes(path.read_bytes() + text.encode("utf-8", "surrogatepass"))
    try:
        samples, report = read_csv(path)
    except BenchFormatError:
        return
    # no row lost uncounted: every row read was loaded or skipped with a reason
    assert report.loaded == len(samples)
    assert report.rows_read == report.loaded + sum(report.skipped.values())


YAML_PIECES = st.sampled_from(
    [
        "optim:",
        "run:",
        " learning_rate:",
        " max_steps:",
        " 1e-3",
        " .inf",
        " .nan",
        " [",
        "]",
        " &a",
        " *a",
        " {",
        "}",
        "\n",
        "  ",
        "- ",
        ":",
        "base: x.yaml",
        "'",
        '"',
        "\x00",
        "!!python/object",
        "9" * 400,
    ]
)


@settings(max_examples=200, deadline=2000)
@given(st.lists(YAML_PIECES, max_size=80).map("".join))
def test_fuzzed_config_files_load_or_give_one_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "cfg.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(GRPOTrainConfig, path)
    except ConfigError as err:
        assert len(str(err)) < 1000  # bounded, whatever the file holds


def test_a_corrupt_model_and_a_bad_device_are_one_line_errors(tiny_models, synth_bench, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_models["qwen2_5_vl"], corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download or copy cut short
    clip = str(sorted((synth_bench / "videos").iterdir())[0])
    model = str(tiny_models["qwen2_5_vl"])
    commands = {
        "analyze": ["analyze", clip, "--model", str(corrupt), "--device", "cpu"],
        "eval": [
            "eval",
            "run",
            "--model",
            str(corrupt),
            "--bench",
            str(synth_bench),
            "--split",
            "test",
            "--tasks",
            "qa",
            "--mode",
            "direct",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "eval"),
        ],
        "bogus device": ["analyze", clip, "--model", model, "--device", "bogus"],
        "absent GPU": ["analyze", clip, "--model", model, "--device", "cuda:7"],
    }
    expected = {
        "analyze": f"{corrupt}: cannot load the model: ",
        "eval": f"{corrupt}: cannot load the model: ",
        "bogus device": "model.device 'bogus' is not a device",
        "absent GPU": "model.device 'cuda:7': ",
    }
    for name, args in commands.items():
        result = run_cli(*args)
        assert result.returncode == 2, (name, result.stderr[-500:])
        assert "Traceback" not in result.stderr and expected[name] in result.stderr, (
            name,
            result.stderr[-500:],
        )
        assert result.stderr.strip().splitlines()[-1].startswith("error: "), name
