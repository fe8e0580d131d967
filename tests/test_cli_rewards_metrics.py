"""`vaur1 rewards` and `vaur1 eval metrics` through the installed console script, on real files."""

from __future__ import annotations

import csv
import json

import pytest

from bench_csv import row, write_csv
from conftest import run_cli
from vaur1.bench import load_bench
from vaur1.bench.tasks import task_view
from vaur1.prompts import target_text


def write_jsonl(path, records: list) -> str:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# ---- vaur1 rewards --------------------------------------------------------------------------


def test_rewards_json_scores_every_line_and_reports_malformed_ones(tmp_path):
    path = write_jsonl(
        tmp_path / "tag.jsonl",
        [
            {
                "completion": "<think>men fight</think><answer>Anomaly</answer><glue>[4, 8]</glue>",
                "sample": {"answer": None, "interval": [2, 6], "class": "Fighting"},
            },
            "{not json",
            {"completion": "<answer>Normal</answer><glue>[-1, -1]</glue>", "sample": {"interval": [0, 0]}},
            {"completion": "x", "sample": {"interval": [-1, -1]}},
            "",
            {"completion": 3, "sample": {}},
            {"completion": "x", "sample": {"class": "Dancing"}},
            {
                "completion": "<think>x</think><answer>Anomaly</answer><glue>[1, 2]</glue>",
                "sample": {"interval": None},
            },
        ],
    )
    result = run_cli("rewards", "--task", "tag", "--input", path, "--json")
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in lines] == [1, 2, 3, 4, 6, 7, 8]

    first = lines[0]["rewards"]
    assert set(first) == {
        "format",
        "format_direct",
        "accuracy",
        "iou",
        "iou_boundary",
        "consistency",
        "think_length",
    }
    assert (first["format"], first["format_direct"], first["accuracy"]) == (1.0, 0.0, 1.0)
    assert first["iou"] == pytest.approx(1 / 3) and first["iou_boundary"] == pytest.approx(4 / 27)
    assert first["consistency"] == 1.0 and first["think_length"] == pytest.approx(2 / 16)
    assert lines[0]["total"] == pytest.approx(2 + 1 / 3)

    normal = lines[2]["rewards"]
    assert (normal["format"], normal["format_direct"], normal["accuracy"], normal["iou"]) == (
        0.0,
        1.0,
        1.0,
        1.0,
    )
    assert "iou" not in lines[6]["rewards"] and lines[6]["rewards"]["accuracy"] == 1.0  # missing interval

    errors = {r["line"]: r["error"] for r in lines if "error" in r}
    assert set(errors) == {2, 4, 6, 7}
    assert "ambiguous" in errors[4] and "completion" in errors[6] and "unknown class 'Dancing'" in errors[7]
    for number in errors:
        assert f"tag.jsonl:{number}:" in result.stderr


def test_rewards_table_for_qa_and_cls(tmp_path):
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"completion": "<think>x</think><answer>A man falls</answer>", "sample": {"answer": "C"}},
            {
                "completion": "<answer>A man falls</answer>",
                "sample": {
                    "answer": "C",
                    "options": ["Two men fight", "A car parks", "A man falls", "Nothing"],
                },
            },
        ],
    )
    result = run_cli("rewards", "--task", "qa", "--input", qa, "--json", check=True)
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["rewards"]["accuracy"] == 0.0  # no options: the article is not option A, nor C
    assert second["rewards"]["accuracy"] == 1.0  # with options: the exact text of C

    cls = write_jsonl(
        tmp_path / "cls.jsonl",
        [{"completion": "<answer>road accidents</answer>", "sample": {"class": "traffic accident"}}],
    )
    table = run_cli("rewards", "--task", "cls", "--input", cls, check=True)
    assert "class" in table.stdout and "format" in table.stdout and "1.000" in table.stdout


