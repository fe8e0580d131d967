from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaur1.bench.tasks import TASKS, Example
from vaur1.config import load_config
from vaur1.errors import ConfigError, VaurError
from vaur1.rewards import (
    REWARD_TASKS,
    REWARDS,
    RewardConfig,
    applicable_rewards,
    boundary_iou,
    reward_functions,
    score,
    temporal_iou,
)

OPTIONS = ("Two men fight", "A car parks", "A man falls", "Nothing happens")
QA = Example(task="qa", id="q.mp4", options=OPTIONS, answer="C")
TAG_POSITIVE = Example(task="tag", id="t.mp4", interval=(2.0, 6.0))
TAG_NORMAL = Example(task="tag", id="n.mp4", interval=(0.0, 0.0))
TAG_MISSING = Example(task="tag", id="m.mp4", interval=None)
CLS = Example(task="cls", id="c.mp4", anomaly_class="Traffic_accident")
CLS_NORMAL = Example(task="cls", id="c.mp4", anomaly_class="Normal")
REASONING = Example(task="reasoning", id="r.mp4", description="A fight.")


def think(body: str = "men fight", answer: str = "C", glue: str | None = None) -> str:
    return f"<think>{body}</think><answer>{answer}</answer>" + (f"<glue>{glue}</glue>" if glue else "")


# ---- hand-computed values -------------------------------------------------------------------


def test_format_rewards():
    fmt, direct = REWARDS["format"], REWARDS["format_direct"]
    assert fmt(think(), QA) == 1.0
    assert fmt("<answer>C</answer>", QA) == 0.0
    assert direct("<answer>C</answer>", QA) == 1.0
    assert direct(think(), QA) == 0.0
    assert fmt(think(answer="Anomaly", glue="[1.0, 2.5]"), TAG_POSITIVE) == 1.0
    assert fmt(think(answer="Anomaly", glue="[2.5, 1.0]"), TAG_POSITIVE) == 0.0  # s > e
    assert fmt(think(answer="Anomaly"), TAG_POSITIVE) == 0.0  # no glue
    assert fmt(think(answer="Normal", glue="[-1, -1]"), TAG_NORMAL) == 1.0
    assert direct("<answer>Normal</answer><glue>[-1, -1]</glue>", TAG_NORMAL) == 1.0
    assert fmt(think(answer="Fighting"), CLS) == 1.0
    assert fmt(think(answer="Fighting") + " extra", CLS) == 0.0


def test_accuracy_reward_qa():
    accuracy = REWARDS["accuracy"]
    assert accuracy(think(answer="C"), QA) == 1.0
    assert accuracy(think(answer="C. A man falls"), QA) == 1.0
    assert accuracy(think(answer="A man falls"), QA) == 1.0  # option text, not the article
    assert accuracy(think(answer="B"), QA) == 0.0
    assert accuracy("<think>it is C</think><answer>B</answer>", QA) == 0.0  # think text is not the answer
    assert accuracy("C", QA) == 0.0  # a bare answer outside the answer format earns nothing
    assert accuracy("", QA) == 0.0


def test_rewards_pay_only_for_the_answer_format():
    """Accuracy, IoU and class are paid for `<answer>` and `<glue>` blocks only; the metrics read the
    same outputs leniently, as the official scorers do."""
    from vaur1.rewards import answer_score, class_score, interval_score

    noise = "xx%% Shooting ## Shooting"
    shooting = replace(CLS, anomaly_class="Shooting")
    assert REWARDS["class"](noise, shooting) == 0.0
    assert class_score(noise, shooting, "lenient") == 1.0
    assert REWARDS["class"]("<answer>Shooting</answer>", shooting) == 1.0
    assert REWARDS["accuracy"]("The answer is C", QA) == 0.0
    assert answer_score("The answer is C", QA, "lenient") == 1.0
    # TAG: an interval outside <glue> is no interval, a label outside <answer> no label
    assert REWARDS["iou"]("Anomaly from [2, 6]", TAG_POSITIVE) == 0.0
    assert interval_score("Anomaly from [2, 6]", TAG_POSITIVE, "lenient") == 1.0
    assert REWARDS["accuracy"]("Anomaly", TAG_POSITIVE) == 0.0
    assert REWARDS["accuracy"]("no anomaly here", TAG_NORMAL) == 0.0
    assert REWARDS["consistency"]("Anomaly [2, 6]", TAG_POSITIVE) == 0.0
    assert REWARDS["consistency"]("<answer>Anomaly</answer><glue>[2, 6]</glue>", TAG_POSITIVE) == 1.0


