"""A fake OpenAI-compatible chat server on loopback, for testing the judge's HTTP behaviour.

    with FakeOpenAIServer() as server:
        server.script(Reply(status=429, headers={"Retry-After": "0"}), Reply(content=valid_reply()))
        judge_many(requests, JudgeConfig(base_url=server.base_url, ...))
        server.requests  # every request as received, headers included

Replies come from the script in arrival order; once it is used up, `responder(request)` answers.
The server answers at most `max_requests` requests (then HTTP 400, which the judge does not
retry), so a runaway client loop ends. Slow replies wait on an event that `stop()` sets.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCORE_KEYS = (
    "classification_score",
    "key_matching_score",
    "fluency_score",
    "informativeness_score",
    "factual_score",
)


def score_json(scores: tuple[int, ...] = (7, 6, 9, 5, 8), total: Any = "sum", **extra: Any) -> str:
    """A judge reply body as the official prompt asks for it; `total="sum"` adds the right total."""
    data: dict[str, Any] = dict(zip(SCORE_KEYS, scores, strict=True))
    if total == "sum":
        data["total_score"] = sum(scores)
    elif total is not None:
        data["total_score"] = total
    data["comments"] = {"classification": "right class", "factual": "consistent"}
    data.update(extra)
    return json.dumps(data)


@dataclass
class Reply:
    """One scripted answer. `content` is the assistant text; `body` replaces the whole HTTP body."""

    status: int = 200
    content: str | None = None
    body: str | None = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    drip_s: float = 0.0  # send the body one byte at a time, this long apart


@dataclass
class RecordedRequest:
    path: str
    headers: Mapping[str, str]  # the HTTPMessage: names match case-insensitively, as HTTP says
    raw: str
    body: dict[str, Any] | None

    @property
    def messages(self) -> list[dict[str, str]]:
        return (self.body or {}).get("messages", [])

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in self.messages if m.get("role") == "user"), "")


def _default_responder(_request: RecordedRequest) -> Reply:
    return Reply(content=score_json())


class FakeOpenAIServer:
    def __init__(
        self,
        responder: Callable[[RecordedRequest], Reply] = _default_responder,
        max_requests: int = 100,
    ) -> None:
        self.responder = responder
        self.max_requests = max_requests
        self.requests: list[RecordedRequest] = []
        self.active = 0
        self.max_active = 0
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.max_active = 0

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > self.max_requests:
                return Reply(status=400, body='{"error": "fake server request limit reached"}')
            if self._script:
                return self._script.popleft()
        return self.responder(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with server._lock:
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                self._counted = True
                try:
                    self._answer()
                finally:
                    self._done()

            def _done(self) -> None:
                # Before the reply is sent: a client that got its reply may already send the next.
                if self._counted:
                    self._counted = False
                    with server._lock:
                        server.active -= 1

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8")
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
                request = RecordedRequest(self.path, self.headers, raw, body)
                if self.path != "/v1/chat/completions":
                    reply = Reply(status=404, body='{"error": "not found"}')
                else:
                    reply = server._next_reply(request)
                if reply.delay_s and server._stopping.wait(reply.delay_s):
                    return
                payload = reply.body
                if payload is None and reply.status != 200:
                    payload = json.dumps({"error": {"message": f"fake error {reply.status}"}})
                if payload is None:
                    payload = json.dumps(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "model": (body or {}).get("model", ""),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": reply.content},
                                    "finish_reason": "stop",
                                }
                            ],
                        }
                    )
                data = payload.encode("utf-8")
                self._done()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if reply.drip_s:
                        for byte in data:
                            if server._stopping.wait(reply.drip_s):
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as a timeout test intends

        return Handler
