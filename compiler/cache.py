"""figspec's cache folder: what is slow to make and safe to make again (the
fontconfig file that keeps the machine's fonts out, the bundled Vega for HTML
pages, computed metrics next), and the logs of internal errors.

Where: ``$FIGSPEC_CACHE``, else ``$XDG_CACHE_HOME/figspec``, else
``~/.cache/figspec``. Entries are written atomically, and :func:`lock` makes
concurrent builds take turns to make one. Losing the folder costs time, never
correctness: every reader falls back to making the entry again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator

from .files import write_atomic


def folder() -> Path:
    """The cache folder (not created)."""
    if os.environ.get("FIGSPEC_CACHE"):
        return Path(os.environ["FIGSPEC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "figspec"


@contextlib.contextmanager
def lock(name: str) -> Iterator[None]:
    """Hold the cache's lock ``name`` (an advisory file lock) while the block
    runs; without a writable cache, run it unlocked."""
    try:
        folder().mkdir(parents=True, exist_ok=True)
        handle = open(folder() / f"{name}.lock", "a+b")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def entry(name: str, make: Callable[[], bytes]) -> bytes:
    """The cached bytes of ``name``, made (once, under its lock) if missing.
    A cache that cannot be written only costs making it again next time."""
    path = folder() / name
    with contextlib.suppress(OSError):
        return path.read_bytes()
    with lock(name):
        with contextlib.suppress(OSError):  # made while we waited for the lock
            return path.read_bytes()
        content = make()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, content)
        return content


def put(name: str, content: bytes) -> Path | None:
    """Write ``name`` unless it already holds ``content``; its path, or None
    when the cache cannot be written."""
    path = folder() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, content)
    except OSError:
        return None
    return path
