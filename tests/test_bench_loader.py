from __future__ import annotations

import pytest

from bench_csv import row, write_csv
from vaur1.bench import load_bench, read_csv
from vaur1.bench.schema import COLUMNS, is_normal, normalize_class
from vaur1.errors import BenchFormatError, VaurError

RELEASED = {
    # file: rows, qa, tag positive, tag normal, tag missing
    "val": (734, 734, 339, 214, 181),
    "test_msad": (240, 240, 120, 120, 0),
    "test_ucf_crime": (290, 251, 124, 150, 16),
    # the paper's denominators: TAG positives MSAD 120, ECVA 402 (with the two rows of class Normal
    # that carry an interval, 1577.mp4 and 1977.mp4), UCF-Crime 124
    "test_ecva": (438, 438, 402, 0, 36),
}


@pytest.mark.parametrize("split", sorted(RELEASED))
def test_released_counts(shared_bench, split):
    samples, report = read_csv(shared_bench / f"{split}.csv")
    roles = [s.tag_role for s in samples]
    counts = (
        len(samples),
        sum(s.has_qa for s in samples),
        roles.count("positive"),
        roles.count("normal"),
        roles.count("missing"),
    )
    assert counts == RELEASED[split]
    assert not report.skipped


def test_released_sources_and_prefixes(shared_bench):
    bench = load_bench(shared_bench)
    val = bench.split("val")
    assert {s.source for s in val} == {"msad", "ucf", "ecva"}
    by_id = {s.id: s for s in val}
    assert by_id["msad_parkinglot26.mp4"].video == "parkinglot26.mp4"
    assert by_id["msad_parkinglot26.mp4"].key_objects is None  # the one empty Key Object cell
    assert {s.source for s in bench.split("test_ucf_crime")} == {"ucf"}
    assert {s.source for s in bench.split("test_ecva")} == {"ecva"}
    assert all("_" not in s.video or not s.video.startswith(("msad_", "ucf_", "ecva_")) for s in val)


def test_full_text_answers_become_letters(shared_bench):
    samples, report = read_csv(shared_bench / "test_msad.csv")
    assert report.repairs["answer_text_to_letter"] == 8
    assert {s.answer for s in samples} == {"A", "B", "C", "D"}


def test_both_reasoning_formats_parse_into_six_fields(shared_bench):
    markdown, _ = read_csv(shared_bench / "test_msad.csv")
    literal, _ = read_csv(shared_bench / "test_ecva.csv")
    for samples, fmt in ((markdown, "markdown"), (literal, "dict")):
        assert {s.reasoning_format for s in samples} == {fmt}
        filled = [sum(bool(f) for f in s.reasoning.fields()) for s in samples]
        assert min(filled) >= 5, fmt
    # Key Evidence stored as a Python list is joined, not shown as a list repr.
    assert not any(s.reasoning.key_evidence.startswith("[") for s in literal)


def test_minus_one_rows_are_tag_only(shared_bench):
    samples, _ = read_csv(shared_bench / "test_ucf_crime.csv")
    blank = [s for s in samples if s.question is None]
    assert len(blank) == 39
    assert all(s.anomaly_class is None and s.reasoning is None and not s.has_qa for s in blank)
    assert sum(s.tag_role == "normal" for s in blank) == 27
    assert sum(s.tag_role == "positive" for s in blank) == 12


def test_normal_with_interval_is_a_tag_positive_by_default(shared_bench):
    from vaur1.bench.tasks import task_view

    samples, report = read_csv(shared_bench / "test_ecva.csv")
    assert len(report.warnings) == 2
    assert all("class Normal with interval" in w and "TAG scores the interval" in w for w in report.warnings)
    assert not report.repairs and report.cleaning == []
    contradicting = [s for s in samples if s.id in ("1577.mp4", "1977.mp4")]
    assert [(s.anomaly_class, s.tag_role) for s in contradicting] == [("Normal", "positive")] * 2
    # the paper's protocol: TAG scores the interval, CLS the class
    tag = {e.id: e for e in task_view(contradicting, "tag")}
    cls = {e.id: e for e in task_view(contradicting, "cls")}
    assert [(tag[i].is_normal, tag[i].tag_answer) for i in sorted(tag)] == [(False, "Anomaly")] * 2
    assert [(cls[i].is_normal, cls[i].anomaly_class) for i in sorted(cls)] == [(True, "Normal")] * 2


