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
GET and HEAD; sends no header that lets other origins in. A client that is
slow or stalls holds no thread and delays no one (see :class:`_Server`); a bug
met checking one spec is shown on that figure, and the others go on.
"""

from __future__ import annotations

import errno
import http.server
import io
import json
import queue
import selectors
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostic, FigspecError, UsageError, display_path, source_line
from .files import Seen

POLL = 0.25
#: Threads building answers (in memory: they never wait on a client), and
#: connections the kernel may hold before they are accepted.
WORKERS, REQUEST_QUEUE = 8, 1024
#: Seconds a connection may stay open before its request begins (browsers
#: open some ahead), that the whole head of a request may then take to arrive,
#: that the whole answer may take to be sent, and that what a client sends
#: after its request is read and dropped before closing.
IDLE_TIMEOUT, HEAD_TIMEOUT, SEND_TIMEOUT, LINGER = 10.0, 2.0, 30.0, 1.0
#: The longest request head read (a browser's is under 2 KiB), and the most
#: connections held open at once.
MAX_HEAD, MAX_CONNECTIONS = 16384, 512


@dataclass
class Entry:
    """One spec as shown: its figure's Vega-Lite, or its problems."""

    spec: str
    name: str
    version: int
    vegalite: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: what its sources said of how it was drawn (from committed numbers, say)
    notes: list[str] = field(default_factory=list)
    #: every file checking it looked at, in the state it was in before it was
    #: read: a file saved while the spec is checked differs next time
    seen: Seen = field(default_factory=Seen)


class Board:
    """What the page shows, kept up to date by a thread that polls the files."""

    def __init__(self, paths: Sequence[Path], allow_outside: bool = False):
        self.paths, self.allow_outside = list(paths), allow_outside
        self.entries: dict[str, Entry] = {}
        self.order: list[str] = []
        self.version = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        #: an internal error of the last round, shown on the page (and logged)
        self.error: str | None = None
        #: the notes printed so far: each is said once per invocation
        self.said: set[Diagnostic] = set()

    def refresh(self) -> bool:
        """Check what changed; whether anything did. One session a round: what
        a round computed is not kept for ever by a server that runs for days.
        Each figure checked is published at once (its own version), so one
        spec's failure, or a slow one, never holds back the others."""
        from .finding import find_specs
        from .session import Session

        specs = [str(p) for p in find_specs(self.paths)]
        changed = specs != self.order
        session = Session(allow_outside=self.allow_outside)
        for spec in specs:
            entry = self.entries.get(spec)
            if entry is None or entry.seen.changed():
                self._publish(spec, self._check(spec, session))
                changed = True
        with self.lock:
            gone = set(self.entries) - set(specs)
            for spec in gone:
                del self.entries[spec]
            if gone or specs != self.order:
                self.order = specs
                self.version += 1
        return changed

    def _check(self, spec: str, session: Any) -> Entry:
        """The spec checked: its figure, its problems, or (a bug) the internal
        error, which is shown on its figure alone. Every file it looked at is
        stamped as it was before it was read, whatever happened: an edit made
        during the check, or after it failed, is checked next round."""
        from .files import recording
        from .pipeline import prepare

        path = Path(spec)
        vegalite, problems, name = None, [], path.stem
        with recording() as seen:
            seen.add(path.absolute())
            try:
                prepared = prepare(path, session)
                vegalite, name = prepared.figure.vegalite, prepared.loaded.name
            except FigspecError as e:
                problems = [_problem(d) for d in e.diagnostics]
            except Exception as e:  # a bug: this figure says so, the others go on
                problems = [_problem(_internal(path, e))]
        notes = list(dict.fromkeys(session.notes.get(path, [])))
        self._say(notes)
        return Entry(display_path(path), name, 0, vegalite, problems,
                     [n.format() for n in notes], seen)

    def _say(self, notes: list[Diagnostic]) -> None:
        """Print each note once per invocation, as build and check do once."""
        from .diagnostics import format_text

        with self.lock:
            new = [n for n in notes if n not in self.said]
            self.said.update(new)
        if new:
            sys.stderr.write(format_text(new))

    def _publish(self, spec: str, entry: Entry) -> None:
        with self.lock:
            self.version += 1
            entry.version = self.version
            self.entries[spec] = entry

    def state(self, only: str | None = None) -> dict[str, Any]:
        with self.lock:
            figures = [self.entries[s] for s in self.order if s in self.entries]
            if only is not None:
                figures = [e for e in figures if e.name == only]
            return {"version": self.version, "error": self.error, "figures": [
                {"spec": e.spec, "name": e.name, "version": e.version, "vegalite": e.vegalite,
                 "problems": e.problems, "notes": e.notes} for e in figures]}

    def watch(self) -> None:
        """Check again whatever changed, every POLL seconds, until stopped. A
        bug in one round (not in one spec's check: that spec shows it) is
        logged and shown, and the next round tries again."""
        from .watch import polling

        for _ in polling(POLL, self.stop):
            try:
                self.refresh()
                self._set_error(None)
            except Exception as e:
                if self.error is None:  # once per streak, not every quarter second
                    self._set_error(_internal_text(e))
                    print(f"figspec: {self.error}", file=sys.stderr)

    def _set_error(self, error: str | None) -> None:
        """A new version when the error comes or goes, so the page is told."""
        with self.lock:
            if error != self.error:
                self.error = error
                self.version += 1


