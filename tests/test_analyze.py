"""`vaur1 analyze VIDEO`: a SynthVAU clip through a tiny model, and one-line errors for bad input."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from vaur1.analyze import read_outputs
from vaur1.cli import main
from vaur1.layout import DemoRun

SMALL = ["--min-pixels", "3136", "--max-new-tokens", "12", "--device", "cpu"]


def clip(synth: Path) -> Path:
    return sorted((synth / "videos").iterdir())[0]


def test_analyze_prints_every_field_as_json(
    eval_synth: Path, eval_model: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["analyze", str(clip(eval_synth)), "--model", str(eval_model), "--json", *SMALL])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"video", "anomaly", "class", "interval", "description", "reasoning", "raw"}
    assert set(result["raw"]) == {"tag", "cls", "reasoning"}
    assert all(isinstance(text, str) and text for text in result["raw"].values())
    assert result["anomaly"] in (True, False, None) and result["video"] == str(clip(eval_synth))
    # the fields are what the parser reads from the raw outputs, nothing else
    assert {
        k: result[k] for k in ("anomaly", "class", "interval", "description", "reasoning")
    } == read_outputs(result["raw"])


def test_outputs_are_read_with_the_evaluation_parser() -> None:
    read = read_outputs(
        {
            "tag": "<think>a fight</think><answer>Anomaly</answer><glue>[1.0, 2.5]</glue>",
            "cls": "<think>two men</think><answer> fighting </answer>",
            "reasoning": "<answer>Description: Two men meet. Analysis: They fight, which is abnormal.</answer>",
        }
    )
    assert read == {
        "anomaly": True,
        "class": "Fighting",
        "interval": [1.0, 2.5],
        "description": "Two men meet.",
        "reasoning": "They fight, which is abnormal.",
    }
    normal = read_outputs(
        {"tag": "<answer>Normal</answer><glue>[-1, -1]</glue>", "cls": "Normal", "reasoning": ""}
    )
    # only the answer format is read: the bare class "Normal" outside <answer> is unreadable
    assert normal["anomaly"] is False and normal["interval"] is None and normal["class"] is None
    unsure = read_outputs({"tag": "I cannot tell", "cls": "<answer>Fire</answer>", "reasoning": "x"})
    assert unsure["anomaly"] is True and unsure["interval"] is None  # only the class answer says so
    # noise that names a class or an interval somewhere is no answer: unreadable, never a guess
    noise = read_outputs(
        {"tag": "xx yes anomaly [2.0, 5.0] ##", "cls": "xx%% Shooting ## Shooting", "reasoning": "zz"}
    )
    assert (noise["anomaly"], noise["class"], noise["interval"]) == (None, None, None)


def test_bad_video_is_a_one_line_error(eval_model: Path, tmp_path: Path) -> None:
    # a fresh process, as a user runs it: the test process's logging may be set up by earlier tests
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("just text")
    result = run_cli("analyze", str(not_a_video), "--model", str(eval_model), *SMALL)
    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1
        and result.stderr.startswith("error: ")
        and f"{not_a_video}: not a readable video file" in result.stderr
    )
    missing = run_cli("analyze", str(tmp_path / "missing.mp4"), "--model", str(eval_model))
    assert (missing.returncode, missing.stderr) == (2, f"error: {tmp_path / 'missing.mp4'}: no such file\n")


def test_default_model_is_the_demo_run_or_a_clear_error(
    eval_synth: Path,
    eval_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", str(clip(eval_synth)), *SMALL]) == 2
    err = capsys.readouterr().err
    # the path the demo writes its chosen model to (tests/test_demo.py checks that it does)
    chosen = DemoRun().chosen_model
    assert err.count("\n") == 1 and f"the demo's model {chosen} does not exist (run `make demo`)" in err
    shutil.copytree(eval_model, tmp_path / chosen)
    assert main(["analyze", str(clip(eval_synth)), "--json", *SMALL]) == 0
    assert set(json.loads(capsys.readouterr().out)["raw"]) == {"tag", "cls", "reasoning"}


def test_a_folder_and_a_file_in_one_call_load_the_model_once_and_show_raw_output_when_unreadable(
    eval_synth: Path, eval_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    import vaur1.model.generators as generators

    folder = tmp_path / "clips"
    folder.mkdir()
    clips = sorted((eval_synth / "videos").iterdir())[:2]
    for video in clips:
        (folder / video.name).symlink_to(video)
    (folder / "notes.txt").write_text("not a video, and not picked up")
    broken = tmp_path / "broken.mp4"
    broken.write_text("just text")
    loads = []
    real = generators.load_generator
    monkeypatch.setattr(generators, "load_generator", lambda *a, **k: loads.append(1) or real(*a, **k))

    code = main(["analyze", str(folder), str(broken), "--model", str(eval_model), "--json", *SMALL])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [Path(r["video"]).name for r in results] == [c.name for c in clips]  # the broken one is left out
    assert code == 2 and f"{broken}: not a readable video file" in captured.err and len(loads) == 1


def test_the_table_shows_the_raw_output_of_a_field_it_cannot_read(capsys: pytest.CaptureFixture) -> None:
    from vaur1.cli.analyze import print_result

    raw = {"tag": "<answer>Anomaly</answer>", "cls": "I think [bold]maybe[/bold] a fight", "reasoning": ""}
    print_result({"video": "clip.mp4", **read_outputs(raw), "raw": raw})
    table = capsys.readouterr().out
    flat = "".join(c for c in table if not c.isspace() and c not in "│┃")  # undo the table's wrapping
    assert "unreadable,themodelsaid:Ithink[bold]maybe[/bold]afight" in flat


def test_out_writes_a_page_with_the_frames_the_timeline_and_every_raw_output(
    eval_synth: Path, eval_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = clip(eval_synth)
    assert (
        main(
            [
                "analyze",
                str(video),
                "--model",
                str(eval_model),
                "--json",
                "--out",
                str(tmp_path / "pages"),
                *SMALL,
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    page = (tmp_path / "pages" / f"{video.stem}.html").read_text()
    assert page.count("<img") >= 2 and "data:image/jpeg;base64," in page and '<svg class="timeline"' in page
    for task in ("tag", "cls", "reasoning"):
        assert f"raw output: {task}" in page
    assert html.escape(result["raw"]["tag"]) in page
