from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaur1.bench.schema import CLASSES
from vaur1.parse import (
    MAX_CHARS,
    NO_ANOMALY,
    extract_class,
    extract_letter,
    extract_tag_label,
    format_interval,
    is_strict_format,
    parse_completion,
    parse_interval,
    strip_tags,
    tag_prediction,
)

OPTIONS = ("Two men fight", "A car parks", "A man falls", "Nothing happens")


# ---- blocks ---------------------------------------------------------------------------------


def test_blocks_tolerate_case_whitespace_and_newlines():
    parsed = parse_completion(
        "\n<THINK>\n men fight \n</Think>\n< Answer >\n B \n</ answer >\n<GLUE> [1, 2] </GLUE>"
    )
    assert parsed.think == "men fight"
    assert parsed.answer == "B" and parsed.answer_tagged
    assert parsed.glue == "[1, 2]" and parsed.glue_tagged


def test_first_answer_block_wins():
    assert parse_completion("<answer>B</answer><answer>C</answer>").answer == "B"


def test_answer_inside_think_is_never_read():
    parsed = parse_completion(
        "<think>maybe <answer>A</answer> or <glue>[1, 2]</glue></think><answer>C</answer>"
    )
    assert parsed.answer == "C"
    assert parsed.glue_tagged is False and parse_interval(parsed.glue) is None
    only_think = parse_completion("<think>the answer is <answer>A</answer></think>")
    assert only_think.answer is None


def test_closing_think_without_opening_closes_a_leading_think_block():
    # Qwen3-style templates open <think> in the prompt, so the completion starts inside it.
    parsed = parse_completion("I see a fight, maybe B</think><answer>C</answer>")
    assert parsed.think == "I see a fight, maybe B"
    assert parsed.answer == "C"


def test_unclosed_blocks_run_to_the_next_tag_or_the_end():
    assert parse_completion("<think>reasoning<answer>B</answer>").answer == "B"
    assert parse_completion("<think>truncated reasoning about option B").answer is None
    assert parse_completion("<answer>B<glue>[1, 2]</glue>").answer == "B"
    assert parse_completion("<answer> Fighting").answer == "Fighting"


def test_without_answer_tag_the_text_outside_think_and_glue_is_the_answer():
    assert parse_completion("B").answer == "B"
    parsed = parse_completion("<think>A? no.</think> C")
    assert parsed.answer == "C" and not parsed.answer_tagged
    glue_only = parse_completion("<glue>[3.0, 5.0]</glue>")
    assert glue_only.answer is None and parse_interval(glue_only.glue) == (3.0, 5.0)
    assert parse_completion("   ").answer is None
    assert parse_completion("<answer> </answer>").answer is None


def test_glue_inside_answer_is_read_and_kept_out_of_the_answer():
    parsed = parse_completion("<answer>Anomaly <glue>[4, 9]</glue></answer>")
    assert parsed.answer == "Anomaly"
    assert parse_interval(parsed.glue) == (4.0, 9.0)


# ---- letters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        (" b ", "B"),
        ("(C)", "C"),
        ("C)", "C"),
        ("D.", "D"),
        ("B. A car parks", "B"),
        ("B: the car", "B"),
        ("Answer: C", "C"),
        ("The correct answer is D.", "D"),
        ("Option B", "B"),
        ("**B**", "B"),
        ("B is correct", "B"),
        ("A man falls", "C"),  # the exact text of option C, not the article "a"
        ("a man falls.", "C"),
        ("B A car parks", "B"),
        ("A car parks", "B"),
        ("two men FIGHT", "A"),
    ],
)
def test_letter_extraction(answer, letter):
    assert extract_letter(answer, OPTIONS) == letter


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "",
        "A man runs away",  # starts with the article, matches no option
        "Based on the video, C",  # the official extractor read this as B
        "a dog",
        "E.",  # no option E
        "B and C",
        "I think so",
        "Be careful",
    ],
)
def test_letter_extraction_refuses_non_answers(answer):
    assert extract_letter(answer, OPTIONS) is None


def test_letter_without_options_and_with_fewer_options():
    assert extract_letter("C") == "C"
    assert extract_letter("A man falls") is None
    assert extract_letter("C", ("yes", "no")) is None