def _internal_text(e: Exception) -> str:
    """An internal error in one line, with where its traceback was logged."""
    from .errors import crash_log

    log = crash_log(e)
    return (f"internal error: {type(e).__name__}: {e}" + (f"; details in {log}" if log else "")
            + "; please report it")


def _internal(path: Path, e: Exception) -> Diagnostic:
    """A bug met checking one spec, as a diagnostic on it (and on stderr)."""
    d = Diagnostic(display_path(path), message=_internal_text(e))
    print(f"figspec: {d.format()}", file=sys.stderr)
    return d


def _problem(d: Diagnostic) -> dict[str, Any]:
    """A diagnostic for the page, with the line of source it points at."""
    source = source_line(d)
    return {"text": d.format(), "file": d.file, "line": d.line, "column": d.column,
            "message": d.message, "hint": d.hint, "source": source}


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers one request whose head the server has read already, into
    memory: a worker never reads from or writes to a client, so no client,
    however slow, holds one. The server sends what it wrote."""

    request: _Connection  # not a socket: what the server read of one
    rfile: io.BytesIO
    wfile: io.BytesIO

    def setup(self) -> None:
        self.rfile = io.BytesIO(bytes(self.request.head))
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        pass  # the answer stays in self.wfile, for the server to send


def handler(board: Board, hosts: set[str]) -> type[_Answer]:
    from .html import javascript_bundle, serve_font, serve_fonts_css, serve_page, serve_script

    class Handler(_Answer):
        server_version = "figspec"
        sys_version = ""

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


@dataclass(eq=False)
class _Connection:
    """A client's connection as the server's I/O loop holds it."""

    sock: socket.socket
    address: Any
    #: when it is closed if it has not moved on: a whole-request deadline, not
    #: one per read, so a byte every few seconds does not keep it open
    deadline: float
    state: str = "reading"  # then "answering" (a worker has it), "sending", "draining"
    head: bytearray = field(default_factory=bytearray)
    answer: memoryview = field(default_factory=lambda: memoryview(b""))


def _head_complete(head: bytes | bytearray) -> bool:
    """Whether a request's head has arrived whole (a blank line ends it)."""
    return b"\r\n\r\n" in head or b"\n\n" in head


class _Server(http.server.HTTPServer):
    """An HTTP server on IPv4 or IPv6, with room for REQUEST_QUEUE connections
    not yet accepted (a burst is not refused by the kernel).

    One thread (:class:`_Loop`, in serve_forever) does all the talking to
    clients, without ever blocking on one: it accepts, reads each request's
    head as it comes, and sends each answer. Only a request that arrived
    whole goes to one of WORKERS threads, which builds the answer in memory.
    So a client that is slow or stalls, reading or writing, holds no worker
    and delays no one; it is dropped at its deadline (IDLE_TIMEOUT before a
    request begins, HEAD_TIMEOUT for the whole head, SEND_TIMEOUT for the
    whole answer), or as its head passes MAX_HEAD bytes."""

    request_queue_size = REQUEST_QUEUE
    RequestHandlerClass: type[_Answer]

    def __init__(self, address: tuple[str, int]):
        if ":" in address[0]:  # ::1, an IPv6 address
            self.address_family = socket.AF_INET6
        self.ready: queue.Queue[_Connection | None] = queue.Queue()
        self.answered: queue.Queue[tuple[_Connection, bytes]] = queue.Queue()
        self.wake_read, self.wake_write = socket.socketpair()
        for end in (self.wake_read, self.wake_write):
            end.setblocking(False)
        self.closing = False
        super().__init__(address, _Answer)
        for _ in range(WORKERS):
            threading.Thread(target=self._work, daemon=True).start()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        _Loop(self, poll_interval).run()

    def wake(self) -> None:
        """Wake the I/O loop (a byte already waiting wakes it as well)."""
        try:
            self.wake_write.send(b"\0")
        except OSError:  # full (it will wake), or closed (it has stopped)
            pass

    def _work(self) -> None:
        while (connection := self.ready.get()) is not None:
            self.answered.put((connection, self._answer(connection)))
            self.wake()

    def _answer(self, connection: _Connection) -> bytes:
        """What to send back: the handler's answer; nothing (the connection
        is closed) if it failed, which is said in one line."""
        try:
            answer = self.RequestHandlerClass(
                connection, connection.address, self)  # type: ignore[arg-type]
            return answer.wfile.getvalue()
        except Exception as e:
            print(f"figspec: serve: {type(e).__name__}: {e}", file=sys.stderr)
            return b""

    def server_close(self) -> None:
        super().server_close()
        self.closing = True
        self.wake()
        for _ in range(WORKERS):
            self.ready.put(None)
        # A worker still answering wakes no one now (wake() takes the OSError).
        for end in (self.wake_read, self.wake_write):
            end.close()


