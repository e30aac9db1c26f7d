"""`figspec build --engine ADDRESS`: a run's checkpoint pairs reduced on a
Dask cluster (a LocalCluster of two worker processes on 127.0.0.1, one for
the module), each a task: the figure and its numbers byte for byte the local
build's, a worker killed mid-task retried by Dask, a wrong address a
diagnostic at once, and nothing of Dask imported without an engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import checkpoints as ck
import support

pytest.importorskip("distributed")

STEPS = [100, 200, 300]
#: (100, base), (200, 100), (300, 200) of the first spec; (200, base),
#: (300, base) of the second; (100, base) is one pair for both
PAIRS = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """Two worker processes of one thread each, and a client to watch them.
    The workers take the numpy path of the kernel (no compiling; the same
    bits as numba's, which this process may take) and a cache of their own."""
    from distributed import Client, LocalCluster

    env = {"FIGSPEC_KERNEL": "numpy", "FIGSPEC_CACHE": str(tmp_path_factory.mktemp("workers"))}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env=env) as local, \
            Client(local, set_as_default=False) as client:
        yield local.scheduler_address, client


def sweep(project: Path) -> None:
    """A run of three steps, drawn against the previous step and against
    the base (F32: update_rank of the steps too)."""
    ck.make_run(project / "ckpt", STEPS, dtype="F32")
    for name, metric, compare in (("previous", "relative_change", "previous"),
                                  ("ranks", "update_rank", "base")):
        support.write(project / "specs" / f"{name}.yaml", (
            f"data:\n  checkpoints: ../ckpt/run/checkpoint-*\n  base: ../ckpt/base\n"
            f"  metric: {metric}\n  compare: {compare}\n"
            "modules: [q_proj, k_proj, up_proj]\noutput: {formats: [svg]}\n"))


def built(project: Path, out: str) -> dict[str, bytes]:
    """The figures of an out dir and the numbers written beside the specs
    (taken away: the next build computes them again)."""
    files = {p.name: p.read_bytes() for p in (project / out).iterdir()
             if not p.name.startswith(".")}
    for numbers in sorted((project / "specs").glob("*.numbers.json")):
        files[numbers.name] = numbers.read_bytes()
        numbers.unlink()
    return files


def local_then_on(project: Path, run, monkeypatch: pytest.MonkeyPatch, address: str
                  ) -> tuple[dict[str, bytes], dict[str, bytes], str]:
    """The sweep built here, then on the cluster from a cache of its own."""
    code, _, err = run("build", "--out", "here")
    assert code == 0, err
    here = built(project, "here")
    monkeypatch.setenv("FIGSPEC_CACHE", str(project / "another-cache"))
    code, out, err = run("build", "--out", "there", "--engine", address)
    assert code == 0, err
    return here, built(project, "there"), out


def test_a_sweep_on_the_cluster_is_the_local_build_byte_for_byte(
        project: Path, run, cluster, monkeypatch: pytest.MonkeyPatch):
    address, client = cluster
    sweep(project)
    here, there, out = local_then_on(project, run, monkeypatch, address)
    assert sorted(here) == ["previous.numbers.json", "previous.svg", "ranks.numbers.json",
                            "ranks.svg"]
    assert there == here
    # each pair a task, said as it came back, and by which worker
    assert f"reducing {PAIRS} checkpoint pairs on the Dask cluster at {address} (2 workers)" \
        in out, out
    reduced = [line for line in out.splitlines() if "] reduced " in line]
    assert len(reduced) == PAIRS, out
    assert "ckpt/run/checkpoint-300 against ckpt/run/checkpoint-200" in out
    workers = set(client.scheduler_info()["workers"])
    assert all(line.rsplit("on ", 1)[1].rstrip(")") in workers for line in reduced), out
    # kept in figspec's cache as a local build keeps them: a rebuild reduces nothing
    code, out, _ = run("build", "--out", "there", "--engine", address, "--force")
    assert code == 0 and "reducing" not in out, out


def test_a_worker_killed_mid_task_is_retried_and_the_build_finishes(
        project: Path, run, cluster, monkeypatch: pytest.MonkeyPatch):
    from distributed import WorkerPlugin

    address, client = cluster
    marker = project / "killed"

    class DiesOnce(WorkerPlugin):
        """The first worker to start a reduction's task dies as it does."""

        def __init__(self, marker: str):
            self.marker = marker

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and str(key).startswith("figspec-reduce") and \
                    not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)

    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")  # numba's path: the test above
    sweep(project)
    client.register_plugin(DiesOnce(str(marker)), name="dies-once")
    try:
        here, there, out = local_then_on(project, run, monkeypatch, address)
    finally:
        client.unregister_worker_plugin("dies-once")
        client.wait_for_workers(2, timeout=60)  # its nanny starts it again
    assert marker.exists()
    assert there == here
    assert len([line for line in out.splitlines() if "] reduced " in line]) == PAIRS, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_address_is_a_diagnostic_at_once(project: Path, run):
    sweep(project)
    port = free_port()
    start = time.monotonic()
    code, out, err = run("build", "--engine", f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - start < 10
    assert code == 1 and "2 failed" in out, out
    assert (f"specs/previous.yaml: error: cannot reach the Dask scheduler at "
            f"tcp://127.0.0.1:{port}: nothing listens at 127.0.0.1:{port}; start the "
            "cluster") in err, err
    assert "Traceback" not in err
    assert not list((project / "specs").glob("*.numbers.json"))


def test_a_port_where_something_else_answers_is_a_diagnostic_at_once(project: Path, run):
    """A web server's port (the dashboard's, say): said so, not waited on."""
    sweep(project)
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        for _ in range(4):
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    code, _, err = run("build", "--engine", address)
    server.close()
    assert time.monotonic() - start < 10
    assert code == 1 and f"no Dask scheduler answers at {address}" in err, err
    assert "Traceback" not in err


def test_figspec_build_takes_an_engine_too(project: Path):
    import figspec

    sweep(project)
    port = free_port()
    results = figspec.build(engine=f"tcp://127.0.0.1:{port}")
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].diagnostics[0].message == (f"cannot reach the Dask scheduler at "
                                                 f"tcp://127.0.0.1:{port}: nothing listens at "
                                                 f"127.0.0.1:{port}")


def test_the_engine_of_figspec_yaml_and_local_on_the_command_line(
        project: Path, run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")
    sweep(project)
    port = free_port()
    support.write(project / "figspec.yaml", f"engine: tcp://127.0.0.1:{port}\n")
    code, _, err = run("build")
    assert code == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err
    code, out, err = run("build", "--engine", "local")
    assert code == 0 and "2 built" in out, err
    support.write(project / "figspec.yaml", "engine: [tcp://a:1]\n")
    code, _, err = run("check")
    assert code == 1 and "figspec.yaml:1:9: error: `engine` must be a Dask scheduler's " \
        "address or `local`" in err, err
    code, _, err = run("build", "--engine", "http://x/")
    assert code == 2 and "expected a Dask scheduler's address" in err


def test_a_build_without_an_engine_imports_nothing_of_dask(
        project: Path, monkeypatch: pytest.MonkeyPatch):
    """A build reducing checkpoints here loads neither dask nor distributed."""
    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")  # not compiled again in a fresh process
    sweep(project)
    code = ("import sys; from figspec.cli import main; rc = main(['build']); "
            "print(rc, [m for m in ('dask', 'distributed') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                         text=True, check=True).stdout
    assert "reducing" not in out and out.splitlines()[-1] == "0 []", out
