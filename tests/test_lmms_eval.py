"""VAU-Bench as lmms-eval tasks: `vaur1 data export --format lmms-eval`, loaded by lmms-eval itself.

lmms-eval 0.7.3 comes from locks/lmms-eval.txt (`make lmms-eval`, part of `make test`): installed without
its declared av<16, next to vaur1's av 18.1.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from vaur1.bench.schema import CLASSES, LETTERS, NORMAL
from vaur1.errors import VaurError
from vaur1.parse import format_interval
from vaur1.vocab import task_metrics

lmms_utils = pytest.importorskip("lmms_eval.utils", reason="lmms-eval is installed by `make lmms-eval`")
datasets = pytest.importorskip("datasets")

LMMS_EVAL = Path(sys.executable).parent / "lmms-eval"
SOURCES = {"msad": "test_msad", "ucf_crime": "test_ucf_crime", "ecva": "test_ecva"}


def _reply(task: str, doc: dict, index: int, schema) -> str:
    """A spread of replies a model gives: right, wrong, near, unreadable."""
    kind = index % 4
    if kind == 3:
        return "I cannot tell from this video."
    if task == "qa":
        right = LETTERS[doc["answer"]]
        letter = right if kind == 0 else LETTERS[(doc["answer"] + kind) % 4]
        return f"<answer>{letter}</answer>" if kind < 2 else f"<answer>{letter}. {doc['options'][0]}</answer>"
    if task == "cls":
        right = schema["anomaly_class"].int2str(doc["anomaly_class"])
        return f"<answer>{[right, NORMAL, CLASSES[index % len(CLASSES)]][kind]}</answer>"
    start, end = doc["interval"]
    if (start, end) == (0.0, 0.0) or start < 0:
        return [
            "<answer>Normal</answer>",
            "<answer>Anomaly</answer> <glue>[1.0, 3.0]</glue>",
            "<answer>Normal</answer>",
        ][kind]
    shift = [0.0, 1.5, 6.0][kind]
    interval = format_interval((start + shift, end + shift))
    return f"<answer>Anomaly</answer> <glue>{interval}</glue>"


def test_the_tasks_load_in_lmms_eval_and_score_like_vaur1_eval_metrics(
    shared_bench: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lmms"
    result = run_cli(
        "data", "export", str(shared_bench), str(out), "--format", "lmms-eval", "--videos", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    names = {f"vau_bench_{task}_{source}" for task in ("qa", "tag", "cls") for source in SOURCES}
    assert {p.stem for p in out.glob("*.yaml")} == names
    data = datasets.load_from_disk(str(out / "data"))
    assert sorted(data) == sorted(SOURCES.values())  # the test splits only: val stays out
    schema = data["test_msad"].features

    for source, split in SOURCES.items():
        for task in ("qa", "tag", "cls"):
            # lmms-eval's own loader, with its `!function` constructor: the YAML's functions are vaur1's
            config = lmms_utils.load_yaml_config(str(out / f"vau_bench_{task}_{source}.yaml"))
            assert config["tag"] == f"vau_bench_{task}" and config["test_split"] == split
            docs = config["process_docs"](data[split])
            kwargs = config["lmms_eval_specific_kwargs"]["default"]
            assert "<video>" not in config["doc_to_text"](docs[0], kwargs)
            assert config["doc_to_target"](docs[0])
            replies = [_reply(task, doc, i, schema) for i, doc in enumerate(docs)]
            per_doc = [
                config["process_results"](doc, [reply]) for doc, reply in zip(docs, replies, strict=True)
            ]
            metric_fns = {m["metric"]: m["aggregation"] for m in config["metric_list"]}
            assert list(metric_fns) == [m.key for m in task_metrics(task)]
            theirs = {key: fn([scores[key] for scores in per_doc]) for key, fn in metric_fns.items()}

            predictions = tmp_path / f"{task}_{source}.jsonl"
            predictions.write_text(
                "".join(
                    json.dumps({"video": doc["id"], "output": r}) + "\n"
                    for doc, r in zip(docs, replies, strict=True)
                )
            )
            ours = run_cli(
                "eval", "metrics", "--task", task, "--bench", str(shared_bench / f"{split}.csv"),
                "--predictions", str(predictions), "--json", "--resamples", "1",
            )  # fmt: skip
            assert ours.returncode == 0, ours.stderr
            expected = json.loads(ours.stdout)
            assert expected["n"] + expected.get("n_normal", 0) == len(docs)  # TAG: positives and normals
            assert theirs == {key: expected[key] for key in metric_fns}, (task, source)
            assert 0 < theirs[task_metrics(task)[0].key] < 100  # the replies are a real spread


def test_a_missing_video_is_named(shared_bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "lmms"
    odd = tmp_path / "cam #1: lobby"  # YAML's comment and mapping marks in a folder name
    odd.mkdir()
    run_cli(
        "data",
        "export",
        str(shared_bench),
        str(out),
        "--format",
        "lmms-eval",
        "--videos",
        f"msad={tmp_path}",
        "--videos",
        str(odd),
        check=True,
    )
    ecva = lmms_utils.load_yaml_config(str(out / "vau_bench_qa_ecva.yaml"))
    assert ecva["lmms_eval_specific_kwargs"]["default"]["video_roots"]["ecva"] == str(odd.resolve())
    config = lmms_utils.load_yaml_config(str(out / "vau_bench_qa_msad.yaml"))
    doc = config["process_docs"](datasets.load_from_disk(str(out / "data"))["test_msad"])[0]
    with pytest.raises(VaurError, match=rf"{doc['id']}: video {tmp_path}/\S+ not found"):
        config["doc_to_visual"](doc, config["lmms_eval_specific_kwargs"]["default"])
    bad = run_cli(
        "data",
        "export",
        str(shared_bench),
        str(tmp_path / "x"),
        "--format",
        "lmms-eval",
        "--videos",
        "cctv=/x",
    )
    assert bad.returncode != 0 and "'cctv' is not a source" in bad.stderr
    nowhere = run_cli(
        "data",
        "export",
        str(shared_bench),
        str(tmp_path / "y"),
        "--format",
        "lmms-eval",
        "--videos",
        "/nowhere",
    )
    assert nowhere.returncode == 2 and "--videos /nowhere: /nowhere is not a folder" in nowhere.stderr
    assert not (tmp_path / "y").exists()


@pytest.mark.slow
def test_lmms_eval_cli_runs_the_tasks_on_synthvau_with_a_tiny_qwen2_5_vl(tmp_path: Path) -> None:
    run_cli(
        "data",
        "synth",
        "--out",
        str(tmp_path / "synth"),
        "--n",
        "12",
        "--size",
        "64x48",
        "--duration",
        "4..6",
        "--workers",
        "1",
        check=True,
    )
    run_cli("model", "tiny", "--arch", "qwen2_5_vl", "--out", str(tmp_path / "model"), check=True)
    tasks = tmp_path / "tasks"
    run_cli(
        "data",
        "export",
        str(tmp_path / "synth"),
        str(tasks),
        "--format",
        "lmms-eval",
        "--max-new-tokens",
        "8",
        check=True,
    )

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [
            str(LMMS_EVAL), "eval", "--model", "qwen2_5_vl",
            "--model_args", f"pretrained={tmp_path / 'model'},device=cpu,device_map=cpu,max_num_frames=4",
            "--tasks", "vau_bench_qa,vau_bench_tag,vau_bench_cls", "--include_path", str(tasks),
            "--output_path", str(tmp_path / "out"), "--log_samples",
        ],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (results_file,) = glob.glob(str(tmp_path / "out" / "*" / "*_results.json"))
    results = json.loads(Path(results_file).read_text())
    for task in ("qa", "tag", "cls"):
        name = f"vau_bench_{task}_synth"
        (samples_file,) = glob.glob(str(tmp_path / "out" / "*" / f"*_samples_{name}.jsonl"))
        samples = [json.loads(line) for line in Path(samples_file).read_text().splitlines()]
        first = task_metrics(task)[0].key
        predictions = tmp_path / f"{task}.jsonl"
        predictions.write_text(
            "".join(
                json.dumps(
                    {"video": s[first]["sample_score"]["key"].split("/")[1], "output": s["filtered_resps"]}
                )
                + "\n"
                for s in samples
            )
        )
        ours = run_cli(
            "eval", "metrics", "--task", task, "--bench", str(tmp_path / "synth" / "test.csv"),
            "--predictions", str(predictions), "--json", "--resamples", "1", check=True,
        )  # fmt: skip
        expected = json.loads(ours.stdout)
        assert results["n-samples"][name]["effective"] == len(samples) > 0
        for metric in task_metrics(task):
            assert results["results"][name][f"{metric.key},none"] == expected[metric.key], (name, metric.key)