class _Loop:
    """The server's one I/O thread: every client socket is non-blocking and
    waits in one selector; a connection is closed when it passes its deadline,
    and the oldest one not being answered is dropped to make room past
    MAX_CONNECTIONS (or when the process runs out of descriptors)."""

    def __init__(self, server: _Server, poll_interval: float):
        self.server, self.poll = server, poll_interval
        self.selector = selectors.DefaultSelector()
        self.open: dict[socket.socket, _Connection] = {}  # oldest first
        server.socket.setblocking(False)
        self.selector.register(server.socket, selectors.EVENT_READ)
        self.selector.register(server.wake_read, selectors.EVENT_READ)

    def run(self) -> None:
        try:
            while not self.server.closing:
                for key, _ in self.selector.select(self.poll):
                    if key.data is not None and key.data.sock not in self.open:
                        continue  # dropped earlier in this round
                    if key.fileobj is self.server.socket:
                        self._accept()
                    elif key.fileobj is self.server.wake_read:
                        self._take_answers()
                    elif key.data.state == "sending":
                        self._send(key.data)
                    else:
                        self._read(key.data)
                self._expire()
        finally:
            for connection in list(self.open.values()):
                self._close(connection)
            self.selector.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.server.socket.accept()
            except BlockingIOError:
                return
            except OSError as e:  # out of descriptors: make room, or wait a moment
                short = e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
                if short and not self._drop_oldest():
                    time.sleep(0.01)
                return
            if len(self.open) >= MAX_CONNECTIONS:
                self._drop_oldest()
            sock.setblocking(False)
            connection = _Connection(sock, address, time.monotonic() + IDLE_TIMEOUT)
            self.open[sock] = connection
            self.selector.register(sock, selectors.EVENT_READ, connection)

    def _read(self, c: _Connection) -> None:
        try:
            data = c.sock.recv(MAX_HEAD + 1 - len(c.head) if c.state == "reading" else 65536)
        except BlockingIOError:
            return
        except OSError:
            return self._close(c)
        if not data:  # the client is done (or gave up)
            return self._close(c)
        if c.state == "draining":  # what it sent after its request: dropped
            return
        if not c.head:  # the request began: all of its head within HEAD_TIMEOUT
            c.deadline = time.monotonic() + HEAD_TIMEOUT
        c.head += data
        if _head_complete(c.head):
            c.state = "answering"
            self.selector.unregister(c.sock)
            self.server.ready.put(c)
        elif len(c.head) > MAX_HEAD:
            self._close(c)

    def _take_answers(self) -> None:
        try:
            while self.server.wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        while not self.server.answered.empty():
            c, answer = self.server.answered.get()
            if not answer:
                self._close(c)
                continue
            c.state, c.answer = "sending", memoryview(answer)
            c.deadline = time.monotonic() + SEND_TIMEOUT
            self.selector.register(c.sock, selectors.EVENT_WRITE, c)
            self._send(c)

    def _send(self, c: _Connection) -> None:
        try:
            c.answer = c.answer[c.sock.send(c.answer):]
            if c.answer:
                return
            # Sent: no more to write, and what the client still sends is read
            # and dropped for a moment, so that closing does not reset the
            # connection before the client has read the answer.
            c.sock.shutdown(socket.SHUT_WR)
        except BlockingIOError:
            return
        except OSError:
            return self._close(c)
        c.state, c.deadline = "draining", time.monotonic() + LINGER
        self.selector.modify(c.sock, selectors.EVENT_READ, c)

    def _expire(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.open.values() if c.state != "answering"]:
            if now > c.deadline:
                self._close(c)

    def _drop_oldest(self) -> bool:
        """Close the oldest connection not being answered; whether there was one."""
        for c in self.open.values():
            if c.state != "answering":
                self._close(c)
                return True
        return False

    def _close(self, c: _Connection) -> None:
        if self.open.pop(c.sock, None) is None:  # closed already, earlier in this round
            return
        if c.state != "answering":
            self.selector.unregister(c.sock)
        c.sock.close()


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
    try:  # from here on, whatever stops serving closes the server and the watcher
        announce(f"http://{shown}:{port}/")
        server.serve_forever(poll_interval=0.5)
    finally:
        board.stop.set()
        server.server_close()
