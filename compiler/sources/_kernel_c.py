"""The fused checkpoint kernel in C (``_kernel.c``, beside this file),
compiled on first use by the machine's C compiler into figspec's cache
folder (``kernel/``) and loaded with ctypes; imported by
:mod:`figspec.sources.kernel` only when a chunk is reduced.

Loading a compiled kernel costs reading and hashing the source and the
library and one ``dlopen`` (no subprocess, no numba): the library's name is
a hash of what made it (the source, the flags, the processor's kind and
the platform), then a hash of its own bytes, checked
before it is loaded, so a damaged file (truncated, overwritten; a FIFO or a
folder at its name) is a miss that compiles again, never a crash. A build
goes to a temporary file in the folder, published by ``os.replace`` under
the cache's lock: processes compiling at once compile once, and none loads
a half-written library. A whole library that the loader rejects (a cache on
a filesystem mounted noexec) is not compiled again and again: the next path
is taken, saying why.

Where none is cached and no compiler is found, or it fails, or the cache
folder cannot be written, :func:`load` gives None (and says why in ``--verbose`` output):
the kernel takes the numba path, else numpy's. Nothing of the process is
changed (its environment, numba, the folders outside the cache).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from .. import cache

SOURCE = Path(__file__).with_name("_kernel.c")
#: No reassociation, no multiply-add fused by the compiler: the sums' order
#: and roundings are the source's (which fuses only where it changes no bit).
FLAGS = ("-O3", "-fPIC", "-shared", "-std=c99", "-ffp-contract=off", "-fno-fast-math",
         "-fno-math-errno")
#: Each entry point compiled for AVX-512, AVX2 and the baseline, picked at
#: load (x86-64 Linux: GCC's and Clang's target_clones, glibc's ifunc); never
#: -march=native: a shared home's cache is read by machines of other processors.
CLONES = ("-DFIGSPEC_CLONES",)
#: As _kernel.c's ABI: the entry points' signatures.
ABI = 4
#: As _kernel.c's MAX_OPTIONS: the most options pair_chunks takes.
MAX_OPTIONS = 16
#: Bytes per stored entry, by the kernel's dtype code (kernel.CODES).
WIDTHS = (2, 2, 4, 8, 1, 1)
#: The largest library read back (a real one is ~0.1 MB).
LARGEST = 64 << 20
#: A build's temporary file older than this (seconds) was left by a process
#: that died compiling: removed by the next build.
STALE = 3600
#: The compilers looked for on PATH where CC is not set.
COMPILERS = ("cc", "gcc", "clang")

log = logging.getLogger("figspec")

_P, _I, _N, _D = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
#: Each entry point's arguments (pointers are numpy arrays' addresses).
SIGNATURES = {
    "figspec_pair": (_P, _I, _P, _I, _I, _N, _P, _N, _P, _D, _P),
    "figspec_pair_chunks": (_P, _I, _P, _I, _I, _N, _N, _P, _N, _P, _D, _P),
    "figspec_single": (_P, _I, _N, _P, _D, _P),
    "figspec_triple": (_P, _I, _P, _I, _P, _I, _N, _P, _D, _P),
    "figspec_values": (_P,),
}
#: The value table's length: every F16 bit pattern, then every byte of the
#: two FP8 formats (kernel.TABLE_AT).
VALUES = (1 << 16) + 2 * 256


class Kernel:
    """The loaded kernel: its entry points (ctypes functions, the GIL let go
    for each call) called on stored bytes (anything with the buffer
    protocol), each result a float64 array (a memoryview: numpy is not
    imported for it); ``file``: the library; ``table``: the F16 and FP8
    values it decodes by (as kernel._values(), filled by the library)."""

    def __init__(self, lib: Any, file: str):
        self.file = file
        self._pair, self._single, self._triple = \
            lib.figspec_pair, lib.figspec_single, lib.figspec_triple
        self._pair_chunks = lib.figspec_pair_chunks
        self.table = array.array("d", bytes(8 * VALUES))  # held: the library reads it here
        self._table_at = self.table.buffer_info()[0]
        lib.figspec_values(self._table_at)

    def pair(self, t_raw: Any, tcode: int, b_raw: Any, bcode: int,
             options: tuple[float, ...], scale: float) -> Any:
        """kernel.pair's sums; ``options``: each option's kind and limit, flat."""
        held: list[Any] = []  # what holds the buffers where they are, for the call
        (t, n), (b, m) = _buffer(t_raw, tcode, held), _buffer(b_raw, bcode, held)
        if n != m:  # the kernel reads as many of each
            raise ValueError("the two tensors of a pair hold as many entries each")
        out = (ctypes.c_double * (7 + len(options) // 2))()
        flat = (ctypes.c_double * len(options))(*options)
        self._pair(t, tcode, b, bcode, tcode == bcode, n, ctypes.addressof(flat),
                   len(options) // 2, self._table_at, scale, ctypes.addressof(out))
        return _array(out)

    def pair_chunks(self, t_raw: Any, tcode: int, b_raw: Any, bcode: int,
                    options: tuple[float, ...], scale: float, chunk: int, acc: Any) -> None:
        """:meth:`pair` of each ``chunk`` entries in turn, each chunk's sums
        added into ``acc`` (an array of float64s laid out as pair's result,
        written in place) as reduce adds them, in one call."""
        held: list[Any] = []
        (t, n), (b, m) = _buffer(t_raw, tcode, held), _buffer(b_raw, bcode, held)
        if n != m:
            raise ValueError("the two tensors of a pair hold as many entries each")
        if len(options) // 2 > MAX_OPTIONS or len(acc) != 7 + len(options) // 2 or chunk < 1:
            raise ValueError("pair_chunks takes a chunk of entries and an acc for each sum")
        flat = (ctypes.c_double * len(options))(*options)
        self._pair_chunks(t, tcode, b, bcode, tcode == bcode, n, chunk, ctypes.addressof(flat),
                          len(options) // 2, self._table_at, scale, acc.buffer_info()[0])

    def single(self, t_raw: Any, tcode: int, scale: float) -> Any:
        held: list[Any] = []
        t, n = _buffer(t_raw, tcode, held)
        out = (ctypes.c_double * 7)()
        self._single(t, tcode, n, self._table_at, scale, ctypes.addressof(out))
        return _array(out)

    def triple(self, t_raw: Any, tcode: int, o_raw: Any, ocode: int, b_raw: Any, bcode: int,
               scale: float) -> Any:
        held: list[Any] = []
        (t, n), (o, m), (b, k) = (_buffer(t_raw, tcode, held), _buffer(o_raw, ocode, held),
                                  _buffer(b_raw, bcode, held))
        if not n == m == k:
            raise ValueError("the three tensors of a triple hold as many entries each")
        out = (ctypes.c_double * 7)()
        self._triple(t, tcode, o, ocode, b, bcode, n, self._table_at, scale,
                     ctypes.addressof(out))
        return _array(out)


def _buffer(raw: Any, code: int, held: list[Any]) -> tuple[int, int]:
    """Where ``raw``'s bytes start and its entries of dtype ``code``; what
    holds them there is put in ``held`` (kept by the caller for the call). A
    writable buffer's address is taken by ctypes (cheaply: a file's window is
    mapped writable for this); a read-only one's by numpy (imported then
    alone). No entries: no address (the kernel reads none)."""
    view = memoryview(raw)
    if not view.c_contiguous or view.nbytes % WIDTHS[code]:
        raise ValueError("a tensor's stored bytes are contiguous whole entries")
    if not view.nbytes:
        return 0, 0
    if view.readonly:
        import numpy as np

        array = np.frombuffer(view, np.uint8)
        held.append(array)
        return array.__array_interface__["data"][0], view.nbytes // WIDTHS[code]
    first = ctypes.c_char.from_buffer(view)
    held.append(first)
    return ctypes.addressof(first), view.nbytes // WIDTHS[code]


def _array(out: Any) -> Any:
    """The kernel's result as float64s: indexed, ``tolist()`` and
    ``tobytes()`` as the other paths' numpy arrays are."""
    return memoryview(out).cast("B").cast("d")


