"""The worker pool: figures drawn in worker processes, plain Vega-Lite in,
files out.

Workers run only :mod:`figspec.render` (neither pydantic nor Altair: a
100-figure build peaked at 417 MB this way, against 467 MB when workers
built the charts). They are forked by a fork server, warmed once, end with
the build's process however it ends, and a worker that dies (killed: out of
memory?) is replaced, its figures drawn again once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from .render import Drawing, RenderJob, render_task, warm_up
from .session import cores

#: What the caller tags each job with (a build's Result, diff's image name).
Tag = TypeVar("Tag")


class Drawer(Generic[Tag]):
    """Draws figures in worker processes, or in this process when at most one
    figure (or one job) is asked for: a worker's start costs ~2 s.

    Workers get plain Vega-Lite and run only :mod:`figspec.render`: they load
    neither pydantic nor Altair, which keeps them smaller (measured: peak of a
    100-figure build 417 MB, against 467 MB when workers built the charts)."""

    def __init__(self, jobs: int | None, expected: int):
        self.jobs = min(jobs or cores(), expected)
        self.pool: Any = None
        self.futures: dict[Future[Any], tuple[Tag, RenderJob]] = {}
        self.local: list[tuple[Tag, RenderJob]] = []
        #: Every worker process started (by every pool: a lost pool is
        #: replaced), so that an interruption can stop them at once.
        self.started: list[Any] = []

    def __enter__(self) -> Drawer:
        if self.jobs > 1:
            self.pool = self._pool()
        return self

    def _pool(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import forkserver

        # Workers report their errors as values; what they would print on
        # stderr is the noise of a worker started as the build is interrupted
        # (a traceback about a semaphore already gone). The fork server, and
        # the workers it forks, get no stderr.
        with _stderr_to_devnull():
            forkserver.ensure_running()

        # forkserver: workers fork from a fresh server process, never from
        # one that has run vl-convert (a process forked after a conversion hangs).
        # warm_up: vl-convert's first conversion costs ~1 s; and each worker
        # ends when this process does, however it ends.
        context: Any = _Recording(multiprocessing.get_context("forkserver"), self.started)
        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=context,
                                   initializer=warm_up, initargs=(os.getpid(),))

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self.pool is None:
            return
        if kind is None:
            self.pool.shutdown(cancel_futures=True)
            return
        # Interrupted (Ctrl-C, SIGTERM), perhaps inside the pool's own start-up:
        # stop the workers now rather than wait for them, and never let the
        # pool's half-made state turn the interruption into a traceback.
        for worker in list(self.started):
            with contextlib.suppress(Exception):  # not started yet, or gone
                if worker.is_alive():
                    worker.kill()
        with contextlib.suppress(Exception):
            self.pool.shutdown(wait=False, cancel_futures=True)

    def drawing(self, r: Tag) -> bool:
        """Whether ``r`` was sent to be drawn."""
        return any(x is r for x, _ in self.local) or \
            any(x is r for x, _ in self.futures.values())

    def busy(self) -> int:
        """Worker processes at work now (a core each), at most the pool's size."""
        if self.pool is None:
            return 0
        return min(self.jobs, sum(1 for f in self.futures if not f.done()))

    def submit(self, r: Tag, job: RenderJob) -> None:
        if self.pool is None:
            self.local.append((r, job))
        else:
            from concurrent.futures.process import BrokenProcessPool

            try:
                future = self.pool.submit(render_task, job)
            except BrokenProcessPool:  # a worker died: results() draws its figures again
                self.pool.shutdown(cancel_futures=True)
                self.pool = self._pool()
                future = self.pool.submit(render_task, job)
            self.futures[future] = (r, job)

    def finished(self, at_most: int) -> Iterator[tuple[Tag, Drawing]]:
        """The figures drawn so far, each once (results() then skips them),
        after waiting until at most ``at_most`` are still waiting or being
        drawn: what a caller submitting many figures calls after each, so
        that neither the figures queued nor the files drawn pile up in its
        memory. In this process (no pool), the figures asked for are drawn
        now. A figure whose worker died is left to results(), which draws it
        again."""
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        while self.local:
            r, job = self.local.pop(0)
            yield r, render_task(job)
        while sum(1 for f in self.futures if not f.done()) > at_most:
            wait([f for f in self.futures if not f.done()], return_when=FIRST_COMPLETED)
        for future in [f for f in self.futures if f.done() and not f.cancelled()]:
            if isinstance(future.exception(), BrokenProcessPool):
                continue
            r, _ = self.futures.pop(future)
            yield r, _drawing(future)

    def results(self) -> Iterator[tuple[Tag, Drawing]]:
        """Each submitted figure with its files (or the error), as they finish.
        When a worker dies (killed: out of memory?), the pool is lost with
        every figure not yet drawn; those are drawn again, once, by fresh
        workers, and a figure whose worker dies twice fails saying so."""
        while self.local:
            r, job = self.local.pop(0)
            yield r, render_task(job)
        # Each future is forgotten once collected: it holds the figure's
        # Vega-Lite and its drawn files, which a build's memory must not keep.
        jobs, self.futures = self.futures, {}
        for attempt in (1, 2):
            lost: list[tuple[Tag, RenderJob]] = []
            yield from self._collect(jobs, lost, last=attempt == 2)
            if not lost:
                return
            self.pool.shutdown(cancel_futures=True)
            self.pool = self._pool()
            jobs = {self.pool.submit(render_task, job): (r, job) for r, job in lost}

    def _collect(self, futures: dict[Future[Any], tuple[Tag, RenderJob]],
                 lost: list[tuple[Tag, RenderJob]], last: bool
                 ) -> Iterator[tuple[Tag, Drawing]]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        for future in as_completed(futures):
            r, job = futures.pop(future)
            if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
                if not last:
                    lost.append((r, job))
                    continue
                yield r, Drawing(None, "a drawing worker died twice drawing this figure "
                                 "(killed: out of memory?)")
                continue
            yield r, _drawing(future)


def _drawing(future: Future[Any]) -> Drawing:
    """A finished future's drawing; a worker that failed otherwise than by
    dying is reported as a bug, and the build keeps going."""
    try:
        return future.result()
    except Exception as e:
        return Drawing(None, f"worker process failed: {e}", bug=True)


class _Recording:
    """A multiprocessing context (``base``) that adds each process it makes
    to ``started``: the pool's workers, known without the pool's private
    attributes. Everything else is the base context's."""

    def __init__(self, base: Any, started: list[Any]):
        self._base = base
        self._started = started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def Process(self, *args: Any, **kwargs: Any) -> Any:  # the context's name for it
        process = self._base.Process(*args, **kwargs)
        self._started.append(process)
        return process


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 points at /dev/null while the block runs (a process
    started then inherits that), and is restored after."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
