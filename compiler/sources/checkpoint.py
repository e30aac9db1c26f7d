"""Per-module metrics computed straight from safetensors checkpoints.

``data: {checkpoint: ..., base: ..., metric: relative_change}``: every weight
matrix of the checkpoint, compared with the base's, gives one cell; its layer
and module come from the tensor's name (``model.layers.12.self_attn.q_proj
.weight``), as with ``layout: params``.

Files are read safely: the header's length, its JSON, every tensor's dtype,
shape and offsets are checked against the file's size before anything is
read, so a hostile or broken shard gives a diagnostic naming the file and the
tensor and never makes figspec read or allocate more than the file holds.
Tensors are read and reduced in pieces (float64 sums), so a model is never
in memory whole; every cheap metric of a pair comes from one pass,
and the sums are cached (figspec's cache, keyed by the files' size, mtime,
inode and ctime), so a rebuild after changing a colour reads no checkpoint.
PyTorch pickles are never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, FigspecError, display_path
from ..files import looked_at, open_regular
from . import Context, Rows, Where

#: Bytes per entry of the dtypes read.
DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}
#: A header longer than this is refused (real ones are a few hundred KB).
MAX_HEADER = 100_000_000
#: Entries reduced at a time (512 KB of BF16 per checkpoint): a chunk's sums
#: are the kernel's unit, so this fixes the order of every sum.
CHUNK = 1 << 18
#: Bump when what is cached changes meaning.
CACHE_VERSION = 1
INDEX = "model.safetensors.index.json"
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(Exception):
    """A checkpoint that cannot be read as one; ``file`` and ``tensor`` say where."""

    #: how to fix it, when the file is not simply damaged
    hint: str | None = None

    def __init__(self, message: str, file: Path | None = None, tensor: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.file, self.tensor, self.hint = file, tensor, hint

    def text(self) -> str:
        where = [f"in {display_path(self.file)}" if self.file else None,
                 f"tensor `{self.tensor}`" if self.tensor else None]
        return ", ".join(w for w in where if w) + (": " if any(where) else "") + str(self)


@dataclass(frozen=True)
class Tensor:
    """One tensor's place in a shard, checked against the shard's size."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def count(self) -> int:
        return math.prod(self.shape)


# -- reading headers ---------------------------------------------------------------

def read_header(path: Path) -> dict[str, Tensor]:
    """The tensors of one .safetensors file, every field checked; CheckpointError."""
    looked_at(path)
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"only {len(head)} bytes: not a safetensors file", path)
            length = int.from_bytes(head, "little")
            if length > size - 8 or length > MAX_HEADER:
                raise CheckpointError(f"header length {length:,} is past the end of the file "
                                      f"({size:,} bytes)" if length > size - 8 else
                                      f"header length {length:,} is absurd (over "
                                      f"{MAX_HEADER:,})", path)
            raw = f.read(length)
    except OSError as e:
        raise CheckpointError(f"cannot read: {e.strerror or e}", path) from None
    try:
        header = json.loads(raw, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"header is not JSON: {e}", path) from None
    if not isinstance(header, dict):
        raise CheckpointError("header is not a JSON object", path)
    data_start, tensors = 8 + length, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor(path, name, info, data_start, size)
    _no_overlaps(path, tensors)
    return tensors


def _tensor(path: Path, name: str, info: Any, data_start: int, size: int) -> Tensor:
    def bad(message: str) -> CheckpointError:
        return CheckpointError(message, path, name)

    if not isinstance(info, dict):
        raise bad("its header entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not read (only {', '.join(DTYPES)})", path,
                              name, "save the checkpoint in one of them")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                            and d >= 0 for d in shape)):
        raise bad(f"shape {shape!r} is not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and
            all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]):
        raise bad(f"data_offsets {offsets!r} are not [begin, end]")
    want = math.prod(shape) * DTYPES[dtype]
    if offsets[1] - offsets[0] != want:
        raise bad(f"holds {offsets[1] - offsets[0]:,} bytes; shape {shape} in {dtype} needs "
                  f"{want:,}")
    if data_start + offsets[1] > size:
        raise bad(f"ends at byte {data_start + offsets[1]:,}, past the end of the file "
                  f"({size:,} bytes): the file is truncated")
    return Tensor(name, path, dtype, tuple(shape), data_start + offsets[0],
                  data_start + offsets[1])


