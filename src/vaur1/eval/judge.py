"""VAU-Eval: an LLM judge of free-text anomaly reasoning over any OpenAI-compatible endpoint.

The judge reads the ground-truth description and reasoning next to the model's description and
analysis and gives five integer scores from 0 to 10, as in the VAU-R1 paper:

    classification_score   classification correctness          (CLS)
    key_matching_score     key object and action matching      (KM)
    fluency_score          fluency and coherence               (FLU)
    informativeness_score  informativeness and domain awareness (INF)
    factual_score          factual consistency                 (FAC)

    results = judge_many(requests, JudgeConfig(base_url="https://api.deepseek.com/v1"))
    summary = aggregate(results)

What differs from the official script, on purpose: temperature 0; the total is recomputed as
the sum of the five scores (the judge's own `total_score` is kept as `judge_total`); a reply that
is not strict JSON with five integer scores in 0..10 gets one repair request and otherwise leaves
the sample *unscored*, which is reported and never counted as 0; 429, 408, 5xx, timeouts and
dropped connections are retried with exponential backoff, honouring `Retry-After`
(`vaur1.eval.judge_client`, on the `openai` SDK).

Scored results are cached in an append-only JSONL file keyed by the judge model, the prompt
version, the sample and the texts, so a rerun only asks about what changed or was unscored.
The API key is read from the environment variable named by `api_key_env` when a request is
about to be sent; it goes into the `Authorization` header and nowhere else.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vaur1.errors import ConfigError, VaurError
from vaur1.eval.judge_client import ChatClient, JudgeCallFailed
from vaur1.vocab import REASONING

if TYPE_CHECKING:
    from vaur1.bench.tasks import Example

logger = logging.getLogger(__name__)

DIMENSIONS: tuple[str, ...] = (
    "classification_score",
    "key_matching_score",
    "fluency_score",
    "informativeness_score",
    "factual_score",
)
DIMENSION_LABELS: dict[str, str] = {
    "classification_score": "CLS",
    "key_matching_score": "KM",
    "fluency_score": "FLU",
    "informativeness_score": "INF",
    "factual_score": "FAC",
}
COMMENT_KEYS: tuple[str, ...] = ("classification", "key_matching", "fluency", "informativeness", "factual")
MAX_SCORE = 10

SYSTEM_PROMPT = "You are an expert evaluator for video anomaly detection outputs."

# The official VAU-R1 judge prompt (evaluate_reasoning_deepseek.py), word for word; only the
# indentation that the script's f-string carried on every line is removed.
_VAU_EVAL_1 = """\
Below is a ground-truth description and analysis, followed by a model-generated description and \
analysis. Please evaluate the model's outputs from the following aspects:

1. Classification Correctness (10 pts)
2. Key Object and Action Matching (10 pts)
3. Fluency and Coherence (10 pts)
4. Informativeness and Domain Awareness (10 pts)
5. Factual Consistency (10 pts)

---
Ground Truth:
- Description: {reference_description}
- Analysis: {reference_reasoning}

Model Output:
- Description: {predicted_description}
- Analysis: {predicted_analysis}

Please return a JSON object strictly formatted as:

