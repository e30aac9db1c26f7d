"""Reading the tensors' data of checkpoints whose headers
:mod:`figspec.sources.safetensors` has checked, a chunk at a time: a local
shard where it is mapped (a thread's window of the file, its pages let go
behind the reader), a shard read in place by byte ranges into buffers, a
strided or computed tensor into the caller's buffer. The file's size is
checked before each chunk, so a shard that shrank since its header was read
is a CheckpointError, never touched.
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import open_regular
from .remote import Blob, Reader
from .safetensors import DTYPES, CheckpointError, Tensor


@dataclass(frozen=True)
class Computed(Tensor):
    """A tensor whose entries are computed, not stored (a peft adapter's
    merged weights, :mod:`figspec.sources.peft`): :class:`Files` asks it for
    a chunk of its entries, as stored bytes of its ``dtype``."""

    def compute_into(self, files: Files, first: int, count: int, buffer: bytearray
                     ) -> memoryview:
        raise NotImplementedError

    def exact(self, other: Tensor, files: Files) -> dict[str, float] | None:
        """Sums known exactly without reading its entries, against ``other``
        (``dd``, ``update_rank`` as a count); None: none."""
        return None


#: Bytes of a shard read in place asked for at a time (one request).
BLOCK = 8 << 20

#: Bytes of a shard one thread maps at a time: a window moved along the
#: file as the thread reads it, unmapped (its pages let go) once passed.
#: Measured (benchmarks/bench_read.py, docs/performance.md): 8 MB windows
#: cost 7-40% less CPU than preadv's copy, never more; a window per chunk
#: costs more than the copy, and letting each chunk's pages go behind the
#: reader (MADV_DONTNEED) more than unmapping them a window at a time.
WINDOW = 8 << 20
#: Windows one thread keeps (one per file it reads): its resident memory
#: stays under WINDOWS * WINDOW. A thread reading more files at once (a run's
#: checkpoints chunk by chunk against their base) reads the others by pread.
WINDOWS = 4
#: Reads by a thread after which a window it has not read from is let go
#: for another file's.
STALE = 64
_GRAIN = mmap.ALLOCATIONGRANULARITY


class _Window:
    """A span of a shard mapped for one thread. Mapped private and writable
    (never written: no page is copied), so the kernel gets the writable
    arrays it is compiled for."""

    __slots__ = ("map", "view", "start", "end", "used")

    def __init__(self, fd: int, start: int, length: int) -> None:
        self.map = mmap.mmap(fd, length, access=mmap.ACCESS_COPY, offset=start)
        self.view = memoryview(self.map)
        self.start, self.end = start, start + length
        #: the thread's read count when it last read from here
        self.used = 0

    def close(self) -> None:
        """Unmapped; or where a view of it is still alive (a caller's last
        chunk), its pages let go now (the page cache keeps them) and the map
        unmapped with that view."""
        self.view.release()
        try:
            self.map.close()
        except BufferError:
            if hasattr(self.map, "madvise"):
                self.map.madvise(mmap.MADV_DONTNEED)


class _Held:
    """One thread's windows (file -> window) and its count of reads."""

    def __init__(self) -> None:
        self.windows: dict[Path, _Window] = {}
        self.reads = 0


