"""A Hugging Face Hub stand-in on 127.0.0.1, serving Hub-layout folders through the ``resolve`` endpoint.

It speaks the part of the protocol ``huggingface_hub.hf_hub_download`` uses: HEAD then GET on
``/{org}/{name}/resolve/{revision}/{filename}``, answered with ``X-Repo-Commit`` (40 hex), ``ETag`` and
``Content-Length``; a 404 with ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) for what does not exist; and, with ``fail_with=500``, a server error for everything.
Every request is logged in ``requests`` so tests can check that a cache hit sent no GET.

Uploads (``HfApi.create_repo`` + ``upload_folder``, what ``lightnets.publish.push_to_hub`` calls) go through
``POST /api/repos/create`` (409 if the repo exists), ``POST /api/models/{repo}/preupload/{revision}``
and ``POST /api/models/{repo}/commit/{revision}`` (an NDJSON body: a header line, then one base64 ``file``
line per file), after ``POST /api/validate-yaml`` has checked the model card's YAML metadata. The stand-in answers
``uploadMode: regular`` for every file, so the contents arrive inside the commit; the real Hub sends large binaries
through LFS/Xet storage instead, a transfer this stand-in does not speak. A created repo is a folder under
``upload_root``, served like the others.
The ``Authorization`` header of every upload request is kept in ``tokens``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import unquote


def commit_hash(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


class FakeHub:
    """``with FakeHub({"org/name": folder}) as hub: ...`` → ``hub.endpoint`` is the HF_ENDPOINT to use."""

    def __init__(self, repos: dict[str, Path], upload_root: Optional[Path] = None) -> None:
        self.repos = {repo_id: Path(folder) for repo_id, folder in repos.items()}
        self.upload_root = upload_root
        self.commits: dict[str, list[str]] = {}  # repo id -> commit ids, oldest first
        self.tokens: list[Optional[str]] = []
        self.cards: list[str] = []  # model cards sent to /api/validate-yaml
        self.requests: list[tuple[str, str]] = []
        self.fail_with: Optional[int] = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def head(self, repo_id: str) -> str:
        """The repo's current commit id: its last upload's, or one derived from its name."""
        return self.commits.get(repo_id, [commit_hash(repo_id)])[-1]

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
                if revision not in ("main", hub.head(repo_id)):
                    return self._error(404, "RevisionNotFound")
                path = hub.repos[repo_id] / "/".join(file_parts)
                if not path.is_file():
                    return self._error(404, "EntryNotFound")
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.head(repo_id))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_POST(self) -> None:
                hub.requests.append((self.command, self.path))
                hub.tokens.append(self.headers.get("Authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hub.fail_with:
                    return self._error(hub.fail_with, None)
                parts = unquote(self.path.split("?")[0].lstrip("/")).split("/")
                if parts[:2] == ["api", "validate-yaml"]:  # the model card's metadata, checked before uploading
                    return self._validate_card(json.loads(body)["content"])
                if parts[:3] == ["api", "repos", "create"]:
                    request = json.loads(body)
                    repo_id = f"{request['organization']}/{request['name']}"
                    if repo_id in hub.repos:  # as the Hub does: the conflict still names the repo's URL
                        return self._json({"error": "You already created this model repo",
                                           "url": f"{hub.endpoint}/{repo_id}"}, status=409)
                    if hub.upload_root is None:
                        return self._error(403, None)
                    hub.repos[repo_id] = hub.upload_root / repo_id
                    hub.repos[repo_id].mkdir(parents=True)
                    return self._json({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if len(parts) != 6 or parts[:2] != ["api", "models"] or parts[4] not in ("preupload", "commit"):
                    return self._error(404, None)
                repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
                if repo_id not in hub.repos:
                    return self._error(404, "RepoNotFound")
                if parts[5] != "main":
                    return self._error(404, "RevisionNotFound")
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                if not lines or lines[0]["key"] != "header" or any(line["key"] != "file" for line in lines[1:]):
                    return self._error(400, None)
                for line in lines[1:]:
                    target = hub.repos[repo_id] / line["value"]["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(base64.b64decode(line["value"]["content"]))
                commit = hashlib.sha1(f"{repo_id}:{len(hub.commits.get(repo_id, []))}".encode()).hexdigest()
                hub.commits.setdefault(repo_id, []).append(commit)
                return self._json({"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{commit}", "commitOid": commit,
                                   "pullRequestUrl": None})

            def _validate_card(self, card: str) -> None:
                """The README's YAML front matter must parse to a mapping; the Hub answers 400 with errors if not."""
                import yaml

                head, sep, _ = card.partition("\n---\n")
                errors = []
                if not card.startswith("---\n") or not sep:
                    errors.append("no YAML metadata block between --- lines")
                else:
                    try:
                        if not isinstance(yaml.safe_load(head[4:]), dict):
                            errors.append("metadata is not a mapping")
                    except yaml.YAMLError as error:
                        errors.append(f"invalid YAML: {error}")
                hub.cards.append(card)
                self._json({"errors": [{"message": e} for e in errors], "warnings": []}, status=400 if errors else 200)

            def _json(self, payload: dict, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, error_code: Optional[str]) -> None:
                body = f"error {status} {error_code or ''}".encode()
                if self.command == "POST":  # the API endpoints answer JSON, errors included
                    body = json.dumps({"error": body.decode().strip()}).encode()
                self.send_response(status)
                if self.command == "POST":
                    self.send_header("Content-Type", "application/json")
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                    self.send_header("X-Error-Message", error_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        return Handler
