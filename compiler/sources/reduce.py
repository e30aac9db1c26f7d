"""A checkpoint pair reduced to the sums its metrics are made of: each tensor
read a chunk at a time (:mod:`figspec.sources.safetensors`) and passed
through the fused kernel (:mod:`figspec.sources.kernel`), on the threads
the session's budget of cores allows; then update_rank (and its absolute
form, from the same singular values), one matrix at a time.
"""

from __future__ import annotations

import math
import threading
from array import array
from typing import Any

from ..session import Option, cores
from .metrics import SUMS, changed_key
from .safetensors import DTYPES, CheckpointError, Tensor
from .shard_data import WINDOW, Computed, Files

#: Entries reduced at a time (512 KB of BF16 per checkpoint): a chunk's sums
#: are the kernel's unit, so this fixes the order of every sum.
CHUNK = 1 << 18
#: A tensor whose sums overflow though its entries are finite (F64 weights
#: past 1e154) is summed again with every value times 2**-SCALE, which is
#: exact: then the squares of any float64 sum without overflow (2**(2 * 484)
#: times 2**40 entries is under 2**1024). Only the sums that overflowed are
#: taken from that pass, each with a ``scaled:NAME`` key saying so
#: (:mod:`figspec.sources.metrics` undoes it); every other result keeps its bits.
SCALE = 540
_SCALED = ("tt", "bb", "tb", "dd")


class _Buffers:
    """One thread's byte buffers for a chunk of T and of B, reused chunk to
    chunk, for what is not handed out where its file is mapped (a shard read
    in place, a head's columns, a computed tensor: see
    :class:`~figspec.sources.shard_data.Files`): a fresh buffer per chunk
    costs more in page faults than the arithmetic."""

    def __init__(self) -> None:
        self.t = bytearray(CHUNK * max(DTYPES.values()))
        self.b = bytearray(CHUNK * max(DTYPES.values()))


def reduce_pair(t: Tensor, b: Tensor | None, files: Files, options: frozenset[Option],
                buffers: _Buffers | None = None, path: str | None = None) -> dict[str, float]:
    """The sums every cheap metric is made of, in one pass, in float64; a count
    of changed entries for each of ``options`` (see :func:`changed_key`).

    Each chunk of CHUNK entries goes through the fused kernel
    (:mod:`figspec.sources.kernel`; ``path``: "c", "numba" or "numpy", else
    chosen there); the chunks' sums are added in chunk order, so the result
    does not depend on which thread reduced which tensor."""
    if b is not None:
        return reduce_against([t], b, files, options, buffers, path)[0]
    from . import kernel

    buf = buffers or _Buffers()
    path = path or kernel.path()
    out = _single(t, files, buf, path, 1.0)
    again = _overflowed(out)
    if again:
        _take_scaled(out, _single(t, files, buf, path, 2.0 ** -SCALE), again)
    return out


def _exact(t: Tensor, b: Tensor, sums: dict[str, float], files: Files) -> None:
    """‖T − B‖² where it is known exactly without the entries (a peft
    adapter's update, from its factors: :mod:`figspec.sources.peft`)."""
    exact = t.exact(b, files) if isinstance(t, Computed) else None
    if exact is not None:
        sums.pop("scaled:dd", None)
        sums["dd"] = exact["dd"]


def _single(t: Tensor, files: Files, buf: _Buffers, path: str, scale: float
            ) -> dict[str, float]:
    from . import kernel

    out = _zero(t, ())
    for i in range(0, t.count, CHUNK):
        n = min(CHUNK, t.count - i)
        _add(out, kernel.single(files.read_into(t, i, n, buf.t), t.dtype, path, scale), ())
    return out


def _overflowed(sums: dict[str, float]) -> list[str]:
    """The sums that overflowed (or met inf - inf) though every entry is finite."""
    if sums["bad_t"] or sums["bad_b"]:
        return []
    return [k for k in _SCALED if not math.isfinite(sums[k])]


def _take_scaled(out: dict[str, float], scaled: dict[str, float], keys: list[str]) -> None:
    for k in keys:
        out[k] = scaled[k]
        out[f"scaled:{k}"] = float(SCALE)


