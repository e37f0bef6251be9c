"""A Hugging Face Hub stand-in on 127.0.0.1, serving Hub-layout folders through the ``resolve`` endpoint.

It speaks the part of the protocol ``huggingface_hub.hf_hub_download`` uses: HEAD then GET on
``/{org}/{name}/resolve/{revision}/{filename}``, answered with ``X-Repo-Commit`` (40 hex), ``ETag`` and
``Content-Length``; a 404 with ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) for what does not exist; and, with ``fail_with=500``, a server error for everything.
Every request is logged in ``requests`` so tests can check that a cache hit sent no GET.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import unquote


def commit_hash(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


class FakeHub:
    """``with FakeHub({"org/name": folder}) as hub: ...`` → ``hub.endpoint`` is the HF_ENDPOINT to use."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {repo_id: Path(folder) for repo_id, folder in repos.items()}
        self.requests: list[tuple[str, str]] = []
        self.fail_with: Optional[int] = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def gets(self, filename: str) -> int:
        return sum(1 for method, path in self.requests if method == "GET" and path.endswith("/" + filename))

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                hub.requests.append((self.command, self.path))
                if hub.fail_with:
                    return self._error(hub.fail_with, None)
                parts = unquote(self.path.lstrip("/")).split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, None)
                org, name, _, revision, *file_parts = parts
                repo_id = f"{org}/{name}"
                if repo_id not in hub.repos:
                    return self._error(404, "RepoNotFound")
                if revision not in ("main", commit_hash(repo_id)):
                    return self._error(404, "RevisionNotFound")
                path = hub.repos[repo_id] / "/".join(file_parts)
                if not path.is_file():
                    return self._error(404, "EntryNotFound")
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit_hash(repo_id))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _error(self, status: int, error_code: Optional[str]) -> None:
                body = f"error {status} {error_code or ''}".encode()
                self.send_response(status)
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                    self.send_header("X-Error-Message", error_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

        return Handler
