"""Reading safetensors checkpoints safely, a header at a time and a chunk at
a time. PyTorch pickles are never unpickled.

The header's length, its JSON, every tensor's dtype, shape and offsets are
checked against the file's size before anything is read, so a hostile or
broken shard gives a CheckpointError naming the file and the tensor, and
never makes figspec read or allocate more than the file holds. A folder is
read through its index (``model.safetensors.index.json``) or its
``*.safetensors`` files; links are followed only to files ``Within`` allows.
Their data is read a chunk at a time by
:class:`figspec.sources.shard_data.Files`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import display_path
from ..files import BadPath, Stamp, is_loop, looked_at, open_regular, resolved
from .remote import Blob

#: Where a shard is: a local file, or a file read in place by byte ranges
#: (the Hub, a store: :mod:`figspec.sources.remote`).
File = Path | Blob


def shown_file(file: File) -> str:
    """A shard as a message names it."""
    return file.shown if isinstance(file, Blob) else display_path(file)

#: Bits per entry of every dtype the format knows (the reference, the
#: `safetensors` library 0.8, refuses any other): a header may hold any of them.
KNOWN = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
         "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16,
         "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
         "F64": 64, "I64": 64, "U64": 64}
#: Bytes per entry of the dtypes read: only a tensor drawn needs one of them.
DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
#: A header longer than this is refused (real ones are a few hundred KB).
MAX_HEADER = 100_000_000
INDEX = "model.safetensors.index.json"
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(Exception):
    """A checkpoint that cannot be read as one; ``file`` and ``tensor`` say where."""

    def __init__(self, message: str, file: File | None = None, tensor: str | None = None,
                 hint: str | None = None, damaged: bool = True):
        super().__init__(message)
        self.file, self.tensor = file, tensor
        #: how to fix it: given, else (a damaged file) to save it again
        self.hint = hint or ("the file is damaged or not safetensors: save the checkpoint "
                             "again" if damaged else None)

    def text(self) -> str:
        where = [f"in {shown_file(self.file)}" if self.file else None,
                 f"tensor `{self.tensor}`" if self.tensor else None]
        return ", ".join(w for w in where if w) + (": " if any(where) else "") + str(self)


@dataclass(frozen=True)
class Tensor:
    """One tensor's place in a shard, checked against the shard's size."""

    name: str
    file: File
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int
    #: A strided view (an attention head's columns, :mod:`figspec.sources.heads`):
    #: each row's ``segment`` entries, rows ``stride`` entries apart from
    #: ``start``, of the tensor whose bytes begin at ``origin``; 0: the
    #: entries lie one after another.
    segment: int = 0
    stride: int = 0
    origin: int = 0

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def inputs(self) -> tuple[File, ...]:
        """The files its entries are made of, as the checkpoint's side names them."""
        return (self.file,)


# -- reading headers ---------------------------------------------------------------

#: file read -> its identity stamp, taken before reading it
Stamps = dict[Path, Stamp]


def read_header(path: Path, stamps: Stamps | None = None) -> dict[str, Tensor]:
    """The tensors of one .safetensors file, every field checked as the format's
    reference (the `safetensors` library) checks it, so that figspec reads
    exactly the files it reads; CheckpointError otherwise. The file is stamped
    in ``stamps`` as it was before its header was read."""
    looked_at(path)
    try:
        with open_regular(path) as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if stamps is not None:
                stamps[path] = Stamp.identity(st)
            raw = f.read(header_length(path, f.read(8), size))
    except OSError as e:
        raise CheckpointError(f"cannot read: {e.strerror or e}", path) from None
    return parse_header(path, raw, size)


def header_length(file: File, head: bytes, size: int) -> int:
    """The header's length from a file's first 8 bytes, checked against its size."""
    if len(head) < 8:
        raise CheckpointError(f"only {len(head)} bytes: not a safetensors file", file)
    length = int.from_bytes(head, "little")
    if length > size - 8 or length > MAX_HEADER:
        raise CheckpointError(f"header length {length:,} is past the end of the file "
                              f"({size:,} bytes)" if length > size - 8 else
                              f"header length {length:,} is absurd (over "
                              f"{MAX_HEADER:,})", file)
    return length


def parse_header(file: File, raw: bytes, size: int) -> dict[str, Tensor]:
    """The tensors of a shard of ``size`` bytes whose header (after its first
    8 bytes) is ``raw``, checked as :func:`read_header` says."""
    entries = _entries(file, raw)
    tensors = {name: _tensor(file, name, info, 8 + len(raw)) for name, info in entries.items()}
    _layout(file, tensors, 8 + len(raw), size)
    return tensors


def readable(chosen: dict[str, Tensor], base: dict[str, Tensor] | None = None) -> None:
    """CheckpointError for the first tensor drawn (or its base's) whose dtype
    figspec does not read: a header may hold any dtype, only those drawn matter."""
    for name, t in chosen.items():
        for side in (t, base.get(name) if base is not None else None):
            if side is not None and side.dtype not in DTYPES:
                raise CheckpointError(f"dtype {side.dtype!r} is not read (figspec reads "
                                      f"{', '.join(DTYPES)})", side.file, name,
                                      "leave its module out of `modules`, or save the "
                                      "checkpoint in one of them", damaged=False)


