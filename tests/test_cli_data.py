from __future__ import annotations

import json
import os
import subprocess
import sys

from bench_csv import row, write_csv
from conftest import VAUR1, run_cli

EXPECTED = {
    "val.csv": (734, 734, 339, 214, 181),
    "test_msad.csv": (240, 240, 120, 120, 0),
    "test_ucf_crime.csv": (290, 251, 124, 150, 16),
    "test_ecva.csv": (438, 438, 402, 0, 36),  # the paper's 402 TAG positives
}


def test_data_stats_json_on_released_files(shared_bench):
    result = run_cli("data", "stats", str(shared_bench), "--json", check=True)
    files = json.loads(result.stdout)["files"]
    assert set(files) == set(EXPECTED)
    for name, (rows, qa, pos, normal, missing) in EXPECTED.items():
        got = files[name]
        assert (got["rows"], got["qa"], got["tag_positive"], got["tag_normal"], got["tag_missing"]) == (
            rows,
            qa,
            pos,
            normal,
            missing,
        ), name
    assert files["val.csv"]["reasoning_format"] == {"markdown": 734}
    assert files["test_ucf_crime.csv"]["reasoning_format"] == {"dict": 251, "missing": 39}
    assert sum(files["test_ucf_crime.csv"]["classes"].values()) == 251
    assert files["val.csv"]["classes"]["Traffic_accident"] == 103
    assert len(files["test_ecva.csv"]["warnings"]) == 2
    assert all(f["cleaning"] == [] for f in files.values())


def test_data_stats_names_a_cleaning_rule_that_is_on(shared_bench):
    ecva = str(shared_bench / "test_ecva.csv")
    result = run_cli("data", "stats", ecva, "--clean", "class_interval_conflicts", "--json", check=True)
    stats = json.loads(result.stdout)["files"]["test_ecva.csv"]
    assert (stats["tag_positive"], stats["tag_missing"], stats["cleaning"]) == (
        400,
        38,
        ["class_interval_conflicts"],
    )
    table = run_cli("data", "stats", ecva, "--clean", "class_interval_conflicts", check=True)
    assert "cleaning rules on" in table.stdout and "class_interval_conflicts" in table.stdout
    assert "cleaning rules on" not in run_cli("data", "stats", ecva, check=True).stdout
    bad = run_cli("data", "stats", ecva, "--clean", "bogus")
    assert bad.returncode == 2 and "unknown cleaning rule 'bogus'" in bad.stderr


def test_data_stats_table_names_every_file(shared_bench):
    result = run_cli(
        "data", "stats", str(shared_bench / "test_msad.csv"), str(shared_bench / "val.csv"), check=True
    )
    assert "test_msad.csv" in result.stdout and "val.csv" in result.stdout
    assert "answer_text_to_letter" in result.stdout


def test_data_stats_reports_skips_and_strict_stops(tmp_path):
    path = write_csv(
        tmp_path / "val.csv", [row(), row(**{"Video Name": "msad_b.mp4", "Start Time": "later"})]
    )
    ok = run_cli("data", "stats", str(path), "--json", check=True)
    stats = json.loads(ok.stdout)["files"]["val.csv"]
    assert stats["rows"] == 1 and stats["skipped"] == {"bad_time": 1}
    strict = run_cli("data", "stats", str(path), "--strict")
    assert strict.returncode == 2
    assert strict.stderr.count("\n") == 1 and "val.csv:3: column 'Start Time'" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_missing_path_is_one_line_error(tmp_path):
    result = run_cli("data", "stats", str(tmp_path / "absent.csv"))
    assert result.returncode == 2 and "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_hub_name_offline_says_how_to_use_local_files(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run(
        [str(VAUR1), "data", "stats", "vau-bench"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "7xiang/VAU-Bench" in result.stderr and "local files" in result.stderr


def test_module_entry_point_and_help():
    result = subprocess.run([sys.executable, "-m", "vaur1", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "data" in result.stdout