def _no_overlaps(path: Path, tensors: dict[str, Tensor]) -> None:
    spans = sorted(tensors.values(), key=lambda t: (t.start, t.end))
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise CheckpointError(f"its bytes overlap those of `{a.name}`", path, b.name)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def open_checkpoint(path: Path) -> dict[str, Tensor]:
    """Every tensor of a checkpoint: a .safetensors file, or a folder with an
    index naming its shards, or with *.safetensors files."""
    looked_at(path)
    if path.is_file():
        if path.suffix.lower() in _PICKLES:
            raise CheckpointError("a PyTorch pickle, which figspec never unpickles (it can run "
                                  "code); convert it: `safetensors.torch.save_file(torch.load("
                                  "p, weights_only=True), 'model.safetensors')`", path)
        return read_header(path)
    if not path.is_dir():
        raise CheckpointError("no such file or folder", path)
    index = path / INDEX
    looked_at(index)
    if index.is_file():
        shards = _index_shards(index)
    else:
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            pickles = [p.name for p in path.iterdir() if p.suffix.lower() in _PICKLES]
            hint = (f"; it has {', '.join(pickles[:3])}: PyTorch pickles, which figspec never "
                    "unpickles; convert them to safetensors" if pickles else "")
            raise CheckpointError(f"holds neither {INDEX} nor *.safetensors files{hint}", path)
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        for name, t in read_header(shard).items():
            if name in tensors:
                raise CheckpointError(f"is also in {display_path(tensors[name].file)}", shard,
                                      name)
            tensors[name] = t
    return tensors


def _index_shards(index: Path) -> list[Path]:
    try:
        with open_regular(index) as f:
            data = json.loads(f.read(MAX_HEADER + 1), object_pairs_hook=_unique)
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"not a readable index: {e}", index) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str)
                                                   for v in weight_map.values()):
        raise CheckpointError("has no `weight_map` of tensor name to shard file", index)
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = (index.parent / name).resolve()
        if shard.parent != index.parent.resolve():
            raise CheckpointError(f"names a shard outside its folder: {name!r}", index)
        if not shard.is_file():
            raise CheckpointError(f"names a shard that does not exist: {name}", index,
                                  hint="copy the missing shard next to the index")
        shards.append(shard)
    return shards


# -- reducing tensors --------------------------------------------------------------

class _Buffers:
    """One thread's byte buffers for a chunk of T and of B, reused chunk to
    chunk: a fresh buffer per chunk costs more in page faults than the
    arithmetic, and a chunk stays in the processor's cache."""

    def __init__(self) -> None:
        self.t = bytearray(CHUNK * max(DTYPES.values()))
        self.b = bytearray(CHUNK * max(DTYPES.values()))