# -- the header's JSON, as the reference (serde_json) reads it ---------------------

#: Containers nested deeper than this are refused (serde_json's recursion limit).
MAX_DEPTH = 127
#: The largest size or offset (a u64).
_U64 = (1 << 64) - 1
_FIELDS = ("dtype", "shape", "data_offsets")


class _Pairs:
    """A JSON object as its pairs, in order, duplicates kept: the reference
    refuses some duplicate keys and takes the last of others."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _int(text: str) -> Any:
    """A JSON integer as serde_json reads it: -0 and integers past 64 bits are floats."""
    if text == "-0":
        return -0.0
    value = int(text) if len(text) <= 21 else None
    if value is not None and -(1 << 63) <= value <= _U64:
        return value
    return _float(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _entries(path: File, raw: bytes) -> dict[str, Any]:
    """Every tensor's header entry (the last of a name written twice, as the
    reference takes it), the header's bytes checked as UTF-8 JSON first."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"header is not UTF-8: byte {e.start:,} of it is not" +
                              _utf16(raw), path) from None
    if text.startswith("\ufeff"):
        raise CheckpointError("header starts with a byte order mark (BOM), which "
                              "safetensors refuses", path)
    try:
        top = json.loads(text, object_pairs_hook=_Pairs, parse_int=_int, parse_float=_float,
                         parse_constant=_constant)
        _plain(top)
    except (ValueError, RecursionError) as e:
        at_end = isinstance(e, json.JSONDecodeError) and (  # the JSON stops short, or goes on
            e.pos >= len(text) - 1 or e.msg in ("Extra data", "Unterminated string starting at"))
        hint = _utf16(raw) or (f"; is its length ({len(raw):,} bytes, the file's first 8) "
                               "right?" if at_end else "")
        raise CheckpointError(f"header is not JSON: {str(e)[:200]}{hint}", path) from None
    if not isinstance(top, _Pairs):
        raise CheckpointError("header is not a JSON object", path)
    entries: dict[str, Any] = {}
    metadata = 0
    for key, value in top.pairs:
        if key != "__metadata__":
            entries[key] = _fields(path, key, value)
            continue
        metadata += 1
        if metadata > 1:
            raise CheckpointError("`__metadata__` appears twice in the header", path)
        if value is None:
            continue
        if not isinstance(value, _Pairs):
            raise CheckpointError(f"`__metadata__` is {_shown(value)}, not a map of strings "
                                  "to strings", path)
        for k, v in value.pairs:
            if not isinstance(v, str):
                raise CheckpointError(f"`__metadata__` gives `{k[:100]}` {_shown(v)}, not a "
                                      "string (its values are strings)", path)
    return entries


def _utf16(raw: bytes) -> str:
    return (" (it is UTF-16: a safetensors header is UTF-8)"
            if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:4] else "")


