"""A small Hugging Face Hub on 127.0.0.1 for the tests: it answers what
huggingface_hub asks (a revision's info with its files' LFS sha256, a
repository's refs, a file's resolve address with or without Range, HEAD
included), counts the bytes of files it sends, logs every request, and can
be told to fail in the ways a real server does."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: a token a request must carry (a private repository)
    token: str | None = None


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[tuple[str, str, str | None]] = []
        #: bytes of files sent (resolve bodies), all requests together
        self.sent = 0
        #: how the next resolve requests fail: ("status", code, times), ("timeout", s, times),
        #: ("short", 0, times), ("redirects", 0, times), ("changed", 0, times), ("no-range", 0, n)
        self.fault: tuple[str, float, int] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add(self, repo: str, files: dict[str, bytes], ref: str = "main", *,
            tag: bool = False) -> str:
        """A commit of ``files`` in ``repo``, at branch (or tag) ``ref``."""
        commit = hashlib.sha1(json.dumps([repo, ref, sorted(
            (n, hashlib.sha256(b).hexdigest()) for n, b in files.items())]).encode()).hexdigest()
        r = self.repos.setdefault(repo, Repo())
        r.commits[commit] = dict(files)
        (r.tags if tag else r.branches)[ref] = commit
        return commit

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Hub:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def take_fault(self) -> tuple[str, float] | None:
        with self._lock:
            if self.fault is None:
                return None
            kind, value, times = self.fault
            self.fault = (kind, value, times - 1) if times > 1 else None
            return kind, value

    def count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def resolves(self) -> list[tuple[str, str | None]]:
        return [(path, rng) for method, path, rng in self.log
                if "/resolve/" in path and method == "GET"]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a fault injected): nothing to print


class _Handler(BaseHTTPRequestHandler):
    server_hub: Hub
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes: without this, Nagle's algorithm
    # and the client's delayed ACK hold every response back ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":  # a body after HEAD's headers would be read as the
            self.wfile.write(raw)   # next response on the connection (HTTP/1.1)

    def _serve(self, head: bool) -> None:
        hub = self.server_hub
        url = urlparse(self.path)
        path = unquote(url.path)
        hub.log.append(("HEAD" if head else "GET", path, self.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api(parts[2] + "/" + parts[3], parts[4:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), head)
        self._json(404, {"error": "not found"})

    def _repo(self, name: str) -> Repo | None:
        repo = self.server_hub.repos.get(name)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._json(401, {"error": "Invalid credentials"})
            return None
        return repo

    def _commit(self, repo: Repo, rev: str) -> str | None:
        commit = repo.branches.get(rev) or repo.tags.get(rev) or (rev if rev in repo.commits
                                                                  else None)
        if commit is None:
            self._json(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
        return commit

    def _api(self, name: str, rest: list[str]) -> None:
        repo = self._repo(name)
        if repo is None:
            return
        if rest == ["refs"]:
            def ref(kind: str, n: str, c: str) -> dict[str, str]:
                return {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}

            return self._json(200, {"branches": [ref("heads", n, c) for n, c in
                                                 repo.branches.items()],
                                    "tags": [ref("tags", n, c) for n, c in repo.tags.items()],
                                    "converts": []})
        rev = unquote(rest[1]) if rest[:1] in (["revision"], ["tree"]) and len(rest) >= 2 \
            else "main"
        commit = self._commit(repo, rev)
        if commit is None:
            return
        files = repo.commits[commit]
        if rest[:1] == ["tree"]:  # the listing snapshot_download (`hf download`) asks for
            return self._json(200, [
                {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest(),
                 **({"lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b),
                             "pointerSize": 134}} if n.endswith(".safetensors") else {})}
                for n, b in sorted(files.items())])
        siblings = []
        for n, b in sorted(files.items()):
            s: dict[str, Any] = {"rfilename": n, "size": len(b),
                                 "blobId": hashlib.sha1(b).hexdigest()}
            if n.endswith(".safetensors"):
                s["lfs"] = {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b),
                            "pointerSize": 134}
            siblings.append(s)
        self._json(200, {"id": name, "modelId": name, "sha": commit, "private": bool(repo.token),
                         "siblings": siblings})

    def _resolve(self, name: str, rev: str, filename: str, head: bool) -> None:
        hub = self.server_hub
        repo = self._repo(name)
        if repo is None:
            return
        commit = self._commit(repo, rev)
        if commit is None:
            return
        body = repo.commits[commit].get(filename)
        if body is None:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        fault = hub.take_fault() if not head else None
        if fault and fault[0] == "status":
            return self._json(int(fault[1]), {"error": "injected"})
        if fault and fault[0] == "timeout":
            time.sleep(fault[1])
        if fault and fault[0] == "redirects":
            hub.fault = ("redirects", 0, 1000)
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = hashlib.sha256(body).hexdigest() if filename.endswith(".safetensors") else \
            hashlib.sha1(body).hexdigest()
        if fault and fault[0] == "changed":
            etag = hashlib.sha256(b"another content").hexdigest()
        asked = self.headers.get("If-Match")
        if asked and asked.removeprefix("W/").strip('"') != etag:  # RFC 9110 13.1.1
            return self._json(412, {"error": "Precondition Failed"})
        start, end, status = 0, len(body), 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and not (fault and fault[0] == "no-range"):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a), min(int(b) + 1 if b else len(body), len(body)), 206
        piece = body[start:end]
        if fault and fault[0] == "short":
            piece = piece[:len(piece) // 2]
        self.send_response(status)
        self.send_header("Content-Length", str(len(piece)))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        if filename.endswith(".safetensors"):
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        self.end_headers()
        if not head:
            self.wfile.write(piece)
            hub.count(len(piece))
