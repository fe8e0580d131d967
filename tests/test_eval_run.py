"""`vaur1 eval run` end to end on a small SynthVAU split with a tiny model: predictions.jsonl written
exactly once (also across kills), metrics.json per task, mode and source, unreadable videos counted,
and the judge and the offline scorer wired in."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import eval_helpers
from conftest import VAUR1
from fake_openai_server import FakeOpenAIServer, Reply, score_json
from vaur1.bench import load_bench
from vaur1.bench.tasks import TASKS
from vaur1.cli import main
from vaur1.errors import VaurError
from vaur1.eval.config import EvalConfig, load_eval_config, load_examples
from vaur1.eval.infer import work_items
from vaur1.eval.offline_scorer import OFFLINE_SCORER_NAME
from vaur1.eval.predictions import PredictionStore, read_predictions
from vaur1.eval.reasoning import reasoning_parts
from vaur1.eval.run import score_run
from vaur1.layout import EvalRun
from vaur1.model import build_tiny_model
from vaur1.model.inputs import check_spec_fits
from vaur1.present.evaluate import evaluate, rescore
from vaur1.runinfo import write_run_metadata
from vaur1.video.spec import VideoSpec

KEY_ENV = "VAUR1_TEST_JUDGE_KEY"
SECRET = "sk-test-4f1e9c0b7a2d"


def expected_keys(cfg: EvalConfig) -> set[str]:
    return {item.key for item in work_items(load_examples(cfg.data, cfg.splits)[0], cfg.modes)}


def prediction_lines(run_dir: Path) -> list[dict]:
    return [
        json.loads(line) for line in EvalRun(run_dir).predictions.read_text(encoding="utf-8").splitlines()
    ]


def never_called(conversations, videos):
    raise AssertionError("the model was asked although every item was done")


def test_run_predicts_every_item_once_and_writes_metrics_per_task_mode_and_source(
    eval_synth: Path, eval_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    cfg = eval_helpers.make_config(eval_synth, eval_model, run_dir, **{"loader.num_workers": 1})
    assert cfg.modes == ["direct", "think"] and cfg.data.tasks == list(TASKS) and not cfg.sampling.do_sample
    metrics = evaluate(cfg, progress=False)

    lines = prediction_lines(run_dir)
    keys = [line["key"] for line in lines]
    assert len(keys) == len(set(keys)) and set(keys) == expected_keys(cfg)
    assert len(keys) == 2 * (3 + 3 + 3 + 3)  # two modes x (qa, tag: 2 positives + 1 normal, cls, reasoning)
    first = lines[0]
    assert first["status"] == "ok" and first["mode"] == "direct" and first["split"] == "test"
    assert (
        first["source"] == "synth"
        and first["video"].startswith("synth_")
        and isinstance(first["output"], str)
    )
    assert first["completion_tokens"] <= 12 and first["seconds"] > 0 and first["batch_size"] >= 1
    assert [line["mode"] for line in lines] == ["direct"] * 12 + ["think"] * 12

    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["items"] == {"expected": 24, "predicted": 24, "video_errors": 0}
    assert saved["video_errors"] == {"videos": 0, "items": 0, "list": []}
    for mode in ("direct", "think"):
        qa = saved["tasks"]["qa"][mode]
        # the accuracy is the items' own verdicts (sample_scores.jsonl), not just a number in range
        verdicts = [
            line["correct"]
            for line in map(json.loads, (run_dir / "sample_scores.jsonl").read_text().splitlines())
            if line["task"] == "qa" and line["mode"] == mode
        ]
        assert qa["n"] == 3 and len(verdicts) == 3 and len(qa["ci"]["accuracy"]) == 2
        assert qa["accuracy"] == round(100 * sum(verdicts) / 3, 2)
        assert set(qa["by_source"]) == {"synth"} and qa["by_source"]["synth"]["n"] == 3
        tag = saved["tasks"]["tag"][mode]
        assert (tag["n"], tag["n_normal"]) == (2, 1) and {"miou", "r@0.3", "r@0.5", "r@0.7"} <= set(tag)
        cls = saved["tasks"]["cls"][mode]
        assert cls["n"] == 3 and {"binary_accuracy", "multiclass_accuracy", "macro_f1"} <= set(cls)
        reasoning = saved["tasks"]["reasoning"][mode]
        assert (reasoning["n"], reasoning["answered"], reasoning["missing"]) == (3, 3, 0)
        assert "judge" not in reasoning and "offline" not in reasoning
        assert qa["predictions"]["matched"] == 3 and qa["predictions"]["not_run"] == 0
    assert saved["run"]["modes"] == ["direct", "think"] and saved["run"]["model"] == str(eval_model)
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    scores = [json.loads(line) for line in (run_dir / "sample_scores.jsonl").read_text().splitlines()]
    assert len(scores) == 2 * 9 and {s["task"] for s in scores} == {"qa", "tag", "cls"}

    # The file's think lines are what `vaur1 eval metrics --mode think` scores, with the same result.
    capsys.readouterr()
    code = main(
        [
            *("eval", "metrics", "--task", "qa", "--mode", "think", "--bench", str(eval_synth / "test.csv")),
            *("--predictions", str(EvalRun(run_dir).predictions), "--json"),
        ]
    )
    assert code == 0
    standalone = json.loads(capsys.readouterr().out)
    run_block = saved["tasks"]["qa"]["think"]
    assert set(standalone) == set(run_block)
    for key in ("n", "accuracy", "ci", "missing", "unparsed", "by_source"):
        assert standalone[key] == run_block[key]

    # A kill mid-write: the last three lines are gone, the third-last cut in half. The rerun drops the
    # fragment and predicts exactly those three items again.
    data = EvalRun(run_dir).predictions.read_bytes().splitlines(keepends=True)
    cut = data[-3][: len(data[-3]) // 2]
    EvalRun(run_dir).predictions.write_bytes(b"".join(data[:-3]) + cut)
    lost = {json.loads(line)["key"] for line in data[-3:]}
    evaluate(cfg, progress=False)
    again = prediction_lines(run_dir)
    assert [line["key"] for line in again][:-3] == keys[:-3]
    assert {line["key"] for line in again[-3:]} == lost and len(again) == len(keys)

    # Nothing left to do: the model is not even asked.
    evaluate(cfg, generator=never_called, progress=False)
    assert len(prediction_lines(run_dir)) == len(keys)


def test_unreadable_video_is_counted_listed_and_kept_in_every_denominator(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(eval_synth, bench)
    sample = load_bench(bench).split("test")[0]
    broken, video_name = bench / "videos" / sample.video, sample.id
    original = broken.read_bytes()
    broken.write_bytes(b"this is not an mp4 file")
    run_dir = tmp_path / "run"
    cfg = eval_helpers.make_config(
        eval_synth,
        eval_model,
        run_dir,
        **{"data.bench": str(bench), "data.tasks": ["qa", "cls"], "modes": ["direct"]},
    )
    metrics = evaluate(cfg, progress=False)

    lines = prediction_lines(run_dir)
    failed = [line for line in lines if line["status"] == "video_error"]
    assert [line["key"] for line in failed] == [
        f"test/{video_name}/qa/direct",
        f"test/{video_name}/cls/direct",
    ]
    assert all(line["output"] is None and str(broken) in line["error"] for line in failed)
    assert metrics["video_errors"]["videos"] == 1 and metrics["video_errors"]["items"] == 2
    (listed,) = metrics["video_errors"]["list"]
    assert listed["video"] == video_name and "not a readable video file" in listed["reason"]
    for task in ("qa", "cls"):
        block = metrics["tasks"][task]["direct"]
        assert block["n"] == 3 and block["missing"] == 1  # still in the denominator, as missing
        assert block["predictions"]["video_errors"] == {"count": 1, "videos": [video_name]}
    assert metrics["items"] == {"expected": 6, "predicted": 4, "video_errors": 2}

    # The video is repaired: a rerun tries its items again, and each item is still there once.
    broken.write_bytes(original)
    metrics = evaluate(cfg, progress=False)
    keys = [line["key"] for line in prediction_lines(run_dir)]
    assert len(keys) == len(set(keys)) == 6 and metrics["video_errors"]["videos"] == 0


@pytest.mark.slow
def test_kills_at_random_points_lose_and_duplicate_nothing(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = eval_helpers.cli_args(eval_synth, eval_model, run_dir, "--mode", "both")
    cfg = load_eval_config(
        None, eval_helpers.SPEC_OVERRIDES, eval_helpers.run_flags(eval_synth, eval_model, run_dir)
    )
    wanted = expected_keys(cfg)
    rng = random.Random(7)
    # Kill once during start-up, then four times at random points of the inference itself.
    targets = [0, *sorted(rng.sample(range(1, len(wanted) - 1), 4))]
    stopped_mid_run = 0
    for target in targets:
        process = subprocess.Popen([str(VAUR1), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = EvalRun(run_dir).predictions
        deadline = time.monotonic() + 120
        if target == 0:
            time.sleep(rng.uniform(0.2, 1.5))
        while target and process.poll() is None and time.monotonic() < deadline:
            if path.is_file() and path.read_bytes().count(b"\n") >= target:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere in the next batch or write
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            stopped_mid_run += 1
        process.wait(timeout=30)
        if path.is_file():
            keys = [json.loads(line)["key"] for line in path.read_bytes().split(b"\n")[:-1] if line]
            assert len(keys) == len(set(keys))  # duplicates never appear, even before the repair
    assert stopped_mid_run >= 3
    final = subprocess.run([str(VAUR1), *args], capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    keys = [line["key"] for line in prediction_lines(run_dir)]
    assert len(keys) == len(set(keys)) and set(keys) == wanted
    assert json.loads((run_dir / "metrics.json").read_text())["items"]["predicted"] == len(wanted)


# ---- scoring: judge and offline scorer ------------------------------------------------------


def write_reasoning_run(synth: Path, model: Path, run_dir: Path, **flags) -> EvalConfig:
    """A run directory whose reasoning predictions are written by hand (no model needed)."""
    cfg = eval_helpers.make_config(
        synth, model, run_dir, **{"data.tasks": ["reasoning"], "modes": ["direct"], **flags}
    )
    write_run_metadata(run_dir, cfg)
    examples, _ = load_examples(cfg.data, cfg.splits)
    lines = [
        {
            "key": f"{e.key}/direct",
            "video": e.id,
            "task": "reasoning",
            "mode": "direct",
            "split": e.split,
            "source": e.source,
            "status": "ok",
            "output": f"<answer>Description: clip {i} shows a street. Analysis: event {i} is a fire.</answer>",
        }
        for i, e in enumerate(examples)
    ]
    EvalRun(run_dir).predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return cfg


def test_reasoning_parts_split_description_and_analysis() -> None:
    assert reasoning_parts("<think>x</think><answer>Description: A car. Analysis: It crashes.</answer>") == (
        "A car.",
        "It crashes.",
    )
    assert reasoning_parts("A man walks by.") == ("A man walks by.", "")
    assert reasoning_parts("analysis: only this") == ("", "only this")


def test_judge_survives_errors_caches_verdicts_and_never_leaks_the_key(
    eval_synth: Path,
    eval_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, SECRET)
    run_dir = tmp_path / "run"
    with FakeOpenAIServer() as server:
        judge = {
            "judge.base_url": server.base_url,
            "judge.api_key_env": KEY_ENV,
            "judge.max_retries": 1,
            "judge.backoff_s": 0,
            "judge.concurrency": 1,
            "judge.timeout_s": 5,
        }
        cfg = write_reasoning_run(eval_synth, eval_model, run_dir, **judge)
        # clip 0: rate limited, then malformed JSON, repaired; clip 1: a server error twice (unscored);
        # clip 2: a slow but valid reply
        server.script(
            Reply(status=429, headers={"Retry-After": "0"}),
            Reply(content="the scores are good"),
            Reply(content=score_json((8, 7, 9, 6, 8))),
            Reply(status=503),
            Reply(status=500),
            Reply(content=score_json((4, 4, 8, 5, 4)), delay_s=0.3),
        )
        with caplog.at_level(logging.DEBUG):
            metrics = score_run(cfg, load_examples(cfg.data, cfg.splits)[0], run_dir)
        summary = metrics["tasks"]["reasoning"]["direct"]["judge"]
        assert (summary["scored"], summary["unscored"]) == (2, 1)
        assert summary["mean_total"] == (38 + 25) / 2 and len(summary["ci"]["mean_total"]) == 2
        assert summary["by_source"]["synth"]["scored"] == 2
        assert (
            "clip 0 shows a street" in server.requests[0].prompt
            and "event 0 is a fire" in server.requests[0].prompt
        )
        assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
        records = [json.loads(line) for line in (run_dir / "reasoning_scores.jsonl").read_text().splitlines()]
        assert [r["judge"]["status"] for r in records] == ["scored", "unscored", "scored"]

        # A rerun through the CLI asks only about the unscored sample; the cache answers the rest.
        server.reset()
        code = main(["eval", "judge", str(run_dir), "--judge-url", server.base_url, "--no-offline-scorer"])
        assert code == 0 and len(server.requests) == 1 and "clip 1 shows" in server.requests[0].prompt
        rerun = json.loads((run_dir / "metrics.json").read_text())["tasks"]["reasoning"]["direct"]["judge"]
        assert (rerun["scored"], rerun["unscored"]) == (3, 0)
        report = (run_dir / "report.md").read_text()
        assert "VAU-Eval (judge: deepseek-chat (vau-eval-1))" in report
        # and as the right half of the paper's Table 1: dimensions and total per dataset
        paper = report.split("## VAU-Eval (judge; dimensions 0-10, total 0-50), Table 1 layout, w/o think")[1]
        assert f"{rerun['by_source']['synth']['mean_total']:.2f}" in paper.split("\n## ")[0]

    outputs = [caplog.text, *capsys.readouterr()]
    outputs += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]
    assert all(SECRET not in text for text in outputs)


@pytest.mark.slow
def test_offline_scorer_reports_under_its_own_name(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    write_reasoning_run(eval_synth, eval_model, run_dir)
    metrics = rescore(run_dir, ["offline_scorer=true"])
    offline = metrics["tasks"]["reasoning"]["direct"]["offline"]
    assert offline["scorer"] == OFFLINE_SCORER_NAME and metrics["run"]["offline_scorer"] == offline["scorer"]
    assert offline["samples"] == 3 and offline["missing"] == 0
    # the summary is the mean of the items' own scores (reasoning_scores.jsonl)
    items = [
        line["offline"]
        for line in map(json.loads, (run_dir / "reasoning_scores.jsonl").read_text().splitlines())
        if line["mode"] == "direct"
    ]
    for metric in ("description_rouge_l", "description_similarity"):
        values = [item[metric] for item in items]
        assert len(values) == 3 and offline[metric] == pytest.approx(sum(values) / 3, abs=1e-4), metric
    assert 0 < offline["description_rouge_l"] < 1
    assert "judge" not in metrics["tasks"]["reasoning"]["direct"]
    assert f"{OFFLINE_SCORER_NAME} (not VAU-Eval)" in (run_dir / "report.md").read_text()


# ---- configuration --------------------------------------------------------------------------


def test_cli_flags_map_onto_the_config(eval_synth: Path, eval_model: Path, tmp_path: Path) -> None:
    from vaur1.cli import build_parser
    from vaur1.cli.eval import eval_flags

    args = build_parser().parse_args(
        eval_helpers.cli_args(
            eval_synth, eval_model, tmp_path / "run", "--mode", "think", "--tasks", "qa,tag"
        )
    )
    cfg = load_eval_config(None, args.overrides, eval_flags(args))
    assert cfg.data.bench == str(eval_synth) and cfg.data.roots().default == str(eval_synth / "videos")
    assert cfg.modes == ["think"] and cfg.data.tasks == ["qa", "tag"] and cfg.batch_size == 2
    assert cfg.sampling.max_new_tokens == 12 and not cfg.sampling.do_sample and cfg.video.min_pixels == 3136
    assert not cfg.offline_scorer and cfg.judge is None and cfg.loader.num_workers == 0

    csv_args = build_parser().parse_args(
        ["eval", "run", "--bench", "x.csv", "--videos", "/v", "--judge-url", "http://127.0.0.1:1/v1"]
    )
    flags = eval_flags(csv_args)
    assert flags["data.bench"] == "x.csv" and flags["data.video_roots.default"] == "/v"
    assert flags["judge.base_url"] == "http://127.0.0.1:1/v1"
    with pytest.raises(VaurError, match="--bench synth needs --videos"):
        eval_flags(build_parser().parse_args(["eval", "run", "--bench", "synth"]))


def test_a_run_directory_refuses_predictions_of_another_setup(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    cfg = write_reasoning_run(eval_synth, eval_model, run_dir)
    other = eval_helpers.make_config(
        eval_synth,
        eval_model,
        run_dir,
        **{"data.tasks": ["reasoning"], "modes": ["direct"], "sampling.max_new_tokens": 99},
    )
    with pytest.raises(VaurError, match=r"sampling.max_new_tokens=12, this run has 99"):
        evaluate(other, generator=never_called, progress=False)
    assert len(read_predictions(run_dir)) == 3
    evaluate(cfg, generator=never_called, progress=False)  # the same setup resumes (here: nothing left)


def test_backend_and_video_spec_mismatches_are_clear_errors(
    eval_synth: Path, eval_model: Path, tmp_path: Path, monkeypatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a)
    )
    cfg = eval_helpers.make_config(eval_synth, eval_model, tmp_path / "run", backend="vllm")
    with pytest.raises(VaurError, match="backend vllm: vLLM is not installed here"):
        evaluate(cfg, progress=False)
    monkeypatch.undo()

    judged = eval_helpers.make_config(
        eval_synth, eval_model, tmp_path / "judged", **{"judge.api_key_env": "VAUR1_TEST_UNSET_KEY"}
    )
    with pytest.raises(VaurError, match="export VAUR1_TEST_UNSET_KEY="):
        evaluate(judged, generator=never_called, progress=False)
    assert not (tmp_path / "judged").exists()  # refused before anything ran

    from transformers import AutoProcessor

    qwen3 = build_tiny_model("qwen3_vl", tmp_path / "qwen3", hidden_size=64)
    with pytest.raises(VaurError, match=r"video.factor 28 does not fit the model.*set video.factor=32"):
        check_spec_fits(VideoSpec(), AutoProcessor.from_pretrained(qwen3))
    check_spec_fits(VideoSpec(factor=32), AutoProcessor.from_pretrained(qwen3))
    check_spec_fits(VideoSpec(), AutoProcessor.from_pretrained(eval_model))


def test_prediction_store_refuses_a_second_writer_and_a_corrupted_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with PredictionStore(run_dir) as store:
        store.append([{"key": "test/a.mp4/qa/direct", "output": "A"}])
        with pytest.raises(VaurError, match="another vaur1 eval run is writing"), PredictionStore(run_dir):
            pass
    with PredictionStore(run_dir) as store:
        assert set(store.done) == {"test/a.mp4/qa/direct"}
        with pytest.raises(VaurError, match="predicted twice"):
            store.append([{"key": "test/a.mp4/qa/direct", "output": "B"}])
    path = EvalRun(run_dir).predictions
    path.write_text(path.read_text() + "{garbage\n" + json.dumps({"key": "test/b.mp4/qa/direct"}) + "\n")
    with pytest.raises(VaurError, match=r"predictions.jsonl:2: not a JSON line"), PredictionStore(run_dir):
        pass


def test_malformed_rows_are_counted_printed_and_reported_never_silently_dropped(
    eval_synth: Path, eval_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(eval_synth, bench, symlinks=True)
    test_csv = bench / "test.csv"
    good = test_csv.read_text(encoding="utf-8").splitlines()
    header, first = good[0], good[1]
    cells = first.split(",")
    bad = [
        ",".join([cells[0].replace(".mp4", "_x.mp4"), *cells[1:-2], "soon", cells[-1]]),  # a non-numeric time
        ",".join(cells[:3]),  # cells missing
    ]
    test_csv.write_text("\n".join([header, *good[1:], bad[0], bad[1]]) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    cfg = eval_helpers.make_config(
        bench,
        eval_model,
        run_dir,
        **{"data.tasks": ["qa"], "modes": ["direct"], "data.video_roots.default": str(eval_synth / "videos")},
    )
    with caplog.at_level(logging.WARNING, logger="vaur1"):
        metrics = evaluate(cfg, progress=False)
    rows = metrics["bench_rows"]["test"]
    assert rows["rows_read"] == len(good) - 1 + 2 and sum(rows["skipped"].values()) == 2
    assert any(
        "test.csv: 2 of" in r.getMessage() and "skipped as malformed" in r.getMessage()
        for r in caplog.records
    )
    assert f"test.csv: 2 of {rows['rows_read']}" in (run_dir / "report.md").read_text(encoding="utf-8")
    strict = eval_helpers.make_config(
        bench,
        eval_model,
        tmp_path / "strict",
        **{"data.tasks": ["qa"], "modes": ["direct"], "data.strict": True},
    )
    with pytest.raises(VaurError, match=r"test.csv:\d+: column"):
        evaluate(strict, progress=False)


def test_an_evaluation_in_which_every_video_fails_never_succeeds(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(eval_synth, bench)
    for video in (bench / "videos").iterdir():
        video.unlink()
        video.write_bytes(b"this is not an mp4 file")
    run_dir = tmp_path / "run"
    cfg = eval_helpers.make_config(
        eval_synth,
        eval_model,
        run_dir,
        **{"data.bench": str(bench), "data.tasks": ["qa"], "modes": ["direct"]},
    )
    with pytest.raises(VaurError, match="no item was answered: all 3 failed on their videos"):
        evaluate(cfg, progress=False)
    assert json.loads((run_dir / "metrics.json").read_text())["items"]["video_errors"] == 3  # still recorded


def test_a_cleaning_rule_that_is_on_is_named_in_metrics_and_the_report(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    from vaur1.present.report import write_report

    flags = {"data.tasks": ["tag"], "modes": ["direct"]}
    plain = evaluate(
        eval_helpers.make_config(eval_synth, eval_model, tmp_path / "plain", **flags), progress=False
    )
    assert plain["run"]["cleaning"] == [] and plain["bench_rows"]["test"]["cleaning"] == []
    cleaned = eval_helpers.make_config(
        eval_synth, eval_model, tmp_path / "clean", **flags, **{"data.cleaning": ["class_interval_conflicts"]}
    )
    assert evaluate(cleaned, progress=False)["run"]["cleaning"] == ["class_interval_conflicts"]
    both = write_report([tmp_path / "plain", tmp_path / "clean"], tmp_path / "report")["markdown"].read_text()
    assert "| cleaning |" in both and "class_interval_conflicts" in both  # the overview names it
    assert "| cleaning rules |" in both  # and the runs differ in it: the warning table says so
    alone = write_report([tmp_path / "plain"], tmp_path / "alone")["markdown"].read_text()
    assert "cleaning" not in alone
    with pytest.raises(VaurError, match="unknown cleaning rule 'bogus'"):
        eval_helpers.make_config(
            eval_synth, eval_model, tmp_path / "x", **flags, **{"data.cleaning": ["bogus"]}
        )


def test_report_paper_says_when_no_run_scored_a_paper_test_set(
    eval_synth: Path, eval_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = {"data.tasks": ["qa"], "modes": ["direct"]}
    evaluate(eval_helpers.make_config(eval_synth, eval_model, tmp_path / "run", **flags), progress=False)
    assert main(["report", str(tmp_path / "run"), "--paper", "--out", str(tmp_path / "report")]) == 0
    warning = " ".join(capsys.readouterr().err.split())
    assert "--paper adds the paper's rows for MSAD, UCF-Crime and ECVA only" in warning
    assert "paper:" not in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "plain")]) == 0
    assert "--paper" not in capsys.readouterr().err


def test_the_gallery_shows_frames_timelines_and_every_item_once_with_disagreements_first(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    from vaur1.present.gallery import write_gallery

    flags = {"data.tasks": ["qa", "tag"], "modes": ["direct"]}
    evaluate(eval_helpers.make_config(eval_synth, eval_model, tmp_path / "model", **flags), progress=False)
    page = write_gallery([tmp_path / "model"], tmp_path / "one.html").read_text()
    assert page.count('<div class="card') == 6 and page.count("<template") == 3  # 3 clips, each strip once
    assert page.count('loading="lazy"') >= 3 and "data:image/jpeg;base64," in page  # embedded thumbnails
    assert page.count('<svg class="timeline"') == 3 and 'src="http' not in page  # TAG items; self-contained
    # the QA question and options stand under the 3 QA items only, never under a TAG item
    cards = page.split('<div class="card')[1:]
    assert [("<b>Q:</b>" in card, "<ol type=A>" in card) for card in cards if 'data-task="qa"' in card] == [
        (True, True)
    ] * 3
    assert not any(
        "<b>Q:</b>" in card or "<ol type=A>" in card for card in cards if 'data-task="tag"' in card
    )

    # a second run whose answers are the truth: the items the model got wrong come first
    perfect = tmp_path / "perfect"
    shutil.copytree(tmp_path / "model", perfect)
    examples = {
        e.key: e
        for e in load_examples(
            load_eval_config(
                None,
                eval_helpers.SPEC_OVERRIDES,
                eval_helpers.run_flags(eval_synth, eval_model, perfect, **flags),
            ).data,
            ["test"],
        )[0]
    }
    lines = prediction_lines(perfect)
    for line in lines:
        example = examples[line["key"].rsplit("/", 1)[0]]
        if example.task == "qa":
            line["output"] = f"<answer>{example.answer}</answer>"
        elif example.interval and example.interval[1] > 0:
            line["output"] = (
                f"<answer>Anomaly</answer><glue>[{example.interval[0]}, {example.interval[1]}]</glue>"
            )
        else:
            line["output"] = "<answer>Normal</answer><glue>[-1, -1]</glue>"
    EvalRun(perfect).predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rescore(perfect)
    page = write_gallery([tmp_path / "model", perfect], tmp_path / "two.html").read_text()
    disagree = [bool(flag) for flag in re.findall(r'<div class="card( disagree)?"', page)]
    assert len(disagree) == 6 and any(disagree) and disagree == sorted(disagree, reverse=True)
    assert page.count("<pre>") == 12  # both runs' raw outputs on every card


def test_the_paper_layout_adds_the_constant_answers_labelled_by_how_they_were_chosen(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    from vaur1.eval.baselines import ORACLE, best_constants, constant_label
    from vaur1.present.report import write_report

    flags = {"data.tasks": ["qa", "tag"], "modes": ["direct"]}
    cfg = eval_helpers.make_config(eval_synth, eval_model, tmp_path / "run", **flags)
    evaluate(cfg, progress=False)
    markdown = write_report([tmp_path / "run"], tmp_path / "report")["markdown"].read_text()
    qa = markdown.split("## QA accuracy (%), the paper's Table 1 layout")[1].split("\n## ")[0]
    examples = load_examples(cfg.data, cfg.splits)[0]
    train = load_examples(cfg.data, ["train"])[0]
    expected = {
        constant_label(ORACLE): best_constants(examples, resamples=1),
        constant_label("train"): best_constants(examples, fit_on=train, resamples=1),
    }
    for label, best in expected.items():
        (row,) = [line for line in qa.splitlines() if line.startswith(f"| {label} |")]
        assert float(row.split("|")[2].strip("* ")) == pytest.approx(
            best["qa"]["metrics"]["accuracy"], abs=0.005
        )
    # one definition: the oracle's letter is the test items' most common answer, the other train's
    letters = {label: best["qa"]["answers"] for label, best in expected.items()}
    test_letters = Counter(e.answer for e in examples if e.task == "qa")
    train_letters = Counter(e.answer for e in train if e.task == "qa")
    assert letters[constant_label(ORACLE)] == {
        "synth": f"<answer>{test_letters.most_common(1)[0][0]}</answer>"
    }
    assert letters[constant_label("train")] == {
        "synth": f"<answer>{train_letters.most_common(1)[0][0]}</answer>"
    }
    assert "w/ think" not in markdown.split("## Runs")[0]  # the run has no think mode: no such table
