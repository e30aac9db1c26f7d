"""``figspec serve``: a live preview. Every figure of the project on one page,
drawn by Vega in the browser, redrawn when a spec, what it inherits or its
data changes; a failed spec shown as its diagnostics.

Nothing is written: the figures are checked in memory (never rendered to
files, never into the out dir or the manifest). Files are polled (a stat per
file every POLL seconds: no dependency), and the page polls ``/state.json``
for a version number, fetching what changed; so a change shows within about
half a second of the check finishing, and the page keeps its scroll position.

Safety: binds 127.0.0.1 unless told otherwise; serves its page, its scripts
and the figures' Vega-Lite only (any other path is 404); refuses requests
whose Host header is not the served name (DNS rebinding) and every method but
GET and HEAD; sends no header that lets other origins in.
"""

from __future__ import annotations

import errno
import http.server
import json
import queue
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .diagnostics import Diagnostic, FigspecError, UsageError, display_path, source_line

POLL = 0.25
#: Threads answering requests, and connections the kernel may hold for them.
WORKERS, REQUEST_QUEUE = 32, 1024
#: Seconds a connection may stay idle before its request (waiting, it holds
#: no worker), and that a worker waits for each piece of a request that began.
TIMEOUT = 10
#: A file's mtime is the kernel's coarse clock, a little behind time.time_ns().
STAMP_MARGIN_NS = 50_000_000


@dataclass
class Entry:
    """One spec as shown: its figure's Vega-Lite, or its problems."""

    spec: str
    name: str
    version: int
    vegalite: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: (path, size, mtime) of every file checking it looked at
    stamps: tuple[tuple[str, int, int], ...] = ()


class Board:
    """What the page shows, kept up to date by a thread that polls the files."""

    def __init__(self, paths: Sequence[Path], allow_outside: bool = False):
        self.paths, self.allow_outside = list(paths), allow_outside
        self.entries: dict[str, Entry] = {}
        self.order: list[str] = []
        self.version = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def refresh(self) -> bool:
        """Check what changed; whether anything did."""
        from .builder import find_specs

        specs = [str(p) for p in find_specs(self.paths)]
        changed = specs != self.order
        for spec in specs:
            entry = self.entries.get(spec)
            # Stamped before checking: a file saved while the spec is checked
            # differs from its stamp next time, and is checked again then.
            before = _stamps(entry.stamps if entry else ((str(Path(spec).absolute()), 0, 0),))
            if entry is None or before != entry.stamps:
                self._check(spec, before)
                changed = True
        with self.lock:
            for gone in set(self.entries) - set(specs):
                del self.entries[gone]
            self.order = specs
            if changed:
                self.version += 1
        return changed

    def _check(self, spec: str, before: tuple[tuple[str, int, int], ...]) -> None:
        """Check ``spec``; its files' stamps are those taken ``before`` it, or
        for a file first read now, one that says "check again" when the file
        may have changed while it was checked (written since ``start``)."""
        from .builder import Options, prepare
        from .files import recording

        path = Path(spec)
        start = time.time_ns() - STAMP_MARGIN_NS
        with recording() as seen:
            try:
                prepared = prepare(path, Options(allow_outside=self.allow_outside))
                vegalite, problems, name = prepared.figure.vegalite, [], prepared.loaded.name
            except FigspecError as e:
                vegalite, problems, name = None, [_problem(d) for d in e.diagnostics], path.stem
        seen.add(path.absolute())
        known = {st[0]: st for st in before}
        stamps = tuple(known[str(p)] if str(p) in known else
                       _recent(_stamps(((str(p), 0, 0),))[0], start) for p in sorted(seen))
        with self.lock:
            self.entries[spec] = Entry(display_path(path), name, self.version + 1, vegalite,
                                       problems, stamps)

    def state(self, only: str | None = None) -> dict[str, Any]:
        with self.lock:
            figures = [self.entries[s] for s in self.order if s in self.entries]
            if only is not None:
                figures = [e for e in figures if e.name == only]
            return {"version": self.version, "figures": [
                {"spec": e.spec, "name": e.name, "version": e.version, "vegalite": e.vegalite,
                 "problems": e.problems} for e in figures]}

    def watch(self) -> None:
        while not self.stop.wait(POLL):
            try:
                self.refresh()
            except Exception:  # a bad moment (a file half written): try again
                pass


def _recent(stamp: tuple[str, int, int], start: int) -> tuple[str, int, int]:
    """A stamp that matches no file when the file was written after ``start``
    (it may have changed while it was read): its spec is checked once more."""
    return (stamp[0], -2, -2) if stamp[2] >= start else stamp