def test_class_interval_conflicts_rule_leaves_the_rows_out_of_tag(shared_bench):
    samples, report = read_csv(shared_bench / "test_ecva.csv", cleaning=["class_interval_conflicts"])
    assert report.cleaning == ["class_interval_conflicts"]
    assert report.repairs["class_interval_conflicts: interval read as missing"] == 2
    roles = [s.tag_role for s in samples]
    assert (roles.count("positive"), roles.count("missing")) == (400, 38)
    bench = load_bench(shared_bench, cleaning=["class_interval_conflicts"])
    assert bench.reports["test_ecva"].cleaning == ["class_interval_conflicts"]
    with pytest.raises(VaurError, match="unknown cleaning rule 'bogus'"):
        load_bench(shared_bench, cleaning=["bogus"])


def test_anomaly_class_with_normal_interval(tmp_path):
    from vaur1.bench.tasks import task_view

    path = write_csv(
        tmp_path / "val.csv",
        [
            row(
                **{
                    "Video Name": "msad_a.mp4",
                    "Start Time": "0",
                    "End Time": "0",
                    "Anomaly Class": "Fighting",
                }
            ),
            row(
                **{"Video Name": "msad_b.mp4", "Start Time": "0", "End Time": "0", "Anomaly Class": "Normal"}
            ),
        ],
    )
    # by default TAG reads the interval (0, 0) as a normal video, as the paper's scorer skips it
    samples, report = read_csv(path)
    assert not report.repairs and len(report.warnings) == 1
    assert [(e.id, e.is_normal) for e in task_view(samples, "tag")] == [
        ("msad_a.mp4", True),
        ("msad_b.mp4", True),
    ]
    assert [(e.id, e.is_normal) for e in task_view(samples, "cls")] == [
        ("msad_a.mp4", False),
        ("msad_b.mp4", True),
    ]
    # the cleaning rule makes TAG and CLS agree: the conflicting row leaves TAG
    samples, report = read_csv(path, cleaning=["class_interval_conflicts"])
    assert report.repairs["class_interval_conflicts: interval read as missing"] == 1
    fighting, _normal = samples
    assert fighting.tag_role == "missing"
    assert [e.id for e in task_view(samples, "tag")] == ["msad_b.mp4"]
    for task in ("tag", "cls", "qa"):
        for example in task_view(samples, task):
            assert example.is_normal == (example.id == "msad_b.mp4"), (task, example.id)


def test_interval_conventions(tmp_path):
    path = write_csv(
        tmp_path / "val.csv",
        [
            row(
                **{
                    "Video Name": "msad_a.mp4",
                    "Start Time": "0.0",
                    "End Time": "0.0",
                    "Anomaly Class": "Normal",
                }
            ),
            row(**{"Video Name": "ucf_b.mp4", "Start Time": "-1", "End Time": "-1"}),
            row(**{"Video Name": "ecva_c.mp4", "Start Time": "2", "End Time": "7.5"}),
        ],
    )
    a, b, c = read_csv(path)[0]
    assert (a.interval, a.tag_role, is_normal(a.anomaly_class, a.interval)) == ((0.0, 0.0), "normal", True)
    assert (b.interval, b.tag_role, is_normal(b.anomaly_class, b.interval)) == (None, "missing", False)
    assert (c.interval, c.tag_role) == ((2.0, 7.5), "positive")


