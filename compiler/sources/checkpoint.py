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
from ..files import Stamp, looked_at, open_regular
from ..models import module_matcher
from ..session import Option, cores
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

#: file read -> its identity stamp, taken before reading it
Stamps = dict[Path, Stamp]


def read_header(path: Path, stamps: Stamps | None = None) -> dict[str, Tensor]:
    """The tensors of one .safetensors file, every field checked; CheckpointError.
    The file is stamped in ``stamps`` as it was before its header was read."""
    looked_at(path)
    try:
        with open_regular(path) as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if stamps is not None:
                stamps[path] = Stamp.identity(st)
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


@dataclass(frozen=True)
class Within:
    """Where every file of a checkpoint must lie once links are followed: a
    folder, and how to name it in a message."""

    folder: Path
    shown: str

    def check(self, path: Path) -> None:
        real = path.resolve()
        if not real.is_relative_to(self.folder):
            raise CheckpointError(f"is a link to {real}, outside {self.shown}", path,
                                  hint="copy the file there, or pass --allow-outside")


def open_checkpoint(path: Path, stamps: Stamps | None = None, within: Within | None = None
                    ) -> dict[str, Tensor]:
    """Every tensor of a checkpoint: a .safetensors file, or a folder with an
    index naming its shards, or with *.safetensors files (links followed, but
    only to files ``within`` allows). Each file read is stamped in ``stamps``."""
    looked_at(path)
    if path.is_file():
        if path.suffix.lower() in _PICKLES:
            raise CheckpointError("a PyTorch pickle, which figspec never unpickles (it can run "
                                  "code); convert it: `safetensors.torch.save_file(torch.load("
                                  "p, weights_only=True), 'model.safetensors')`", path)
        shards = [path]
    elif not path.is_dir():
        raise CheckpointError("no such file or folder", path)
    else:
        shards = _shards(path, stamps, within)
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        if within is not None:
            within.check(shard)
        for name, t in read_header(shard, stamps).items():
            if name in tensors:
                raise CheckpointError(f"is also in {display_path(tensors[name].file)}", shard,
                                      name)
            tensors[name] = t
    return tensors


def _shards(folder: Path, stamps: Stamps | None, within: Within | None) -> list[Path]:
    """The shards of a checkpoint folder: those its index names, else every
    ``*.safetensors`` file in it."""
    index = folder / INDEX
    looked_at(index)
    if index.is_file():
        if within is not None:
            within.check(index)
        return _index_shards(index, stamps)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        pickles = [p.name for p in folder.iterdir() if p.suffix.lower() in _PICKLES]
        hint = (f"; it has {', '.join(pickles[:3])}: PyTorch pickles, which figspec never "
                "unpickles; convert them to safetensors" if pickles else "")
        raise CheckpointError(f"holds neither {INDEX} nor *.safetensors files{hint}", folder)
    return shards


def _index_shards(index: Path, stamps: Stamps | None = None) -> list[Path]:
    """The shards an index names: plain file names beside it. A Hugging Face
    hub snapshot's index and shards are links into its ``blobs`` folder, so a
    shard is found by its name in the index's folder, never by where it leads."""
    try:
        with open_regular(index) as f:
            st = os.fstat(f.fileno())
            data = json.loads(f.read(MAX_HEADER + 1), object_pairs_hook=_unique)
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"not a readable index: {e}", index) from None
    if stamps is not None:
        stamps[index] = Stamp.identity(st)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str)
                                                   for v in weight_map.values()):
        raise CheckpointError("has no `weight_map` of tensor name to shard file", index)
    shards = []
    for name in sorted(set(weight_map.values())):
        if not _PLAIN_FILE.fullmatch(name) or name in (".", ".."):
            raise CheckpointError(f"names a shard outside its folder: {name!r}", index)
        shard = index.parent / name
        looked_at(shard)
        if not shard.is_file():
            raise CheckpointError(f"names a shard that does not exist: {name}", index,
                                  hint="copy the missing shard next to the index")
        shards.append(shard)
    return shards


