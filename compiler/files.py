"""Files in and out: the stamp of a file as it was read, and atomic writes.

Shared by the stages that read (``source``, ``data``), the manifest that
compares stamps, and everything that writes (``build``, ``render``'s cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# mkstemp makes files private (0600); outputs get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class Stamp:
    """Size and mtime (cheap to compare) and SHA-256 (the truth) of a file."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path, content: bytes) -> Stamp:
        """The stamp of ``path``, which holds ``content``."""
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns, hashlib.sha256(content).hexdigest())


#: Collectors of the files looked at, innermost last (see ``recording``).
_RECORDERS: list[set[Path]] = []


@contextlib.contextmanager
def recording() -> Iterator[set[Path]]:
    """Collect every file the stages look at (read, or looked for and missing)
    while the block runs: what a watch must watch to retry a failed figure."""
    seen: set[Path] = set()
    _RECORDERS.append(seen)
    try:
        yield seen
    finally:
        _RECORDERS.remove(seen)


def looked_at(path: Path) -> None:
    """Note that a stage depends on ``path``, whether or not it exists."""
    for seen in _RECORDERS:
        seen.add(path.absolute())


def read_stamped(path: Path) -> tuple[bytes, Stamp]:
    """A file's bytes and its stamp: stat taken before reading, hash of the
    bytes read. A file edited while it is read thus shows as changed later,
    never as unchanged."""
    looked_at(path)
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        raw = f.read()
    return raw, Stamp(st.st_size, st.st_mtime_ns, hashlib.sha256(raw).hexdigest())


def write_atomic(target: Path, content: bytes) -> bool:
    """Write ``content`` to ``target`` through a temporary file and a rename,
    so a reader (or a crash) never sees a truncated file. Returns False, and
    leaves the file untouched, when it already holds exactly ``content``."""
    try:
        if target.stat().st_size == len(content) and target.read_bytes() == content:
            return False
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
