"""Run folders: one job at a time, one kind of job for life, and never a folder of someone else's."""

from __future__ import annotations

from pathlib import Path

import pytest

import eval_helpers
from train_helpers import sft_config
from vaur1.errors import VaurError
from vaur1.eval.run import run_eval
from vaur1.layout import TrainRun
from vaur1.runlock import claim_run, run_kind
from vaur1.sft.trainer import train as train_sft

QUICK = ["run.max_steps=1", "run.save_steps=1"]


def quick_eval(synth: Path, model: Path, out: Path):
    return eval_helpers.make_config(synth, model, out, **{"data.tasks": ["qa"], "modes": ["direct"]})


def test_a_second_job_on_a_held_folder_stops_at_once(
    eval_synth: Path, eval_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    with claim_run(out, "eval"):  # another `eval run` is writing here
        with pytest.raises(VaurError, match=f"{out}: another vaur1 job is using this folder"):
            run_eval(quick_eval(eval_synth, eval_model, out), progress=False)
        assert not (out / "config.yaml").exists()  # refused before it read or wrote anything
    run_eval(quick_eval(eval_synth, eval_model, out), progress=False)  # free again: it runs
    assert run_kind(out) == "eval"


def test_an_eval_never_writes_into_a_training_run(
    eval_synth: Path, eval_model: Path, synth_bench: Path, tmp_path: Path
) -> None:
    run = tmp_path / "sft"
    train_sft(sft_config(run, eval_model, synth_bench, QUICK))
    config = (run / "config.yaml").read_bytes()
    with pytest.raises(VaurError, match=f"{run}: the folder of a train run, not of this eval job"):
        run_eval(quick_eval(eval_synth, eval_model, run), progress=False)
    assert (run / "config.yaml").read_bytes() == config  # the training run still resumes
    evaluated = tmp_path / "eval"
    run_eval(quick_eval(eval_synth, eval_model, evaluated), progress=False)
    with pytest.raises(VaurError, match=f"{evaluated}: the folder of a eval run, not of this train job"):
        train_sft(sft_config(evaluated, eval_model, synth_bench, QUICK))


def test_two_trainings_on_one_folder_and_a_failed_start(
    eval_model: Path, synth_bench: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft"
    with (
        claim_run(out, "train"),
        pytest.raises(VaurError, match=f"{out}: another vaur1 job is using this folder"),
    ):
        train_sft(sft_config(out, eval_model, synth_bench, QUICK))
    # a run that fails while starting leaves the folder free for the next try
    with pytest.raises(VaurError):
        train_sft(sft_config(out, eval_model, synth_bench, [*QUICK, "data.split=nosuchsplit"]))
    train_sft(sft_config(out, eval_model, synth_bench, QUICK))
    assert TrainRun(out).final.is_dir() and run_kind(out) == "train"


def test_a_folder_of_someone_elses_is_refused(eval_synth: Path, eval_model: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "config.yaml").write_text("my own settings\n")
    (theirs / "chapter1.tex").write_text("precious")
    with pytest.raises(VaurError, match=f"{theirs}: holds 'chapter1.tex' and is no vaur1 run folder"):
        run_eval(quick_eval(eval_synth, eval_model, theirs), progress=False)
    assert (theirs / "config.yaml").read_text() == "my own settings\n"
