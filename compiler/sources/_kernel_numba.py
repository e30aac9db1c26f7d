"""The fused checkpoint kernel compiled with numba; imported by
:mod:`figspec.sources.kernel` only when a pair is reduced, never by `check`.

The arithmetic order is written out, never left to the compiler: sums run in
:data:`LANES` separate accumulators (entry i into lane i % LANES), combined in
a fixed order, and no ``fastmath`` flag is set (``reassoc`` would let LLVM
pick the order by the processor's vector width, ``contract`` fuses multiply
and add where the processor has FMA, ``nnan`` deletes the NaN tests). So the
results are the same bits on every processor, and the same as the numpy path's,
which sums in the same order. The lanes are independent, so LLVM still
vectorises them.

Speed (the sums unchanged): BF16, F16 and F32 values are read as float32,
exact, and widened to float64 in the loop that sums them (F32's own entries
where a block is whole lanes, no copy; F64, FP8 and a rescan's scale go
through float64 scratch); the loops take four rows of lanes a time (two for
three tensors), each lane still adding its entries in order, so that the
lanes' running sums are loaded and stored once per four rows. LLVM emits
256-bit vectors for this processor (its tuning prefers them; numba gives no
per-function way to ask for 512-bit ones without changing its settings for
everyone).

Every function is a plain function of arrays (no closures), so numba can
cache it. Nothing happens at import (no folder made, numba neither imported
nor changed): :func:`compile_kernel` makes the entry points on first use, called
once per process by :mod:`figspec.sources.kernel` under its lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from .. import cache

#: Accumulators per sum; entry i goes to lane i % LANES. As many as make
#: the lane loop long enough for LLVM's loop vectoriser (numba leaves its
#: SLP vectoriser off), in the L1 cache with the blocks.
LANES = 64
#: Entries taken at a time: decoded (as float32 where that is exact, else
#: float64) into scratch that stays in the L1 cache. 1024, 4096 and 8192 were
#: slower here.
BLOCK = 2048
#: Kinds of "changed" (see figspec.sources.kernel.OPTION_KINDS).
EXACT, ABS, REL = 0, 1, 2
#: Stored dtypes (see figspec.sources.kernel.CODES).
BF16, F16, F32, F64, F8_E4M3, F8_E5M2 = 0, 1, 2, 3, 4, 5
#: Where F8_E4M3's and F8_E5M2's values start in the table (kernel.TABLE_AT).
E4M3_AT, E5M2_AT = 1 << 16, (1 << 16) + 256

#: numba's options for every function; compile_kernel() adds caching where it can.
_OPTS: dict[str, Any] = dict(nogil=True, boundscheck=False, error_model="numpy")

F = TypeVar("F", bound=Callable[..., Any])


def njit(**options: Any) -> Callable[[F], F]:
    """Marks a function to be compiled with numba's ``njit(**options)`` by
    :func:`compile_kernel` (not at import: numba's decorator would make cache
    folders then). The function itself is returned as written."""
    def mark(function: F) -> F:
        function.__dict__["figspec_njit"] = options
        return function
    return mark


@dataclass(frozen=True)
class Compiled:
    """The kernel's entry points, compiled; ``folder``: where numba keeps the
    compiled code, or None where it is compiled for this process alone;
    ``complete``: the file in it that says this very kernel (this source,
    this numba) was compiled there for every dtype, None without a folder."""

    pair: Any
    single: Any
    triple: Any
    folder: str | None
    complete: str | None = None


def compile_kernel() -> Compiled:
    """The marked functions compiled, in a namespace of their own (a copy of
    this module's globals in which each name is its compiled function, so that
    one calls the other compiled), cached in figspec's cache folder where it
    can be written. This module and numba are left as they are: each compiled
    function gets its own cache object, which finds the folder by a locator
    of figspec's, instead of a locator put into numba's list for everyone."""
    from numba import njit as numba_njit

    folder = _cache_dir()
    make_cache = _cache_maker(folder) if _writable(folder) else None
    namespace = dict(globals())
    for name, value in globals().items():
        if callable(value) and "figspec_njit" in getattr(value, "__dict__", {}):
            function = _rebound(value, namespace)
            compiled = numba_njit(**value.__dict__["figspec_njit"])(function)
            if make_cache is not None:
                compiled._cache = make_cache(function)  # what numba's cache=True sets
            namespace[name] = compiled
    if make_cache is None:
        return Compiled(namespace["pair"], namespace["single"], namespace["triple"], None)
    return Compiled(namespace["pair"], namespace["single"], namespace["triple"], folder,
                    os.path.join(folder, _complete_name()))


def _complete_name() -> str:
    """The name of the file saying the kernel is compiled for every dtype: of
    numba's version and this file's size and time, as numba's own index is
    (an edited kernel, or another numba, compiles again)."""
    import numba

    stat = os.stat(__file__)
    return f"every-dtype-{numba.__version__}-{stat.st_size}-{stat.st_mtime_ns}"


def _rebound(function: Any, namespace: dict[str, Any]) -> Any:
    """The same code and name, its globals ``namespace``."""
    import types

    copy = types.FunctionType(function.__code__, namespace, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    return copy


def _cache_dir() -> str:
    return str(cache.folder() / "numba")


def _writable(folder: str) -> bool:
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _cache_maker(folder: str) -> Callable[[Any], Any] | None:
    """What makes a compiled function's cache in ``folder``, or None where
    numba's internals are not those known (then it is compiled for this
    process alone, never cached elsewhere: site-packages may be read-only,
    or shared)."""
    try:
        from numba.core import caching

        base = getattr(caching, "UserProvidedCacheLocator", None) or \
            caching._UserProvidedCacheLocator  # type: ignore[attr-defined]  # numba < 0.59
        impl = caching.CompileResultCacheImpl
        function_cache = caching.FunctionCache
    except (ImportError, AttributeError):  # another numba's internals
        return None
    module_file = os.path.abspath(__file__)

    class FigspecLocator(base):  # type: ignore[valid-type,misc]
        def __init__(self, py_func: Any, py_file: str):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(folder, self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if os.path.abspath(py_file) != module_file:
                return None
            self = cls(py_func, py_file)
            self.ensure_cache_path()
            return self

    class FigspecCacheImpl(impl):  # type: ignore[valid-type,misc]
        _locator_classes: ClassVar[list[type]] = [FigspecLocator]  # figspec's alone

    class FigspecCache(_Forgiving, function_cache):  # type: ignore[valid-type,misc]
        _impl_class = FigspecCacheImpl

    def make(function: Any) -> Any:
        try:
            return FigspecCache(function)
        except (AttributeError, RuntimeError, OSError):  # no locator (another numba),
            # or the folder cannot be made (a full disk): compiled for this process
            from numba.core.caching import NullCache

            return NullCache()

    return make


class _Forgiving:
    """A numba cache whose damage costs compiling again, never the build: an
    entry that cannot be loaded (truncated: UnpicklingError, EOFError; made
    by another numba) is a miss, and its index is emptied so the next save
    repairs it; one that cannot be saved (a full disk, ENOSPC; a read-only
    folder) is compiled for this process alone. A file of the cache that is
    not a regular file (a FIFO would block numba's open for ever) is removed
    before numba opens any. Mixed in before numba's FunctionCache."""

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        try:
            self._remove_irregular()
            return self._load(sig, target_context)
        except Exception:  # noqa: BLE001 - any damage is a miss
            with contextlib.suppress(Exception):
                self._cache_file.flush()  # type: ignore[attr-defined]  # an empty index
            return None

    def _load(self, sig: Any, target_context: Any) -> Any:
        """The overload, loaded as numba's load_overload loads it, but without
        its ``target_context.refresh()`` first: that installs every registry
        of numba's typing and lowering (some 80 of its modules imported,
        90 % of loading a cached kernel, 0.1-0.4 s on a 2-core machine), which
        only compiling uses, and every compile refreshes the contexts itself
        (numba's CompilerBase). What compiled code needs to run, numba's
        runtime (NRT), is initialised here as refresh would. Where numba's
        internals are not those known, its own load_overload."""
        try:
            from numba.core.runtime import rtsys
        except ImportError:  # another numba's layout
            return super().load_overload(sig, target_context)  # type: ignore[misc]
        load = getattr(self, "_load_overload", None)
        if load is None or not hasattr(rtsys, "initialize"):
            return super().load_overload(sig, target_context)  # type: ignore[misc]
        rtsys.initialize(target_context)
        return load(sig, target_context)

    def save_overload(self, sig: Any, data: Any) -> None:
        try:
            self._remove_irregular()
            super().save_overload(sig, data)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - not kept: compiled again next time
            pass

    def _remove_irregular(self) -> None:
        """Remove this function's cache files that are not regular files."""
        folder = self._cache_path  # type: ignore[attr-defined]
        prefix = self._impl.filename_base  # type: ignore[attr-defined]
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and not entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


@njit(**_OPTS)
def _decode(raw, code, lo, n, table, wide, wide_f, scale, out):
    """Entries lo..lo+n of ``raw`` (the stored values as uint16 for BF16 and
    F16, uint8 for FP8, float32 or float64 otherwise) into out[:n], exactly,
    as float64, times ``scale`` where it is not 1; the rest of the block up
    to whole lanes as 0 (0 * 0 adds nothing). ``wide_f`` is ``wide`` seen as
    float32. (Slices indexed from 0 let LLVM vectorise: ``raw[lo + i]`` would
    need a check for negative indices.)"""
    r = raw[lo:lo + n]
    if code == BF16:  # BF16 is the top half of a float32
        for i in range(n):
            wide[i] = np.uint32(r[i]) << np.uint32(16)
        for i in range(n):
            out[i] = wide_f[i]
    elif code == F16:  # numba has no float16: every bit pattern's value, looked up
        for i in range(n):
            out[i] = table[np.intp(r[i])]  # (a no-op cast, for typing)
    elif code == F8_E4M3:  # every byte's value, looked up
        for i in range(n):
            out[i] = table[E4M3_AT + np.intp(r[i])]
    elif code == F8_E5M2:
        for i in range(n):
            out[i] = table[E5M2_AT + np.intp(r[i])]
    else:
        for i in range(n):
            out[i] = r[i]
    if scale != 1.0:  # only for a tensor whose sums overflowed
        for i in range(n):
            out[i] *= scale
    for i in range(n, -(-n // LANES) * LANES):
        out[i] = 0.0


@njit(**_OPTS)
def _float32(code):
    """Whether values of ``code`` are read as float32 (exact) rather than
    float64: BF16, F16 and F32; FP8's table is looked up as float64 alone
    (narrowing each value costs more than it saves)."""
    return code == BF16 or code == F16 or code == F32


@njit(**_OPTS)
def _narrow(raw, code, lo, n, table, wide, wide_f):
    """Entries lo..lo+n of ``raw`` (not F64) as float32, exactly (every BF16,
    F16, FP8 and F32 value is a float32), padded with 0 to whole lanes: F32's
    entries themselves where they are whole lanes, else decoded into
    ``wide_f`` (``wide`` seen as float32)."""
    r = raw[lo:lo + n]
    if code == F32 and n % LANES == 0:
        return r.view(np.float32)  # (a no-op, for typing)
    if code == BF16:  # BF16 is the top half of a float32
        for i in range(n):
            wide[i] = np.uint32(r[i]) << np.uint32(16)
    elif code == F16:  # numba has no float16: every bit pattern's value, looked up
        for i in range(n):
            wide_f[i] = table[np.intp(r[i])]  # (a no-op cast, for typing)
    elif code == F8_E4M3:  # every byte's value, looked up
        for i in range(n):
            wide_f[i] = table[E4M3_AT + np.intp(r[i])]
    elif code == F8_E5M2:
        for i in range(n):
            wide_f[i] = table[E5M2_AT + np.intp(r[i])]
    else:
        for i in range(n):
            wide_f[i] = r[i]
    for i in range(n, -(-n // LANES) * LANES):
        wide[i] = 0
    return wide_f


@njit(**_OPTS)
def _combine(lanes):
    """The lanes summed pairwise in a fixed order (as kernel._combine)."""
    width = lanes.size
    while width > 1:
        width //= 2
        for j in range(width):
            lanes[j] = lanes[j] + lanes[j + width]
    return lanes[0]


@njit(**_OPTS)
def _extremes(x, m, top, bad):
    """Per lane: the largest |x| (NaN never is) and the count of entries that
    are not finite, over x[:m]."""
    for i in range(0, m - m % LANES, LANES):
        row = x[i:i + LANES]
        for j in range(LANES):
            a = np.float64(abs(row[j]))
            top[j] = a if a > top[j] else top[j]
            bad[j] += not (a < np.inf)
    rest = x[m - m % LANES:m]
    for j in range(m % LANES):
        a = np.float64(abs(rest[j]))
        top[j] = a if a > top[j] else top[j]
        bad[j] += not (a < np.inf)


@njit(**_OPTS)
def _pair_rows(t, b, rows, tt, bb, tb, dd, top):
    """Rows 0..rows of LANES entries of T's and B's values (float32 or float64)
    into the lanes, in order, in float64."""
    for r in range(0, rows - rows % 4, 4):  # four rows a time: a quarter of the
        i = r * LANES                        # loads and stores of the lanes
        tr = t[i:i + 4 * LANES]
        br = b[i:i + 4 * LANES]
        for j in range(LANES):
            x0 = np.float64(tr[j])
            x1 = np.float64(tr[LANES + j])
            x2 = np.float64(tr[2 * LANES + j])
            x3 = np.float64(tr[3 * LANES + j])
            y0 = np.float64(br[j])
            y1 = np.float64(br[LANES + j])
            y2 = np.float64(br[2 * LANES + j])
            y3 = np.float64(br[3 * LANES + j])
            d0 = x0 - y0
            d1 = x1 - y1
            d2 = x2 - y2
            d3 = x3 - y3
            tt[j] = (((tt[j] + x0 * x0) + x1 * x1) + x2 * x2) + x3 * x3  # in row order
            bb[j] = (((bb[j] + y0 * y0) + y1 * y1) + y2 * y2) + y3 * y3
            tb[j] = (((tb[j] + x0 * y0) + x1 * y1) + x2 * y2) + x3 * y3
            dd[j] = (((dd[j] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
            m = top[j]
            a = abs(x0)
            m = a if a > m else m  # NaN never is
            a = abs(x1)
            m = a if a > m else m
            a = abs(x2)
            m = a if a > m else m
            a = abs(x3)
            top[j] = a if a > m else m
    for r in range(rows - rows % 4, rows):
        i = r * LANES
        tr = t[i:i + LANES]
        br = b[i:i + LANES]
        for j in range(LANES):
            x = np.float64(tr[j])
            y = np.float64(br[j])
            d = x - y
            tt[j] += x * x
            bb[j] += y * y
            tb[j] += x * y
            dd[j] += d * d
            a = abs(x)
            top[j] = a if a > top[j] else top[j]


@njit(**_OPTS)
def pair(traw, tbits, tcode, braw, bbits, bcode, same, kinds, limits, table, scale, out):
    """Every sum of one chunk of a pair, written to ``out``: tt, bb, tb, dd,
    max |T|, non-finite counts of T and B, then one count per option."""
    n = traw.size
    tt = np.zeros(LANES)
    bb = np.zeros(LANES)
    tb = np.zeros(LANES)
    dd = np.zeros(LANES)
    top = np.zeros(LANES)
    counts = np.zeros(kinds.size, np.int64)
    twide = np.empty(BLOCK, np.uint32)
    bwide = np.empty(BLOCK, np.uint32)
    if scale == 1.0 and _float32(tcode) and _float32(bcode):  # read as float32
        twide_f = twide.view(np.float32)
        bwide_f = bwide.view(np.float32)
        for lo in range(0, n, BLOCK):
            m = min(BLOCK, n - lo)
            t = _narrow(traw, tcode, lo, m, table, twide, twide_f)
            b = _narrow(braw, bcode, lo, m, table, bwide, bwide_f)
            _pair_rows(t, b, -(-m // LANES), tt, bb, tb, dd, top)  # the padding adds 0
            for k in range(kinds.size):
                counts[k] += _count(kinds[k], limits[k], same, t, b, tbits, bbits, lo, m)
    else:  # float64 values, or scaled (exact in float64 alone)
        wide_f = twide.view(np.float32)
        t = np.zeros(BLOCK)
        b = np.zeros(BLOCK)
        for lo in range(0, n, BLOCK):
            m = min(BLOCK, n - lo)
            _decode(traw, tcode, lo, m, table, twide, wide_f, scale, t)
            _decode(braw, bcode, lo, m, table, twide, wide_f, scale, b)
            _pair_rows(t, b, -(-m // LANES), tt, bb, tb, dd, top)
            for k in range(kinds.size):
                counts[k] += _count(kinds[k], limits[k], same, t, b, tbits, bbits, lo, m)
    out[0] = _combine(tt)
    out[1] = _combine(bb)
    out[2] = _combine(tb)
    out[3] = _combine(dd)
    out[4] = top.max()
    # A non-finite entry makes its side's sum of squares non-finite: only
    # then are they counted, in a second pass (rare: it is an error).
    out[5] = 0 if out[0] < np.inf else _bad(traw, tcode, table)
    out[6] = 0 if out[1] < np.inf else _bad(braw, bcode, table)
    for k in range(kinds.size):
        out[7 + k] = counts[k]


@njit(**_OPTS)
def _count(kind, limit, same, t, b, tbits, bbits, lo, m):
    """Entries of the block that changed, as ``kind`` means it, of the values
    in float64; comparisons with NaN are false, as numpy's are."""
    c = 0
    if kind == ABS:
        for i in range(m):
            c += abs(np.float64(t[i]) - np.float64(b[i])) > limit
    elif kind == REL:
        for i in range(m):
            x = np.float64(t[i])
            y = np.float64(b[i])
            s = abs(x)
            z = abs(y)
            c += abs(x - y) > limit * (s if s > z else z)
    elif same:  # as stored, bit for bit
        tr = tbits[lo:lo + m]
        br = bbits[lo:lo + m]
        for i in range(m):
            c += tr[i] != br[i]
    else:
        for i in range(m):
            c += np.float64(t[i]) != np.float64(b[i])
    return c


@njit(**_OPTS)
def _bad(raw, code, table):
    """The entries of ``raw`` that are not finite."""
    t = np.zeros(BLOCK)
    wide = np.empty(BLOCK, np.uint32)
    wide_f = wide.view(np.float32)
    top = np.zeros(LANES)
    bad = np.zeros(LANES, np.int64)
    for lo in range(0, raw.size, BLOCK):
        m = min(BLOCK, raw.size - lo)
        _decode(raw, code, lo, m, table, wide, wide_f, 1.0, t)
        _extremes(t, m, top, bad)
    return bad.sum()


@njit(**_OPTS)
def _single_rows(t, rows, tt, top, bad):
    """Rows 0..rows of LANES entries of T's values (float32 or float64) into
    the lanes, in order, in float64: tt, the largest |T|, the entries not
    finite (the padding is 0: it adds nothing, and is finite)."""
    for r in range(0, rows - rows % 4, 4):  # four rows a time, as _pair_rows
        i = r * LANES
        tr = t[i:i + 4 * LANES]
        for j in range(LANES):
            x0 = np.float64(tr[j])
            x1 = np.float64(tr[LANES + j])
            x2 = np.float64(tr[2 * LANES + j])
            x3 = np.float64(tr[3 * LANES + j])
            tt[j] = (((tt[j] + x0 * x0) + x1 * x1) + x2 * x2) + x3 * x3  # in row order
            a0 = abs(x0)
            a1 = abs(x1)
            a2 = abs(x2)
            a3 = abs(x3)
            m = top[j]
            m = a0 if a0 > m else m  # NaN never is
            m = a1 if a1 > m else m
            m = a2 if a2 > m else m
            top[j] = a3 if a3 > m else m
            bad[j] += (not (a0 < np.inf)) + (not (a1 < np.inf)) + \
                (not (a2 < np.inf)) + (not (a3 < np.inf))
    for r in range(rows - rows % 4, rows):
        i = r * LANES
        tr = t[i:i + LANES]
        for j in range(LANES):
            x = np.float64(tr[j])
            tt[j] += x * x
            a = abs(x)
            top[j] = a if a > top[j] else top[j]
            bad[j] += not (a < np.inf)


@njit(**_OPTS)
def single(traw, tcode, table, scale, out):
    """The sums of one chunk of a tensor alone: tt, max |T|, non-finite count."""
    n = traw.size
    wide = np.empty(BLOCK, np.uint32)
    wide_f = wide.view(np.float32)
    tt = np.zeros(LANES)
    top = np.zeros(LANES)
    bad = np.zeros(LANES, np.int64)
    if scale == 1.0 and _float32(tcode):
        for lo in range(0, n, BLOCK):
            m = min(BLOCK, n - lo)
            _single_rows(_narrow(traw, tcode, lo, m, table, wide, wide_f), -(-m // LANES), tt,
                         top, bad)
    else:
        t = np.zeros(BLOCK)
        for lo in range(0, n, BLOCK):
            m = min(BLOCK, n - lo)
            _decode(traw, tcode, lo, m, table, wide, wide_f, scale, t)
            _single_rows(t, -(-m // LANES), tt, top, bad)
    out[0] = _combine(tt)
    out[4] = top.max()
    out[5] = bad.sum()


@njit(**_OPTS)
def _triple_rows(t, o, b, rows, uu, vv, uv, ww):
    """Rows 0..rows of LANES entries of T's, O's and B's values (float32 or
    float64) into the lanes, in order, in float64 (the padding adds 0)."""
    for r in range(0, rows - rows % 2, 2):  # two rows a time, as _pair_rows
        i = r * LANES
        tr = t[i:i + 2 * LANES]
        orow = o[i:i + 2 * LANES]
        br = b[i:i + 2 * LANES]
        for j in range(LANES):
            x0 = np.float64(tr[j])
            y0 = np.float64(orow[j])
            z0 = np.float64(br[j])
            x1 = np.float64(tr[LANES + j])
            y1 = np.float64(orow[LANES + j])
            z1 = np.float64(br[LANES + j])
            u0 = x0 - z0
            v0 = y0 - z0
            w0 = x0 - y0
            u1 = x1 - z1
            v1 = y1 - z1
            w1 = x1 - y1
            uu[j] = (uu[j] + u0 * u0) + u1 * u1  # in order: row r, then r + 1
            vv[j] = (vv[j] + v0 * v0) + v1 * v1
            uv[j] = (uv[j] + u0 * v0) + u1 * v1
            ww[j] = (ww[j] + w0 * w0) + w1 * w1
    if rows % 2:
        i = (rows - 1) * LANES
        tr = t[i:i + LANES]
        orow = o[i:i + LANES]
        br = b[i:i + LANES]
        for j in range(LANES):
            x = np.float64(tr[j])
            y = np.float64(orow[j])
            z = np.float64(br[j])
            u = x - z
            v = y - z
            w = x - y
            uu[j] += u * u
            vv[j] += v * v
            uv[j] += u * v
            ww[j] += w * w


@njit(**_OPTS)
def triple(traw, tcode, oraw, ocode, braw, bcode, table, scale, out):
    """The sums of one chunk of two runs' tensors T, O and their base B,
    written to ``out``: with U = T - B, V = O - B, W = T - O (each taken of
    the values), ||U||^2, ||V||^2, <U, V>, ||W||^2, then the non-finite
    entries of T, O and B (counted only where a sum of squares is not finite:
    a non-finite entry of any side makes one so)."""
    n = traw.size
    twide = np.empty(BLOCK, np.uint32)
    owide = np.empty(BLOCK, np.uint32)
    bwide = np.empty(BLOCK, np.uint32)
    uu = np.zeros(LANES)
    vv = np.zeros(LANES)
    uv = np.zeros(LANES)
    ww = np.zeros(LANES)
    if scale == 1.0 and _float32(tcode) and _float32(ocode) and _float32(bcode):
        twide_f = twide.view(np.float32)
        owide_f = owide.view(np.float32)
        bwide_f = bwide.view(np.float32)
        for lo in range(0, n, BLOCK):
            m = min(BLOCK, n - lo)
            _triple_rows(_narrow(traw, tcode, lo, m, table, twide, twide_f),
                         _narrow(oraw, ocode, lo, m, table, owide, owide_f),
                         _narrow(braw, bcode, lo, m, table, bwide, bwide_f), -(-m // LANES),
                         uu, vv, uv, ww)
    else:
        wide_f = twide.view(np.float32)
        t = np.zeros(BLOCK)
        o = np.zeros(BLOCK)
        b = np.zeros(BLOCK)
        for lo in range(0, n, BLOCK):
            m = min(BLOCK, n - lo)
            _decode(traw, tcode, lo, m, table, twide, wide_f, scale, t)
            _decode(oraw, ocode, lo, m, table, twide, wide_f, scale, o)
            _decode(braw, bcode, lo, m, table, twide, wide_f, scale, b)
            _triple_rows(t, o, b, -(-m // LANES), uu, vv, uv, ww)
    out[0] = _combine(uu)
    out[1] = _combine(vv)
    out[2] = _combine(uv)
    out[3] = _combine(ww)
    if not (out[0] < np.inf and out[1] < np.inf and out[3] < np.inf):
        out[4] = _bad(traw, tcode, table)
        out[5] = _bad(oraw, ocode, table)
        out[6] = _bad(braw, bcode, table)