class _Files:
    """Open shards, read a chunk at a time with preadv (pread) into a thread's
    buffers: memory stays bounded (a memory map would count every page it
    touched as resident), and pread is safe from several threads."""

    KINDS = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}

    def __init__(self) -> None:
        self.fds: dict[Path, int] = {}
        self.lock = threading.Lock()

    def _fd(self, t: Tensor) -> int:
        with self.lock:
            if t.file not in self.fds:
                with open_regular(t.file) as f:
                    self.fds[t.file] = os.dup(f.fileno())
            return self.fds[t.file]

    def read(self, t: Tensor, first: int, count: int) -> bytes:
        size = DTYPES[t.dtype]
        raw = os.pread(self._fd(t), count * size, t.start + first * size)
        if len(raw) != count * size:  # the file shrank since its header was read
            raise CheckpointError("the file changed while it was read", t.file, t.name)
        return raw

    def read_into(self, t: Tensor, first: int, count: int, buffer: bytearray) -> memoryview:
        """Entries first..first+count of ``t``, read into the front of ``buffer``."""
        size, fd = DTYPES[t.dtype], self._fd(t)
        view = memoryview(buffer)[:count * size]
        done = 0
        while done < len(view):
            offset = t.start + first * size + done
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

    def values(self, t: Tensor, raw: bytes) -> Any:
        import numpy as np

        return np.frombuffer(raw, dtype=self.KINDS[t.dtype])

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def reduce_pair(t: Tensor, b: Tensor | None, files: _Files, options: frozenset[Option],
                buffers: _Buffers | None = None, path: str | None = None) -> dict[str, float]:
    """The sums every cheap metric is made of, in one pass, in float64; a count
    of changed entries for each of ``options`` (see :func:`changed_key`).

    Each chunk of CHUNK entries goes through the fused kernel
    (:mod:`compiler.sources.kernel`; ``path``: "numba" or "numpy", else
    chosen there); the chunks' sums are added in chunk order, so the result
    does not depend on which thread reduced which tensor."""
    from . import kernel

    buf = buffers or _Buffers()
    path = path or kernel.path()
    wanted = tuple(sorted(options)) if b is not None else ()
    out = {"n": float(t.count), "tt": 0.0, "bb": 0.0, "tb": 0.0, "dd": 0.0, "max_abs": 0.0,
           "bad_t": 0.0, "bad_b": 0.0, **{changed_key(o): 0.0 for o in wanted}}
    for i in range(0, t.count, CHUNK):
        n = min(CHUNK, t.count - i)
        t_raw = files.read_into(t, i, n, buf.t)
        if b is None:
            part = kernel.single(t_raw, t.dtype, path)
        else:
            part = kernel.pair(t_raw, t.dtype, files.read_into(b, i, n, buf.b), b.dtype,
                               wanted, path)
        for k, name in enumerate(kernel.FIELDS):
            if name == "max_abs":
                out[name] = max(out[name], float(part[k]))
            else:
                out[name] += float(part[k])
        for k, option in enumerate(wanted):
            out[changed_key(option)] += float(part[len(kernel.FIELDS) + k])
    return out


#: What "changed" means: ("exact", 0), ("abs", tolerance) or ("rel", relative_tolerance).
Option = tuple[str, float]


def option_of(data: Any) -> Option:
    if data.tolerance is not None:
        return ("abs", data.tolerance)
    if data.relative_tolerance is not None:
        return ("rel", data.relative_tolerance)
    return ("exact", 0.0)


def changed_key(option: Option) -> str:
    return f"changed:{option[0]}:{option[1]!r}"


#: One SVD at a time: each is multi-threaded already, and memory stays that of one.
_SVD = threading.Lock()


def update_rank(t: Tensor, b: Tensor, files: _Files) -> float:
    """Numerical rank of T - B over min(rows, cols), as torch.linalg.matrix_rank
    computes it on float32: singular values above s_max * max(m, n) * eps.

    The singular values come first from the eigenvalues of the smaller Gram
    matrix of T - B (taken in float32, as torch would, then widened), in
    float64: accurate far below the threshold, and several times cheaper
    than an SVD. Where one of them lies near the threshold (within a factor
    of 2, far wider than a float32 SVD's error), the float32 SVD decides, as
    torch's would."""
    import numpy as np

    if len(t.shape) != 2:
        raise CheckpointError("update_rank needs a matrix", t.file, t.name)
    with _SVD, np.errstate(all="ignore"):  # non-finite weights are reported, not warned
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
    return float(np.count_nonzero(s > tol)) / min(t.shape)


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

    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def metric(name: str, sums: dict[str, float], option: Option = ("exact", 0.0)) -> float:
    """One metric from a tensor's sums."""
    n, tt, bb, tb, dd = sums["n"], sums["tt"], sums["bb"], sums["tb"], sums["dd"]
    if name == "relative_change":
        return math.sqrt(dd) / math.sqrt(bb) if bb else math.inf
    if name == "changed_fraction":
        return sums[changed_key(option)] / n if n else 0.0
    if name == "sparsity":
        return 1 - sums[changed_key(option)] / n if n else 1.0
    if name == "cosine":
        return tb / (math.sqrt(tt) * math.sqrt(bb)) if tt and bb else math.nan
    if name == "update_norm":
        return math.sqrt(dd)
    if name == "update_rms":
        return math.sqrt(dd / n) if n else 0.0
    if name == "norm":
        return math.sqrt(tt)
    if name == "rms":
        return math.sqrt(tt / n) if n else 0.0
    if name == "max_abs":
        return sums["max_abs"]
    return sums[name]  # update_rank, computed on its own