class Files:
    """Open shards, read a chunk at a time. A local tensor's entries are
    handed out where the file is mapped, no copy: each thread maps a window
    of :data:`WINDOW` bytes of each file it reads (up to :data:`WINDOWS`),
    and unmaps it once it reads past it, so the process's resident memory
    stays a few windows per thread however much it reads. The file's size
    is checked (fstat) before each chunk: a file that shrank since its
    header was read is a CheckpointError, never touched. A shard read in
    place (by byte ranges), a strided view, a computed tensor, and a file
    that cannot be mapped are read into the caller's buffer (preadv). Safe
    from several threads: windows are a thread's own."""

    KINDS = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8", "F8_E4M3": "u1",
             "F8_E5M2": "u1"}

    def __init__(self) -> None:
        self.fds: dict[Path, int] = {}
        self.lock = threading.Lock()
        #: each thread's tensors kept while it reads strided views of them,
        #: and its windows (``held``, a _Held)
        self.local = threading.local()
        #: every window mapped and not yet closed, whichever thread's (for close)
        self.windows: set[_Window] = set()
        #: files that cannot be mapped (a file system without mmap): read by preadv
        self.unmapped: set[Path] = set()
        #: shards read in place: by byte ranges, a block at a time per thread
        self.reader = Reader()
        self.blocks = threading.local()
        #: what a computed tensor keeps while these files are open (its factors)
        self.kept: dict[Any, Any] = {}

    def _fd(self, t: Tensor) -> int:
        assert isinstance(t.file, Path)
        with self.lock:
            if t.file not in self.fds:
                with open_regular(t.file) as f:
                    self.fds[t.file] = os.dup(f.fileno())
            return self.fds[t.file]

    def read(self, t: Tensor, first: int, count: int) -> bytes:
        if isinstance(t, Computed):
            return bytes(t.compute_into(self, first, count, bytearray(count * DTYPES[t.dtype])))
        size = DTYPES[t.dtype]
        if t.segment:
            return bytes(self.read_into(t, first, count, bytearray(count * size)))
        if isinstance(t.file, Blob):
            return self._remote(t, t.start + first * size, count * size, whole=True)
        raw = os.pread(self._fd(t), count * size, t.start + first * size)
        if len(raw) != count * size:  # the file shrank since its header was read
            raise CheckpointError("the file changed while it was read", t.file, t.name)
        return raw

    def read_into(self, t: Tensor, first: int, count: int, buffer: bytearray) -> memoryview:
        """Entries first..first+count of ``t``: where its file is mapped (a
        local tensor, as stored; valid until this thread reads on, past its
        window), else read into the front of ``buffer``."""
        if isinstance(t, Computed):
            return t.compute_into(self, first, count, buffer)
        size = DTYPES[t.dtype]
        if t.segment:
            view = memoryview(buffer)[:count * size]
            self._strided_into(t, first, count, view)
            return view
        mapped = self.mapped(t, first, count)
        if mapped is not None:
            return mapped
        return self._fill(t, t.start + first * size, memoryview(buffer)[:count * size])

    def mapped(self, t: Tensor, first: int, count: int) -> memoryview | None:
        """Entries first..first+count of ``t`` where its file is mapped, as
        stored (valid until this thread reads on, past its window); None
        where they are not to be had so: a computed tensor, a head's
        columns, a shard read in place, a file that cannot be mapped, every
        window of this thread in use."""
        if isinstance(t, Computed) or t.segment or not isinstance(t.file, Path) or not count \
                or t.file in self.unmapped:
            return None
        size = DTYPES[t.dtype]
        return self._mapped(t, t.start + first * size, count * size)

    def _mapped(self, t: Tensor, at: int, length: int) -> memoryview | None:
        """Bytes at..at+length of a local tensor's file where this thread's
        window of it maps them (a new window where none does). None: no
        window for it (the thread's are all in use, or the file cannot be
        mapped): read it into a buffer."""
        assert isinstance(t.file, Path)
        fd = self._fd(t)
        size = os.fstat(fd).st_size  # before each chunk: a shorter file is never touched
        if at + length > size:
            raise CheckpointError("the file changed while it was read", t.file, t.name)
        held = self.local.__dict__.get("held")
        if held is None:
            held = self.local.held = _Held()
        held.reads += 1
        w = held.windows.get(t.file)
        if w is None or not (w.start <= at and at + length <= w.end):
            if w is not None:
                self._forget(held, t.file)
            elif len(held.windows) >= WINDOWS:
                stale = min(held.windows, key=lambda f: held.windows[f].used)
                if held.windows[stale].used > held.reads - STALE:
                    return None  # every window in use: this file by preadv
                self._forget(held, stale)
            w = self._window(t.file, fd, at, length, size)
            if w is None:
                return None
            held.windows[t.file] = w
        w.used = held.reads
        return w.view[at - w.start:at - w.start + length]

    def _window(self, file: Path, fd: int, at: int, length: int, size: int) -> _Window | None:
        start = at - at % _GRAIN
        try:
            w = _Window(fd, start, min(max(WINDOW, at + length - start), size - start))
        except (OSError, ValueError):  # a file system that cannot map files
            with self.lock:
                self.unmapped.add(file)
            return None
        with self.lock:
            self.windows.add(w)
        return w

    def _forget(self, held: _Held, file: Path) -> None:
        w = held.windows.pop(file)
        with self.lock:
            self.windows.discard(w)
        w.close()

    def _fill(self, t: Tensor, at: int, view: memoryview, whole: bool = False) -> memoryview:
        """``view`` filled with the file's bytes from ``at`` on (``whole``: a
        remote file's range fetched as one, not through the thread's block)."""
        if isinstance(t.file, Blob):
            view[:] = self._remote(t, at, len(view), whole)
            return view
        fd = self._fd(t)
        done = 0
        while done < len(view):
            offset = at + done
            if hasattr(os, "preadv"):
                got = os.preadv(fd, [view[done:]], offset)
            else:  # pragma: no cover - platforms without preadv
                piece = os.pread(fd, len(view) - done, offset)
                view[done:done + len(piece)] = piece
                got = len(piece)
            if got == 0:  # the file shrank since its header was read
                raise CheckpointError("the file changed while it was read", t.file, t.name)
            done += got
        return view

    #: Bytes of whole tensors a thread keeps while it reads strided views of
    #: them (the checkpoint's and the base's; a run's steps' and the base's,
    #: read a chunk of each at a time); always the last two.
    KEPT = 512 << 20

    def _strided_into(self, t: Tensor, first: int, count: int,
                      view: memoryview) -> None:
        """Entries first..first+count of a strided view, in order: each row's
        segment after the one before. The tensor it views (``t.origin`` on)
        is read whole once and kept by the reading thread while it reads
        its heads (up to :data:`KEPT` bytes): a head's columns read alone
        would read every row, again for each head."""
        import numpy as np

        size, seg, stride = DTYPES[t.dtype], t.segment, t.stride
        rows = t.shape[0]
        whole = self._kept(t, rows * stride * size)
        column = (t.start - t.origin) // size
        grid = np.frombuffer(whole, np.uint8).reshape(rows, stride * size)
        r0, r1 = first // seg, (first + count - 1) // seg + 1
        entries = grid[r0:r1, column * size:(column + seg) * size].reshape(-1)
        skip = (first - r0 * seg) * size
        np.frombuffer(view, np.uint8)[:] = entries[skip:skip + count * size]

    def _kept(self, t: Tensor, length: int) -> memoryview:
        """The bytes of the tensor a strided view lies in, as this thread read them."""
        kept = getattr(self.local, "kept", None)
        if kept is None:
            kept = self.local.kept = {}
        key = (t.file, t.origin, length)
        if key not in kept:
            while len(kept) >= 2 and sum(len(v) for v in kept.values()) + length > self.KEPT:
                kept.pop(next(iter(kept)))  # the oldest first
            import numpy as np

            # np.empty: a zeroed bytearray costs as much again as the read
            kept[key] = self._fill(t, t.origin, np.empty(length, np.uint8).data, whole=True)
        return kept[key]  # type: ignore[no-any-return]

    def _remote(self, t: Tensor, at: int, length: int, whole: bool = False) -> bytes:
        """Bytes of a tensor read in place: from this thread's block of it,
        else a new block (up to BLOCK bytes, never past the tensor's end), so
        each byte drawn is received once, in few requests."""
        assert isinstance(t.file, Blob)
        if whole:
            return self._fetched(t, at, at + length)
        blocks = self.blocks.__dict__.setdefault("held", {})
        key = (t.file.url, t.start)
        start, data = blocks.get(key, (0, b""))
        if not (start <= at and at + length <= start + len(data)):
            start, data = at, self._fetched(t, at, min(max(at + BLOCK, at + length), t.end))
            blocks[key] = (start, data)
        piece = data[at - start:at - start + length]
        if at + length >= t.end or at + length >= start + len(data):
            blocks.pop(key, None)  # done with it: memory stays a block per tensor being read
        return piece

    def _fetched(self, t: Tensor, start: int, end: int) -> bytes:
        from .remote import RemoteError

        assert isinstance(t.file, Blob)
        try:
            return self.reader.read(t.file, start, end)
        except RemoteError as e:
            raise CheckpointError(e.message, None, t.name, e.hint, damaged=False) from None

    def values(self, t: Tensor, raw: bytes) -> Any:
        import numpy as np

        return np.frombuffer(raw, dtype=self.KINDS[t.dtype])

    def close(self) -> None:
        """Every window unmapped (one a caller still views: its pages let go,
        unmapped with that view) and every file closed."""
        with self.lock:
            windows, self.windows = self.windows, set()
        for w in windows:
            w.close()
        for fd in self.fds.values():
            os.close(fd)