def test_accuracy_reward_tag_reads_anomaly_or_normal():
    accuracy = REWARDS["accuracy"]
    assert accuracy(think(answer="Anomaly", glue="[1, 2]"), TAG_POSITIVE) == 1.0
    assert accuracy(think(answer="Normal", glue="[-1, -1]"), TAG_POSITIVE) == 0.0
    assert accuracy(think(answer="Normal", glue="[-1, -1]"), TAG_NORMAL) == 1.0
    assert accuracy(think(answer="no anomaly"), TAG_NORMAL) == 1.0
    assert accuracy(think(answer="anomaly"), TAG_NORMAL) == 0.0  # lower case is still Anomaly
    assert accuracy("", TAG_NORMAL) == 0.0  # saying nothing is not Normal
    assert accuracy("<glue>[3, 4]</glue>", TAG_POSITIVE) == 1.0  # the interval implies Anomaly
    assert accuracy(think(answer="Anomaly"), TAG_MISSING) == 1.0  # missing interval: still anomalous


def test_iou_reward():
    iou = REWARDS["iou"]
    assert iou(think(answer="Anomaly", glue="[2, 6]"), TAG_POSITIVE) == 1.0
    assert iou(think(answer="Anomaly", glue="[4, 8]"), TAG_POSITIVE) == pytest.approx(2 / 6)
    assert iou(think(answer="Anomaly", glue="[3, 5]"), TAG_POSITIVE) == pytest.approx(2 / 4)
    assert iou(think(answer="Anomaly", glue="[7, 9]"), TAG_POSITIVE) == 0.0
    assert iou(think(answer="Anomaly", glue="[0:02, 0:06]"), TAG_POSITIVE) == 1.0
    assert iou(think(answer="Normal", glue="[-1, -1]"), TAG_POSITIVE) == 0.0
    assert iou(think(answer="Anomaly", glue="[3, 3]"), TAG_POSITIVE) == 0.0
    assert iou(think(answer="Anomaly", glue="soon"), TAG_POSITIVE) == 0.0
    # both normal: 1; any other mix with a normal video: 0
    assert iou(think(answer="Normal", glue="[-1, -1]"), TAG_NORMAL) == 1.0
    assert iou(think(answer="Normal", glue="[0, 0]"), TAG_NORMAL) == 0.0  # [0, 0] is not the answer asked for
    assert iou(think(answer="Anomaly", glue="[2, 6]"), TAG_NORMAL) == 0.0
    assert iou(think(answer="Normal"), TAG_NORMAL) == 0.0
    assert iou(think(answer="Anomaly", glue="[2, 6]"), TAG_MISSING) is None


def test_iou_boundary_reward():
    reward = REWARDS["iou_boundary"]
    # pred [3, 5] in gt [2, 6]: IoU 2/4, span 4, both boundaries 1 s off -> 0.5 * 0.75 * 0.75
    assert reward(think(answer="Anomaly", glue="[3, 5]"), TAG_POSITIVE) == pytest.approx(0.28125)
    # pred [4, 8]: IoU 2/6, span 6, 2 s off each -> (1/3) * (2/3) * (2/3)
    assert reward(think(answer="Anomaly", glue="[4, 8]"), TAG_POSITIVE) == pytest.approx(4 / 27)
    assert reward(think(answer="Anomaly", glue="[2, 6]"), TAG_POSITIVE) == 1.0
    assert reward(think(answer="Normal", glue="[-1, -1]"), TAG_NORMAL) == 1.0
    assert reward(think(answer="Anomaly", glue="[7, 9]"), TAG_POSITIVE) == 0.0
    assert boundary_iou((3.0, 5.0), (2.0, 6.0)) <= temporal_iou((3.0, 5.0), (2.0, 6.0))


def test_class_reward():
    reward = REWARDS["class"]
    assert reward(think(answer="Traffic_accident"), CLS) == 1.0
    assert reward(think(answer="traffic accident"), CLS) == 1.0  # the official reward said 0
    assert reward(think(answer="Road Accidents"), CLS) == 1.0  # a UCF synonym
    assert reward(think(answer="Fighting"), CLS) == 0.0
    assert reward(think(answer="Normal"), CLS_NORMAL) == 1.0
    assert reward("<think>Normal</think><answer>Abnormal</answer>", CLS_NORMAL) == 0.0
    assert reward(think(answer="Fighting"), Example(task="cls", id="x", anomaly_class=None)) is None


