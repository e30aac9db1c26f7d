"""Checkpoint reductions on a Dask cluster: ``figspec build --engine
tcp://scheduler:8786`` (or ``engine:`` in figspec.yaml).

The alternative to the local reduction threads (:meth:`figspec.session.Session.
reduce_threads`): while a build checks its figures cheaply, each checkpoint
pair whose sums no cache holds is gathered in the session
(:class:`figspec.session.Reduction`: plain data, the tensors' files, names
and byte offsets, the options). :class:`Cluster` sends each pair to an
existing Dask cluster as one task; the worker reads the files itself (a
path on a shared filesystem) and sends back only the sums, computed by
the code a local build runs (:func:`figspec.sources.reduce.reduce_all`,
chunks in a fixed order), so the figure is the same, bit for bit. A worker
lost mid-task is Dask's to retry (its ``allowed-failures``); a pair whose
workers die that often, or which the workers cannot read, fails its
figures with a diagnostic, and so does a cluster that cannot be reached
(its connection is bounded: :data:`PROBE_SECONDS`, :data:`CONNECT_SECONDS`).

Dask (``pip install 'figspec[dask]'``) is imported only here, and only
when a build has an engine and something to reduce.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .session import Reduction, Sums
from .versions import VERSION

#: Seconds to wait for the scheduler's port to accept a connection, before
#: Dask is asked to connect: a wrong host or port is said at once (refused,
#: no such host), or after this long (a host that does not answer).
PROBE_SECONDS = 5.0
#: Seconds Dask's client may take to connect once the port answers, and a
#: cluster without workers to get one.
CONNECT_SECONDS = 10.0
#: The port of a Dask scheduler, where an address names none.
DEFAULT_PORT = 8786


class EngineError(Exception):
    """The cluster cannot be used: what to say, and how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Done:
    """One pair's task came back: its sums; or why it has none (``problem``,
    with a hint) when the workers could not reduce it; or neither, for a
    pair the build reduces itself (a checkpoint damaged: the local reading
    says where, at the spec's key)."""

    sums: Sums | None
    #: the worker that reduced it ("tcp://10.0.0.7:40213")
    worker: str = ""
    problem: str | None = None
    hint: str | None = None


class Cluster:
    """A Dask cluster's scheduler, connected to for one build (a context
    manager: the connection ends with it, and every task not done is
    released, so an interrupted build leaves the cluster idle)."""

    def __init__(self, address: str):
        self.address = address
        self.client: Any = None

    def __enter__(self) -> Cluster:
        _probe(self.address)
        try:
            from distributed import Client
        except ImportError:
            raise EngineError("reducing checkpoints on a Dask cluster needs Dask's "
                              "`distributed`, which is not installed",
                              "pip install 'figspec[dask]'") from None
        _identify(self.address)
        try:
            # set_as_default=False: the process's Dask settings stay the caller's
            self.client = Client(self.address, timeout=CONNECT_SECONDS, set_as_default=False)
        except Exception as e:  # a scheduler going away meanwhile
            raise EngineError(f"cannot connect to the Dask scheduler at {self.address}: "
                              f"{_said(e)}", _START) from None
        try:
            self.client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except Exception:  # TimeoutError: nothing would ever run the tasks
            self.__exit__(None)
            raise EngineError(f"the Dask cluster at {self.address} has no workers "
                              f"(none joined in {CONNECT_SECONDS:.0f} s)",
                              f"start some: `dask worker {self.address}`") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # already gone: nothing to release
                self.client.close(timeout=CONNECT_SECONDS)
            self.client = None

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def reduce(self, work: dict[str, Reduction]) -> Iterator[tuple[str, Done]]:
        """Each pair of ``work`` (key -> reduction) as its task comes back, in
        the order they finish. EngineError when the cluster is lost."""
        from distributed import as_completed

        token = secrets.token_hex(4)  # this build's tasks, never another's of the same pair
        futures = {self.client.submit(reduce_task, reduction, VERSION, pure=False,
                                      key=f"figspec-reduce-{key[:16]}-{token}",
                                      priority=-i): key
                   for i, (key, reduction) in enumerate(work.items())}
        # this client's loop: it is not the default client (the caller's stays theirs)
        for future in as_completed(futures, loop=self.client.loop):
            yield futures[future], _outcome(future)