# ---- intervals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("[5.2, 10.4]", (5.2, 10.4)),
        ("[ 5 ,10 ]", (5.0, 10.0)),
        ("(3, 7.5)", (3.0, 7.5)),
        ("[5.2s, 10.4 s]", (5.2, 10.4)),
        ("3 - 7", (3.0, 7.0)),
        ("3–7", (3.0, 7.0)),
        ("from 3.5 to 8 seconds", (3.5, 8.0)),
        ("00:05 - 01:10.5", (5.0, 70.5)),
        ("[0:01:05, 0:02:00]", (65.0, 120.0)),
        ("[-1, -1]", NO_ANOMALY),
        ("[-1.0, -1.0]", NO_ANOMALY),
        ("[4, 4]", (4.0, 4.0)),
        ("the anomaly is at [2, 3] and [5, 6]", (2.0, 3.0)),
    ],
)
def test_interval_forms(text, interval):
    assert parse_interval(text) == interval


@pytest.mark.parametrize(
    "text",
    [None, "", "no interval", "[5, 3]", "[-2, 5]", "[1e999, 2]", "[3]", "[1, 2, 3", "9" * 400 + " - 1"],
)
def test_unreadable_intervals(text):
    assert parse_interval(text) is None


def test_huge_numbers_do_not_overflow():
    assert parse_interval(f"[0, {'9' * 5000}]") is None  # inf is not a time
    assert parse_interval(f"[0, {'1' * 300}]") == (0.0, float("1" * 300))


def test_format_interval():
    assert format_interval((3.04, 7.96)) == "[3.0, 8.0]"
    assert format_interval(NO_ANOMALY) == "[-1, -1]"


# ---- classes and TAG labels -----------------------------------------------------------------


@pytest.mark.parametrize("label", CLASSES)
def test_every_class_as_listed_and_in_other_spellings(label):
    assert extract_class(label) == label
    assert extract_class(label.upper().replace("_", " ")) == label
    assert extract_class(f"It is {label.lower().replace(' ', '_')}.") == label


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Road Accidents", "Traffic_accident"),
        ("burglary", "Stealing"),
        ("Shoplifting", "Stealing"),
        ("Normal_Videos", "Normal"),
        ("traffic-accident", "Traffic_accident"),
        ("Fighting, then Arson", "Fighting"),  # the first one named
        ("Abnormal", None),
        ("Fireworks", None),  # whole words only
        ("Anomaly", None),
        ("", None),
    ],
)
def test_class_extraction(answer, label):
    assert extract_class(answer) == label


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Anomaly", "Anomaly"),
        ("anomalous", "Anomaly"),
        ("Abnormal", "Anomaly"),
        ("Normal", "Normal"),
        ("no anomaly", "Normal"),
        ("There is no obvious anomaly.", "Normal"),
        ("nothing abnormal", "Normal"),
        ("Not normal", "Anomaly"),
        ("Yes, people fight", "Anomaly"),
        ("No.", "Normal"),
        ("Fighting", "Anomaly"),
        ("Normal_Videos", "Normal"),
        ("unclear", None),
        (None, None),
    ],
)
def test_tag_label(answer, label):
    assert extract_tag_label(answer) == label


def test_tag_prediction_falls_back_on_the_interval_only_without_a_label():
    assert tag_prediction(parse_completion("<glue>[3, 5]</glue>")) == "Anomaly"
    assert tag_prediction(parse_completion("<glue>[-1, -1]</glue>")) == "Normal"
    assert tag_prediction(parse_completion("<glue>[0, 0]</glue>")) is None  # empty: neither
    assert tag_prediction(parse_completion("<answer>Normal</answer><glue>[3, 5]</glue>")) == "Normal"
    assert tag_prediction(parse_completion("<think>Anomaly [3, 5]</think>")) is None


# ---- strict format --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "task", "mode"),
    [
        ("<think>men fight</think><answer>B</answer>", "qa", "think"),
        ("  <think>\nmen fight\n</think>\n<answer>B</answer>\n", "qa", "think"),
        ("<think>x</think><answer>Fighting</answer>", "cls", "think"),
        ("<think>x</think><answer>Anomaly</answer><glue>[1.5, 3]</glue>", "tag", "think"),
        ("<think>x</think><answer>Normal</answer><glue>[-1, -1]</glue>", "tag", "think"),
        ("<think>x</think><answer>Anomaly</answer> <glue>[2, 2]</glue>", "tag", "think"),
        ("<answer>B</answer>", "qa", "direct"),
        ("<answer>Anomaly</answer><glue>[ 1 , 2 ]</glue>", "tag", "direct"),
    ],
)
def test_strict_format_accepts(text, task, mode):
    assert is_strict_format(text, task, mode)