def _plain(top: Any) -> None:
    """ValueError for what serde_json refuses and Python's json reads: a lone
    surrogate escape (``"\ud800"``), containers nested past MAX_DEPTH."""
    stack = [(top, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _no_surrogate(value)
            continue
        if isinstance(value, _Pairs):
            items: list[Any] = [v for _, v in value.pairs]
            for key, _ in value.pairs:
                _no_surrogate(key)
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((v, depth + 1) for v in items)


def _no_surrogate(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"a lone surrogate escape in {text[:60]!r}") from None


def _shown(value: Any) -> str:
    """A JSON value, short, as a message quotes it."""
    if isinstance(value, _Pairs):
        return "an object"
    text = json.dumps(value, allow_nan=False, default=_shown) if not isinstance(value, str) \
        else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(path: File, name: str, info: Any) -> tuple[Any, Any, Any]:
    """A tensor's dtype, shape and data_offsets: an object holding each once
    (other keys are ignored), or the list of the three, as the reference reads them."""
    if isinstance(info, list) and len(info) == 3:
        return info[0], info[1], info[2]
    if not isinstance(info, _Pairs):
        raise CheckpointError(f"its header entry is {_shown(info)}, not an object", path, name)
    found: dict[str, Any] = {}
    for key, value in info.pairs:
        if key in _FIELDS:
            if key in found:
                raise CheckpointError(f"`{key}` appears twice in its header entry", path, name)
            found[key] = value
    missing = [k for k in _FIELDS if k not in found]
    if missing:
        raise CheckpointError(f"its header entry has no `{missing[0]}`", path, name)
    return found["dtype"], found["shape"], found["data_offsets"]


def _tensor(path: File, name: str, info: tuple[Any, Any, Any], data_start: int) -> Tensor:
    def bad(message: str) -> CheckpointError:
        return CheckpointError(message, path, name)

    dtype, shape, offsets = info
    if isinstance(dtype, _Pairs) and len(dtype.pairs) == 1 and dtype.pairs[0][1] is None:
        dtype = dtype.pairs[0][0]  # serde's other spelling of a name: {"F32": null}
    if not isinstance(dtype, str) or dtype not in KNOWN:
        raise bad(f"dtype {_shown(dtype)} is not the name of a safetensors dtype (such as "
                  "'BF16', 'F32' or 'F8_E4M3')")
    if not (isinstance(shape, list) and all(_size(d) for d in shape)):
        raise bad(f"shape {_shown(shape)} is not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_size(o) for o in offsets)):
        raise bad(f"data_offsets {_shown(offsets)} are not [begin, end]")
    return Tensor(name, path, dtype, tuple(shape), data_start + offsets[0],
                  data_start + offsets[1])


def _size(value: Any) -> bool:
    """A u64, as a size or an offset is."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64


def _layout(path: File, tensors: dict[str, Tensor], data_start: int, size: int) -> None:
    """The tensors' bytes, in order of their offsets, cover the bytes after the
    header exactly: no byte outside the file, between tensors or after the
    last; each tensor's bytes are its shape's entries in its dtype."""
    for t in tensors.values():
        if t.end > size and t.end >= t.start:
            raise CheckpointError(f"ends at byte {t.end:,}, past the end of the file "
                                  f"({size:,} bytes): the file is truncated", path, t.name)
    at, previous, hole = data_start, None, None
    for t in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if t.end < t.start:
            raise CheckpointError(f"data_offsets [{t.start - data_start}, {t.end - data_start}] "
                                  "end before they begin", path, t.name)
        if t.start < at:
            raise CheckpointError(f"its bytes overlap those of `{previous}`", path, t.name)
        if t.start > at and hole is None:  # told after any overlap, the likelier cause
            hole = CheckpointError(f"bytes {at:,} to {t.start:,} before it belong to no "
                                   "tensor, which safetensors refuses", path, t.name)
        _entry_bytes(path, t)
        at, previous = t.end, t.name
    if hole is not None:
        raise hole
    if at != size:
        raise CheckpointError(f"{size - at:,} bytes after the last tensor (from byte {at:,}) "
                              "belong to no tensor, which safetensors refuses", path)


def _entry_bytes(path: File, t: Tensor) -> None:
    """A tensor holds its shape's entries, counted in u64 as the reference does."""
    count = 1
    for d in t.shape:
        count *= d
        if count > _U64:
            raise CheckpointError(f"shape {list(t.shape)} has more than 2**64 entries", path,
                                  t.name)
    bits = count * KNOWN[t.dtype]
    if bits > _U64 or bits % 8:
        raise CheckpointError(f"shape {list(t.shape)} in {t.dtype} is " +
                              ("more than 2**64 bits" if bits > _U64 else
                               f"{bits:,} bits, not whole bytes"), path, t.name)
    if t.end - t.start != bits // 8:
        raise CheckpointError(f"holds {t.end - t.start:,} bytes; shape {list(t.shape)} in "
                              f"{t.dtype} needs {bits // 8:,}", path, t.name)


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
        try:
            real = resolved(path)
        except BadPath as e:
            raise CheckpointError(e.why, path, damaged=False) from None
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
                                  "p, weights_only=True), 'model.safetensors')`", path,
                                  damaged=False)
        shards = [path]
    elif not path.is_dir():
        raise CheckpointError("is a symbolic link loop" if is_loop(path) else
                              "no such file or folder", path, damaged=False)
    else:
        shards = _shards(path, stamps, within)
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        if within is not None:
            within.check(shard)
        elif is_loop(shard):
            raise CheckpointError("is a symbolic link loop", shard, damaged=False)
        for name, t in read_header(shard, stamps).items():
            if name in tensors:
                raise CheckpointError(f"is also in {shown_file(tensors[name].file)}", shard,
                                      name)
            tensors[name] = t
    return tensors


def _shards(folder: Path, stamps: Stamps | None, within: Within | None) -> list[Path]:
    """The shards of a checkpoint folder: those its index names, else every
    ``*.safetensors`` file in it."""
    index = folder / INDEX
    looked_at(index)
    if is_loop(index):
        raise CheckpointError(f"its {INDEX} is a symbolic link loop", folder, damaged=False)
    if index.is_file():
        if within is not None:
            within.check(index)
        return _index_shards(index, stamps)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        pickles = [p.name for p in folder.iterdir() if p.suffix.lower() in _PICKLES]
        hint = (f"; it has {', '.join(pickles[:3])}: PyTorch pickles, which figspec never "
                "unpickles; convert them to safetensors" if pickles else "")
        raise CheckpointError(f"holds neither {INDEX} nor *.safetensors files{hint}", folder,
                              damaged=not pickles)
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
        if is_loop(shard):
            raise CheckpointError(f"names a shard that is a symbolic link loop: {name}", index,
                                  damaged=False)
        if not shard.is_file():
            raise CheckpointError(f"names a shard that does not exist: {name}", index,
                                  hint="copy the missing shard next to the index")
        shards.append(shard)
    return shards


#: A shard's name in an index: a file name, no folder.
_PLAIN_FILE = re.compile(r"[^/\\\x00]{1,255}")