def test_rewards_missing_file_is_a_one_line_error(tmp_path):
    result = run_cli("rewards", "--task", "qa", "--input", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2
    assert "absent.jsonl: cannot read" in result.stderr and "Traceback" not in result.stderr


# ---- vaur1 eval metrics ---------------------------------------------------------------------


def test_eval_metrics_on_a_hand_made_bench(tmp_path):
    bench = write_csv(
        tmp_path / "test_msad.csv",
        [
            row(**{"Video Name": "Fighting_1.mp4", "Start Time": "2", "End Time": "6"}),
            row(**{"Video Name": "Fighting_2.mp4", "Start Time": "0", "End Time": "10"}),
            row(
                **{
                    "Video Name": "street_1.mp4",
                    "Anomaly Class": "Normal",
                    "Start Time": "0",
                    "End Time": "0",
                }
            ),
            row(
                **{
                    "Video Name": "street_2.mp4",
                    "Anomaly Class": "Normal",
                    "Start Time": "0",
                    "End Time": "0",
                }
            ),
        ],
    )
    predictions = write_jsonl(
        tmp_path / "preds.jsonl",
        [
            {
                "video": "Fighting_1.mp4",
                "output": "<think>x</think><answer>Anomaly</answer><glue>[4, 8]</glue>",
            },
            {"video": "Fighting_2.mp4", "output": None},
            {"video": "street_1.mp4", "output": "<answer>Anomaly</answer><glue>[1, 2]</glue>"},
            {"video": "street_2.mp4", "output": "<answer>Normal</answer><glue>[-1, -1]</glue>"},
            {"video": "Fighting_1.mp4", "output": "<glue>[2, 6]</glue>"},
            {"video": "Fighting_9.mp4", "output": "x"},
            '{"video": "street_1.mp4"}',
            "[1, 2]",
        ],
    )
    result = run_cli(
        "eval", "metrics", "--task", "tag", "--bench", str(bench), "--predictions", predictions, "--json"
    )
    assert result.returncode == 1, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 2 and metrics["n_normal"] == 2
    assert metrics["miou"] == round(100 / 6, 2)  # IoU 1/3 (the first line counts) and a missing 0
    assert (metrics["r@0.3"], metrics["r@0.5"], metrics["missing"], metrics["unparsed"]) == (50.0, 0.0, 1, 0)
    assert metrics["false_alarm_rate"] == 50.0
    assert metrics["by_source"]["msad"]["n"] == 2
    report = metrics["predictions"]
    assert report["lines"] == 8 and report["matched"] == 4
    assert report["duplicates"] == {"count": 1, "lines": [5]}
    assert report["unknown_videos"] == {"count": 1, "lines": [6]}
    assert [m["line"] for m in report["malformed"]["lines"]] == [7, 8]
    assert "preds.jsonl:7:" in result.stderr and 'missing "output"' in result.stderr

    table = run_cli("eval", "metrics", "--task", "cls", "--bench", str(bench), "--predictions", predictions)
    assert "binary_accuracy" in table.stdout and "macro_f1" in table.stdout
    assert "1 duplicates at lines 5" in table.stdout and "2 malformed at lines 7, 8" in table.stdout


def test_eval_metrics_on_the_released_msad_file(shared_bench, tmp_path):
    bench = shared_bench / "test_msad.csv"
    samples = load_bench(bench).samples
    with bench.open(newline="", encoding="utf-8") as handle:
        names = [r["Video Name"] for r in csv.DictReader(handle)]
    # The right answer for every video on QA and TAG at once, in the direct format.
    qa = {e.id: target_text(e, "direct") for e in task_view(samples, "qa")}
    tag = {e.id: target_text(e, "direct") for e in task_view(samples, "tag")}
    predictions = write_jsonl(
        tmp_path / "msad.jsonl", [{"video": n, "output": qa[n] + tag[n]} for n in names]
    )

    qa_result = run_cli(
        "eval",
        "metrics",
        "--task",
        "qa",
        "--bench",
        str(bench),
        "--predictions",
        predictions,
        "--json",
        check=True,
    )
    qa_metrics = json.loads(qa_result.stdout)
    assert qa_metrics["n"] == 240 and qa_metrics["accuracy"] == 100.0
    assert qa_metrics["predictions"]["matched"] == 240

    tag_result = run_cli(
        "eval",
        "metrics",
        "--task",
        "tag",
        "--bench",
        str(bench),
        "--predictions",
        predictions,
        "--json",
        check=True,
    )
    tag_metrics = json.loads(tag_result.stdout)
    assert tag_metrics["n"] == 120 and tag_metrics["n_normal"] == 120
    assert tag_metrics["r@0.7"] == 100.0 and tag_metrics["miou"] > 98  # targets are rounded to 0.1 s
    assert tag_metrics["false_alarm_rate"] == 0.0 and tag_metrics["missing"] == tag_metrics["unparsed"] == 0
    assert set(tag_metrics) >= {
        "n",
        "miou",
        "r@0.3",
        "r@0.5",
        "r@0.7",
        "missing",
        "unparsed",
        "false_alarm_rate",
    }


def test_eval_metrics_counts_missing_normal_videos_as_false_alarms(shared_bench, tmp_path):
    """Predictions for 8 of MSAD's 120 normal videos, all of them alarms: the 112 without a prediction
    are no correct "no alarm", so the rate is 100, not 8 of 120."""
    bench = shared_bench / "test_msad.csv"
    normals = [e for e in task_view(load_bench(bench).samples, "tag") if e.is_normal][:8]
    alarm = "<answer>Anomaly</answer><glue>[1.0, 2.0]</glue>"
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"video": e.id, "output": alarm} for e in normals])
    args = ("eval", "metrics", "--task", "tag", "--bench", str(bench), "--predictions", predictions)
    result = json.loads(run_cli(*args, "--json", check=True).stdout)
    assert (result["n_normal"], result["false_alarm_rate"]) == (120, 100.0)
    assert (result["n"], result["miou"], result["missing"]) == (120, 0.0, 232)
    quiet = write_jsonl(
        tmp_path / "q.jsonl",
        [{"video": e.id, "output": "<answer>Normal</answer><glue>[-1, -1]</glue>"} for e in normals],
    )
    args = ("eval", "metrics", "--task", "tag", "--bench", str(bench), "--predictions", quiet)
    assert json.loads(run_cli(*args, "--json", check=True).stdout)["false_alarm_rate"] == round(
        100 * 112 / 120, 2
    )
    assert "232 / 0" in " ".join(run_cli(*args, check=True).stdout.split())  # missing / unparsed shown


