"""The fused kernel behind checkpoint metrics: one pass over a chunk of the
stored bytes of a tuned tensor T (and its base B) gives every sum a metric is
made of, at once: ||T-B||^2, ||T||^2, ||B||^2, <T,B>, max |T|, the non-finite
entries of T and B, and a count of changed entries for each meaning of
"changed" asked for; and, for two runs' updates from one base, one pass over
three tensors (:func:`triple`: T, the other run's O, the base B) gives
||T-B||^2, ||O-B||^2, <T-B, O-B> and ||T-O||^2, each difference taken of the
values themselves. Values are decoded exactly (BF16, F16, F32, F64, little
endian; F8_E4M3 and F8_E5M2, every one of whose values is a float64, by a
table) and subtracted and summed in float64. A ``scale`` (a power of two,
exact) multiplies every value first: reduce asks it of a tensor whose sums
overflowed.

Three paths give the same bits, taken in this order where they can be:

* C (``_kernel.c``, :mod:`figspec.sources._kernel_c`), compiled once per
  machine by its C compiler (``CC``, else cc, gcc or clang) into figspec's
  cache folder (``kernel/``) and loaded with ctypes: no numba at run time;
* numba (:mod:`figspec.sources._kernel_numba`), compiled once per machine
  into figspec's cache folder (``numba/``), where there is no C compiler;
* numpy, where neither can be had.

``FIGSPEC_KERNEL=c``, ``numba`` or ``numpy`` (read at each call) asks for one;
one that cannot be had gives the next.

None calls BLAS (no threads of its own: the caller's threads are the only
ones). Sums are never left to a library or compiler to order: entry i of a
chunk goes to accumulator i % LANES, each accumulator adds its entries in
order, and the accumulators are combined pairwise in a fixed order; chunks
are combined in chunk order by the caller. So a sum is the same float64 on
every processor and with every path, whatever the number of threads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from typing import Any

from ..caches import memo
from .metrics import SUMS, TRIPLE_SUMS

#: Stored dtypes, as the kernel numbers them.
CODES = {"BF16": 0, "F16": 1, "F32": 2, "F64": 3, "F8_E4M3": 4, "F8_E5M2": 5}
#: How a dtype's entries are viewed: values, and bits (for "changed" as stored).
VALUES = {"BF16": "<u2", "F16": "<u2", "F32": "<f4", "F64": "<f8", "F8_E4M3": "u1",
          "F8_E5M2": "u1"}
BITS = {"BF16": "<u2", "F16": "<u2", "F32": "<u4", "F64": "<u8", "F8_E4M3": "u1",
        "F8_E5M2": "u1"}
#: Where each looked-up dtype's values start in :func:`_table`.
TABLE_AT = {"F16": 0, "F8_E4M3": 1 << 16, "F8_E5M2": (1 << 16) + 256}
#: Kinds of "changed": as stored, |T-B| > tol, |T-B| > eta * max(|T|, |B|).
OPTION_KINDS = {"exact": 0, "abs": 1, "rel": 2}
#: Where each sum is in a kernel's result; counts of changed entries follow.
FIELDS = SUMS
#: Where each sum is in :func:`triple`'s result.
TRIPLE_FIELDS = TRIPLE_SUMS
#: Accumulators per sum (as _kernel_numba.LANES and _kernel.c's).
LANES = 64
#: The paths, in the order they are taken.
PATHS = ("c", "numba", "numpy")

log = logging.getLogger("figspec")


def path() -> str:
    """The path reductions take now: the first of :data:`PATHS` that can be
    had, from the one ``FIGSPEC_KERNEL`` names, if any (numba is never
    imported where the C kernel loads)."""
    asked = os.environ.get("FIGSPEC_KERNEL", "").lower()
    order = PATHS[PATHS.index(asked):] if asked in PATHS else PATHS
    chosen = next(p for p in order if p == "numpy" or _loaded(p) is not None)
    _say(chosen)
    return chosen


def _loaded(chosen: str) -> Any:
    return _c() if chosen == "c" else _numba()


@memo("kernel.announced")
def _say(chosen: str) -> None:
    """Once per path per process, in --verbose output."""
    where = ""
    if chosen == "c":
        where = f", compiled into {_c().file}"
    elif chosen == "numba":
        folder = _numba().folder
        where = f", compiled into {folder}" if folder else \
            ", compiled for this process alone (figspec's cache folder cannot be written)"
    log.info("checkpoint metrics: the %s kernel%s", chosen, where)


def pair(t_raw: Any, t_dtype: str, b_raw: Any, b_dtype: str,
         options: tuple[tuple[str, float], ...], kernel: str | None = None,
         scale: float = 1.0) -> Any:
    """Every sum of one chunk of a pair, as a float64 array laid out as
    :data:`FIELDS` then one count per option. ``t_raw``/``b_raw``: the stored
    bytes (a numpy uint8 array or anything with the buffer protocol);
    ``scale``: a power of two every value is multiplied by first."""
    chosen = kernel or path()
    if chosen == "c":
        flat = tuple(x for k, v in options for x in (OPTION_KINDS[k], float(v)))
        return _c().pair(t_raw, CODES[t_dtype], b_raw, CODES[b_dtype], flat, scale)
    import numpy as np

    kinds = np.array([OPTION_KINDS[k] for k, _ in options], dtype=np.int64)
    limits = np.array([float(v) for _, v in options], dtype=np.float64)
    out = np.zeros(len(FIELDS) + len(options))
    tv, bv = _view(t_raw, VALUES[t_dtype]), _view(b_raw, VALUES[b_dtype])
    tb, bb = _view(t_raw, BITS[t_dtype]), _view(b_raw, BITS[b_dtype])
    same = t_dtype == b_dtype
    if chosen == "numba":
        _numba().pair(tv, tb, CODES[t_dtype], bv, bb, CODES[b_dtype], same, kinds, limits,
                      _table(), scale, out)
    else:
        _numpy_pair(tv, t_dtype, bv, b_dtype, tb, bb, same, kinds, limits, out, scale)
    return out


def pair_chunks(t_raw: Any, t_dtype: str, b_raw: Any, b_dtype: str,
                options: tuple[tuple[str, float], ...], scale: float, chunk: int,
                acc: Any) -> None:
    """:func:`pair` of each ``chunk`` entries of the stored bytes in turn,
    each chunk's sums added into ``acc`` (an ``array("d")`` laid out as
    pair's result, written in place) as reduce adds a chunk's: the same bits
    as a call per chunk, in one call of the C kernel, the one path that has
    it (:func:`path` is "c")."""
    flat = tuple(x for k, v in options for x in (OPTION_KINDS[k], float(v)))
    _c().pair_chunks(t_raw, CODES[t_dtype], b_raw, CODES[b_dtype], flat, scale, chunk, acc)


def single(t_raw: Any, t_dtype: str, kernel: str | None = None, scale: float = 1.0) -> Any:
    """The sums of one chunk of a tensor alone (tt, max_abs, bad_t; the rest 0)."""
    chosen = kernel or path()
    if chosen == "c":
        return _c().single(t_raw, CODES[t_dtype], scale)
    import numpy as np

    out = np.zeros(len(FIELDS))
    tv = _view(t_raw, VALUES[t_dtype])
    if chosen == "numba":
        _numba().single(tv, CODES[t_dtype], _table(), scale, out)
    else:
        _numpy_pair(tv, t_dtype, None, t_dtype, tv, None, True, np.zeros(0, np.int64),
                    np.zeros(0), out, scale)
    return out


def triple(t_raw: Any, t_dtype: str, o_raw: Any, o_dtype: str, b_raw: Any, b_dtype: str,
           kernel: str | None = None, scale: float = 1.0) -> Any:
    """The sums of one chunk of two runs' tensors T and O and their base B, in
    one pass, as a float64 array laid out as :data:`TRIPLE_FIELDS`: with
    U = T - B, V = O - B and W = T - O (each taken of the values themselves),
    ||U||^2, ||V||^2, <U, V>, ||W||^2, and the non-finite entries of T, O and
    B. The dtypes may differ (a side of F64 values formed elsewhere, say)."""
    chosen = kernel or path()
    if chosen == "c":
        return _c().triple(t_raw, CODES[t_dtype], o_raw, CODES[o_dtype], b_raw, CODES[b_dtype],
                           scale)
    import numpy as np

    out = np.zeros(len(TRIPLE_FIELDS))
    tv, ov, bv = (_view(t_raw, VALUES[t_dtype]), _view(o_raw, VALUES[o_dtype]),
                  _view(b_raw, VALUES[b_dtype]))
    if not tv.size == ov.size == bv.size:
        raise ValueError("the three tensors of a triple hold as many entries each")
    if chosen == "numba":
        _numba().triple(tv, CODES[t_dtype], ov, CODES[o_dtype], bv, CODES[b_dtype], _table(),
                        scale, out)
    else:
        _numpy_triple(((tv, t_dtype), (ov, o_dtype), (bv, b_dtype)), out, scale)
    return out


def decoded(raw: Any, dtype: str) -> Any:
    """A tensor's stored entries (``raw``: as :data:`VALUES` views them) as
    float64, exactly."""
    return _decode(raw, dtype, raw.size)


def _view(raw: Any, kind: str) -> Any:
    import numpy as np

    return np.frombuffer(raw, dtype=kind)


# -- numpy path ----------------------------------------------------------------------

#: Entries the numpy path takes at a time: its temporaries stay in the cache
#: and come from the allocator's free lists, not fresh pages.
STEP = 32768


def _numpy_pair(tv: Any, t_dtype: str, bv: Any, b_dtype: str, tbits: Any, bbits: Any,
                same: bool, kinds: Any, limits: Any, out: Any, scale: float = 1.0) -> None:
    """The compiled kernel's sums with numpy, in the same order: each lane's
    running sum is the first row of the rows reduced next (numpy reduces an
    (n, LANES) array along its rows one after another), so every lane adds
    its entries one by one, as the compiled loop does."""
    import numpy as np

    n = tv.size
    sides = 1 if bv is None else 4
    lanes = np.zeros((sides, LANES))
    rows = np.empty((sides, STEP // LANES + 1, LANES))
    top, bad_t, bad_b = 0.0, 0, 0
    counts = [0] * len(kinds)
    with np.errstate(all="ignore"):
        for lo in range(0, n, STEP):
            m = min(STEP, n - lo)
            r = -(-m // LANES)
            t = _decode(tv[lo:lo + m], t_dtype, r * LANES, scale)
            products = [(t, t)]
            if bv is not None:
                b = _decode(bv[lo:lo + m], b_dtype, r * LANES, scale)
                d = t - b
                products += [(b, b), (t, b), (d, d)]
            for k, (x, y) in enumerate(products):
                rows[k, 0] = lanes[k]
                np.multiply(x.reshape(r, LANES), y.reshape(r, LANES), out=rows[k, 1:r + 1])
                lanes[k] = np.add.reduce(rows[k, :r + 1], axis=0)
            a = np.abs(t[:m])
            top = max(top, float(np.fmax.reduce(a, initial=0.0)))  # fmax passes NaN by
            bad_t += m - int(np.count_nonzero(a < np.inf))
            if bv is None:
                continue
            bad_b += m - int(np.count_nonzero(np.abs(b[:m]) < np.inf))
            for k, (kind, limit) in enumerate(zip(kinds.tolist(), limits.tolist())):
                counts[k] += int(np.count_nonzero(_changed(
                    kind, limit, same, t[:m], b[:m], d[:m], tbits[lo:lo + m],
                    bbits[lo:lo + m])))
    for k, field in enumerate((0, 1, 2, 3)[:sides]):
        out[field] = _combine(lanes[k].tolist())
    out[4], out[5], out[6] = top, bad_t, bad_b
    out[len(FIELDS):len(FIELDS) + len(counts)] = counts


def _numpy_triple(sides: tuple[tuple[Any, str], ...], out: Any, scale: float) -> None:
    """The compiled triple's sums with numpy, in its order (as _numpy_pair).
    A non-finite entry makes ||U||^2, ||V||^2 or ||W||^2 non-finite, so
    counting every chunk's gives the counts the compiled kernel gives by
    counting only then."""
    import numpy as np

    n = sides[0][0].size
    lanes = np.zeros((4, LANES))
    rows = np.empty((4, STEP // LANES + 1, LANES))
    bad = [0, 0, 0]
    with np.errstate(all="ignore"):
        for lo in range(0, n, STEP):
            m = min(STEP, n - lo)
            r = -(-m // LANES)
            t, o, b = (_decode(v[lo:lo + m], dtype, r * LANES, scale) for v, dtype in sides)
            u, v, w = t - b, o - b, t - o
            for k, (x, y) in enumerate(((u, u), (v, v), (u, v), (w, w))):
                rows[k, 0] = lanes[k]
                np.multiply(x.reshape(r, LANES), y.reshape(r, LANES), out=rows[k, 1:r + 1])
                lanes[k] = np.add.reduce(rows[k, :r + 1], axis=0)
            for k, x in enumerate((t, o, b)):
                bad[k] += m - int(np.count_nonzero(np.abs(x[:m]) < np.inf))
    for k in range(4):
        out[k] = _combine(lanes[k].tolist())
    out[4:7] = bad


def _changed(kind: int, limit: float, same: bool, t: Any, b: Any, d: Any, tbits: Any,
             bbits: Any) -> Any:
    """Which entries changed, as reduce_pair always decided: numpy's
    comparisons (false with NaN), > strict."""
    import numpy as np

    if kind == OPTION_KINDS["abs"]:
        return np.abs(d) > limit
    if kind == OPTION_KINDS["rel"]:
        return np.abs(d) > limit * np.maximum(np.abs(t), np.abs(b))
    if same:  # as stored, bit for bit
        return tbits != bbits
    return t != b


def _decode(values: Any, dtype: str, size: int, scale: float = 1.0) -> Any:
    """The stored values as float64, exactly, padded with zeros to ``size``
    (0 * 0 adds nothing to a sum); times ``scale`` where it is not 1."""
    import numpy as np

    out = np.zeros(size)
    if dtype in TABLE_AT:
        np.take(_table()[TABLE_AT[dtype]:], values, out=out[:values.size])
    else:
        if dtype == "BF16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        out[:values.size] = values
    if scale != 1.0:
        out *= scale
    return out


def _combine(lanes: list[float]) -> float:
    """The lanes summed pairwise in a fixed order (as _kernel_numba._combine)."""
    width = len(lanes)
    while width > 1:
        width //= 2
        for j in range(width):
            lanes[j] = lanes[j] + lanes[j + width]
    return lanes[0]


@memo("kernel.values")
def _values() -> Any:
    """The value as float64 (an ``array.array``) of every F16 bit pattern
    (numba has no float16), then of every F8_E4M3 and every F8_E5M2 byte (at
    :data:`TABLE_AT`): numba's and numpy's table. F16 by :mod:`struct`
    (CPython's exact conversion; a NaN keeps its sign, not its payload, which
    no sum shows), FP8 by :func:`_f8`. The C kernel fills its own, the same
    values (``figspec_values``; tests/test_kernel_bits.py compares them),
    which takes it microseconds where this takes 8-15 ms."""
    import array
    import struct

    patterns = array.array("H", range(1 << 16))  # native order, as struct reads it
    f16 = struct.unpack(f"{1 << 16}e", patterns)
    return array.array("d", [*f16, *_f8(4, 3, fn=True), *_f8(5, 2, fn=False)])


@memo("kernel.f16_table")
def _table() -> Any:
    """:func:`_values` as a numpy array (writable: numba's kernel is typed by it)."""
    import numpy as np

    return np.array(_values())


def _f8(exponent_bits: int, mantissa_bits: int, fn: bool) -> list[float]:
    """Every byte's value in an FP8 format (OCP 8-bit floating point): sign,
    exponent (bias 2**(e-1) - 1), mantissa; subnormals where the exponent is
    0. E5M2 is IEEE-like (all-ones exponent: infinity, NaN); E4M3 "fn" has no
    infinity, and only S.1111.111 is NaN. Each value is m * 2**k, exact."""
    bias = (1 << (exponent_bits - 1)) - 1
    top = (1 << exponent_bits) - 1
    out = []
    for byte in range(256):
        e = (byte >> mantissa_bits) & top
        m = byte & ((1 << mantissa_bits) - 1)
        sign = -1.0 if byte & 0x80 else 1.0
        if e == top and (not fn or m == (1 << mantissa_bits) - 1):
            out.append(math.nan if (m or fn) else sign * math.inf)
        elif e == 0:
            out.append(sign * math.ldexp(m, 1 - bias - mantissa_bits))
        else:
            out.append(sign * math.ldexp(m + (1 << mantissa_bits), e - bias - mantissa_bits))
    return out


# -- the compiled paths --------------------------------------------------------------

#: Held while a kernel is compiled: threads reducing at once compile it once.
_LOAD = threading.Lock()


def _c() -> Any:
    """The C kernel (figspec.sources._kernel_c.Kernel), or None where it
    cannot be had (no compiler, a failed compile, a cache folder that cannot
    be written: said in --verbose output). Loaded, or compiled first, once
    per process, under the lock."""
    with _LOAD:
        return _c_loaded()


@memo("kernel.c")
def _c_loaded() -> Any:
    from ._kernel_c import load

    return load()


def _numba() -> Any:
    """The compiled kernel (figspec.sources._kernel_numba.Compiled), or None
    without numba. Compiled on first use, once per process, under a lock;
    nothing is compiled, written or changed before (see
    :mod:`figspec.sources._kernel_numba` for where it keeps its compiled code)."""
    with _LOAD:
        return _compiled()


@memo("kernel.numba")
def _compiled() -> Any:
    try:
        import numba  # noqa: F401
    except Exception:  # not installed, or broken on this platform
        return None
    try:
        from ._kernel_numba import compile_kernel

        compiled = compile_kernel()
        _every_dtype(compiled)
        return compiled
    except Exception as e:  # pragma: no cover - a numba that cannot compile it
        log.info("numba cannot compile figspec's kernel (%s): the numpy path is used", e)
        return None


#: One dtype of each kind the compiled kernel is typed by (F16 is viewed as
#: BF16 is, F8_E5M2 as F8_E4M3).
_KINDS = ("BF16", "F32", "F64", "F8_E4M3")


def _every_dtype(compiled: Any) -> None:
    """Where the kernel is cached and this machine has not yet compiled it
    for every dtype, compile it for each now (numba compiles per argument
    type: the first F32 pair after BF16 ones would compile again, ~3 s), by
    calling each entry point on a few entries read as reduce reads them
    (into a bytearray); then say so in the cache (``compiled.complete``), so
    that later processes only load, lazily, what they use."""
    marker = compiled.complete
    if marker is None or os.path.exists(marker):
        return
    import numpy as np

    def raw(kind: str) -> Any:  # as pair() views what reduce read into its buffer
        return _view(memoryview(bytearray(64)), kind)

    table, kinds, limits = _table(), np.zeros(1, np.int64), np.zeros(1)
    for dtype in _KINDS:
        code, v, bits = CODES[dtype], VALUES[dtype], BITS[dtype]
        compiled.pair(raw(v), raw(bits), code, raw(v), raw(bits), code, True, kinds, limits,
                      table, 1.0, np.zeros(len(FIELDS) + 1))
        compiled.single(raw(v), code, table, 1.0, np.zeros(len(FIELDS)))
        compiled.triple(raw(v), code, raw(v), code, raw(v), code, table, 1.0,
                        np.zeros(len(TRIPLE_FIELDS)))
    with contextlib.suppress(OSError), open(marker, "w") as f:  # a full disk: next time
        f.write("every dtype compiled\n")
