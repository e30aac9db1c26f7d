"""Reading safetensors checkpoints safely, a header at a time and a chunk at
a time. PyTorch pickles are never unpickled.

The header's length, its JSON, every tensor's dtype, shape and offsets are
checked against the file's size before anything is read, so a hostile or
broken shard gives a CheckpointError naming the file and the tensor, and
never makes figspec read or allocate more than the file holds. A folder is
read through its index (``model.safetensors.index.json``) or its
``*.safetensors`` files; links are followed only to files ``Within`` allows.
Data is read with pread into buffers the caller reuses, never memory-mapped.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import display_path
from ..files import BadPath, Stamp, is_loop, looked_at, open_regular, resolved

#: Bytes per entry of the dtypes read.
DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}
#: A header longer than this is refused (real ones are a few hundred KB).
MAX_HEADER = 100_000_000
INDEX = "model.safetensors.index.json"
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(Exception):
    """A checkpoint that cannot be read as one; ``file`` and ``tensor`` say where."""

    def __init__(self, message: str, file: Path | None = None, tensor: str | None = None,
                 hint: str | None = None, damaged: bool = True):
        super().__init__(message)
        self.file, self.tensor = file, tensor
        #: how to fix it: given, else (a damaged file) to save it again
        self.hint = hint or ("the file is damaged or not safetensors: save the checkpoint "
                             "again" if damaged else None)

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
                raise CheckpointError(f"is also in {display_path(tensors[name].file)}", shard,
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


# -- reading data ------------------------------------------------------------------

class Files:
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
