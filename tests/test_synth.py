"""SynthVAU: the CSVs load as VAU-Bench, the intervals fit the clips, and each anomaly's signature is on
exactly the frames of its interval."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from conftest import run_cli
from vaur1.bench import load_bench
from vaur1.bench.schema import CLASSES, COLUMNS, LETTERS, REASONING_FIELDS
from vaur1.bench.synth import (
    ANOMALY_CLASSES,
    NORMAL_OPTIONS,
    SIGNATURE,
    VARIANTS,
    generate_synthvau,
    parse_split_ratio,
)
from vaur1.errors import VaurError
from vaur1.video.decode import probe

SMALL = {"size": (64, 48), "duration": (2.0, 4.0)}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthvau(tmp_path_factory.mktemp("synth"), n=21, seed=7, workers=2, **SMALL)


def all_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def signature_share(frames: np.ndarray, colour) -> np.ndarray:
    """Per frame, the share of pixels within 60 levels of a signature colour."""
    distance = np.abs(frames.astype(np.int16) - np.array(colour, dtype=np.int16)).max(axis=3)
    return (distance < 60).mean(axis=(1, 2))


def test_csvs_round_trip_through_the_strict_loader(synth):
    bench = load_bench(synth, strict=True)
    assert bench.splits == ["test", "train"]
    assert len(bench.samples) == 21 and all(not r.skipped and not r.repairs for r in bench.reports.values())
    header = (synth / "train.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(COLUMNS)
    classes = {s.anomaly_class for s in bench.samples}
    assert classes == {*ANOMALY_CLASSES, "Normal"} and classes <= set(CLASSES)
    assert sum(s.anomaly_class == "Normal" for s in bench.samples) == 7
    for sample in bench.samples:
        assert sample.source == "synth" and (synth / "videos" / sample.video).is_file()
        assert sample.id == f"synth_{sample.video}"
        assert sample.has_qa and sample.answer in LETTERS and len(set(sample.options)) == 4
        assert sample.reasoning_format == "markdown" and all(sample.reasoning.fields())
        assert sample.key_objects and sample.description
    answers = {s.answer for s in bench.samples}
    assert len(answers) >= 3  # the correct letter moves around
    manifest = json.loads((synth / "synthvau.json").read_text())
    assert manifest["seed"] == 7 and manifest["n"] == 21
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == 21


def test_every_question_has_options_of_one_shape_so_text_alone_gives_nothing_away(synth):
    variant_class = {v.option: name for name, pair in VARIANTS.items() for v in pair}
    normal_texts = [t.split("{")[0] for t in NORMAL_OPTIONS]
    pair_is_true_class = []
    for sample in load_bench(synth).samples:
        normal = [o for o in sample.options if any(o.startswith(t) for t in normal_texts)]
        classes = [variant_class[o] for o in sample.options if o not in normal]
        counts = sorted(classes.count(c) for c in set(classes))
        assert len(normal) == 1 and counts == [1, 2], sample.options  # one normal, a pair, a single
        correct = sample.options[LETTERS.index(sample.answer)]
        if sample.anomaly_class == "Normal":
            assert correct == normal[0]
        else:
            pair = next(c for c in classes if classes.count(c) == 2)
            pair_is_true_class.append(pair == sample.anomaly_class == variant_class[correct])
    assert pair_is_true_class and all(pair_is_true_class)


def test_intervals_lie_inside_each_clip_and_normals_are_zero(synth):
    for sample in load_bench(synth, strict=True).samples:
        info = probe(synth / "videos" / sample.video)
        assert 2.0 <= info.duration <= 4.0 and (info.width, info.height) == (64, 48)
        if sample.anomaly_class == "Normal":
            assert sample.interval == (0.0, 0.0) and sample.tag_role == "normal"
        else:
            start, end = sample.interval
            assert 0 < start < end < info.duration and sample.tag_role == "positive"


def test_each_signature_is_on_exactly_the_frames_of_its_interval(synth):
    for sample in load_bench(synth, strict=True).samples:
        frames = all_frames(synth / "videos" / sample.video)
        times = np.arange(len(frames)) / 8
        if sample.anomaly_class == "Normal":
            inside = np.zeros(len(frames), dtype=bool)
        else:
            start, end = sample.interval
            inside = (times >= start - 1e-6) & (times < end - 1e-6)
        for name, colour in SIGNATURE.items():
            share = signature_share(frames, colour)
            if name == sample.anomaly_class:
                assert share[inside].min() > 0.01, (sample.id, name)
                assert share[~inside].max() < 0.001, (sample.id, name)
            else:
                assert share.max() < 0.002, (sample.id, name)


def test_same_seed_same_bytes_other_seed_other_clips(synth, tmp_path):
    again = generate_synthvau(tmp_path / "again", n=21, seed=7, workers=1, **SMALL)
    for name in ("train.csv", "test.csv"):
        assert (again / name).read_bytes() == (synth / name).read_bytes()
    for video in sorted((synth / "videos").iterdir()):
        assert (again / "videos" / video.name).read_bytes() == video.read_bytes(), video.name
    other = generate_synthvau(tmp_path / "other", n=3, seed=8, workers=1, **SMALL)
    assert (other / "videos" / "00000.mp4").read_bytes() != (synth / "videos" / "00000.mp4").read_bytes()


def test_three_way_split_rerun_and_bad_arguments(tmp_path):
    out = generate_synthvau(tmp_path / "s", n=10, seed=1, split_ratio="0.6,0.2,0.2", workers=1, **SMALL)
    bench = load_bench(out, strict=True)
    assert bench.splits == ["test", "train", "val"] and len(bench.samples) == 10
    assert parse_split_ratio("0.8") == (0.8, pytest.approx(0.2))
    for bad in ("1.2", "0.5,0.2", "a", "0,1"):
        with pytest.raises(VaurError, match="split ratio"):
            parse_split_ratio(bad)
    again = generate_synthvau(out, n=4, seed=1, split_ratio="0.5", workers=1, **SMALL)
    assert sorted(p.name for p in again.iterdir()) == ["synthvau.json", "test.csv", "train.csv", "videos"]
    assert len(list((again / "videos").iterdir())) == 4 and len(load_bench(again).samples) == 4
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(VaurError, match="not empty"):
        generate_synthvau(tmp_path / "mine", n=2, **SMALL)
    with pytest.raises(VaurError, match="size"):
        generate_synthvau(tmp_path / "x", n=2, size=(63, 48))
    with pytest.raises(VaurError, match="at least 8 frames"):
        generate_synthvau(tmp_path / "x", n=2, duration=(0.5, 1.0))


def test_cli_synth_then_stats_reads_it_unchanged(tmp_path):
    out = tmp_path / "bench"
    made = run_cli(
        "data", "synth", "--out", str(out), "--n", "8", "--seed", "2", "--size", "64x48",
        "--duration", "2..3", "--split-ratio", "0.5", "--workers", "2", check=True,
    )  # fmt: skip
    assert "train.csv: 4 clips" in made.stdout and "test.csv: 4 clips" in made.stdout
    stats = json.loads(run_cli("data", "stats", str(out), "--json", "--strict", check=True).stdout)["files"]
    assert stats["train.csv"]["rows"] + stats["test.csv"]["rows"] == 8
    assert stats["train.csv"]["reasoning_format"] == {"markdown": 4}
    assert stats["train.csv"]["sources"] == {"synth": 4}
    bad = run_cli("data", "synth", "--out", str(out), "--size", "big")
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr


def test_extra_test_clips_leave_train_and_val_unchanged(tmp_path):
    args = (
        "--n",
        "10",
        "--seed",
        "3",
        "--size",
        "64x48",
        "--duration",
        "2..3",
        "--split-ratio",
        "0.6,0.2,0.2",
    )
    plain, larger = tmp_path / "plain", tmp_path / "larger"
    run_cli("data", "synth", "--out", str(plain), *args, "--workers", "1", check=True)
    made = run_cli(
        "data", "synth", "--out", str(larger), *args, "--extra-test", "6", "--workers", "2", check=True
    )
    assert "test.csv: 8 clips" in made.stdout and "SynthVAU: 16 clips" in made.stdout
    for name in ("train.csv", "val.csv"):
        assert (larger / name).read_bytes() == (plain / name).read_bytes(), name
    before, after = ((out / "test.csv").read_text(encoding="utf-8").splitlines() for out in (plain, larger))
    assert after[: len(before)] == before and len(after) == len(before) + 6
    extra = load_bench(larger / "test.csv", strict=True).samples[2:]
    assert [s.video for s in extra] == [f"{i:05d}.mp4" for i in range(10, 16)]
    assert sum(s.anomaly_class == "Normal" for s in extra) == 2  # a third normal, as in the n clips
    assert len({s.anomaly_class for s in extra}) > 2
    for sample in extra:
        assert (larger / "videos" / sample.video).is_file()
    assert json.loads((larger / "synthvau.json").read_text(encoding="utf-8"))["extra_test"] == 6
    bad = run_cli("data", "synth", "--out", str(tmp_path / "bad"), "--extra-test", "-1")
    assert bad.returncode != 0 and "--extra-test" in bad.stderr


def test_reasoning_names_every_field_and_the_interval(synth):
    text = (synth / "train.csv").read_text(encoding="utf-8")
    for field in REASONING_FIELDS:
        assert f"### {field}: " in text
    sample = next(s for s in load_bench(synth / "train.csv").samples if s.anomaly_class != "Normal")
    assert f"{sample.interval[0]:.1f}s" in sample.reasoning.explanation
