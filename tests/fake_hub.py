"""A stand-in for the Hugging Face Hub, enough for `huggingface_hub`'s own functions to run against it.

Uploads (create_repo, create_commit): repositories are created, every file is accepted as a regular
(non-LFS) upload, and commits are decoded into `server.repos[repo_id][path] = bytes`.
Downloads (repo_info, list_repo_tree, hf_hub_download, snapshot_download) of datasets: the files of
`server.datasets[repo_id] = {path: bytes}`, at one fixed revision."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class FakeHub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.cards: list[dict] = []  # README metadata sent for validation
        self.datasets: dict[str, dict[str, bytes]] = {}  # what downloads are served
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

    def do_HEAD(self) -> None:
        self._file(body=False)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, self.headers.get("Authorization")))
        path = unquote(self.path.split("?")[0])
        parts = path.split("/")
        if path.startswith("/api/datasets/") and len(parts) >= 7 and parts[5] in ("revision", "tree"):
            repo = "/".join(parts[3:5])
            files = self.server.datasets.get(repo)
            if files is None:
                return self._reply({"error": "Repository not found"}, 404)
            if parts[5] == "revision":
                siblings = [{"rfilename": name, "size": len(data)} for name, data in files.items()]
                return self._reply({"id": repo, "sha": REVISION, "siblings": siblings, "private": False})
            return self._reply(
                [
                    {"type": "file", "path": name, "size": len(data), "oid": _oid(data)}
                    for name, data in files.items()
                ]
            )
        if path.startswith("/datasets/"):
            return self._file(body=True)
        self._reply({"error": f"not faked: GET {self.path}"}, 404)

    def _file(self, body: bool) -> None:
        """/datasets/{ns}/{name}/resolve/{revision}/{path}: the file, with the headers the client checks."""
        parts = unquote(self.path.split("?")[0]).split("/")
        repo, name = "/".join(parts[2:4]), "/".join(parts[6:])
        data = (
            self.server.datasets.get(repo, {}).get(name) if len(parts) > 6 and parts[4] == "resolve" else None
        )
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{_oid(data)}"')
        self.send_header("X-Repo-Commit", REVISION)
        self.end_headers()
        if body:
            self.wfile.write(data)


REVISION = "1" * 40


def _oid(data: bytes) -> str:
    """Git's blob id of `data`, which the Hub gives as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