def reduce_task(reduction: Reduction, version: str) -> tuple[str, Any, str]:
    """What a worker runs for one pair: its sums, by the code a local build
    runs on one thread (the worker's threads are Dask's: one per task).
    Returns (kind, value, worker): ("sums", sums), ("unreadable", why) for
    a file the worker cannot open, ("damaged", why) for a checkpoint that
    cannot be read as one, ("version", the worker's figspec version)."""
    worker = _worker_address()
    if VERSION != version:  # other code: the same bits are not promised
        return "version", VERSION, worker
    from .sources.reduce import reduce_all
    from .sources.safetensors import CheckpointError

    try:
        sums = reduce_all(reduction.tensors, reduction.base, reduction.options,
                          set(reduction.ranks), threads=1)
    except CheckpointError as e:
        return "damaged", e.text(), worker
    except OSError as e:
        return "unreadable", f"{e.strerror or e} ({e.filename})" if e.filename else str(e), \
            worker
    return "sums", sums, worker


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # run outside a worker (a test, a LocalCluster's thread)
        return ""


def _outcome(future: Any) -> Done:
    """A finished task's Done; EngineError where the scheduler is gone."""
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    try:
        kind, value, worker = future.result()
    except KilledWorker:
        return Done(None, problem="the Dask workers reducing this pair died, one after "
                    "another (killed: out of memory? or a file of it cut short while it was "
                    "read, which ends the reading process with SIGBUS)",
                    hint="give the workers more memory, or save the checkpoint beside "
                    "and rename it into place; or build here with `--engine local`")
    except (OSError, TimeoutError) as e:  # the connection to the scheduler is lost
        raise EngineError(f"the connection to the Dask scheduler was lost: {_said(e)}",
                          "build again once the cluster is back") from None
    except CancelledError:  # the scheduler restarted, or forgot this client
        raise EngineError("the Dask scheduler cancelled this build's tasks (restarted, or "
                          "the connection to it was lost)",
                          "build again once the cluster is back") from None
    except Exception as e:  # the task could not run there: figspec not on the workers?
        return Done(None, problem=f"a Dask worker could not reduce this pair: {_said(e)}",
                    hint="install figspec, the same version, where the workers run")
    if kind == "sums":
        return Done(value, worker)
    if kind == "version":
        return Done(None, worker, f"the Dask worker {worker} runs figspec {value}, "
                    f"this build figspec {VERSION}",
                    "install the same figspec where the workers run")
    if kind == "unreadable":
        return Done(None, worker, f"the Dask worker {worker} cannot read the checkpoint: "
                    f"{value}", "the workers must see the checkpoints at the same path as "
                    "this machine (a shared filesystem)")
    return Done(None, worker)  # damaged: reduced again here, which says where, at its key


def _probe(address: str) -> None:
    """EngineError unless the scheduler's port accepts a connection within
    PROBE_SECONDS (addresses of a protocol other than TCP are left to Dask)."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp", "tls", "ws", "wss"):
        return
    host, _, port = rest.rpartition(":") if not rest.endswith("]") else (rest, "", "")
    if not host or not port.isdigit():
        host, port = rest, str(DEFAULT_PORT)
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_SECONDS):
            return
    except socket.gaierror:
        why = f"there is no host `{host}`"
    except ConnectionRefusedError:
        why = f"nothing listens at {host}:{port}"
    except TimeoutError:
        why = f"{host}:{port} did not answer in {PROBE_SECONDS:.0f} s"
    except OSError as e:
        why = _said(e)
    raise EngineError(f"cannot reach the Dask scheduler at {address}: {why}", _START)


def _identify(address: str) -> None:
    """EngineError unless a Dask scheduler answers at ``address`` within
    CONNECT_SECONDS. Asked by hand, on a loop of its own (in a thread of its
    own: the caller's may run one), so that a port where something else
    listens (a dashboard's, a proxy's) is said in bounded time, and left
    with nothing to tear down: Dask's client, failing there, waits twice
    its timeout again to close."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect
    from distributed.security import Security

    async def ask() -> Any:
        comm = await connect(address, timeout=CONNECT_SECONDS,
                             **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def answer() -> Any:
        return asyncio.run(asyncio.wait_for(ask(), CONNECT_SECONDS))

    with ThreadPoolExecutor(1) as thread:
        try:
            reply = thread.submit(answer).result()
        except Exception as e:  # TimeoutError, a peer speaking another protocol
            why = (f"no answer in {CONNECT_SECONDS:.0f} s" if isinstance(e, TimeoutError) else
                   _said(e) if isinstance(e, OSError) else
                   "what answers there does not speak Dask's protocol")
            raise EngineError(f"no Dask scheduler answers at {address}: {why}", _START) from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        what = reply.get("type") if isinstance(reply, dict) else None
        raise EngineError(f"no Dask scheduler answers at {address}" +
                          (f": a Dask {what} does" if isinstance(what, str) else ""),
                          "give the scheduler's address (its port is 8786 unless said "
                          "otherwise; 8787 is its dashboard)")


#: How to get a scheduler to connect to.
_START = ("start the cluster (`dask scheduler`, then `dask worker ADDRESS` where the "
          "checkpoints are), or build here with `--engine local`")


def _said(e: BaseException) -> str:
    """An exception in one line, at most 300 characters."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]