#: A shard's name in an index: a file name, no folder.
_PLAIN_FILE = re.compile(r"[^/\\\x00]{1,255}")


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




def option_of(data: Any) -> Option:
    if data.tolerance is not None:
        return ("abs", data.tolerance)
    if data.relative_tolerance is not None:
        return ("rel", data.relative_tolerance)
    return ("exact", 0.0)


def changed_key(option: Option) -> str:
    return f"changed:{option[0]}:{option[1]!r}"



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
        return _cosine(tt, bb, tb)
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


def _cosine(tt: float, bb: float, tb: float) -> float:
    """tb / (‖T‖‖B‖), exactly 1 for a tensor with itself (sqrt of a rounded
    square is exact), and never past ±1 however the sums round."""
    if not (tt and bb):
        return math.nan
    both = tt * bb
    norms = math.sqrt(both) if math.isfinite(both) and both > 0 else math.sqrt(tt) * math.sqrt(bb)
    return max(-1.0, min(1.0, tb / norms))


# -- the source --------------------------------------------------------------------

#: Why a metric cannot be computed for a tensor: metric -> (test on its sums,
#: why, what to use instead).
_UNDEFINED: dict[str, list[tuple[Any, str, str]]] = {
    "relative_change": [(lambda s: not s["bb"], "its base is all zeros (‖B‖ = 0), so "
                         "‖T − B‖ / ‖B‖ is undefined", "use `metric: update_norm` or "
                         "`update_rms`, which need no norm of the base")],
    "cosine": [(lambda s: not s["tt"], "it is all zeros in the checkpoint (‖T‖ = 0), so the "
                "cosine of T and B is undefined", "use `metric: update_norm` or `update_rms`"),
               (lambda s: not s["bb"], "its base is all zeros (‖B‖ = 0), so the cosine of T "
                "and B is undefined", "use `metric: update_norm` or `update_rms`")],
}