def test_eval_metrics_bad_bench_is_a_one_line_error(tmp_path):
    predictions = write_jsonl(tmp_path / "p.jsonl", [])
    result = run_cli(
        "eval", "metrics", "--task", "qa", "--bench", str(tmp_path / "nope.csv"), "--predictions", predictions
    )
    assert result.returncode == 2 and "nope.csv: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_baselines_on_the_released_files_choose_answers_per_source_on_val(shared_bench):
    msad = run_cli(
        "eval",
        "baselines",
        "--bench",
        str(shared_bench / "test_msad.csv"),
        "--fit-on",
        str(shared_bench / "val.csv"),
        "--json",
        "--resamples",
        "50",
        check=True,
    )
    tag = json.loads(msad.stdout)["baselines"]["tag"]
    # val's 29 MSAD intervals choose [1.0, 15.1]; on the 120 MSAD test positives it scores 40.99 mIoU,
    # more than the paper's RFT model (35.77) without looking at a frame
    assert tag["always_interval"]["answers"] == {"msad": "<answer>Anomaly</answer><glue>[1.0, 15.1]</glue>"}
    assert (
        tag["always_interval"]["metrics"]["miou"] == 40.99 and tag["always_interval"]["metrics"]["n"] == 120
    )
    assert tag["always_interval"]["metrics"]["false_alarm_rate"] == 100.0
    assert tag["always_interval"]["metrics"]["r@0.7"] == 17.5  # the paper's RFT: 15.83
    assert tag["always_normal"]["metrics"]["miou"] == 0.0
    qa = json.loads(msad.stdout)["baselines"]["qa"]["constant_letter"]["metrics"]
    assert qa["n"] == 240 and qa["accuracy"] == 68.33
    chosen = json.loads(msad.stdout)
    assert chosen["label"] == f"constant answer (chosen on {shared_bench / 'val.csv'})"
    assert chosen["best"] == {"qa": "constant_letter", "tag": "always_interval", "cls": "always_normal"}
    # each answer shown once, the best kind marked
    table = run_cli(
        "eval", "baselines", "--bench", str(shared_bench / "test_msad.csv"), "--resamples", "20", check=True
    ).stdout
    assert "oracle" in table and "A A" not in table and "Normal Normal" not in table
    assert "constant_letter *" in table

    ucf_tag = [
        "eval",
        "baselines",
        "--bench",
        str(shared_bench / "test_ucf_crime.csv"),
        "--fit-on",
        str(shared_bench / "val.csv"),
        "--task",
        "tag",
    ]
    ucf = run_cli(*ucf_tag, "--json", check=True)
    tag = json.loads(ucf.stdout)["baselines"]["tag"]
    # val has no UCF-Crime interval: no answer for ucf rather than another dataset's interval
    assert tag["always_interval"] == {"answers": {}, "unfitted_sources": ["ucf"], "metrics": None}
    assert list(json.loads(ucf.stdout)["baselines"]) == ["tag"]
    table = run_cli(*ucf_tag, check=True)
    assert "tag: always_interval has no answer for ucf" in " ".join(table.stdout.split())
