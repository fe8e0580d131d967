"""The judge's HTTP side: chat completions from an OpenAI-compatible endpoint, retried with backoff.

    client = ChatClient(config, api_key)
    reply, requests = client.complete(messages, sample_id)   # raises JudgeCallFailed

429, 408, 5xx, timeouts, dropped connections and replies that are not a chat completion are retried
with exponential backoff (honouring `Retry-After`) up to `config.max_retries` times; any other
HTTP error fails at once. The API key goes into the `Authorization` header only, and is redacted
from every error message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaur1.eval.judge import JudgeConfig

logger = logging.getLogger(__name__)

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
    """POSTs chat completions, retrying what is worth retrying. Holds the key only in memory."""

    def __init__(self, config: JudgeConfig, api_key: str) -> None:
        self.config = config
        self._api_key = api_key
        self.url = config.base_url.rstrip("/") + "/chat/completions"

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
        payload = {
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST"
        )
        deadline = time.monotonic() + self.config.timeout_s
        try:
            with _OPENER.open(request, timeout=self.config.timeout_s) as response:
                body = _read_until(response, deadline)
        except urllib.error.HTTPError as err:
            reason = _redact(f"HTTP {err.code}{_error_detail(err)}", self._api_key)
            if err.code in _RETRY_STATUSES or err.code >= 500:
                raise _Transient(reason, _retry_after_s(err.headers.get("Retry-After"))) from None
            raise JudgeCallFailed(reason) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise _Transient(_redact(_describe(err), self._api_key)) from None
        return self._content(body)

    def _content(self, body: bytes) -> str:
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            snippet = _redact(body[:120].decode("utf-8", "replace"), self._api_key)
            raise _Transient(f"response is not a chat completion: {snippet!r}") from None
        if not isinstance(content, str):
            raise _Transient("response message has no text content")
        return content


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would resend the request, Authorization header included, to
    whatever origin the server names. A chat-completions endpoint has no reason to redirect."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        raise JudgeCallFailed(
            f"the judge endpoint redirected ({code}) to {newurl.split('?')[0]}: refused, the API key is "
            "sent to the configured base_url only; set judge.base_url to the final address"
        )


_OPENER = urllib.request.build_opener(_NoRedirect())


def _read_until(response: http.client.HTTPResponse, deadline: float) -> bytes:
    """The whole body, unless the server takes past `deadline` to send it: the socket timeout alone
    restarts with every byte, so a server that drips one byte at a time could hold a run forever."""
    chunks = []
    while chunk := response.read1(65536):
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise _Transient("the reply took longer than judge.timeout_s to arrive")
    return b"".join(chunks)


def _error_detail(err: urllib.error.HTTPError) -> str:
    try:
        body = err.read(300).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        return ""
    return f": {body}" if body else ""


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError) or "timed out" in str(err):
        return "request timed out"
    if isinstance(err, urllib.error.URLError):
        return f"connection failed: {err.reason}"
    return f"connection failed: {type(err).__name__}: {err}"
