"""Paired gains: the difference of two evaluations of the same items, with a paired bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from vaur1.errors import VaurError
from vaur1.eval.metrics import SampleScore, summarize
from vaur1.eval.paired import paired_gain


def qa(key: str, correct: float, mode: str = "direct") -> dict:
    return {"task": "qa", "mode": mode, "key": key, "correct": correct}


def tag(key: str, iou: float | None, false_alarm: float | None = None) -> dict:
    return {"task": "tag", "mode": "direct", "key": key, "iou": iou, "false_alarm": false_alarm}


def test_gain_is_the_difference_of_the_metrics_and_pairing_narrows_the_interval():
    rng = np.random.default_rng(1)
    hard = rng.random(200) < 0.5  # items one model gets wrong, the other mostly too
    before = [qa(f"q{i}", float(not h)) for i, h in enumerate(hard)]
    after = [qa(f"q{i}", float(not h or i % 10 == 0)) for i, h in enumerate(hard)]
    gain = paired_gain([(before, after)], "qa.accuracy")

    def accuracy(records):
        scores = [SampleScore(r["key"], "synth", "ok", "A", "A", correct=r["correct"]) for r in records]
        return summarize("qa", scores)

    old, new = accuracy(before), accuracy(after)
    assert gain["gain"] == pytest.approx(new["accuracy"] - old["accuracy"], abs=0.01) and gain["n"] == 200
    low, high = gain["ci"]
    assert 0 < low <= gain["gain"] <= high  # every changed item improved: the interval excludes 0
    unpaired = new["ci"]["accuracy"][1] - new["ci"]["accuracy"][0]
    assert high - low < unpaired / 2


def test_tag_counts_positives_for_miou_and_normal_clips_for_false_alarms():
    before = [tag("a", 0.5), tag("b", 0.2), tag("n", None, false_alarm=1.0), qa("q", 1.0)]
    after = [tag("a", 0.7), tag("b", 0.6), tag("n", None, false_alarm=0.0), qa("q", 0.0)]
    miou = paired_gain([(before, after)], "tag.miou")
    assert miou["gain"] == pytest.approx(30.0) and miou["n"] == 2
    assert paired_gain([(before, after)], "tag.r@0.5")["gain"] == pytest.approx(50.0)
    assert paired_gain([(before, after)], "tag.false_alarm_rate")["gain"] == pytest.approx(-100.0)
    assert paired_gain([(before, after)], "cls.multiclass_accuracy") is None  # no CLS items


def test_groups_average_their_gains_and_resample_within_each_group():
    seed_0 = ([qa(f"q{i}", 0.0) for i in range(10)], [qa(f"q{i}", 1.0) for i in range(10)])  # +100
    seed_1 = ([qa(f"q{i}", 1.0) for i in range(30)], [qa(f"q{i}", 1.0) for i in range(30)])  # 0
    pooled = paired_gain([seed_0, seed_1], "qa.accuracy")
    assert pooled == {"gain": 50.0, "ci": [50.0, 50.0], "n": 40}  # each group's items are constant
    assert paired_gain([seed_0, seed_1], "qa.accuracy", seed=5) == pooled


def test_different_items_or_unknown_metrics_are_clear_errors():
    before = [qa("q1", 1.0), qa("q2", 0.0)]
    with pytest.raises(VaurError, match="1 only before .e.g. q2 in direct mode., 1 only after .e.g. q3 "):
        paired_gain([(before, [qa("q1", 1.0), qa("q3", 0.0)])], "qa.accuracy")
    with pytest.raises(VaurError, match="q1 .direct. is scored twice"):
        paired_gain([(before, [qa("q1", 1.0), qa("q1", 0.0)])], "qa.accuracy")
    with pytest.raises(VaurError, match="different items"):  # an item is a key in one prompt mode
        paired_gain([(before, [qa("q1", 1.0, mode="think"), *before[1:]])], "qa.accuracy")
    with pytest.raises(VaurError, match="no paired difference for 'qa.f1'"):
        paired_gain([(before, before)], "qa.f1")
    with pytest.raises(VaurError, match="resamples"):
        paired_gain([(before, before)], "qa.accuracy", resamples=0)