# -- the source --------------------------------------------------------------------

class Checkpoint:
    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        try:
            tuned = open_checkpoint(self._path(ctx, "checkpoint"))
            base = open_checkpoint(self._path(ctx, "base")) if data.base else None
        except CheckpointError as e:
            key = "base" if data.base and e.file is not None and \
                _under(e.file, ctx, "base") else "checkpoint"
            hint = e.hint or (None if "unpickle" in str(e) or "no such" in str(e) else
                              "the file is damaged or not safetensors: save the checkpoint again")
            raise ctx.error(("data", key), e.text(), hint) from None
        chosen = self._tensors(tuned, data.tensor, data.param_pattern, ctx.layers)
        problems = []
        if base is not None:
            problems = self._compare_headers(ctx, chosen, base)
        if problems:
            raise FigspecError(problems)
        if ctx.compute:
            values = self._values(ctx, chosen, base)
        else:  # checking: say what a build will want of this pair, compute nothing
            values = {name: 0.0 for name in chosen}
            _want(self._pair_key(chosen, base, data), data)
        rows = [(Where(display_path(t.file), what=f"tensor `{name}`"),
                 {data.param: name, data.value: values[name]})
                for name, t in chosen.items()]
        shown = display_path(self._path(ctx, "checkpoint"))
        return Rows(rows, [data.param, data.value], shown)  # type: ignore[arg-type]

    @staticmethod
    def _path(ctx: Context, key: str) -> Path:
        written = getattr(ctx.data, key)
        return ctx.rooted(written, ("data", key))

    @staticmethod
    def _tensors(tensors: dict[str, Tensor], kind: str, pattern: re.Pattern[str],
                 layers: tuple[int, int | None]) -> dict[str, Tensor]:
        """The weights (or biases) of the layers drawn: embeddings, the final
        norm and lm_head have no layer, and are never read."""
        suffix, (first, last) = "." + kind, layers
        chosen = {}
        for name, t in tensors.items():
            m = pattern.search(name) if name.endswith(suffix) else None
            if m and m.group("layer").isdigit() and first <= int(m.group("layer")) and \
                    (last is None or int(m.group("layer")) <= last):
                chosen[name] = t
        return chosen

    @staticmethod
    def _compare_headers(ctx: Context, chosen: dict[str, Tensor], base: dict[str, Tensor]
                         ) -> list[Diagnostic]:
        problems = []
        for name, t in chosen.items():
            other = base.get(name)
            if other is None:
                problems.append(ctx.doc.diagnostic(ctx.base + ("data", "base"),
                                f"tensor `{name}` of the checkpoint is not in the base"))
            elif other.shape != t.shape:
                problems.append(ctx.doc.diagnostic(ctx.base + ("data", "base"),
                                f"tensor `{name}` is {list(t.shape)} in the checkpoint and "
                                f"{list(other.shape)} in the base"))
        return problems[:5] + ([ctx.doc.diagnostic(ctx.base + ("data", "base"),
                                f"... and {len(problems) - 5} more like this")]
                               if len(problems) > 5 else [])

    @staticmethod
    def _pair_key(chosen: dict[str, Tensor], base: dict[str, Tensor] | None, data: Any) -> str:
        files = sorted({t.file for t in chosen.values()} |
                       {base[n].file for n in chosen if base and n in base})
        return _cache_key(files, data)

    def _values(self, ctx: Context, chosen: dict[str, Tensor], base: dict[str, Tensor] | None
                ) -> dict[str, float]:
        data = ctx.data
        key = self._pair_key(chosen, base, data)
        _want(key, data)
        options, rank = _WANTED[key]
        sums = _cached(key)
        if not _covers(sums, chosen, options, rank and base is not None):
            # Reduce what any spec of this build wants of the pair, and what
            # was cached before, in one pass.
            for name_sums in (sums or {}).values():
                for k in name_sums:
                    if k.startswith("changed:"):
                        kind, value = k.split(":", 2)[1:]
                        options.add((kind, float(value)))
            sums = _reduce_all(chosen, base, frozenset(options), rank)
            _store(key, sums)
        bad = {n: s for n, s in sums.items() if n in chosen and (s["bad_t"] or s["bad_b"])}
        if bad:
            name, s = next(iter(bad.items()))
            which = "checkpoint" if s["bad_t"] else "base"
            raise ctx.error(("data", which), f"tensor `{name}` holds "
                            f"{int(s['bad_t'] or s['bad_b']):,} non-finite weights (NaN or "
                            f"infinity) in the {which}" + (f"; and {len(bad) - 1} more tensors"
                                                          if len(bad) > 1 else ""))
        return {name: metric(data.metric, sums[name], option_of(data)) for name in chosen}


