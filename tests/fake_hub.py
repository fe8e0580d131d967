"""A stand-in for the Hugging Face Hub's upload API, enough for `huggingface_hub`'s own create_repo and
create_commit to run against it: repositories are created, every file is accepted as a regular
(non-LFS) upload, and commits are decoded into `server.repos[repo_id][path] = bytes`."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.cards: list[dict] = []  # README metadata sent for validation
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args) -> None:
        pass

    def _reply(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(("POST", self.path, self.headers.get("Authorization")))
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            request = json.loads(body)
            repo = (
                f"{request['organization']}/{request['name']}"
                if request.get("organization")
                else request["name"]
            )
            self.server.repos.setdefault(repo, {})
            return self._reply({"url": f"{self.server.url}/{repo}", "name": repo})
        if path == "/api/validate-yaml":  # huggingface_hub checks a README's metadata before a commit
            self.server.cards.append(json.loads(body))
            return self._reply({})
        parts = path.split("/")  # /api/models/{ns}/{name}/{preupload|commit}/{revision}
        if len(parts) < 7:
            return self._reply({"error": f"not faked: POST {self.path}"}, 404)
        repo, action = "/".join(parts[3:5]), parts[5]
        if action == "preupload":
            files = json.loads(body)["files"]
            return self._reply(
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                }
            )
        if action == "commit":
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    self.server.repos[repo][value["path"]] = base64.b64decode(value["content"])
            return self._reply({"commitUrl": f"{self.server.url}/{repo}/commit/1", "commitOid": "0" * 40})
        self._reply({"error": f"not faked: POST {self.path}"}, 404)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, self.headers.get("Authorization")))
        self._reply({"error": f"not faked: GET {self.path}"}, 404)
