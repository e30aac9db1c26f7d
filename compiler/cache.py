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
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .files import read_bounded, write_atomic


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
    """The cached bytes of ``name``, made (once, under its lock) if missing or
    damaged: each entry is stored with its size and SHA-256 beside it
    (``name.sha256``), and one that does not match them is made again. A
    cache that cannot be written only costs making it again next time."""
    path = folder() / name
    with contextlib.suppress(OSError):
        return _verified(path)
    with lock(name):
        with contextlib.suppress(OSError):  # made while we waited for the lock
            return _verified(path)
        content = make()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, content)
            write_atomic(_digest_of(path), _digest(content))
        return content


def _digest_of(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(content: bytes) -> bytes:
    return f"{len(content)} {hashlib.sha256(content).hexdigest()}\n".encode()


def _verified(path: Path) -> bytes:
    """The entry's bytes if they are what was stored; else OSError."""
    expected = read_bounded(_digest_of(path), 200)
    size = expected.split(maxsplit=1)[0] if expected.strip() else b""
    # a damaged digest file (not "SIZE SHA256") makes the entry damaged, never a crash
    content = read_bounded(path, int(size) if size.isdigit() and len(size) < 16 else 0)
    if _digest(content) != expected:
        raise OSError(f"cache entry {path} is damaged")
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