def _under(path: Path, ctx: Context, key: str) -> bool:
    try:
        return path.resolve().is_relative_to(Checkpoint._path(ctx, key))
    except FigspecError:
        return False


def _reduce_all(chosen: dict[str, Tensor], base: dict[str, Tensor] | None,
                options: frozenset[Option], rank: bool, threads: int | None = None
                ) -> dict[str, dict[str, float]]:
    """Every chosen tensor reduced, by ``threads`` threads (default: one per
    core this process may use), each taking the next tensor in file order
    (reads stay nearly sequential). The kernel lets go of the GIL and calls
    no BLAS, so the threads are the only ones working: no oversubscription."""
    from concurrent.futures import ThreadPoolExecutor

    from . import kernel

    files = _Files()
    path = kernel.path()  # once: the environment is read, and --verbose told, here
    local = threading.local()

    def one(item: tuple[str, Tensor]) -> tuple[str, dict[str, float]]:
        name, t = item
        b = base[name] if base is not None else None
        if not hasattr(local, "buffers"):
            local.buffers = _Buffers()
        sums = reduce_pair(t, b, files, options if b is not None else frozenset(),
                           local.buffers, path)
        if rank and b is not None:
            sums["update_rank"] = update_rank(t, b, files)
        return name, sums

    order = sorted(chosen.items(), key=lambda kv: (str(kv[1].file), kv[1].start))
    try:
        with ThreadPoolExecutor(max_workers=threads or cores()) as pool:
            return dict(pool.map(one, order))
    finally:
        files.close()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


#: Reductions made in this process, by cache key: several specs comparing the
#: same pair in one build share one pass.
_MEMORY: dict[str, dict[str, dict[str, float]]] = {}


#: What the specs of this process want of each pair (cache key): the meanings
#: of "changed" asked for, and whether update_rank is. Checking a spec adds to
#: it, so a build reduces a pair once for all its figures.
_WANTED: dict[str, tuple[set[Option], bool]] = {}


def _want(key: str, data: Any) -> None:
    options, rank = _WANTED.setdefault(key, (set(), False))
    if data.base is not None:  # "changed" compares two checkpoints
        options.add(option_of(data))
    _WANTED[key] = (options, rank or data.metric == "update_rank")


def _covers(sums: dict[str, dict[str, float]] | None, chosen: dict[str, Tensor],
            options: set[Option], rank: bool) -> bool:
    """Whether cached sums hold every tensor and option wanted."""
    if sums is None:
        return False
    for name in chosen:
        have = sums.get(name)
        if have is None or (rank and "update_rank" not in have):
            return False
        if not all(changed_key(o) in have for o in options):
            return False
    return True


def _cache_key(files: list[Path], data: Any) -> str:
    """The files' identity (a shard rewritten in place changes its mtime and
    ctime), and which tensors are reduced."""
    parts: list[Any] = [CACHE_VERSION, data.tensor]
    for f in files:
        st = f.stat()
        parts.append([str(f), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _cached(key: str) -> dict[str, dict[str, float]] | None:
    from .. import cache

    if key in _MEMORY:
        return _MEMORY[key]
    try:
        raw = (cache.folder() / "metrics" / f"{key}.json").read_bytes()
        sums = json.loads(raw)
    except (OSError, ValueError):
        return None
    if isinstance(sums, dict):
        _MEMORY[key] = sums
        return sums
    return None


def _store(key: str, sums: dict[str, dict[str, float]]) -> None:
    from .. import cache

    _MEMORY[key] = sums
    cache.put(f"metrics/{key}.json", json.dumps(sums, sort_keys=True).encode())


SOURCE = Checkpoint()