def reduce_against(ts: list[Tensor], b: Tensor, files: Files, options: frozenset[Option],
                   buffers: _Buffers | None = None, path: str | None = None
                   ) -> list[dict[str, float]]:
    """:func:`reduce_pair` of each of ``ts`` (one tensor of several checkpoints
    of a run) against ``b``, reading each chunk of ``b`` once for all of them:
    a run of N checkpoints costs N + 1 reads, not 2N. Each result is the one
    :func:`reduce_pair` gives, bit for bit (the same chunks, in the same order);
    memory stays two chunks, however many checkpoints."""
    from . import kernel

    buf = buffers or _Buffers()
    path = path or kernel.path()
    wanted = tuple(sorted(options))
    out = _against(ts, b, files, wanted, buf, path, 1.0)
    for t, sums in zip(ts, out):
        again = _overflowed(sums)
        if again:
            _take_scaled(sums, _against([t], b, files, wanted, buf, path, 2.0 ** -SCALE)[0],
                         again)
        _exact(t, b, sums, files)
    return out


def _against(ts: list[Tensor], b: Tensor, files: Files, wanted: tuple[Option, ...],
             buf: _Buffers, path: str, scale: float) -> list[dict[str, float]]:
    from . import kernel

    out = [_zero(t, wanted) for t in ts]
    step = _span(ts[0], b) if path == "c" and len(ts) == 1 else CHUNK
    for i in range(0, b.count, step):
        n = min(step, b.count - i)
        if step > CHUNK and _mapped_chunks(ts[0], b, files, i, n, wanted, scale, out[0]):
            continue
        for j in range(i, i + n, CHUNK):
            m = min(CHUNK, i + n - j)
            b_raw = files.read_into(b, j, m, buf.b)
            for t, sums in zip(ts, out):
                _add(sums, kernel.pair(files.read_into(t, j, m, buf.t), t.dtype, b_raw,
                                       b.dtype, wanted, path, scale), wanted)
    return out


