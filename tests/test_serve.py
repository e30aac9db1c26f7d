"""figspec serve without a browser: what the page is told as files change,
the port and host it listens on, and bursts of connections."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import support


def test_an_edit_made_while_a_spec_is_checked_is_not_lost(project: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """The data is saved after checking read it and before checking ends: the
    next poll must check the spec again, or the page keeps the old figure."""
    from figspec import pipeline
    from figspec.serve import Board

    spec = support.write(project / "specs" / "a.yaml", support.spec_text())
    board = Board([project / "specs"])
    board.refresh()
    real = pipeline.prepare

    def prepare_then_save(*args, **kwargs):
        prepared = real(*args, **kwargs)  # the data as it was, read
        rows = support.long_rows()
        rows[0]["value"] = 0.777  # saved now, while the spec is still being checked
        support.write_csv(project / "data" / "cells.csv", rows)
        return prepared

    monkeypatch.setattr(pipeline, "prepare", prepare_then_save)
    spec.write_text(spec.read_text() + "title: edited\n")
    assert board.refresh()  # the edited spec, checked with the old data
    assert "0.777" not in json.dumps(board.state())
    monkeypatch.setattr(pipeline, "prepare", real)
    assert board.refresh()  # the data changed since it was stamped: checked again
    assert "0.777" in json.dumps(board.state())
    assert not board.refresh()  # and then nothing more to do


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(project: Path, run, port: str):
    code, _, err = run("serve", "--port", port)
    assert code == 2 and "expected a port from 0 to 65535" in err


def test_a_port_in_use_says_so_and_suggests_port_0(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run("serve", "--port", str(port))
    assert (code, out) == (2, "")
    assert err == (f"figspec: error: port {port} is in use on 127.0.0.1 (another `figspec "
                   "serve`?); `--port 0` picks a free one\n")


@contextlib.contextmanager
def served(project: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`figspec serve --port 0 ARGS` as a child process, and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "figspec", "serve", "--port", "0", *args],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), proc.stderr.read()
        yield proc, url
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert "Traceback" not in proc.stderr.read()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_loopback(project: Path):
    import http.client

    support.write(project / "specs" / "a.yaml", support.spec_text())
    with served(project, "--host", "::1") as (proc, url):
        assert url.startswith("http://[::1]:")
        conn = http.client.HTTPConnection("::1", int(url.rsplit(":", 1)[1].strip("/")),
                                          timeout=20)
        conn.request("GET", "/state.json")
        answer = conn.getresponse()
        assert answer.status == 200
        assert [f["spec"] for f in json.loads(answer.read())["figures"]] == ["specs/a.yaml"]
        conn.close()


def test_a_burst_of_200_connections_is_answered(project: Path):
    """200 connections arrive while the server is stopped (SIGSTOP): the
    kernel must hold them all until it can accept (a backlog of 5 made the
    rest wait out TCP's retries, 45 s), and all are answered after."""
    support.write(project / "specs" / "a.yaml", support.spec_text())
    with served(project) as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        proc.send_signal(signal.SIGSTOP)
        clients = []
        try:
            for _ in range(200):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            for c in clients:
                c.sendall(f"GET /state.json HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            proc.send_signal(signal.SIGCONT)
            for c in clients:
                c.settimeout(30)
                assert c.makefile("rb").readline().startswith(b"HTTP/1.0 200 ")
        finally:
            proc.send_signal(signal.SIGCONT)
            for c in clients:
                c.close()


def test_idle_connections_hold_no_thread_and_delay_no_one(project: Path):
    """100 connections opened and left idle (as browsers open them ahead):
    the next request is answered at once, and the server's threads stay
    bounded (one per connection would be 100 more)."""
    support.write(project / "specs" / "a.yaml", support.spec_text())
    with served(project) as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(f"GET /state.json HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                assert c.makefile("rb").readline().startswith(b"HTTP/1.0 200 ")
            status = Path(f"/proc/{proc.pid}/status").read_text()
            threads = int(status.split("Threads:", 1)[1].split()[0])
            assert threads < 50
        finally:
            for c in idle:
                c.close()


def _get(port: int, path: str) -> tuple[int, float]:
    """GET ``path``: the status, and the seconds the answer took."""
    import http.client
    import time

    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", path)
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer.status, time.monotonic() - start


def _closed_by_server(c: socket.socket, within: float) -> bool:
    """Whether the server closes ``c`` within ``within`` seconds."""
    c.settimeout(within)
    try:
        return c.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_and_stalled_clients_delay_no_one(project: Path):
    """40 clients that send half a request and then nothing, 10 that send a
    byte now and then, and 10 that ask for a font and never read it (more
    than there are threads): a normal client's page, figure and state are
    answered at once; a head that never ends is dropped at once past its
    limit, and a trickling one by its deadline however often a byte comes."""
    import time

    support.write(project / "specs" / "a.yaml", support.spec_text())
    with served(project) as (_, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        host = f"Host: 127.0.0.1:{port}\r\n".encode()
        clients: list[socket.socket] = []
        try:
            for _ in range(40):
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                c.sendall(b"GET / HTTP/1.1\r\n" + host)  # no blank line: never ends
                clients.append(c)
            tricklers = [socket.create_connection(("127.0.0.1", port), timeout=5)
                         for _ in range(10)]
            for c in tricklers:
                c.sendall(b"G")
            began = time.monotonic()
            clients += tricklers
            for _ in range(10):
                c = socket.socket()
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.connect(("127.0.0.1", port))
                c.sendall(b"GET /fonts/DejaVuSans.ttf HTTP/1.0\r\n" + host + b"\r\n")
                clients.append(c)
            for path in ["/", "/fig/a", "/state.json", "/app.js"]:
                status, seconds = _get(port, path)
                assert status == 200 and seconds < 0.5, (path, seconds)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as huge:
                huge.sendall(b"GET / HTTP/1.1\r\n" + host + b"X-Long: " + b"a" * 20000)
                assert _closed_by_server(huge, within=1)
            while time.monotonic() - began < 1.5:  # a byte every 0.2 s keeps no one open
                for c in tricklers:
                    with contextlib.suppress(OSError):  # closed already
                        c.sendall(b"E")
                time.sleep(0.2)
            assert all(_closed_by_server(c, within=2.5) for c in tricklers)
            assert _get(port, "/")[1] < 0.5
        finally:
            for c in clients:
                c.close()


def _failing_for(name: str, monkeypatch: pytest.MonkeyPatch, before=None):
    """pipeline.prepare, raising an unexpected error for the spec ``name``
    (after calling ``before``, if given), once; the others checked as ever."""
    from figspec import pipeline

    real = pipeline.prepare
    failed: list[Path] = []

    def prepare(path, *args, **kwargs):
        if Path(path).name == name and not failed:
            failed.append(path)
            if before:
                before()
            raise RuntimeError("a bug")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "prepare", prepare)
    return failed


def _figures(board) -> dict[str, dict]:
    return {f["spec"]: f for f in board.state()["figures"]}


def test_an_unexpected_error_in_one_spec_leaves_the_others_updating(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """A bug met checking one spec is shown on that figure (and logged); the
    other figures are drawn, and go on being redrawn as their data changes."""
    from figspec.serve import Board

    support.write(project / "specs" / "a.yaml", support.spec_text())
    support.write(project / "specs" / "b.yaml", support.spec_text())
    _failing_for("a.yaml", monkeypatch)
    board = Board([project / "specs"])
    assert board.refresh()
    a, b = _figures(board)["specs/a.yaml"], _figures(board)["specs/b.yaml"]
    assert a["vegalite"] is None and b["vegalite"] is not None
    (problem,) = a["problems"]
    assert problem["text"].startswith("specs/a.yaml: error: internal error: RuntimeError: a bug")
    assert "details in " in problem["text"] and "please report it" in problem["text"]
    assert "internal error: RuntimeError: a bug" in capsys.readouterr().err
    version = board.state()["version"]
    assert not board.refresh()  # nothing changed: a is not checked (nor logged) again

    rows = support.long_rows()
    rows[0]["value"] = 0.777
    support.write_csv(project / "data" / "cells.csv", rows)
    assert board.refresh()
    assert board.state()["version"] > version
    figures = _figures(board)
    assert "0.777" in json.dumps(figures["specs/b.yaml"]["vegalite"])
    assert figures["specs/a.yaml"]["vegalite"] is None  # what it looked at is unchanged
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="title: fixed\n"))
    assert board.refresh()
    assert "fixed" in json.dumps(_figures(board)["specs/a.yaml"]["vegalite"])


def test_an_edit_made_while_a_spec_fails_is_shown(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    """The spec is saved while its check is running into a bug: the next
    round checks it again and shows what was saved."""
    from figspec.serve import Board

    spec = support.write(project / "specs" / "a.yaml", support.spec_text())
    board = Board([project / "specs"])
    board.refresh()
    _failing_for("a.yaml", monkeypatch,
                 before=lambda: spec.write_text(spec.read_text() + "title: saved meanwhile\n"))
    spec.write_text(spec.read_text() + "# edited\n")
    assert board.refresh()
    assert _figures(board)["specs/a.yaml"]["vegalite"] is None
    assert board.refresh()  # the spec changed since its check began: checked again
    assert "saved meanwhile" in json.dumps(_figures(board)["specs/a.yaml"]["vegalite"])
    assert not board.refresh()


def test_serving_stopped_leaves_no_socket_or_thread_behind(project: Path):
    """A library user's process gets back what serve took, however it stops
    (here: Ctrl-C while the address is printed)."""
    import os
    import threading
    import time

    from figspec.serve import serve

    support.write(project / "specs" / "a.yaml", support.spec_text())

    def interrupted(line: str) -> None:
        raise KeyboardInterrupt

    def stopped() -> int:
        """Serve until stopped; the descriptors open then, once every thread
        serve started has ended (other tests' threads may come and go)."""
        before = set(threading.enumerate())
        with pytest.raises(KeyboardInterrupt):
            serve([project / "specs"], "127.0.0.1", 0, announce=interrupted)
        deadline = time.monotonic() + 5  # its threads end as they see the stop
        while set(threading.enumerate()) - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(threading.enumerate()) - before == set()
        return len(os.listdir("/proc/self/fd"))

    first = stopped()  # what a process opens once (the renderer's fonts) is open now
    assert stopped() == first
