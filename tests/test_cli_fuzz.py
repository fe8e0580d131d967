"""Hostile files and folders handed to every command that reads one: a one-line error or a result,
never a traceback (Hypothesis, bounded)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vaur1.cli import main

# What a path argument may turn out to be.
KINDS = (
    "missing",
    "empty file",
    "folder",
    "empty folder",
    "symlink loop",
    "dangling link",
    "bytes",
    "long name",
    "newline name",
    "dev null",
    "csv header only",
    "csv garbage",
    "yaml garbage",
    "jsonl garbage",
    "folder of garbage",
)


def make(kind: str, data: bytes, root: Path, index: int) -> Path:
    path = root / f"item{index}"
    if kind == "missing":
        return path
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind in ("folder", "folder of garbage"):
        path.mkdir()
        for name in ("config.json", "val.csv", "predictions.jsonl", "metrics.json", "model.safetensors"):
            (path / name).write_bytes(data if kind == "folder of garbage" else b"")
    elif kind == "empty folder":
        path.mkdir()
    elif kind == "symlink loop":
        path.symlink_to(path)
    elif kind == "dangling link":
        path.symlink_to(root / "nowhere")
    elif kind == "bytes":
        path.write_bytes(data)
    elif kind == "long name":
        path = root / ("n" * 250)
        path.write_bytes(data)
    elif kind == "newline name":
        path = root / f"line\nbreak{index}.csv"
        path.write_bytes(data)
    elif kind == "dev null":
        return Path(os.devnull)
    elif kind == "csv header only":
        path = root / f"val{index}.csv"
        path.write_text("Video Name,Question\n")
    elif kind == "csv garbage":
        path = root / f"test_msad{index}.csv"
        path.write_bytes(b"Video Name,Question,Option 1\n" + data)
    elif kind == "yaml garbage":
        path = root / f"c{index}.yaml"
        path.write_bytes(b"model:\n  name_or_path: " + data)
    elif kind == "jsonl garbage":
        path = root / f"p{index}.jsonl"
        path.write_bytes(b'{"video": "a.mp4", "output": ' + data)
    return path


COMMANDS = {
    "data stats": lambda p, q, out: ["data", "stats", str(p)],
    "data export": lambda p, q, out: ["data", "export", str(p), str(out)],
    "video probe": lambda p, q, out: ["video", "probe", str(p)],
    "eval metrics": lambda p, q, out: [
        "eval",
        "metrics",
        "--task",
        "tag",
        "--bench",
        str(p),
        "--predictions",
        str(q),
    ],
    "eval baselines": lambda p, q, out: ["eval", "baselines", "--bench", str(p), "--fit-on", str(q)],
    "rewards": lambda p, q, out: ["rewards", "--task", "cls", "--input", str(p)],
    "report": lambda p, q, out: ["report", str(p), "--out", str(out)],
    "eval judge": lambda p, q, out: ["eval", "judge", str(p)],
    "train sft": lambda p, q, out: ["train", "sft", "--config", str(p), f"run.output_dir={out}"],
    "plan": lambda p, q, out: ["plan", "--config", str(p)],
    "analyze": lambda p, q, out: ["analyze", str(p), "--model", str(q), "--device", "cpu"],
    "push": lambda p, q, out: ["push", str(p), "--repo", "me/x", "--endpoint", "http://127.0.0.1:9"],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(sorted(COMMANDS)),
    first=st.sampled_from(KINDS),
    second=st.sampled_from(KINDS),
    data=st.binary(max_size=300),
)
@example(command="report", first="folder of garbage", second="missing", data=b"1")  # metrics.json: 1
def test_no_file_or_folder_makes_a_command_raise(tmp_path_factory, capsys, command, first, second, data):
    root = tmp_path_factory.mktemp("fuzz")
    args = COMMANDS[command](make(first, data, root, 1), make(second, data, root, 2), root / "out")
    try:
        code = main(args)
    except SystemExit as exit:  # argparse refusing an argument: its usage line and exit 2
        code = exit.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, (command, first, second, captured.err[-2000:])
    assert code in (0, 1, 2), (command, first, second, code)
    if code == 2:
        assert captured.err.strip(), (command, first, second)
