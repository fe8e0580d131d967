"""The rules of validation inside training: when patience stops a run, and when a model reads the video."""

from __future__ import annotations

import math

import pytest

from vaur1.errors import ConfigError
from vaur1.eval.baselines import reading_level
from vaur1.train.config import ValidationConfig
from vaur1.train.validation import first_reading, should_stop

BOTH = ValidationConfig(split="val", eval_steps=1, patience_metrics=["mean_accuracy", "val_loss"])


def history(*evaluations: tuple[float, float], cls: list[float] | None = None) -> list[dict]:
    cls = cls or [40.0] * len(evaluations)
    return [
        {"values": {"mean_accuracy": score, "val_loss": loss}, "metrics": {"cls": {"multiclass_accuracy": c}}}
        for (score, loss), c in zip(evaluations, cls, strict=True)
    ]


def patience(n: int, **fields) -> ValidationConfig:
    return ValidationConfig(**{**BOTH.__dict__, "patience": n, **fields})


def test_sft_stops_only_when_neither_the_score_nor_the_loss_improves():
    # a constant answer scores well early; the score drops while the model learns to read the video
    assert not should_stop(history((45, 0.50), (30, 0.40), (30, 0.39), (31, 0.38)), patience(3), None)
    assert should_stop(history((45, 0.50), (30, 0.40), (44, 0.41), (45, 0.45), (40, 0.40)), patience(3), None)
    assert not should_stop(history((45, 0.50), (30, 0.60), (46, 0.70)), patience(2), None)
    assert not should_stop(history((45, 0.50)), patience(1), None)
    assert should_stop(history((45, 0.50), (45, 0.50)), patience(1), None)
    # one watched value: the score alone
    score_only = patience(2, patience_metrics=[])
    assert should_stop(history((45, 0.50), (30, 0.40), (44, 0.30)), score_only, None)
    assert not should_stop(history((45, 0.50), (30, 0.40), (44, 0.30)), patience(2), None)


def test_patience_only_counts_once_the_model_reads_the_video():
    def stalled(*cls: float) -> list[dict]:  # a score and a loss that stopped improving long ago
        return history(*[(40, 0.5)] * len(cls), cls=list(cls))

    level = 50.0
    assert not should_stop(stalled(33.3, 33.3, 33.3, 33.3, 33.3), patience(3), level)
    assert should_stop(stalled(33.3, 33.3, 33.3, 33.3, 33.3), patience(3), None)  # without the rule
    assert should_stop(stalled(33.3, 50.0, 33.3, 33.3, 33.3), patience(3), level)
    assert not should_stop(stalled(33.3, 50.0, 33.3), patience(3), level)  # and patience still applies
    # patience counts from the first evaluation that read the video, not from the stalled blind ones
    assert not should_stop(stalled(33.3, 33.3, 33.3, 33.3, 50.0), patience(3), level)
    assert not should_stop(stalled(33.3, 33.3, 33.3, 50.0, 50.0, 50.0), patience(3), level)
    assert should_stop(stalled(33.3, 33.3, 33.3, 50.0, 50.0, 50.0, 50.0), patience(3), level)
    assert first_reading(stalled(33.3, 50.0), level) == 1 and first_reading(stalled(33.3), level) is None


def test_reading_the_video_means_beating_the_constant_answer_beyond_chance():
    # 54 val clips, a third of them Normal: 20 right (37.0%) is what a blind SFT once scored, by chance
    level = reading_level(100 / 3, 54)
    assert level == pytest.approx(100 * 25 / 54)
    tail = sum(math.comb(54, k) * (1 / 3) ** k * (2 / 3) ** (54 - k) for k in range(25, 55))
    tail_below = tail + math.comb(54, 24) * (1 / 3) ** 24 * (2 / 3) ** 30
    assert tail <= 0.05 < tail_below  # the least number of right answers that chance explains at 5%
    assert reading_level(100 / 3, 5) == 80.0  # 4 of 5: p = 11/243
    with pytest.raises(ConfigError, match="4 CLS clips cannot show"):
        reading_level(50.0, 4)  # even 4 of 4 right happens by chance one time in 16


def test_validation_settings_are_checked():
    assert not ValidationConfig().enabled
    ValidationConfig(eval_steps=None).validate()  # off: nothing to check
    with pytest.raises(ConfigError, match="validation.eval_steps"):
        ValidationConfig(split="val").validate()
    with pytest.raises(ConfigError, match="unknown score 'qa.acc'"):
        ValidationConfig(split="val", eval_steps=5, metric="qa.acc").validate()
    with pytest.raises(ConfigError, match="validation.patience must be at least 1"):
        ValidationConfig(split="val", eval_steps=5, patience=0).validate()
    with pytest.raises(ConfigError, match="validation.mode: 'cot' is not one of direct, think"):
        ValidationConfig(split="val", eval_steps=5, mode="cot").validate()