def _span(t: Tensor, b: Tensor) -> int:
    """Entries of a pair taken by one call of the C kernel where both sides
    are mapped: whole chunks, half a window of the wider side (so that a
    window holds two spans and is mapped once per two)."""
    wide = max(DTYPES[t.dtype], DTYPES[b.dtype])
    return CHUNK * max(1, WINDOW // 2 // (CHUNK * wide))


def _mapped_chunks(t: Tensor, b: Tensor, files: Files, first: int, count: int,
                   wanted: tuple[Option, ...], scale: float, sums: dict[str, float]) -> bool:
    """Entries first..first+count of the pair into ``sums``, chunk by chunk
    as :func:`_against` adds them, in one call of the C kernel where both
    sides' files map them; False (nothing done) where either's do not."""
    from . import kernel

    t_raw = files.mapped(t, first, count)
    b_raw = files.mapped(b, first, count) if t_raw is not None else None
    if b_raw is None:
        return False
    keys = (*SUMS, *(changed_key(o) for o in wanted))
    acc = array("d", [sums[k] for k in keys])
    kernel.pair_chunks(t_raw, t.dtype, b_raw, b.dtype, wanted, scale, CHUNK, acc)
    sums.update(zip(keys, acc))
    return True


def _zero(t: Tensor, wanted: tuple[Option, ...]) -> dict[str, float]:
    return {"n": float(t.count), **dict.fromkeys(SUMS, 0.0),
            **{changed_key(o): 0.0 for o in wanted}}


def _add(out: dict[str, float], part: Any, wanted: tuple[Option, ...]) -> None:
    """A chunk's sums added to a tensor's, in chunk order."""
    for k, name in enumerate(SUMS):
        if name == "max_abs":
            out[name] = max(out[name], float(part[k]))
        else:
            out[name] += float(part[k])
    for k, option in enumerate(wanted):
        out[changed_key(option)] += float(part[len(SUMS) + k])


def rank_sums(t: Tensor, b: Tensor, files: Files) -> dict[str, float]:
    """The sums of the metrics :data:`figspec.sources.metrics.RANKS` of one
    matrix, from one pass: its update_rank (over min(rows, cols)) and
    update_rank_absolute (the rank itself)."""
    count = rank(t, b, files)
    return {"update_rank": count / min(t.shape), "update_rank_absolute": count}


def rank(t: Tensor, b: Tensor, files: Files) -> float:
    """Numerical rank of T - B, as torch.linalg.matrix_rank computes it on
    float32: singular values above s_max * max(m, n) * eps.

    The singular values come first from the eigenvalues of the smaller Gram
    matrix of T - B (taken in float32, as torch would, then widened), in
    float64: accurate far below the threshold, and several times cheaper
    than an SVD. Where one of them lies near the threshold (within a factor
    of 2, far wider than a float32 SVD's error), the float32 SVD decides, as
    torch's would."""
    import numpy as np

    if len(t.shape) != 2:
        raise CheckpointError("update_rank needs a matrix", t.file, t.name)
    exact = t.exact(b, files) if isinstance(t, Computed) else None
    if exact is not None:  # a peft adapter's update: from its factors
        return exact["rank"]
    with np.errstate(all="ignore"):  # non-finite weights are reported, not warned
        d = _as_float32(files.values(t, files.read(t, 0, t.count)), t.dtype)
        d -= _as_float32(files.values(b, files.read(b, 0, b.count)), b.dtype)
        d = d.reshape(t.shape)
        s = _singular_values_by_gram(d)
        if s is not None and s.size and s[0] > 0:
            tol = s[0] * max(t.shape) * np.finfo(np.float32).eps
            if np.count_nonzero((s > tol / 2) & (s < tol * 2)):
                s = None  # too close to call: the SVD decides
        if s is None:
            s = np.linalg.svd(d, compute_uv=False)
    if not s.size or s[0] == 0:
        return 0.0
    tol = s[0] * max(t.shape) * np.finfo(np.float32).eps
    return float(np.count_nonzero(s > tol))


def _singular_values_by_gram(d: Any) -> Any:
    """Singular values of ``d`` (descending) from the eigenvalues of its
    smaller Gram matrix in float64; None when ``d`` is not finite."""
    import numpy as np

    if not np.isfinite(d).all():
        return None
    wide = d.astype(np.float64)
    gram = wide.T @ wide if d.shape[0] >= d.shape[1] else wide @ wide.T
    values = np.linalg.eigvalsh(gram)[::-1]
    return np.sqrt(np.maximum(values, 0.0))


def _as_float32(raw: Any, dtype: str) -> Any:
    import numpy as np

    from . import kernel

    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("F8_E4M3", "F8_E5M2"):  # every FP8 value is a float32
        return kernel.decoded(raw, dtype).astype(np.float32)
    return raw.astype(np.float32)


def reduce_all(chosen: dict[str, Tensor], base: dict[str, Tensor] | None,
                options: frozenset[Option], ranks: set[str], threads: int | None = None
                ) -> dict[str, dict[str, float]]:
    """Every chosen tensor reduced by ``threads`` threads (default: one per
    core this process may use), each taking the next tensor in file order
    (reads stay nearly sequential). The kernel lets go of the GIL and calls no
    BLAS, so those threads are the only ones working. Then the update_rank of
    those in ``ranks``, one matrix at a time in this thread, where BLAS has
    the cores to itself: never BLAS threads inside the reducing threads."""
    from concurrent.futures import ThreadPoolExecutor

    from . import kernel

    files = Files()
    path = kernel.path()  # once: the environment is read, and --verbose told, here
    local = threading.local()

    def one(item: tuple[str, Tensor]) -> tuple[str, dict[str, float]]:
        name, t = item
        b = base[name] if base is not None else None
        if not hasattr(local, "buffers"):
            local.buffers = _Buffers()
        return name, reduce_pair(t, b, files, options if b is not None else frozenset(),
                                 local.buffers, path)

    order = sorted(chosen.items(), key=lambda kv: (str(kv[1].file), kv[1].start))
    try:
        with ThreadPoolExecutor(max_workers=threads or cores()) as pool:
            sums = dict(pool.map(one, order))
        for name, t in order:
            if name in ranks and base is not None:
                sums[name].update(rank_sums(t, base[name], files))
        return sums
    finally:
        files.close()


def reduce_run(runs: list[dict[str, Tensor]], base: dict[str, Tensor],
               options: frozenset[Option], ranks: list[set[str]], threads: int | None = None
               ) -> list[dict[str, dict[str, float]]]:
    """:func:`reduce_all` of several checkpoints of a run (``runs[k]``: the
    tensors wanted of checkpoint k) against one base, each base tensor read
    once for all of them (:func:`reduce_against`), on ``threads`` threads
    taking the next base tensor in file order; then the update_ranks asked
    (``ranks[k]``), one matrix at a time, as :func:`reduce_all`."""
    from concurrent.futures import ThreadPoolExecutor

    from . import kernel

    files = Files()
    path = kernel.path()
    local = threading.local()
    names = sorted({n for run in runs for n in run},
                   key=lambda n: (str(base[n].file), base[n].start))

    def one(name: str) -> tuple[str, list[dict[str, float]]]:
        if not hasattr(local, "buffers"):
            local.buffers = _Buffers()
        ts = [run[name] for run in runs if name in run]
        return name, reduce_against(ts, base[name], files, options, local.buffers, path)

    try:
        with ThreadPoolExecutor(max_workers=threads or cores()) as pool:
            reduced = dict(pool.map(one, names))
        out = _by_step(reduced, runs)
        for k, run in enumerate(runs):
            for name in sorted(ranks[k] & run.keys()):
                out[k][name].update(rank_sums(run[name], base[name], files))
        return out
    finally:
        files.close()


def _by_step(reduced: dict[str, list[dict[str, float]]], steps: list[Any]
             ) -> list[dict[str, dict[str, float]]]:
    """Each tensor's sums, one per step holding it (in step order), as each
    step's own tensors' sums."""
    out: list[dict[str, dict[str, float]]] = [{} for _ in steps]
    for name, sums in reduced.items():
        holders = [k for k, step in enumerate(steps) if name in step]
        for k, s in zip(holders, sums):
            out[k][name] = s
    return out


#: One pair of a run compared step by step: T, and B (None: T alone).
Link = tuple[Tensor, Tensor | None]


def reduce_chain(links: list[dict[str, Link]], options: list[frozenset[Option]],
                 ranks: list[set[str]], threads: int | None = None
                 ) -> list[dict[str, dict[str, float]]]:
    """:func:`reduce_all` of each pair of a run compared step by step
    (``links[k]``: the tensors wanted of pair k, each as T and B, where B is
    pair k - 1's T), each checkpoint read once: per tensor, chunk i of every
    step is read once and reduced as T of its pair and B of the next
    (:func:`reduce_links`), on ``threads`` threads taking the next tensor in
    file order; then the update_ranks asked (``ranks[k]``), one matrix at a
    time, as :func:`reduce_all`. Each pair's sums are those :func:`reduce_all`
    gives it alone, bit for bit: the same chunks, the same kernel calls with
    its own ``options[k]``, added in the same order."""
    from concurrent.futures import ThreadPoolExecutor

    from . import kernel

    files = Files()
    path = kernel.path()
    local = threading.local()
    first = {n: t for pair in links for n, (t, _) in pair.items()}
    names = sorted(first, key=lambda n: (str(first[n].file), first[n].start))

    def one(name: str) -> tuple[str, list[dict[str, float]]]:
        if not hasattr(local, "buffers"):
            local.buffers = _Buffers()
        held = [(pair[name], options[k]) for k, pair in enumerate(links) if name in pair]
        return name, reduce_links(held, files, local.buffers, path)

    try:
        with ThreadPoolExecutor(max_workers=threads or cores()) as pool:
            reduced = dict(pool.map(one, names))
        out = _by_step(reduced, links)
        for k, pair in enumerate(links):
            for name in sorted(ranks[k] & pair.keys()):
                t, b = pair[name]
                if b is not None:
                    out[k][name].update(rank_sums(t, b, files))
        return out
    finally:
        files.close()


def reduce_links(held: list[tuple[Link, frozenset[Option]]], files: Files, buf: _Buffers,
                 path: str) -> list[dict[str, float]]:
    """:func:`reduce_pair` of each link (one tensor of consecutive pairs of a
    run, in step order, each with its options), chunk by chunk: a link whose
    B is the link before's T takes that chunk from the buffer it was read
    into, so each checkpoint's chunk is read once; memory stays two chunks."""
    from . import kernel

    wanted = [tuple(sorted(o)) if b is not None else () for (_, b), o in held]
    out = [_zero(t, w) for ((t, _), _), w in zip(held, wanted)]
    count = held[0][0][0].count
    for i in range(0, count, CHUNK):
        n = min(CHUNK, count - i)
        last: tuple[Tensor, memoryview, bytearray] | None = None
        for ((t, b), _), w, sums in zip(held, wanted, out):
            spare = buf.t if last is not None and last[2] is buf.b else buf.b
            if b is None:
                t_raw = files.read_into(t, i, n, spare)
                _add(sums, kernel.single(t_raw, t.dtype, path, 1.0), w)
            else:
                if last is not None and _same(last[0], b):
                    b_raw, b_buf = last[1], last[2]
                else:
                    b_raw, b_buf = files.read_into(b, i, n, spare), spare
                spare = buf.t if b_buf is buf.b else buf.b
                t_raw = files.read_into(t, i, n, spare)
                _add(sums, kernel.pair(t_raw, t.dtype, b_raw, b.dtype, w, path, 1.0), w)
            last = (t, t_raw, spare)
    for ((t, b), o), sums in zip(held, out):
        again = _overflowed(sums)
        if again:  # rare: this pair alone again, scaled, as reduce_pair would
            scaled = _single(t, files, buf, path, 2.0 ** -SCALE) if b is None else \
                _against([t], b, files, tuple(sorted(o)), buf, path, 2.0 ** -SCALE)[0]
            _take_scaled(sums, scaled, again)
        if b is not None:
            _exact(t, b, sums, files)
    return out


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors are the same stored bytes (a computed one, a peft
    adapter's merged weights, is computed again: never assumed the same)."""
    return a is b or (type(a) is Tensor and type(b) is Tensor and a == b)

