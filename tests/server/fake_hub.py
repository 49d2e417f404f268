"""A model hub on localhost that speaks the small part of the ModelScope and
Hugging Face HTTP APIs their download libraries use: list a repository's files,
then fetch each. It serves the files of local directories, so `models download`
is tested through the hubs' own client code without the network."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos  # "org/name" -> a directory whose files it serves
        self.requests: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo: str) -> dict[str, bytes]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    def answer(self, method: str, target: str) -> tuple[int, bytes, dict[str, str]]:
        self.requests.append(f"{method} {target}")
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        for repo in self.repos:
            if path.startswith(f"/api/v1/models/{repo}/repo/files"):  # ModelScope: listing
                files = [{"Name": name.rsplit("/", 1)[-1], "Path": name, "Type": "blob",
                          "Size": len(data), "Sha256": hashlib.sha256(data).hexdigest(),
                          "Revision": COMMIT} for name, data in self.files(repo).items()]
                return _json({"Code": 200, "Success": True, "Data": {"Files": files}})
            if path == f"/api/v1/models/{repo}/repo":  # ModelScope: one file
                return self._file(repo, query.get("FilePath", [""])[0])
            if path.startswith(f"/api/models/{repo}/tree/"):  # Hugging Face: listing
                return _json([{"type": "file", "path": name, "size": len(data),
                               "oid": hashlib.sha1(data).hexdigest()}
                              for name, data in self.files(repo).items()])
            if path.startswith(f"/api/models/{repo}/revision/"):  # Hugging Face: repo info
                return _json({"id": repo, "sha": COMMIT,
                              "siblings": [{"rfilename": n} for n in self.files(repo)]})
            for prefix in (f"/{repo}/resolve/{COMMIT}/", f"/{repo}/resolve/main/"):
                if path.startswith(prefix):  # Hugging Face: one file
                    return self._file(repo, path[len(prefix):])
        return 404, b"", {}

    def _file(self, repo: str, name: str) -> tuple[int, bytes, dict[str, str]]:
        data = self.files(repo).get(name)
        if data is None:
            return 404, b"", {}
        return 200, data, {"X-Repo-Commit": COMMIT,
                           "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._reply(head=False)

            def do_HEAD(self) -> None:
                self._reply(head=True)

            def _reply(self, head: bool) -> None:
                status, body, headers = hub.answer(self.command, self.path)
                self.send_response(status)
                headers = {"Content-Type": "application/octet-stream", **headers,
                           "Content-Length": str(len(body))}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler


def _json(body) -> tuple[int, bytes, dict[str, str]]:
    return 200, json.dumps(body).encode(), {"Content-Type": "application/json"}