def test_class_vocabulary_and_ucf_synonyms(tmp_path):
    assert normalize_class("traffic accident") == "Traffic_accident"
    assert normalize_class("RoadAccidents") == "Traffic_accident"
    assert normalize_class("Burglary") == "Stealing"
    assert normalize_class("Shoplifting") == "Stealing"
    assert normalize_class("food_safety") == "Food Safety"
    assert normalize_class("Spaceship") is None
    path = write_csv(
        tmp_path / "train.csv",
        [
            row(**{"Video Name": "ucf_x.mp4", "Anomaly Class": "Burglary"}),
            row(**{"Video Name": "ucf_y.mp4", "Anomaly Class": "RoadAccidents"}),
        ],
    )
    samples, report = read_csv(path)
    assert [s.anomaly_class for s in samples] == ["Stealing", "Traffic_accident"]
    assert report.repairs["class Burglary -> Stealing"] == 1
    assert report.repairs["class RoadAccidents -> Traffic_accident"] == 1


def test_dict_reasoning_is_parsed_without_eval(tmp_path):
    payload = "{'Specific Anomaly Type': 'x', 'Key Evidence': ['a', 'b'], 'Cause and Effect': {'cause': 'c'}}"
    evil = "__import__('os').system('echo pwned')"
    path = write_csv(
        tmp_path / "test_ecva.csv",
        [
            row(**{"Video Name": "1.mp4", "Reasoning": payload}),
            row(**{"Video Name": "2.mp4", "Reasoning": evil}),
        ],
    )
    first, second = read_csv(path)[0]
    assert first.reasoning_format == "dict"
    assert first.reasoning.key_evidence == "a; b"
    assert first.reasoning.cause_effect == "cause: c"
    assert second.reasoning_format == "text"  # kept as text, never executed
    assert second.reasoning.explanation == evil


BAD_ROWS = [
    ("bad_time", row(**{"Start Time": "soon"})),
    ("bad_time", row(**{"End Time": "nan"})),
    ("unknown_class", row(**{"Anomaly Class": "Alien invasion"})),
    ("bad_video_name", row(**{"Video Name": "../etc/passwd.mp4"})),
    ("bad_video_name", row(**{"Video Name": "sub/dir.mp4"})),
    ("bad_video_name", row(**{"Video Name": "  "})),
]


@pytest.mark.parametrize(("reason", "bad"), BAD_ROWS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD_ROWS)])
def test_bad_rows_are_skipped_and_counted(tmp_path, reason, bad):
    good = row(**{"Video Name": "msad_ok.mp4"})
    path = write_csv(tmp_path / "val.csv", [good, bad, good | {"Video Name": "msad_ok2.mp4"}])
    samples, report = read_csv(path)
    assert [s.id for s in samples] == ["msad_ok.mp4", "msad_ok2.mp4"]
    assert report.skipped == {reason: 1}
    assert report.problems and "line 3" in report.problems[0]


@pytest.mark.parametrize(("reason", "bad"), BAD_ROWS[:4])
def test_strict_mode_names_file_line_and_column(tmp_path, reason, bad):
    path = write_csv(tmp_path / "val.csv", [row(**{"Video Name": "msad_ok.mp4"}), bad])
    with pytest.raises(BenchFormatError) as info:
        read_csv(path, strict=True)
    message = str(info.value)
    column = {"bad_time": "Time", "unknown_class": "Anomaly Class", "bad_video_name": "Video Name"}[reason]
    assert f"{path}:3:" in message and column in message


def test_wrong_column_count_and_missing_column(tmp_path):
    path = tmp_path / "val.csv"
    good = ",".join(f'"{v}"' for v in row().values())
    path.write_text(
        ",".join(COLUMNS)
        + "\n"
        + good
        + "\nmsad_short.mp4,q,a,b\n"
        + good.replace("msad_F", "msad_G")
        + ',"extra"\n'
    )
    samples, report = read_csv(path)
    assert len(samples) == 1
    assert report.skipped == {"missing_column": 1, "column_count": 1}
    with pytest.raises(BenchFormatError, match=r"val.csv:3: column 'Option 3'"):
        read_csv(path, strict=True)