{{
    "classification_score": int (0-10),
    "key_matching_score": int (0-10),
    "fluency_score": int (0-10),
    "informativeness_score": int (0-10),
    "factual_score": int (0-10),
    "total_score": int (0-50),
    "comments": {{
        "classification": "...",
        "key_matching": "...",
        "fluency": "...",
        "informativeness": "...",
        "factual": "..."
    }}
}}
"""

PROMPTS: dict[str, str] = {"vau-eval-1": _VAU_EVAL_1}
PROMPT_VERSION = "vau-eval-1"

REPAIR_PROMPT = (
    "Your previous reply could not be read: {reason}. Reply again with only the JSON object in the "
    "format requested above: the five scores as integers from 0 to 10, total_score and comments. "
    "Write nothing before or after the JSON."
)


@dataclass
class JudgeConfig:
    """Where the judge lives and how hard to try. Defaults reproduce the paper's judge (DeepSeek-V3)."""

    base_url: str = "https://api.deepseek.com/v1"  # requests go to {base_url}/chat/completions
    model: str = "deepseek-chat"  # the judge model's name at the endpoint
    api_key_env: str = "DEEPSEEK_API_KEY"  # the NAME of the variable holding the key; "" sends none
    timeout_s: float = 120.0  # per socket operation (connect, each read)
    max_retries: int = 5  # extra tries per request after the first
    backoff_s: float = 2.0  # first wait; doubles on every retry
    max_backoff_s: float = 60.0  # cap on any wait, Retry-After included
    concurrency: int = 4  # requests in flight at once
    max_tokens: int = 1024  # the judge's reply at most
    cache_path: str | None = None  # JSONL; None disables the cache
    prompt_version: str = PROMPT_VERSION  # the judge prompt (vau-eval-1: the official one, word for word)

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"judge.base_url: expected an http(s) URL, got {self.base_url!r}")
        if not self.model:
            raise ConfigError("judge.model: must name the judge model")
        if self.prompt_version not in PROMPTS:
            known = ", ".join(sorted(PROMPTS))
            raise ConfigError(f"judge.prompt_version: unknown {self.prompt_version!r} (known: {known})")
        if self.concurrency < 1:
            raise ConfigError(f"judge.concurrency: must be at least 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"judge.max_retries: must be 0 or more, got {self.max_retries}")
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError(
                "judge.timeout_s must be positive; judge.backoff_s and max_backoff_s not negative"
            )
        if self.max_tokens < 1:
            raise ConfigError(f"judge.max_tokens: must be at least 1, got {self.max_tokens}")

    @property
    def name(self) -> str:
        """How results of this judge are labelled in reports."""
        return f"{self.model} ({self.prompt_version})"


@dataclass(frozen=True)
class JudgeRequest:
    """One sample to judge: the reference texts and the model's texts."""

    sample_id: str
    reference_description: str
    reference_reasoning: str
    predicted_description: str
    predicted_analysis: str

    @classmethod
    def from_example(cls, example: Example, description: str, analysis: str) -> JudgeRequest:
        """A request for a reasoning-task example; missing references become "" (left unscored)."""
        return cls(
            sample_id=example.key,
            reference_description=example.description or "",
            reference_reasoning=example.reasoning or "",
            predicted_description=description,
            predicted_analysis=analysis,
        )

    def cache_key(self, model: str, prompt_version: str) -> str:
        fields = [
            model,
            prompt_version,
            self.sample_id,
            self.reference_description,
            self.reference_reasoning,
            self.predicted_description,
            self.predicted_analysis,
        ]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JudgeResult:
    """The judge's verdict on one sample. Unscored samples carry the reason and no scores."""

    sample_id: str
    status: Literal["scored", "unscored"]
    scores: dict[str, int] = field(default_factory=dict)  # DIMENSIONS -> 0..10
    total: int | None = None  # the sum of the five scores
    judge_total: int | None = None  # the judge's own total_score, when it gave an integer one
    comments: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    from_cache: bool = False
    http_requests: int = 0  # what this result cost in this run, repair and retries included
    judge: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JudgeSummary:
    """Means over scored samples only; unscored samples are counted and listed, never averaged in."""

    judge: str
    scored: int
    unscored: int
    means: dict[str, float]  # DIMENSIONS -> mean; empty when nothing was scored
    mean_total: float | None
    unscored_ids: list[str]
    total_mismatches: int  # scored samples whose judge_total differs from the recomputed sum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- prompt and reply


def judge_messages(request: JudgeRequest, prompt_version: str = PROMPT_VERSION) -> list[dict[str, str]]:
    """The chat messages sent to the judge for one sample."""
    if prompt_version not in PROMPTS:
        raise ConfigError(f"unknown judge prompt version {prompt_version!r} (known: {', '.join(PROMPTS)})")
    prompt = PROMPTS[prompt_version].format(
        reference_description=request.reference_description,
        reference_reasoning=request.reference_reasoning,
        predicted_description=request.predicted_description,
        predicted_analysis=request.predicted_analysis,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


class JudgeReplyError(ValueError):
    """The judge's reply is not strict JSON with the five integer scores; the message says why."""


@dataclass(frozen=True)
class ParsedReply:
    scores: dict[str, int]
    judge_total: int | None
    comments: dict[str, str]

    @property
    def total(self) -> int:
        return sum(self.scores.values())


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n\s*```", re.DOTALL | re.IGNORECASE)


def _json_text(reply: str) -> str:
    """The JSON part of a reply: all of it, one fenced block, or the span from the first { to the last }."""
    text = reply.strip()
    if text.startswith("{"):
        return text
    fenced = _FENCE.findall(text)
    if len(fenced) == 1:
        return fenced[0].strip()
    if len(fenced) > 1:
        raise JudgeReplyError(f"reply holds {len(fenced)} fenced blocks, expected one JSON object")
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise JudgeReplyError("reply holds no JSON object")
    return text[start : end + 1]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_judge_reply(reply: str) -> ParsedReply:
    """Read the five scores (and the judge's total and comments) from a reply, strictly."""
    try:
        data = json.loads(_json_text(reply))
    except json.JSONDecodeError as err:
        raise JudgeReplyError(
            f"reply is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    except RecursionError:
        raise JudgeReplyError("reply is JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise JudgeReplyError(f"reply JSON is a {type(data).__name__}, expected an object")
    missing = [key for key in DIMENSIONS if key not in data]
    if missing:
        raise JudgeReplyError(f"reply JSON lacks {', '.join(missing)}")
    scores = {}
    for key in DIMENSIONS:
        value = data[key]
        if not _is_int(value) or not 0 <= value <= MAX_SCORE:
            raise JudgeReplyError(f"{key} is {value!r}, expected an integer from 0 to {MAX_SCORE}")
        scores[key] = value
    judge_total = data.get("total_score")
    comments = data.get("comments")
    if not isinstance(comments, dict):
        comments = {}
    return ParsedReply(
        scores=scores,
        judge_total=judge_total if _is_int(judge_total) else None,
        comments={str(k): v for k, v in comments.items() if isinstance(v, str)},
    )


# ----------------------------------------------------------------------------- cache


class JudgeCache:
    """Scored verdicts in an append-only JSONL file, one complete line per verdict.

    A crash can leave at most a partial last line; it is skipped with a warning on the next load,
    and the next append starts on a fresh line. Only scored verdicts are stored, so unscored
    samples are asked again on a rerun.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, ParsedReply] = {}
        self._needs_newline = False
        if self.path.exists():
            self._load()
        # fail before the first paid judge call, not after it, when the verdicts cannot be kept
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab"):
                pass
        except OSError as err:
            raise VaurError(f"{self.path}: cannot write the judge cache: {err.strerror}") from None

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            raise VaurError(f"{self.path}: cannot read the judge cache: {err.strerror}") from None
        self._needs_newline = bool(raw) and not raw.endswith(b"\n")
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._entries[entry["key"]] = _reply_from_entry(entry)
            except (ValueError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as err:
                logger.warning(
                    "%s:%d: judge cache line skipped, that sample will be judged again (%s)",
                    self.path,
                    number,
                    err,
                )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> ParsedReply | None:
        return self._entries.get(key)

    def put(self, key: str, request: JudgeRequest, config: JudgeConfig, parsed: ParsedReply) -> None:
        entry = {
            "key": key,
            "judge_model": config.model,
            "prompt_version": config.prompt_version,
            "sample_id": request.sample_id,
            "scores": parsed.scores,
            "judge_total": parsed.judge_total,
            "comments": parsed.comments,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    if self._needs_newline:
                        out.write("\n")
                        self._needs_newline = False
                    out.write(line)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as err:
                raise VaurError(f"{self.path}: cannot write the judge cache: {err.strerror}") from None
            self._entries[key] = parsed


def _reply_from_entry(entry: dict[str, Any]) -> ParsedReply:
    """A cached verdict, checked as strictly as a fresh reply."""
    scores = entry["scores"]
    if set(scores) != set(DIMENSIONS) or not all(_is_int(v) and 0 <= v <= MAX_SCORE for v in scores.values()):
        raise ValueError(f"scores {scores!r} are not five integers from 0 to {MAX_SCORE}")
    judge_total = entry.get("judge_total")
    comments = entry.get("comments") or {}
    return ParsedReply(
        scores={d: scores[d] for d in DIMENSIONS},
        judge_total=judge_total if _is_int(judge_total) else None,
        comments={str(k): str(v) for k, v in comments.items()},
    )


# ----------------------------------------------------------------------------- judging


def _read_api_key(config: JudgeConfig) -> str:
    if not config.api_key_env:
        return ""
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise VaurError(
            f"the judge's API key is not set: export {config.api_key_env}=... "
            "(judge.api_key_env names the variable; set it to '' for an endpoint without a key)"
        )
    return key


def _judge_one(
    client: ChatClient, request: JudgeRequest, cache: JudgeCache | None, cache_key: str
) -> JudgeResult:
    config = client.config
    messages = judge_messages(request, config.prompt_version)
    spent = 0
    try:
        reply, used = client.complete(messages, request.sample_id)
        spent += used
        try:
            parsed = parse_judge_reply(reply)
        except JudgeReplyError as first:
            logger.info("judge %s: %s; asking once for a repaired reply", request.sample_id, first)
            repair = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": REPAIR_PROMPT.format(reason=first)},
            ]
            reply, used = client.complete(repair, request.sample_id)
            spent += used
            try:
                parsed = parse_judge_reply(reply)
            except JudgeReplyError as second:
                raise JudgeCallFailed(f"unusable judge reply after one repair: {second}") from None
    except JudgeCallFailed as err:
        spent += err.http_requests
        logger.warning("judge %s: unscored: %s", request.sample_id, err.reason)
        return JudgeResult(
            request.sample_id, "unscored", error=err.reason, http_requests=spent, judge=config.name
        )
    if cache is not None:
        cache.put(cache_key, request, config, parsed)
    return _scored(request.sample_id, parsed, config, from_cache=False, http_requests=spent)


def _scored(
    sample_id: str, parsed: ParsedReply, config: JudgeConfig, from_cache: bool, http_requests: int
) -> JudgeResult:
    return JudgeResult(
        sample_id=sample_id,
        status="scored",
        scores=dict(parsed.scores),
        total=parsed.total,
        judge_total=parsed.judge_total,
        comments=dict(parsed.comments),
        from_cache=from_cache,
        http_requests=http_requests,
        judge=config.name,
    )


def _missing_reference(request: JudgeRequest) -> str | None:
    missing = [
        name
        for name, text in (
            ("description", request.reference_description),
            (REASONING, request.reference_reasoning),
        )
        if not text.strip()
    ]
    return f"no reference {' or '.join(missing)} to judge against" if missing else None


def judge_many(
    items: Sequence[JudgeRequest],
    config: JudgeConfig,
    progress: Callable[[JudgeResult], None] | None = None,
) -> list[JudgeResult]:
    """Judge every request, at most `config.concurrency` at a time; results come back in input order.

    Cached verdicts cost no request. A sample without both reference texts, or one the judge could
    not score after retries and one repair, comes back `unscored` with the reason. An empty
    prediction is judged as it is. `progress` is called once per result, in completion order.
    """
    config.validate()
    results: list[JudgeResult | None] = [None] * len(items)
    cache = JudgeCache(config.cache_path) if config.cache_path else None
    pending: list[tuple[int, str]] = []

    def finish(index: int, result: JudgeResult) -> None:
        results[index] = result
        if progress is not None:
            progress(result)

    for index, request in enumerate(items):
        missing = _missing_reference(request)
        key = request.cache_key(config.model, config.prompt_version)
        cached = cache.get(key) if cache is not None else None
        if missing is not None:
            finish(index, JudgeResult(request.sample_id, "unscored", error=missing, judge=config.name))
        elif cached is not None:
            finish(index, _scored(request.sample_id, cached, config, from_cache=True, http_requests=0))
        else:
            pending.append((index, key))

    if pending:
        client = ChatClient(config, _read_api_key(config))
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.concurrency, thread_name_prefix="judge"
        )
        try:
            futures = {pool.submit(_judge_one, client, items[i], cache, key): i for i, key in pending}
            for future in concurrent.futures.as_completed(futures):
                finish(futures[future], future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]


def aggregate(results: Sequence[JudgeResult], judge: str = "") -> JudgeSummary:
    """Per-dimension means and the mean total over scored results; unscored ones are only counted."""
    scored = [r for r in results if r.status == "scored"]
    unscored = [r.sample_id for r in results if r.status != "scored"]
    means = {d: sum(r.scores[d] for r in scored) / len(scored) for d in DIMENSIONS} if scored else {}
    mean_total = sum(r.total or 0 for r in scored) / len(scored) if scored else None
    mismatches = sum(1 for r in scored if r.judge_total is not None and r.judge_total != r.total)
    name = judge or next((r.judge for r in results if r.judge), "")
    return JudgeSummary(
        judge=name,
        scored=len(scored),
        unscored=len(unscored),
        means=means,
        mean_total=mean_total,
        unscored_ids=unscored,
        total_mismatches=mismatches,
    )
