"""The judge's HTTP side: chat completions through the `openai` SDK, retried with vaur1's backoff.

    client = ChatClient(config, api_key)
    reply, requests = client.complete(messages, sample_id)   # raises JudgeCallFailed

The SDK does the request, its typed errors and the reply's parsing; the retry policy stays here
because the judge's config owns it (`max_retries`, `backoff_s`, `max_backoff_s`) and every try is
counted per sample. 429, 408, 5xx, timeouts, dropped connections and replies that are not a chat
completion are retried with exponential backoff (honouring `Retry-After`); any other HTTP error fails
at once. The API key goes into the `Authorization` header only, and is redacted from every error.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

import httpx2
import openai

logger = logging.getLogger(__name__)


class EndpointSettings(Protocol):
    """Where the client sends requests and how hard it tries (`vaur1.eval.judge.JudgeConfig` is one)."""

    base_url: str
    model: str
    timeout_s: float
    max_retries: int
    backoff_s: float
    max_backoff_s: float
    max_tokens: int


# Statuses worth another try (with any 5xx): the server is overloaded, timed out or failed, not the request.
_RETRY_STATUSES = frozenset({408, 429})


class _Transient(Exception):
    """A failure worth another try."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class JudgeCallFailed(Exception):
    """No usable reply for a sample: its verdict stays unscored. `http_requests` counts the tries spent."""

    def __init__(self, reason: str, http_requests: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_requests = http_requests


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(when.tzinfo or UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


class ChatClient:
    """Chat completions with vaur1's retries. Holds the key only in memory (and in the SDK client)."""

    def __init__(self, config: EndpointSettings, api_key: str) -> None:
        self.config = config
        self._api_key = api_key
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._http = httpx2.Client(
            transport=_DeadlineTransport(config.timeout_s),
            timeout=config.timeout_s,
            # httpx would resend the request, Authorization header included, to whatever origin a
            # redirect names; a chat-completions endpoint has no reason to redirect.
            follow_redirects=False,
        )
        self._sdk = openai.OpenAI(
            api_key=api_key or "no-key",  # the SDK insists on one; _no_key_headers drops it again
            base_url=config.base_url,
            organization=None,
            project=None,
            timeout=config.timeout_s,
            max_retries=0,
            http_client=self._http,
        )
        # An endpoint without a key gets no Authorization header at all.
        self._no_key_headers = {} if api_key else {"Authorization": openai.omit}

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.config.model!r})"

    def complete(self, messages: list[dict[str, str]], sample_id: str) -> tuple[str, int]:
        """The assistant's reply text and the number of HTTP requests it took. Raises `JudgeCallFailed`."""
        attempts = self.config.max_retries + 1
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._post(messages), attempt
            except JudgeCallFailed as err:
                raise JudgeCallFailed(err.reason, attempt) from None
            except _Transient as err:
                if attempt == attempts:
                    raise JudgeCallFailed(f"{err.reason} (gave up after {attempts} tries)", attempt) from None
                wait = self.config.backoff_s * 2 ** (attempt - 1)
                if err.retry_after is not None:
                    wait = err.retry_after
                wait = min(wait, self.config.max_backoff_s)
                logger.warning(
                    "judge %s: %s; try %d of %d in %.1f s", sample_id, err.reason, attempt + 1, attempts, wait
                )
                time.sleep(wait)

    def _post(self, messages: list[dict[str, str]]) -> str:
        try:
            completion = self._sdk.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0,
                max_tokens=self.config.max_tokens,
                extra_headers=self._no_key_headers,
            )
        except openai.APIStatusError as err:
            status = err.status_code
            if 300 <= status < 400:
                where = err.response.headers.get("Location", "?").split("?")[0]
                raise JudgeCallFailed(
                    f"the judge endpoint redirected ({status}) to {where}: refused, the API key is sent "
                    "to the configured base_url only; set judge.base_url to the final address"
                ) from None
            reason = _redact(f"HTTP {status}{_error_detail(err.response)}", self._api_key)
            if status in _RETRY_STATUSES or status >= 500:
                raise _Transient(reason, _retry_after_s(err.response.headers.get("Retry-After"))) from None
            raise JudgeCallFailed(reason) from None
        except openai.APITimeoutError:
            raise _Transient("request timed out") from None
        except openai.APIConnectionError as err:
            cause = err.__cause__ or err
            if isinstance(cause, _DeadlinePassed):
                raise _Transient(str(cause)) from None
            raise _Transient(
                _redact(f"connection failed: {type(cause).__name__}: {cause}", self._api_key)
            ) from None
        except openai.APIResponseValidationError as err:
            raise _Transient(self._not_a_completion(err.response)) from None
        return self._content(completion)

    def _content(self, completion: object) -> str:
        try:
            content = completion.choices[0].message.content  # type: ignore[attr-defined]
        except (AttributeError, IndexError, TypeError):
            raise _Transient(f"response is not a chat completion: {self._snippet(completion)!r}") from None
        if not isinstance(content, str):
            raise _Transient("response message has no text content")
        return content

    def _not_a_completion(self, response: httpx2.Response) -> str:
        return f"response is not a chat completion: {self._snippet(response.text)!r}"

    def _snippet(self, body: object) -> str:
        return _redact(str(body)[:120], self._api_key)


def _error_detail(response: httpx2.Response) -> str:
    try:
        body = response.text[:300].strip()
    except (httpx2.HTTPError, UnicodeDecodeError):
        return ""
    return f": {body}" if body else ""


class _DeadlinePassed(httpx2.ReadTimeout):
    """The whole reply took longer than the judge's timeout (a read timeout restarts with every byte)."""


class _DeadlineTransport(httpx2.HTTPTransport):
    """Ends a reply that takes past `timeout_s` in all to arrive: the socket timeout alone restarts with
    every byte, so a server that drips one byte at a time could hold a run forever."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = time.monotonic() + self.timeout_s
        response = super().handle_request(request)
        response.stream = _DeadlineStream(response.stream, deadline, request)  # type: ignore[arg-type]
        return response


class _DeadlineStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, deadline: float, request: httpx2.Request) -> None:
        self.inner = inner
        self.deadline = deadline
        self.request = request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if time.monotonic() > self.deadline:
                raise _DeadlinePassed(
                    "the reply took longer than judge.timeout_s to arrive", request=self.request
                )
            yield chunk

    def close(self) -> None:
        self.inner.close()
