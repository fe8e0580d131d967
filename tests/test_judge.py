"""The VAU-Eval judge against a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer, Reply, score_json
from vaur1.bench.tasks import Example
from vaur1.config import from_dict
from vaur1.errors import ConfigError, VaurError
from vaur1.eval.judge import (
    DIMENSIONS,
    SYSTEM_PROMPT,
    JudgeConfig,
    JudgeReplyError,
    JudgeRequest,
    JudgeResult,
    aggregate,
    judge_many,
    judge_messages,
    parse_judge_reply,
)

KEY_ENV = "VAUR1_TEST_JUDGE_KEY"
SECRET = "sk-test-9f8e7d6c5b4a-DO-NOT-LEAK"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer() as fake:
        yield fake


def make_config(server: FakeOpenAIServer, **overrides) -> JudgeConfig:
    settings = {
        "base_url": server.base_url,
        "model": "fake-judge",
        "api_key_env": KEY_ENV,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_s": 0.01,
        "max_backoff_s": 2.0,
        "concurrency": 2,
    }
    settings.update(overrides)
    return JudgeConfig(**settings)


def make_request(i: int = 0, prediction: str = "A man falls off a ladder.") -> JudgeRequest:
    return JudgeRequest(
        sample_id=f"test_msad/video_{i}.mp4/reasoning",
        reference_description=f"A worker falls from a ladder in a warehouse (clip {i}).",
        reference_reasoning="### Specific Anomaly Type: People_falling ### Conclusion: an accident.",
        predicted_description=prediction,
        predicted_analysis="The person loses balance and falls; this is a fall anomaly.",
    )


def test_prompt_reproduces_the_official_judge_prompt() -> None:
    messages = judge_messages(make_request(3))
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    prompt = messages[1]["content"]
    assert prompt.startswith(
        "Below is a ground-truth description and analysis, followed by a model-generated"
    )
    for aspect in (
        "1. Classification Correctness (10 pts)",
        "2. Key Object and Action Matching (10 pts)",
        "5. Factual Consistency (10 pts)",
    ):
        assert aspect in prompt
    assert "- Description: A worker falls from a ladder in a warehouse (clip 3)." in prompt
    assert "- Analysis: ### Specific Anomaly Type: People_falling" in prompt
    assert "Model Output:\n- Description: A man falls off a ladder." in prompt
    assert '"factual_score": int (0-10),\n    "total_score": int (0-50),' in prompt


def test_scored_reply_recomputes_total_and_keeps_judge_total(server: FakeOpenAIServer) -> None:
    server.script(Reply(content="Here is my evaluation:\n```json\n" + score_json(total=49) + "\n```"))
    (result,) = judge_many([make_request()], make_config(server))
    assert result.status == "scored"
    assert result.scores == dict(zip(DIMENSIONS, (7, 6, 9, 5, 8), strict=True))
    assert result.total == 35
    assert result.judge_total == 49
    assert result.comments["classification"] == "right class"
    assert result.http_requests == 1 and not result.from_cache
    (sent,) = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body["temperature"] == 0
    assert sent.body["model"] == "fake-judge"
    assert sent.messages == judge_messages(make_request())
    assert aggregate([result]).total_mismatches == 1


def test_transient_errors_are_retried_until_scored(server: FakeOpenAIServer) -> None:
    server.script(
        Reply(status=429, body='{"error": "rate limited"}', headers={"Retry-After": "0"}),
        Reply(status=500, body='{"error": "boom"}'),
        Reply(status=503),
        Reply(content=score_json(), delay_s=3.0),  # longer than timeout_s: the client gives up on it
        Reply(content=score_json((10, 10, 10, 10, 10))),
    )
    (result,) = judge_many([make_request()], make_config(server, timeout_s=0.5, max_retries=4))
    assert result.status == "scored"
    assert result.total == 50
    assert result.http_requests == 5
    assert len(server.requests) == 5


def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "1"}))
    start = time.monotonic()
    (result,) = judge_many([make_request()], make_config(server, backoff_s=0.0))
    assert result.status == "scored"
    assert time.monotonic() - start >= 0.9
    assert len(server.requests) == 2


def test_exhausted_retries_leave_the_sample_unscored_not_zero(server: FakeOpenAIServer) -> None:
    server.responder = lambda request: (
        Reply(status=500, body='{"error": "down"}')
        if "clip 1)" in request.prompt
        else Reply(content=score_json())
    )
    results = judge_many(
        [make_request(0), make_request(1), make_request(2)], make_config(server, max_retries=2)
    )
    assert [r.status for r in results] == ["scored", "unscored", "scored"]
    failed = results[1]
    assert failed.scores == {} and failed.total is None
    assert "HTTP 500" in failed.error and "gave up after 3 tries" in failed.error
    assert failed.http_requests == 3
    summary = aggregate(results)
    assert (summary.scored, summary.unscored) == (2, 1)
    assert summary.unscored_ids == [failed.sample_id]
    assert summary.mean_total == 35.0
    assert summary.means["fluency_score"] == 9.0


def test_client_errors_are_not_retried(server: FakeOpenAIServer) -> None:
    server.script(Reply(status=400, body='{"error": "bad model"}'))
    (result,) = judge_many([make_request()], make_config(server))
    assert result.status == "unscored"
    assert "HTTP 400" in result.error and "bad model" in result.error
    assert len(server.requests) == 1


def test_unreachable_endpoint_is_retried_then_unscored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer() as closed:
        url = closed.base_url
    config = JudgeConfig(base_url=url, api_key_env=KEY_ENV, max_retries=1, backoff_s=0.01, timeout_s=1.0)
    (result,) = judge_many([make_request()], config)
    assert result.status == "unscored"
    assert "connection failed" in result.error and result.http_requests == 2


def test_malformed_reply_gets_one_repair(server: FakeOpenAIServer) -> None:
    broken = '{"classification_score": 7, "key_matching_score": 6,'
    server.script(Reply(content=broken), Reply(content=score_json()))
    (result,) = judge_many([make_request()], make_config(server))
    assert result.status == "scored" and result.total == 35
    assert result.http_requests == 2
    repair = server.requests[1].messages
    assert repair[:2] == judge_messages(make_request())
    assert repair[2] == {"role": "assistant", "content": broken}
    assert repair[3]["role"] == "user" and "not valid JSON" in repair[3]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        "I would give it a seven.",
        score_json((7, 6, 9, 5, 11)),
        score_json((7, 6, 9, 5, -1)),
        score_json((7, 6, 9, 5, 7.5)),
        score_json((7, 6, 9, 5, "8"), total=None),
        json.dumps({"classification_score": 7, "key_matching_score": 6}),
    ],
    ids=["prose", "above-10", "negative", "float", "string", "missing-fields"],
)
def test_reply_still_invalid_after_repair_is_unscored(server: FakeOpenAIServer, reply: str) -> None:
    server.responder = lambda request: Reply(content=reply)
    (result,) = judge_many([make_request()], make_config(server))
    assert result.status == "unscored"
    assert result.error.startswith("unusable judge reply after one repair")
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("```json\n[1, 2]\n```", "expected an object"),
        (score_json(fluency_score=True), "fluency_score is True"),
        ("```json\n{}\n```\n```json\n{}\n```", "2 fenced blocks"),
        (score_json() + " Hope this helps!", "not valid JSON"),
        ('{"classification_score": 7}', "lacks key_matching_score"),
    ],
)
def test_parser_rejects_with_a_reason(reply: str, reason: str) -> None:
    with pytest.raises(JudgeReplyError, match=reason):
        parse_judge_reply(reply)


def test_parser_reads_json_around_prose_and_ignores_a_bad_total() -> None:
    parsed = parse_judge_reply("Scores follow.\n" + score_json((0, 10, 0, 10, 0), total="lots") + "\nDone.")
    assert parsed.total == 20 and parsed.judge_total is None
    assert parse_judge_reply(score_json(total=None)).judge_total is None


def test_cache_makes_a_rerun_free(server: FakeOpenAIServer, tmp_path: Path) -> None:
    config = make_config(server, cache_path=str(tmp_path / "judge" / "cache.jsonl"))
    items = [make_request(i) for i in range(4)]
    first = judge_many(items, config)
    assert len(server.requests) == 4 and not any(r.from_cache for r in first)
    assert len((tmp_path / "judge" / "cache.jsonl").read_text().splitlines()) == 4

    server.reset()
    second = judge_many(items, config)
    assert server.requests == []
    assert all(r.from_cache and r.http_requests == 0 for r in second)
    assert [(r.sample_id, r.scores, r.total, r.comments) for r in second] == [
        (r.sample_id, r.scores, r.total, r.comments) for r in first
    ]

    changed = [*items[:3], make_request(3, prediction="Nothing unusual happens.")]
    judge_many(changed, config)
    assert len(server.requests) == 1 and "Nothing unusual happens." in server.requests[0].prompt

    server.reset()
    judge_many(items[:1], make_config(server, cache_path=config.cache_path, model="another-judge"))
    assert len(server.requests) == 1


def test_unscored_samples_are_not_cached(server: FakeOpenAIServer, tmp_path: Path) -> None:
    config = make_config(server, cache_path=str(tmp_path / "cache.jsonl"), max_retries=0)
    server.script(Reply(status=503))
    (first,) = judge_many([make_request()], config)
    assert first.status == "unscored"
    (second,) = judge_many([make_request()], config)
    assert second.status == "scored" and not second.from_cache
    assert len(server.requests) == 2


def test_cache_survives_a_crash_mid_write(
    server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache.jsonl"
    config = make_config(server, cache_path=str(cache), concurrency=1)  # lines in request order
    judge_many([make_request(0), make_request(1)], config)
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # the second write was cut short

    server.reset()
    with caplog.at_level(logging.WARNING, logger="vaur1.eval.judge"):
        results = judge_many([make_request(0), make_request(1)], config)
    assert [r.from_cache for r in results] == [True, False]
    assert len(server.requests) == 1
    assert "cache.jsonl:2: judge cache line skipped" in caplog.text

    server.reset()
    assert all(r.from_cache for r in judge_many([make_request(0), make_request(1)], config))
    assert server.requests == []


def test_concurrency_limit_is_respected(server: FakeOpenAIServer) -> None:
    server.responder = lambda request: Reply(content=score_json(), delay_s=0.3)
    seen: list[JudgeResult] = []
    results = judge_many([make_request(i) for i in range(8)], make_config(server, concurrency=3), seen.append)
    assert all(r.status == "scored" for r in results)
    assert [r.sample_id for r in results] == [make_request(i).sample_id for i in range(8)]
    assert sorted(r.sample_id for r in seen) == sorted(r.sample_id for r in results)
    assert server.max_active == 3


def test_api_key_goes_only_into_the_authorization_header(
    server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    server.responder = lambda request: (
        Reply(status=401, body=json.dumps({"error": f"invalid key {request.headers.get('Authorization')}"}))
        if "clip 2)" in request.prompt
        else Reply(content=score_json())
    )
    server.script(Reply(status=429), Reply(content="not json"))
    cache = tmp_path / "cache.jsonl"
    config = make_config(server, cache_path=str(cache), concurrency=1)
    with caplog.at_level(logging.DEBUG):
        results = judge_many([make_request(i) for i in range(3)], config)
        summary = aggregate(results)

    assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert all(r.headers["User-Agent"].startswith("OpenAI/Python") for r in server.requests)  # the SDK's
    assert all(SECRET not in r.raw for r in server.requests)
    assert results[2].status == "unscored" and "HTTP 401" in results[2].error and "***" in results[2].error
    assert 'HTTP 429: {"error": {"message": "fake error 429"}}; try 2 of 4' in caplog.text
    for text in (
        caplog.text,
        json.dumps([r.to_dict() for r in results]),
        repr(results),
        json.dumps(summary.to_dict()),
        cache.read_text(),
        repr(config),
        *capsys.readouterr(),
    ):
        assert SECRET not in text


def test_missing_key_is_a_clear_error_unless_everything_is_cached(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(server, cache_path=str(tmp_path / "cache.jsonl"))
    judge_many([make_request()], config)
    monkeypatch.delenv(KEY_ENV)
    assert judge_many([make_request()], config)[0].from_cache
    with pytest.raises(VaurError, match=f"export {KEY_ENV}="):
        judge_many([make_request(1)], config)
    assert len(server.requests) == 1

    (keyless,) = judge_many([make_request(1)], make_config(server, api_key_env=""))
    assert keyless.status == "scored"
    assert "Authorization" not in server.requests[-1].headers


def test_missing_reference_is_unscored_without_a_request(server: FakeOpenAIServer) -> None:
    example = Example(task="reasoning", id="v.mp4", split="val", description="A car crashes.", reasoning=None)
    request = JudgeRequest.from_example(example, description="A crash.", analysis="Cars collide.")
    assert request.sample_id == "val/v.mp4/reasoning"
    (result,) = judge_many([request], make_config(server))
    assert result.status == "unscored" and "no reference reasoning" in result.error
    assert server.requests == []


def test_empty_prediction_is_judged(server: FakeOpenAIServer) -> None:
    server.script(Reply(content=score_json((0, 0, 0, 0, 0))))
    (result,) = judge_many([make_request(prediction="")], make_config(server))
    assert result.status == "scored" and result.total == 0


def test_aggregate_of_nothing_scored() -> None:
    summary = aggregate([JudgeResult("a", "unscored", error="x")], judge="j")
    assert summary.scored == 0 and summary.means == {} and summary.mean_total is None
    assert summary.unscored_ids == ["a"]


def test_config_from_yaml_data_is_validated() -> None:
    config = from_dict(
        JudgeConfig, {"base_url": "http://localhost:8000/v1", "model": "qwen", "concurrency": 8}
    )
    assert config.concurrency == 8 and config.name == "qwen (vau-eval-1)"
    with pytest.raises(ConfigError, match="concurrency"):
        from_dict(JudgeConfig, {"concurrency": 0})
    with pytest.raises(ConfigError, match="prompt_version"):
        from_dict(JudgeConfig, {"prompt_version": "v9"})
    with pytest.raises(ConfigError, match="base_url"):
        from_dict(JudgeConfig, {"base_url": "localhost:8000"})


def test_a_redirect_to_another_origin_never_receives_the_key(server: FakeOpenAIServer) -> None:
    with FakeOpenAIServer() as elsewhere:
        server.script(Reply(status=302, headers={"Location": elsewhere.base_url + "/chat/completions"}))
        (result,) = judge_many([make_request()], make_config(server))
        assert elsewhere.requests == []  # nothing reached the other origin, with or without the key
    assert result.status != "scored" and result.http_requests == 1
    assert "redirected (302)" in result.error and "refused" in result.error and SECRET not in result.error


def test_a_server_that_drips_its_reply_cannot_hold_a_run_past_the_deadline(server: FakeOpenAIServer) -> None:
    server.script(Reply(content=score_json(), drip_s=0.05), Reply(content=score_json()))
    started = time.monotonic()
    (result,) = judge_many([make_request()], make_config(server, timeout_s=1.0, max_retries=1))
    assert result.status == "scored" and result.http_requests == 2  # the dripping try was abandoned
    assert time.monotonic() - started < 10  # the drip alone would take ~15 s
