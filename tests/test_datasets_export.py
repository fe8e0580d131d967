"""`vaur1 data export`: VAU-Bench as a Hugging Face DatasetDict (and back), and as LLaMA-Factory ShareGPT."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import run_cli
from train_helpers import synth_bench
from vaur1.bench import load_bench
from vaur1.errors import BenchFormatError, VaurError

synth_bench = synth_bench


def comparable(sample):
    return replace(sample, line=0, reasoning_format="dict" if sample.reasoning else "missing")


def test_the_released_csvs_round_trip_through_a_datasetdict(shared_bench, tmp_path):
    from datasets import ClassLabel, load_from_disk

    out = tmp_path / "vau-bench"
    result = run_cli("data", "export", str(shared_bench), str(out))
    assert result.returncode == 0, result.stderr
    data = load_from_disk(str(out))
    original = load_bench(shared_bench)
    assert sorted(data) == original.splits
    assert {name: len(rows) for name, rows in data.items()} == {
        s: len(original.split(s)) for s in original.splits
    }
    classes = data["test_msad"].features["anomaly_class"]
    assert isinstance(classes, ClassLabel) and len(classes.names) == 20
    first, row = original.split("test_msad")[0], data["test_msad"][0]
    assert classes.int2str(row["anomaly_class"]) == first.anomaly_class
    assert (
        row["options"] == list(first.options) and row["reasoning"]["conclusion"] == first.reasoning.conclusion
    )
    back = load_bench(out)  # a dataset in this shape is a benchmark
    assert [comparable(s) for s in back.samples if s.split == "val"] == [
        comparable(s) for s in original.samples if s.split == "val"
    ]
    assert run_cli("data", "stats", str(out)).returncode == 0
    again = run_cli("data", "export", str(shared_bench), str(out))
    assert again.returncode == 2 and "not an empty folder" in again.stderr


def test_sharegpt_export_for_llama_factory(synth_bench, tmp_path):
    out = tmp_path / "sharegpt"
    result = run_cli(
        "data",
        "export",
        str(synth_bench),
        str(out),
        "--format",
        "sharegpt",
        "--videos",
        str(synth_bench / "videos"),
    )
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"vau_bench_train", "vau_bench_val", "vau_bench_test"}
    assert info["vau_bench_train"]["formatting"] == "sharegpt"
    records = json.loads((out / "vau_bench_train.json").read_text())
    assert records and all(r["messages"][-1]["role"] == "assistant" for r in records)
    for record in records:
        user = record["messages"][-2]["content"]
        assert user.count("<video>") == 1 and len(record["videos"]) == 1
        assert (synth_bench / "videos").joinpath(record["videos"][0]).is_file()
    # answer targets: the answer tags alone (with <glue> for TAG), as vaur1's SFT trains them
    assert all(r["messages"][-1]["content"].startswith("<answer>") for r in records)


def test_a_dataset_without_the_columns_is_refused(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([{"text": "a"}])}).save_to_disk(str(tmp_path / "other"))
    with pytest.raises(VaurError, match="not a VAU-Bench dataset"):
        load_bench(tmp_path / "other")


def test_a_datasets_folder_from_elsewhere_gets_the_csv_loaders_checks(shared_bench, tmp_path):
    """Rows of a saved DatasetDict go through the same checks as CSV rows: an unknown source label (a
    script in it), an unknown class, a NaN interval and a video path are skipped and counted."""
    from datasets import ClassLabel, Dataset, DatasetDict

    from vaur1.bench.datasets_io import features, sample_row
    from vaur1.bench.schema import CLASSES, SOURCES
    from vaur1.bench.stats import bench_stats

    samples = load_bench(shared_bench / "test_msad.csv").samples[:6]
    hostile = "x</option></select><script>alert(1)</script>"
    schema = features()
    schema["source"] = ClassLabel(names=[*SOURCES, hostile])
    schema["anomaly_class"] = ClassLabel(names=[*CLASSES, "Teleportation"])
    rows = []
    for sample in samples:
        row = sample_row(sample)
        row["source"] = schema["source"].str2int(row["source"])
        row["answer"] = schema["answer"].str2int(row["answer"])
        row["anomaly_class"] = schema["anomaly_class"].str2int(row["anomaly_class"])
        rows.append(row)
    rows[1]["source"] = schema["source"].str2int(hostile)
    rows[2]["anomaly_class"] = schema["anomaly_class"].str2int("Teleportation")
    rows[3]["interval"] = [float("nan"), 5.0]
    rows[4]["video"] = "../../../../etc/hostname"
    folder = tmp_path / "from-elsewhere"
    DatasetDict({"test_msad": Dataset.from_list(rows, features=schema)}).save_to_disk(str(folder))

    bench = load_bench(folder)
    assert [s.id for s in bench.samples] == [samples[0].id, samples[5].id]
    report = bench.reports["test_msad"]
    assert (report.rows_read, report.loaded) == (6, 2)
    assert dict(report.skipped) == {
        "unknown_source": 1,
        "unknown_class": 1,
        "bad_time": 1,
        "bad_video_name": 1,
    }
    assert all(s.source == "msad" and "/" not in s.video for s in bench.samples)
    stats = bench_stats(bench)["files"]["from-elsewhere/test_msad"]  # data stats no longer fails
    assert stats["skipped"] == dict(report.skipped)
    with pytest.raises(BenchFormatError, match=r"test_msad:2: column 'source': unknown source"):
        load_bench(folder, strict=True)
    result = run_cli("data", "stats", str(folder))
    assert result.returncode == 0 and "skipped 1 rows: unknown_source" in " ".join(result.stdout.split())


def test_export_says_what_it_leaves_out_and_strict_stops(tmp_path):
    from bench_csv import row, write_csv

    bench = write_csv(
        tmp_path / "val.csv",
        [
            row(**{"Video Name": "msad_a.mp4"}),
            row(**{"Video Name": "msad_b.mp4", "Start Time": "soon"}),
            row(**{"Video Name": "ucf_c.mp4", "Anomaly Class": "Teleportation"}),
        ],
    )
    result = run_cli("data", "export", str(bench), str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "skipped 1 of 3 rows of val.csv: bad_time" in said and "unknown_class" in said
    assert "line 3 [bad_time]" in said
    strict = run_cli("data", "export", str(bench), str(tmp_path / "strict"), "--strict")
    assert strict.returncode == 2 and "val.csv:3: column 'Start Time'" in strict.stderr
    assert strict.stderr.count("\n") == 1

    unnamed = write_csv(tmp_path / "mine.csv", [row(**{"Video Name": "clip.mp4"})])
    plain = run_cli("data", "export", str(unnamed), str(tmp_path / "plain"))
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1
    assert "mine: video 'clip.mp4' has no source" in plain.stderr and "Traceback" not in plain.stderr
