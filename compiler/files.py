"""Files in and out: the stamp of a file as it was read, and atomic writes.

A stamp is of a whole file (its hash), of a file too large to hash (its
identity), or of a glob (the names it matches): the manifest checks each
kind as this module says, whatever source took it.

Shared by the stages that read (``source``, ``data``), the manifest that
compares stamps, and everything that writes (``build``, ``render``'s cache).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import io
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diagnostics import display_path

#: The files a figure can be written as: what the renderer draws and what a
#: spec's `output.formats` may name (here, so that the spec language knows
#: them without importing the renderer).
FORMATS = ("svg", "png", "pdf", "html")

#: The part of a figure's input standing for a glob's matches (a run's
#: checkpoints): ``folder::glob:pattern``, its stamp's digest that of the names.
GLOB_PART = "glob:"
#: The part of a figure's input standing for a checkpoint read in place (the
#: Hub, a store): ``hf:org/name@main::remote:``, its stamp's digest its content's.
REMOTE_PART = "remote:"
#: How ``status`` names a file stamped by identity, and the entries a glob
#: input stands for: only checkpoints are either (their shards are too large
#: to hash; a run is a glob of them). Said here, with the kinds of stamp, so
#: that the manifest checks and describes every input without knowing a source.
IDENTITY_NAME, GLOB_NAME = "checkpoint", "checkpoint"


@dataclass(frozen=True)
class Stamp:
    """Size and mtime (cheap to compare) and SHA-256 (the truth) of a file.

    A file too large to hash on every change (a checkpoint's shard) gets an
    identity stamp instead: no hash, but its inode and ctime, so that a file
    rewritten in place with its size and mtime restored still differs (the
    kernel sets ctime on every write; nobody can set it back)."""

    size: int
    mtime_ns: int
    sha256: str = ""
    inode: int | None = None
    ctime_ns: int | None = None
    #: a part of the file (``roots.ckpt`` of figspec.yaml): ``sha256`` is that
    #: part's, so editing the rest of the file leaves it the same
    part: str | None = None
    #: how `status` names the input, and what it held when read (a hub ref:
    #: the commit it named; a root: the folder it resolved to), so that a
    #: change is said as "LABEL is now X (was HELD)"
    label: str | None = None
    held: str | None = None

    @classmethod
    def of(cls, path: Path, content: bytes) -> Stamp:
        """The stamp of ``path``, which holds ``content``."""
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns, hashlib.sha256(content).hexdigest())

    @classmethod
    def identity(cls, st: os.stat_result) -> Stamp:
        """The identity stamp of a file whose stat is ``st`` (taken before reading it)."""
        return cls(st.st_size, st.st_mtime_ns, "", st.st_ino, st.st_ctime_ns)

    @property
    def by_identity(self) -> bool:
        return self.ctime_ns is not None

    def record(self) -> dict[str, int | str]:
        """As the manifest stores it: identity fields only when set."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def file_state(path: Path) -> tuple[int, ...]:
    """What tells a file changed without reading it: size, mtime, inode and
    ctime (a rewrite in place with its mtime set back still changes ctime);
    (-1,) when it cannot be stat'ed (missing)."""
    try:
        st = path.stat()
    except OSError:
        return (-1,)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class Seen(dict[Path, tuple[int, ...]]):
    """The files a stage looked at, each with its state when first looked at
    (before it was read): a file changed since then, while a figure was being
    checked or after, is told by :meth:`changed`, whatever the timing."""

    def add(self, path: Path) -> None:
        if path not in self:
            self[path] = file_state(path)

    def changed(self) -> bool:
        return any(file_state(p) != state for p, state in self.items())


#: The collectors open in this thread (or task), innermost last: each
#: `recording()` block has its own, so nested and concurrent ones never mix.
_RECORDERS: contextvars.ContextVar[tuple[Seen, ...]] = contextvars.ContextVar(
    "figspec_recorders", default=())


@contextlib.contextmanager
def recording() -> Iterator[Seen]:
    """Collect every file the stages look at (read, or looked for and missing)
    while the block runs: what a watch must watch to retry a failed figure."""
    seen = Seen()
    token = _RECORDERS.set(_RECORDERS.get() + (seen,))
    try:
        yield seen
    finally:
        _RECORDERS.reset(token)


def looked_at(path: Path) -> None:
    """Note that a stage depends on ``path``, whether or not it exists."""
    for seen in _RECORDERS.get():
        seen.add(path.absolute())


class BadPath(ValueError):
    """A path no file can have or none can be reached by: ``why`` says so,
    to follow the path as written ("contains a NUL character")."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


NUL, LOOP = "contains a NUL character", "is a symbolic link loop"


def resolved(path: Path) -> Path:
    """``path.resolve()``, or BadPath for a path holding a NUL character (no
    file can: the OS refuses it with ValueError) or leading into a loop of
    symbolic links (Python 3.11 raises RuntimeError, 3.13 returns a path
    whose stat fails with ELOOP): both said as what is wrong with the path,
    never a traceback."""
    if "\x00" in str(path):
        raise BadPath(NUL)
    try:
        real = path.resolve()
    except RuntimeError:
        raise BadPath(LOOP) from None
    if is_loop(real):
        raise BadPath(LOOP)
    return real


def is_loop(path: Path) -> bool:
    """Whether following ``path`` runs into a loop of symbolic links."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    except ValueError:  # a NUL character
        return False
    return False


class TooLarge(OSError):
    """A file larger than the caller allows."""


def open_regular(path: Path) -> io.BufferedReader:
    """``path`` opened for reading if it is a regular file, else OSError: a
    FIFO is never waited on (opened without blocking, then refused) and a
    device such as /dev/zero never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_stamped(path: Path, limit: int | None = None) -> tuple[bytes, Stamp]:
    """A file's bytes and its stamp: stat taken before reading, hash of the
    bytes read. A file edited while it is read thus shows as changed later,
    never as unchanged. More than ``limit`` bytes: TooLarge, having read no
    more than that."""
    looked_at(path)
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        raw = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise TooLarge(errno.EFBIG, f"larger than {limit:,} bytes", str(path))
    return raw, Stamp(st.st_size, st.st_mtime_ns, hashlib.sha256(raw).hexdigest())


#: Bytes read at a time when hashing: memory stays bounded whatever the size.
_CHUNK = 1 << 20


def hash_file(path: Path, size: int) -> str:
    """SHA-256 of the first ``size`` bytes of a file, streamed."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        left = size
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, or OSError when it is not a regular file or is
    larger than ``limit``: a hostile name never makes us read without end."""
    with open_regular(path) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(errno.EFBIG, f"larger than {limit:,} bytes", str(path))
    return raw


def write_atomic(target: Path, content: bytes) -> bool:
    """Write ``content`` to ``target`` through a temporary file and a rename,
    so a reader (or a crash) never sees a truncated file. Returns False, and
    leaves the file untouched, when it already holds exactly ``content``."""
    return bool(write_together({target: content}))


def write_together(contents: dict[Path, bytes]) -> list[Path]:
    """Write several files so that they change together or not at all: every
    temporary file is written (and synced) first, and only then renamed over
    its target, so a full disk or a read-only folder leaves every target as
    it was (an OSError says why). Files already holding their content are
    not rewritten. Returns the files written."""
    pending: list[tuple[str, Path]] = []
    try:
        for target, content in contents.items():
            if _holds(target, content):
                continue
            fd, tmp = _create_temporary(target)
            pending.append((tmp, target))
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        for tmp, target in pending:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [target for _, target in pending]


def _create_temporary(target: Path) -> tuple[int, str]:
    """A new file ``.NAME.<random>.tmp`` beside ``target``, opened for writing.
    Made with mode 0666 so the kernel applies the process's umask, as for any
    file the user makes (mkstemp's 0600 would need the umask read, and
    reading it means setting it: a library must not touch its caller's)."""
    for _ in range(100):
        tmp = str(target.parent / f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(target.parent))


def _holds(target: Path, content: bytes) -> bool:
    try:
        st = target.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(content):
            return False
        with open_regular(target) as f:
            return f.read(len(content) + 1) == content
    except OSError:
        return False


#: How figspec's temporary files end; ``.NAME.<random>.tmp`` in the target's folder.
TEMP_SUFFIX = ".tmp"
#: A temporary file older than this was left by a write that was killed.
STALE_TEMP_SECONDS = 3600


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files of figspec's own naming that a killed write left
    in ``folder``. Only old ones: a concurrent build may be writing a fresh one."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX) and name.count(".") >= 3):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and \
                    now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


# -- globs: a folder's entries matching a pattern, as an input ----------------------

def glob_names(folder: Path, pattern: str) -> list[str] | None:
    """The names in ``folder`` matching ``pattern``: folders and .safetensors
    files (what a glob input stands for: a checkpoint is one or the other),
    hidden ones left out, sorted; None when the folder is not there."""
    import fnmatch

    looked_at(folder)
    try:
        entries = list(os.scandir(folder))
    except (OSError, ValueError):  # ValueError: a NUL character
        return None
    return sorted(e.name for e in entries
                  if not e.name.startswith(".") and fnmatch.fnmatchcase(e.name, pattern)
                  and _checkpoint_like(e))


def _checkpoint_like(entry: os.DirEntry[str]) -> bool:
    """A folder or a .safetensors file; or a link that loops, which is a
    match for the reader to name (its stat fails: it is neither)."""
    if entry.name.endswith(".safetensors"):
        return True
    try:
        return entry.is_dir()
    except OSError as e:
        return e.errno == errno.ELOOP


def glob_input(folder: Path, pattern: str) -> tuple[Path, Stamp]:
    """An input of a figure standing for a glob: the names it matches (its
    stamp's size is how many, its digest theirs). A new match makes the
    figure stale; the folder is what a watch polls."""
    names = glob_names(folder, pattern) or []
    try:
        mtime = folder.stat().st_mtime_ns
    except (OSError, ValueError):
        mtime = 0
    return (Path(f"{folder}::{GLOB_PART}{pattern}"),
            Stamp(len(names), mtime, names_digest(names), part=GLOB_PART + pattern))


def names_digest(names: list[str]) -> str:
    return hashlib.sha256(json.dumps(names).encode()).hexdigest()


def glob_same(folder: Path, stamp: dict[str, Any]) -> bool:
    """Whether a glob input (as the manifest records it) matches the names it matched."""
    return names_digest(glob_names(folder, stamp["part"][len(GLOB_PART):]) or []) == \
        stamp["sha256"]


def glob_change(folder: Path, stamp: dict[str, Any]) -> str:
    """What a glob input matches now that it did not, as ``status`` says it:
    "2 new checkpoints (runs/grpo/checkpoint-*)"."""
    pattern = stamp["part"][len(GLOB_PART):]
    now = len(glob_names(folder, pattern) or [])
    was = stamp["size"]
    where = f"{display_path(folder / pattern)}"
    if now > was:
        return f"{now - was} new {GLOB_NAME}{'s' if now - was > 1 else ''} ({where})"
    if now < was:
        return f"{was - now} {GLOB_NAME}{'s' if was - now > 1 else ''} gone ({where})"
    return f"the {GLOB_NAME}s matching {where} changed"