def test_consistency_reward():
    reward = REWARDS["consistency"]
    assert reward(think(answer="Normal", glue="[-1, -1]"), TAG_POSITIVE) == 1.0  # agreement, not truth
    assert reward(think(answer="Anomaly", glue="[1, 2]"), TAG_NORMAL) == 1.0
    assert reward(think(answer="Normal", glue="[1, 2]"), TAG_NORMAL) == 0.0
    assert reward(think(answer="Anomaly", glue="[-1, -1]"), TAG_POSITIVE) == 0.0
    assert reward(think(answer="Anomaly", glue="[2, 2]"), TAG_POSITIVE) == 0.0  # empty interval
    assert reward(think(answer="Anomaly"), TAG_POSITIVE) == 0.0
    assert reward("<glue>[1, 2]</glue>", TAG_POSITIVE) == 0.0  # no answer to agree with
    assert reward(think(answer="Anomaly", glue="[1, 2]"), TAG_MISSING) == 1.0


def test_think_length_reward_band():
    reward = REWARDS["think_length"]
    words = lambda n: think(body=" ".join(["w"] * n))  # noqa: E731
    assert reward(words(16), QA) == 1.0
    assert reward(words(256), QA) == 1.0
    assert reward(words(8), QA) == 0.5
    assert reward(words(384), QA) == 0.5
    assert reward(words(600), QA) == 0.0
    assert reward("<answer>C</answer>", QA) == 0.0
    custom = reward_functions(RewardConfig(think_min_words=2, think_max_words=4))["think_length"]
    assert custom(words(3), QA) == 1.0 and custom(words(1), QA) == 0.5 and custom(words(6), QA) == 0.5


def test_temporal_iou():
    assert temporal_iou((0.0, 10.0), (5.0, 15.0)) == pytest.approx(5 / 15)
    assert temporal_iou((0.0, 0.0), (0.0, 0.0)) == 0.0  # not the official "empty union = 1"


# ---- applicability --------------------------------------------------------------------------

EXAMPLES = [QA, TAG_POSITIVE, TAG_NORMAL, CLS, REASONING]


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_rewards_return_none_exactly_outside_their_tasks(name):
    for example in EXAMPLES:
        value = REWARDS[name](think(), example)
        assert (value is not None) == (example.task in REWARD_TASKS[name]), (name, example.task)
    assert set(REWARD_TASKS[name]) <= set(TASKS)


def test_applicable_rewards_by_task():
    assert set(applicable_rewards(think(), QA)) == {"format", "format_direct", "accuracy", "think_length"}
    assert set(applicable_rewards(think(), TAG_POSITIVE)) == {
        "format",
        "format_direct",
        "accuracy",
        "iou",
        "iou_boundary",
        "consistency",
        "think_length",
    }
    assert set(applicable_rewards(think(), CLS)) == {"format", "format_direct", "class", "think_length"}
    assert applicable_rewards(think(), REASONING) == {}
    assert "iou" not in applicable_rewards(think(), TAG_MISSING)


# ---- weighted scores and config -------------------------------------------------------------


def test_default_scores_are_the_papers_sums():
    total, parts = score(think(answer="C"), QA)
    assert parts == {"format": 1.0, "accuracy": 1.0} and total == 2.0
    total, parts = score(think(answer="Anomaly", glue="[4, 8]"), TAG_POSITIVE)
    assert parts == {"format": 1.0, "accuracy": 1.0, "iou": pytest.approx(1 / 3)}
    assert total == pytest.approx(2 + 1 / 3)
    total, parts = score("<answer>Normal</answer>", CLS)
    assert parts == {"format": 0.0, "class": 0.0} and total == 0.0


def test_weights_from_yaml(tmp_path):
    path = tmp_path / "rewards.yaml"
    path.write_text("tag: {format: 0.5, iou_boundary: 2, consistency: 1}\nthink_min_words: 1\n")
    config = load_config(RewardConfig, path)
    total, parts = score(think(answer="Anomaly", glue="[3, 5]"), TAG_POSITIVE, config)
    assert set(parts) == {"format", "iou_boundary", "consistency"}
    assert total == pytest.approx(0.5 + 2 * 0.28125 + 1)
    assert config.qa == RewardConfig().qa  # untouched tasks keep the paper's weights