class Checkpoint:
    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        try:
            tuned = self._open(ctx, "checkpoint")
            base = self._open(ctx, "base") if data.base else None
        except CheckpointError as e:
            raise self._error(ctx, e) from None
        chosen = self._tensors(ctx, tuned)
        problems = self._compare_headers(ctx, chosen, base) if base is not None else []
        problems += self._applicable(ctx, chosen)
        if problems:
            raise FigspecError(_summed(problems))
        key = self._pair_key(chosen, base, data)
        self._want(ctx, key, chosen)
        sums = self._sums(ctx, key, chosen, base)
        if sums is None:  # checking: the values are not known without reading the pair
            ctx.session.unchecked.add(ctx.doc.path)
            values = {name: 0.0 for name in chosen}
        else:
            values = self._values(ctx, chosen, sums)
        shown = {f: display_path(f) for f in {t.file for t in chosen.values()}}
        rows = [(Where(shown[t.file], what=f"tensor `{name}`"),
                 {data.param: name, data.value: values[name]})
                for name, t in chosen.items()]
        folder = display_path(self._path(ctx, "checkpoint"))
        return Rows(rows, [data.param, data.value], folder)  # type: ignore[arg-type]

    def _error(self, ctx: Context, e: CheckpointError) -> FigspecError:
        """A checkpoint that cannot be read, at the key that names it."""
        data = ctx.data
        key = "base" if data.base and e.file is not None and \
            _under(e.file, ctx, "base") else "checkpoint"
        hint = e.hint or (None if "unpickle" in str(e) or "no such" in str(e) else
                          "the file is damaged or not safetensors: save the checkpoint again")
        return ctx.error(("data", key), e.text(), hint)

    @staticmethod
    def _open(ctx: Context, key: str) -> dict[str, Tensor]:
        path, folder, shown = ctx.locate(getattr(ctx.data, key), ("data", key))
        return open_checkpoint(path, ctx.stamps, Within(folder, shown) if folder else None)

    @staticmethod
    def _path(ctx: Context, key: str) -> Path:
        written = getattr(ctx.data, key)
        return ctx.rooted(written, ("data", key))

    @staticmethod
    def _tensors(ctx: Context, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """The weights (or biases) of the modules and layers drawn: nothing else
        is ever read (embeddings, norms, lm_head, modules not listed)."""
        data = ctx.data
        suffix, (first, last) = "." + data.tensor, ctx.layers
        pattern, listed = data.param_pattern, module_matcher(ctx.modules)
        chosen = {}
        for name, t in tensors.items():
            m = pattern.search(name) if name.endswith(suffix) else None
            if m is None or listed(m.group("module")) is None:
                continue
            layer = m.group("layer")
            if not _LAYER.fullmatch(layer):
                raise ctx.error(("data", "pattern") if data.pattern else ("data", "checkpoint"),
                                f"the layer found in tensor `{name[:200]}` is {layer[:20]!r}, "
                                "not a whole number", "capture only ASCII digits in "
                                "`(?P<layer>...)`")
            if len(layer) > 12:  # past any layer drawn (and int() of 5,000 digits refuses)
                continue
            if first <= int(layer) and (last is None or int(layer) <= last):
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
        return problems

    @staticmethod
    def _applicable(ctx: Context, chosen: dict[str, Tensor]) -> list[Diagnostic]:
        """Tensors drawn that the metric cannot apply to, known from the headers."""
        metric_name, problems = ctx.data.metric, []
        for name, t in chosen.items():
            why = None
            if t.count == 0:
                why = (f"tensor `{name}` has no entries (shape {list(t.shape)}): there is "
                       f"nothing to compute {metric_name} from")
            elif metric_name == "update_rank" and len(t.shape) != 2:
                why = (f"tensor `{name}` has shape {list(t.shape)}: update_rank is the rank "
                       "of a matrix")
            if why:
                problems.append(ctx.doc.diagnostic(
                    ctx.base + ("data", "metric"), why, "leave its module out of `modules`, "
                    "or choose another `metric`"))
        return problems

    @staticmethod
    def _pair_key(chosen: dict[str, Tensor], base: dict[str, Tensor] | None, data: Any) -> str:
        files = sorted({t.file for t in chosen.values()} |
                       {base[n].file for n in chosen if base and n in base})
        return _cache_key(files, data)

    @staticmethod
    def _want(ctx: Context, key: str, chosen: dict[str, Tensor]) -> None:
        """Say what this figure wants of the pair, so the session reads it once for all."""
        data, request = ctx.data, ctx.session.request(key)
        request.tensors.update(chosen)
        if data.base is not None:  # "changed" compares two checkpoints
            request.options.add(option_of(data))
            if data.metric == "update_rank":
                request.ranks.update(chosen)

    def _sums(self, ctx: Context, key: str, chosen: dict[str, Tensor],
              base: dict[str, Tensor] | None) -> dict[str, dict[str, float]] | None:
        """The sums of every tensor the session wants of the pair: from this
        session, else figspec's cache, else (building) one pass over the pair.
        None when checking and they are not known yet."""
        session, request = ctx.session, ctx.session.request(key)
        sums = session.sums.get(key) or _cached(key) or {}
        want_rank = ctx.data.metric == "update_rank" and base is not None
        if _covers(sums, chosen, request.options if base is not None else set(),
                   set(chosen) if want_rank else set()):
            session.sums[key] = sums
            return sums
        if not session.compute:
            return None
        # What is reduced now holds every option and rank the cache held before,
        # so one pass serves every figure of the pair, in this session and after.
        options = set(request.options) | {_option(k) for s in sums.values() for k in s
                                          if k.startswith("changed:")}
        if base is None:
            options = set()
        ranks = (request.ranks | {n for n, s in sums.items() if "update_rank" in s}
                 if base is not None else set())
        todo = {n: t for n, t in request.tensors.items()
                if not _covers(sums, {n: t}, options, ranks)}
        try:
            fresh = _reduce_all(todo, base, frozenset(options), ranks,
                                session.reduce_threads())
        except CheckpointError as e:
            raise self._error(ctx, e) from None
        sums = {**sums, **fresh}
        session.sums[key] = sums
        _store(key, sums)
        return sums

    @staticmethod
    def _values(ctx: Context, chosen: dict[str, Tensor], sums: dict[str, dict[str, float]]
                ) -> dict[str, float]:
        """Each drawn tensor's metric; a diagnostic for weights that are not
        finite, and for tensors the metric is undefined for."""
        data = ctx.data
        bad = [n for n in chosen if sums[n]["bad_t"] or sums[n]["bad_b"]]
        if bad:
            s = sums[bad[0]]
            which = "checkpoint" if s["bad_t"] else "base"
            raise ctx.error(("data", which), f"tensor `{bad[0]}` holds "
                            f"{int(s['bad_t'] or s['bad_b']):,} non-finite weights (NaN or "
                            f"infinity) in the {which}" + (f"; and {len(bad) - 1} more tensors"
                                                          if len(bad) > 1 else ""))
        problems = [ctx.doc.diagnostic(ctx.base + ("data", "metric"),
                                       f"tensor `{name}`: {why}", hint)
                    for name in chosen
                    for test, why, hint in _UNDEFINED.get(str(data.metric), [])
                    if test(sums[name])]
        if problems:
            raise FigspecError(_summed(problems))
        return {name: metric(data.metric, sums[name], option_of(data)) for name in chosen}


#: A layer index as a tensor name writes it: ASCII digits.
_LAYER = re.compile(r"[0-9]+")


def _summed(problems: list[Diagnostic]) -> list[Diagnostic]:
    """Five problems of one place shown, the rest counted."""
    if len(problems) <= 5:
        return problems
    first = problems[0]
    return problems[:5] + [Diagnostic(first.file, first.line, first.column,
                                      f"... and {len(problems) - 5} more like this")]


def _option(key: str) -> Option:
    kind, value = key.split(":", 2)[1:]
    return (kind, float(value))


def _under(path: Path, ctx: Context, key: str) -> bool:
    try:
        return path.resolve().is_relative_to(Checkpoint._path(ctx, key))
    except FigspecError:
        return False


def _reduce_all(chosen: dict[str, Tensor], base: dict[str, Tensor] | None,
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

    files = _Files()
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
                sums[name]["update_rank"] = update_rank(t, base[name], files)
        return sums
    finally:
        files.close()



def _covers(sums: dict[str, dict[str, float]], chosen: dict[str, Tensor],
            options: set[Option], ranks: set[str]) -> bool:
    """Whether the sums hold every tensor, option and rank wanted."""
    for name in chosen:
        have = sums.get(name)
        if have is None or (name in ranks and "update_rank" not in have):
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
    """The sums figspec's cache holds for the pair; None if missing, or not
    of the shape written (a damaged or foreign entry is computed again)."""
    from .. import cache

    try:
        raw = (cache.folder() / "metrics" / f"{key}.json").read_bytes()
        sums = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None
    valid = isinstance(sums, dict) and all(
        isinstance(name, str) and isinstance(entry, dict) and
        all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in entry.items()) and _SUM_KEYS <= entry.keys()
        for name, entry in sums.items())
    return sums if valid else None


#: What every tensor's cached sums hold.
_SUM_KEYS = {"n", "tt", "bb", "tb", "dd", "max_abs", "bad_t", "bad_b"}


def _store(key: str, sums: dict[str, dict[str, float]]) -> None:
    from .. import cache

    cache.put(f"metrics/{key}.json", json.dumps(sums, sort_keys=True).encode())


SOURCE = Checkpoint()