def test_header_missing_a_column(tmp_path):
    header = tuple(c for c in COLUMNS if c != "End Time")
    path = write_csv(tmp_path / "val.csv", [row(), row(**{"Video Name": "msad_b.mp4"})], header=header)
    # no row of such a file can load: an error naming the column, strict or not
    for strict in (False, True):
        with pytest.raises(BenchFormatError, match="val.csv:1: column 'End Time': missing from the header"):
            read_csv(path, strict=strict)


def test_duplicate_and_unreadable_answer(tmp_path):
    path = write_csv(
        tmp_path / "val.csv",
        [row(), row(), row(**{"Video Name": "msad_q.mp4", "Correct Option": "maybe"})],
    )
    samples, report = read_csv(path)
    assert report.skipped == {"duplicate_video": 1}
    odd = samples[1]
    assert odd.answer is None and not odd.has_qa and odd.tag_role == "positive"
    assert report.repairs["unreadable_answer_to_missing"] == 1


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(VaurError, match="no such file or folder"):
        load_bench(tmp_path / "nope.csv")
    with pytest.raises(VaurError, match="no train.csv"):
        load_bench(tmp_path)


def test_one_undecodable_byte_skips_exactly_its_row_with_its_true_line(tmp_path):
    path = write_csv(tmp_path / "val.csv", [row(**{"Video Name": f"msad_{i}.mp4"}) for i in range(400)])
    lines = path.read_bytes().split(b"\n")
    lines[300] = lines[300].replace(b"msad_299", b"msad_\xff299")  # data row 300 is file line 301
    lines[1] = lines[1].replace(b"msad_0", b"msad_\xfe0")  # in the first 8 KB too
    path.write_bytes(b"\n".join(lines))
    samples, report = read_csv(path)
    assert report.rows_read == 400 and len(samples) == 398
    assert report.skipped == {"undecodable_bytes": 2}
    assert [p.split(" [")[0] for p in report.problems] == ["line 2", "line 301"]
    with pytest.raises(BenchFormatError, match=r"val.csv:2: column 'Video Name': bytes that are not UTF-8"):
        read_csv(path, strict=True)


def test_a_huge_multiline_cell_is_one_skipped_row(tmp_path):
    huge = "reason line\n" * 22_000  # ~260 KB over 22,000 lines
    rows = [row(**{"Video Name": "msad_a.mp4"}), row(**{"Video Name": "msad_b.mp4", "Reasoning": huge})]
    rows.append(row(**{"Video Name": "msad_c.mp4"}))
    path = write_csv(tmp_path / "val.csv", rows)
    samples, report = read_csv(path)
    assert [s.id for s in samples] == ["msad_a.mp4", "msad_c.mp4"]
    assert report.rows_read == 3 and report.skipped == {"cell_too_large": 1}
    assert samples[1].line == 22_004  # its true line after the multi-line cell


def test_strict_stops_on_an_inverted_interval_and_an_answer_outside_a_to_d(tmp_path):
    inverted = write_csv(tmp_path / "val.csv", [row(**{"Start Time": "9", "End Time": "3"})])
    with pytest.raises(
        BenchFormatError, match=r"val.csv:2: column 'End Time': invalid interval \(9.0, 3.0\)"
    ):
        read_csv(inverted, strict=True)
    assert read_csv(inverted)[1].repairs["invalid_interval_to_missing"] == 1
    letter = write_csv(tmp_path / "test_msad.csv", [row(**{"Correct Option": "E"})])
    with pytest.raises(BenchFormatError, match="column 'Correct Option': answer 'E' is neither"):
        read_csv(letter, strict=True)