def load() -> Kernel | None:
    """The C kernel, compiled first where this machine has not cached it;
    None (said at info) where it cannot be had. A library cached is loaded
    without a compiler (one machine of a cluster may have compiled it into
    the shared cache)."""
    try:
        source = SOURCE.read_bytes()
    except OSError as e:  # an installation without its package data
        _not_used(f"its source cannot be read ({e})")
        return None
    folder = cache.folder() / "kernel"
    key = _key(source)
    try:
        found = _cached(folder, key) or _compiled(source, folder, key)
    except Unloadable as e:  # compiling again would not help
        _not_used(str(e))
        return None
    return None if found is None else Kernel(found[0], found[1])


class Unloadable(Exception):
    """A library whose bytes are those built, which the loader rejects (a
    cache folder on a filesystem mounted noexec, say)."""


def _compiled(source: bytes, folder: Path, key: str) -> tuple[Any, str] | None:
    """The library for ``key``, compiled into ``folder`` unless another
    process did it while this one waited for the lock."""
    cc = compiler()
    if cc is None:
        _not_used("no C compiler was found (CC, or cc, gcc or clang on PATH)")
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _not_used(f"figspec's cache folder cannot be written ({e})")
        return None
    try:
        with cache.lock("kernel"):  # processes compiling at once: one compiles
            found = _cached(folder, key)
            if found is None:
                _sweep(folder)
                found = _build(cc, source, folder, key)
            return found
    except OSError as e:  # the lock itself (a filesystem without locks)
        _not_used(f"the cache's lock cannot be taken ({e})")
        return None