@pytest.mark.parametrize(
    ("text", "task", "mode"),
    [
        ("<answer>B</answer>", "qa", "think"),  # no think block
        ("<think>x</think><answer>B</answer>", "qa", "direct"),  # think in direct mode
        ("Sure! <think>x</think><answer>B</answer>", "qa", "think"),  # text before
        ("<think>x</think><answer>B</answer> done", "qa", "think"),  # text after
        ("<think>x</think>so<answer>B</answer>", "qa", "think"),  # text between
        ("<THINK>x</THINK><answer>B</answer>", "qa", "think"),  # not lower case
        ("<think>x</think><answer>B</answer><answer>C</answer>", "qa", "think"),
        ("<think> </think><answer>B</answer>", "qa", "think"),  # blank think
        ("<think>x</think><answer></answer>", "qa", "think"),  # blank answer
        ("<think>x <answer>A</answer></think><answer>B</answer>", "qa", "think"),  # nested
        ("<think>x</think><answer>B</answer><glue>[1, 2]</glue>", "qa", "think"),  # glue outside TAG
        ("<think>x</think><answer>Anomaly</answer>", "tag", "think"),  # TAG without glue
        ("<think>x</think><answer>Anomaly</answer><glue>[3, 1]</glue>", "tag", "think"),  # s > e
        ("<think>x</think><answer>Anomaly</answer><glue>[-2, 5]</glue>", "tag", "think"),
        ("<think>x</think><answer>Anomaly</answer><glue>0:03 - 0:05</glue>", "tag", "think"),
        ("<think>x</think><answer>Anomaly</answer><glue>[1e1, 2e1]</glue>", "tag", "think"),
        ("<think>x</think><glue>[1, 2]</glue><answer>Anomaly</answer>", "tag", "think"),  # order
        ("<think>x</think><answer>B", "qa", "think"),  # unclosed
        ("", "qa", "think"),
    ],
)
def test_strict_format_rejects(text, task, mode):
    assert not is_strict_format(text, task, mode)


def test_strip_tags():
    assert strip_tags("a <answer>b</answer>  c <GLUE>") == "a b c"


# ---- never raises, on anything --------------------------------------------------------------

TAG_SOUP = st.lists(
    st.sampled_from(
        [
            "<think>",
            "</think>",
            "<answer>",
            "</answer>",
            "<glue>",
            "</glue>",
            "< ANSWER >",
            "[",
            "]",
            ",",
            " - ",
            " to ",
            ":",
            "-1",
            "1e999",
            "12",
            "3.5",
            "A",
            "a",
            "B.",
            "Normal",
            "no anomaly",
            "Traffic accident",
            "\n",
            " ",
        ]
    ),
    max_size=40,
).map("".join)
ANY_TEXT = st.one_of(st.text(max_size=300), TAG_SOUP)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_parser_never_raises(text):
    parsed = parse_completion(text)
    extract_letter(parsed.answer, OPTIONS)
    extract_class(parsed.answer)
    extract_tag_label(parsed.answer)
    tag_prediction(parsed)
    interval = parse_interval(parsed.glue)
    assert interval is None or interval == NO_ANOMALY or 0 <= interval[0] <= interval[1]
    for task in ("qa", "tag", "cls", "reasoning"):
        for mode in ("think", "direct"):
            assert isinstance(is_strict_format(text, task, mode), bool)


def test_huge_and_pathological_inputs_stay_fast():
    inputs = [
        "<answer>" * 50_000,
        "<think>" * 50_000,
        "</think>" * 50_000,
        "<think></answer>" * 30_000,
        "<glue>[1, 2]" * 20_000,
        "1" * 200_000,
        "1:" * 100_000,
        "[" + "1, " * 60_000,
        "<think>" + "x" * 300_000,
        "a " * 100_000,
        ("Traffic " * 50_000) + "accident",
    ]
    for text in inputs:
        started = time.perf_counter()
        parsed = parse_completion(text)
        parse_interval(parsed.glue)
        extract_class(parsed.answer)
        extract_tag_label(parsed.answer)
        extract_letter(parsed.answer, OPTIONS)
        is_strict_format(text, "tag", "think")
        assert time.perf_counter() - started < 5, text[:20]
    assert len(parse_completion("x" * (MAX_CHARS + 10)).answer) == MAX_CHARS