def _stamps(old: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path, _, _ in old:
        try:
            st = Path(path).stat()
            out.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((path, -1, -1))
    return tuple(out)


def _problem(d: Diagnostic) -> dict[str, Any]:
    """A diagnostic for the page, with the line of source it points at."""
    source = source_line(d)
    return {"text": d.format(), "file": d.file, "line": d.line, "column": d.column,
            "message": d.message, "hint": d.hint, "source": source}


def handler(board: Board, hosts: set[str]) -> type[http.server.BaseHTTPRequestHandler]:
    from .html import javascript_bundle, serve_font, serve_fonts_css, serve_page, serve_script

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "figspec"
        sys_version = ""
        timeout = TIMEOUT

        def log_message(self, *args: Any) -> None:  # quiet: the terminal shows builds
            pass

        def _send(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8"
                  ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy",
                             "default-src 'self'; script-src 'self' 'unsafe-eval'; "
                             "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                             "connect-src 'self'; frame-ancestors 'none'")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.headers.get("Host", "") not in hosts:
                return self._send(421, b"unknown host\n")
            path, _, query = self.path.partition("?")
            if path == "/":
                return self._send(200, serve_page(None).encode(), "text/html; charset=utf-8")
            if path.startswith("/fig/") and path.count("/") == 2 and len(path) > 5:
                return self._send(200, serve_page(path[5:]).encode(), "text/html; charset=utf-8")
            if path == "/vega.js":
                return self._send(200, javascript_bundle().encode(), "text/javascript")
            if path == "/app.js":
                return self._send(200, serve_script().encode(), "text/javascript")
            if path == "/fonts.css":
                return self._send(200, serve_fonts_css().encode(), "text/css")
            if path.startswith("/fonts/"):
                font = serve_font(path[len("/fonts/"):])
                if font is not None:
                    return self._send(200, font, "font/ttf")
            if path == "/state.json":
                params = dict(p.partition("=")[::2] for p in query.split("&") if p)
                if params.get("since") == str(board.version):  # the page is up to date
                    return self._send(200, b'{"unchanged": true}', "application/json")
                return self._send(200, json.dumps(board.state(params.get("fig"))).encode(),
                                  "application/json")
            return self._send(404, b"not found\n")

        do_HEAD = do_GET

        def _refuse(self) -> None:
            self._send(405, b"method not allowed\n")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    return Handler


class _Server(http.server.HTTPServer):
    """An HTTP server whose requests are answered by a fixed pool of WORKERS
    threads (a burst of connections waits in a queue, not in hundreds of
    threads), with room for REQUEST_QUEUE connections not yet accepted (a
    burst is not refused by the kernel), on IPv4 or IPv6.

    A connection goes to a worker only once its request has begun to arrive:
    one a browser opens ahead and leaves idle waits in a selector, holding no
    worker, and is closed after TIMEOUT seconds without a byte."""

    request_queue_size = REQUEST_QUEUE

    def __init__(self, address: tuple[str, int]):
        if ":" in address[0]:  # ::1, an IPv6 address
            self.address_family = socket.AF_INET6
        self.ready: queue.Queue[tuple[Any, Any] | None] = queue.Queue()
        self.arrived: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.wake_read, self.wake_write = socket.socketpair()
        self.closing = False
        super().__init__(address, http.server.BaseHTTPRequestHandler)
        threading.Thread(target=self._wait_for_requests, daemon=True).start()
        for _ in range(WORKERS):
            threading.Thread(target=self._work, daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.arrived.put((request, client_address))
        self.wake_write.send(b"\0")

    def _wait_for_requests(self) -> None:
        """Hand each connection to the workers when it has something to read
        (or has been closed); close those idle past TIMEOUT."""
        idle = selectors.DefaultSelector()
        idle.register(self.wake_read, selectors.EVENT_READ)
        since: dict[Any, float] = {}
        while not self.closing:
            for key, _ in idle.select(timeout=1.0):
                if key.fileobj is self.wake_read:
                    self.wake_read.recv(4096)
                    while not self.arrived.empty():
                        request, client_address = self.arrived.get()
                        idle.register(request, selectors.EVENT_READ, client_address)
                        since[request] = time.monotonic()
                else:
                    idle.unregister(key.fileobj)
                    del since[key.fileobj]
                    self.ready.put((key.fileobj, key.data))
            for request, start in list(since.items()):
                if time.monotonic() - start > TIMEOUT:
                    idle.unregister(request)
                    del since[request]
                    self.shutdown_request(request)
        idle.close()

    def _work(self) -> None:
        while (job := self.ready.get()) is not None:
            request, client_address = job
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.closing = True
        self.wake_write.send(b"\0")
        for _ in range(WORKERS):
            self.ready.put(None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a connection mid-answer is no error; anything
        else is said in one line, never as a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"figspec: serve: {type(error).__name__}: {error}", file=sys.stderr)


def _bind(host: str, port: int) -> _Server:
    """The server, listening; a port in use or an address that is not this
    machine's is a UsageError that says so."""
    try:
        return _Server((host, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} is in use on {host} (another `figspec serve`?); "
                             "`--port 0` picks a free one") from None
        if isinstance(e, socket.gaierror):
            raise UsageError(f"--host {host}: not a name or address of this machine "
                             f"({e.strerror})") from None
        raise UsageError(f"cannot listen on {host} port {port}: {e.strerror or e}") from None


def serve(paths: Sequence[Path], host: str, port: int, allow_outside: bool = False,
          announce: Any = print) -> None:
    """Serve until interrupted (KeyboardInterrupt)."""
    board = Board(paths, allow_outside)
    board.refresh()
    server = _bind(host, port)
    port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    hosts = {f"{n}:{port}" for n in names} | {f"{shown}:{port}"}
    server.RequestHandlerClass = handler(board, hosts)
    watcher = threading.Thread(target=board.watch, daemon=True)
    watcher.start()
    announce(f"http://{shown}:{port}/")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        board.stop.set()
        server.server_close()