def compiler() -> list[str] | None:
    """The C compiler's command: ``CC`` (split as a shell would), else the
    first of :data:`COMPILERS` on PATH; None where it is not there. Found
    without running anything."""
    import shlex

    named = os.environ.get("CC", "").strip()
    try:
        words = shlex.split(named) if named else []
    except ValueError:
        return None
    if words:
        found = shutil.which(words[0])
        return [found, *words[1:]] if found else None
    for name in COMPILERS:
        found = shutil.which(name)
        if found:
            return [found]
    return None


def attempts() -> list[tuple[str, ...]]:
    """The flags tried in turn: with per-processor clones where they may
    work, then without (an older compiler, a C library without ifunc)."""
    if sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64"):
        return [FLAGS + CLONES, FLAGS]
    return [FLAGS]


def _key(source: bytes) -> str:
    """What names a library: the source, every flag tried, the processor's
    kind and the platform (found without running anything). Not the
    compiler: any that compiles the source with these flags gives the same
    sums."""
    h = hashlib.sha256(source)
    for part in (repr(attempts()), platform.machine(), sys.platform, str(ABI)):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:20]


def _cached(folder: Path, key: str) -> tuple[Any, str] | None:
    """The library made for ``key`` whose bytes are those its name says;
    a damaged one, or anything not a regular file at such a name, is
    removed (a miss)."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(key + "-")]
    except OSError:
        return None
    for entry in entries:
        loaded = _verified(Path(entry.path))
        if loaded is not None:
            return loaded
        _remove(Path(entry.path))
    return None


def _verified(path: Path) -> tuple[Any, str] | None:
    """The library at ``path`` if it is a regular file holding the bytes its
    name's digest says, and loads; else None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # a FIFO would block the read
            return None
        with open(path, "rb") as f:
            data = f.read(LARGEST + 1)
    except OSError:
        return None
    if len(data) > LARGEST or path.stem.rsplit("-", 1)[-1] != _digest(data):
        return None
    return _open(path)  # whole: where it does not load, Unloadable


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def _open(path: Path) -> tuple[Any, str]:
    """The library loaded, its entry points typed; Unloadable where the
    loader rejects it or it is not this source's."""
    try:
        lib = ctypes.CDLL(str(path))
        if lib.figspec_kernel_abi() != ABI:
            raise Unloadable(f"{path} is not this figspec's kernel")
        for name, argtypes in SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes = argtypes
            function.restype = None
    except (OSError, AttributeError) as e:
        raise Unloadable(f"{path} cannot be loaded ({e})") from e
    return lib, str(path)


def _build(cc: list[str], source: bytes, folder: Path, key: str) -> tuple[Any, str] | None:
    """Compile the source into a temporary file in ``folder``, then publish
    it under its name (key, digest); where that name cannot be taken (a
    folder in the way), load the temporary file for this process alone."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".build-", suffix=".so")
        os.close(fd)
    except OSError as e:
        _not_used(f"figspec's cache folder cannot be written ({e})")
        return None
    tmp = Path(name)
    try:
        why = _compile(cc, source, tmp)
        if why:
            _not_used(why)
            return None
        data = tmp.read_bytes()
        final = folder / f"{key}-{_digest(data)}.so"
        _remove(final)  # anything at that name is not this build (it was a miss)
        try:
            os.replace(tmp, final)
        except OSError:
            final = tmp
        return _open(final)
    except OSError as e:
        _not_used(f"the compiled kernel cannot be kept ({e})")
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # published, or loaded from here: never left behind


def _compile(cc: list[str], source: bytes, out: Path) -> str | None:
    """Compile ``source`` (given on stdin: what was hashed is what is
    compiled) into ``out``; None, or why it failed."""
    import subprocess

    why = ""
    for flags in attempts():
        try:
            p = subprocess.run([*cc, *flags, "-o", str(out), "-x", "c", "-"], input=source,
                               capture_output=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            return f"{cc[0]} cannot be run ({e})"
        if p.returncode == 0:
            return None
        last = (p.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
        why = f"{cc[0]} failed (status {p.returncode})" + (f": {last[:300]}" if last else "")
    return why


def _sweep(folder: Path) -> None:
    """Remove the temporary files of builds that died (older than :data:`STALE`)."""
    import time

    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(".build-") and entry.is_file(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < time.time() - STALE:
                _remove(Path(entry.path))


def _remove(path: Path) -> None:
    """Remove a cache entry that is not a usable library: a file, a FIFO or a
    link is unlinked, an empty folder removed; anything else is left."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)


def _not_used(why: str) -> None:
    log.info("checkpoint metrics: the C kernel is not used: %s", why)