def test_missing_targets_add_nothing():
    total, parts = score(think(answer="Anomaly", glue="[3, 5]"), TAG_MISSING)
    assert parts["iou"] is None and total == 2.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("qa.iou=1", "rewards.qa.iou: this reward does not apply to qa"),
        ("cls.accuracy=1", "rewards.cls.accuracy: this reward does not apply to cls"),
        ("tag.ioU=1", "rewards.tag.ioU: unknown reward"),
        ("qa={}", "rewards.qa: no rewards"),
        ("qa.format=.nan", "qa.format: must be a finite number"),
        ("think_min_words=0", "0 < think_min_words <= think_max_words"),
        ("think_max_words=4", "0 < think_min_words <= think_max_words"),
    ],
)
def test_bad_reward_configs(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RewardConfig, overrides=[override])


def test_score_refuses_a_task_without_rewards():
    with pytest.raises(VaurError, match="task 'reasoning' has no rewards"):
        score("x", REASONING)


# ---- never raises, stays in range -----------------------------------------------------------

TAG_SOUP = st.lists(
    st.sampled_from(
        [
            "<think>",
            "</think>",
            "<answer>",
            "</answer>",
            "<glue>",
            "</glue>",
            "<Answer >",
            "[",
            "]",
            ", ",
            " - ",
            "-1",
            "1e309",
            "99999999999999999999",
            "2",
            "6.0",
            "0:03",
            "C",
            "a",
            "Anomaly",
            "Normal",
            "no anomaly",
            "Road Accidents",
            "\n",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), TAG_SOUP), st.sampled_from([*EXAMPLES, TAG_MISSING, CLS_NORMAL]))
def test_rewards_never_raise_and_stay_in_range(text, example):
    for name, reward in REWARDS.items():
        value = reward(text, example)
        assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0), (name, value)
    if example.task != "reasoning":
        total, parts = score(text, example)
        assert math.isfinite(total)
        assert all(v is None or 0.0 <= v <= 1.0 for v in parts.values())


INTERVAL = st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)).map(sorted).map(tuple)


@settings(max_examples=300, deadline=None)
@given(INTERVAL, INTERVAL)
def test_iou_functions_stay_in_range_and_agree_on_identity(a, b):
    assert 0.0 <= temporal_iou(a, b) <= 1.0
    assert 0.0 <= boundary_iou(a, b) <= temporal_iou(a, b)
    assert temporal_iou(a, b) == temporal_iou(b, a)
    if a[1] > a[0]:
        assert temporal_iou(a, a) == 1.0 and boundary_iou(a, a) == 1.0


def test_overlong_penalty_equals_verls_dapo_reward_manager():
    """A transcription of verl's DAPO reward manager (`overlong_buffer`): expected_len = max - buffer,
    exceed = length - expected_len, reward += min(-exceed / buffer * factor, 0)."""
    from vaur1.rewards import overlong_penalty

    def verl(valid_response_length, max_resp_len, overlong_buffer_len, overlong_penalty_factor):
        expected_len = max_resp_len - overlong_buffer_len
        exceed_len = valid_response_length - expected_len
        return min(-exceed_len / overlong_buffer_len * overlong_penalty_factor, 0)

    for length in (0, 10, 95, 96, 100, 120, 128):
        for buffer, factor in ((32, 1.0), (8, 0.5)):
            assert overlong_penalty(length, 128, buffer, factor) == pytest.approx(
                verl(length, 128, buffer, factor)
            )
    assert overlong_penalty(128, 128, 32, 1.0) == -1.0 and overlong_penalty(96, 128, 32, 1.0) == 0.0


def test_a_completion_is_parsed_once_for_every_reward_and_metric():
    """Every reward of a task and the harness's scoring read one parse of the text."""
    from vaur1.eval.metrics import score_sample
    from vaur1.parse import parse_completion

    text = "<think>a man falls at 2 s</think><answer>Anomaly</answer><glue>[2.0, 6.5]</glue>"
    parse_completion.cache_clear()
    total, parts = score(text, TAG_POSITIVE, RewardConfig())
    assert score_sample(TAG_POSITIVE, text).iou == pytest.approx(4.0 / 4.5)
    assert len(parts) >= 3 and total > 0
    assert parse_completion.cache_info().misses == 1
