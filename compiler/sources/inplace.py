"""Checkpoints read where they live: a Hub revision not in the local cache,
an object store, a web server.

``hf:org/name@rev`` is read from the local hub cache when it is there
(:mod:`figspec.sources.hub`), and otherwise, unless HF_HUB_OFFLINE is set,
from the Hub itself; ``s3://``, ``gs://`` and ``https://`` paths from their
store. Either way only the shards' headers (two range requests each) and
then the bytes of the tensors drawn are received (:mod:`figspec.sources.
remote`); nothing is written to disk but figspec's cache, which keeps each
header and each pair's sums by the shards' content hashes (the Hub's LFS
sha256, a store's ETag): a second build, or another figure over the same
content, receives no tensor byte.

A checkpoint read in place is an input of its figure by its content: the
manifest holds its identity (the commit a branch was at, the shards'
hashes), and asks again only where that can change (a branch, a store's
object; never a commit), only online, and keeps what it knew when it cannot
ask (offline, unreachable): ``status`` works offline.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import REMOTE_PART, Stamp
from . import hub
from .remote import Blob, Reader, RemoteError, clean, hub_refs, hub_revision, hub_small, is_store
from .safetensors import INDEX, CheckpointError, Tensor, header_length, parse_header

if TYPE_CHECKING:
    from ..yaml_reader import Loc
    from . import Context

#: An index larger than this is refused.
_INDEX_LIMIT = 50_000_000
_COMMIT = re.compile(r"[0-9a-f]{40}")
_PICKLES = (".bin", ".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class Found:
    """A checkpoint read in place: as written, its shards, the commit a Hub
    revision is at (None for a store), and one digest of its content."""

    written: str
    blobs: tuple[Blob, ...]
    commit: str | None

    @property
    def identity(self) -> str:
        return hashlib.sha256(json.dumps(sorted(b.digest for b in self.blobs)).encode()
                              ).hexdigest()


def remote(written: str) -> bool:
    """Whether ``written`` is read in place (not from this machine's files)."""
    return is_store(written) or (written.startswith("hf:") and hub.parsed(written) is not None
                                 and not hub.offline() and _client() and
                                 not hub.cached(written))


def _client() -> bool:
    """Whether huggingface_hub is installed (``figspec[hub]``); without it,
    ``hf:`` is the local hub cache alone."""
    import importlib.util

    return importlib.util.find_spec("huggingface_hub") is not None


def located(ctx: Context, written: str | None, key: Loc) -> Found | None:
    """The checkpoint ``written`` names when it is read in place, else None
    (a local path); FigspecError at ``key`` when it cannot be found. Asked
    once per invocation (the session remembers the answer, or the failure)."""
    if written is None or not remote(written):
        return None
    memo = ctx.session.parsed
    at = ("inplace", written)
    if at not in memo:
        try:
            memo[at] = find(written)
        except (RemoteError, CheckpointError) as e:
            # a Hub that cannot be reached: the hub cache alone, as offline
            unreachable = isinstance(e, RemoteError) and e.unreachable
            memo[at] = None if unreachable and written.startswith("hf:") else e
    got = memo[at]
    if isinstance(got, RemoteError):
        raise ctx.error(key, got.message, got.hint)
    if isinstance(got, CheckpointError):
        raise ctx.error(key, got.text(), got.hint)
    return got  # type: ignore[no-any-return]


def find(written: str) -> Found:
    """The shards of a checkpoint read in place; RemoteError or CheckpointError."""
    if is_store(written):
        return _in_store(written)
    parsed = hub.parsed(written)
    assert parsed is not None
    repo, rev = parsed
    commit, files = hub_revision(repo, rev or "main", written)
    by_name = {name: (size, digest) for name, size, digest in files}
    shards = _hub_shards(written, repo, commit, by_name)
    return Found(written, tuple(Blob("hf", hub.resolve_url(repo, commit, n), by_name[n][0],
                                     by_name[n][1], f"{written}/{n}") for n in shards), commit)


def _hub_shards(written: str, repo: str, commit: str,
                by_name: dict[str, tuple[int, str]]) -> list[str]:
    """The shards of a Hub revision: those its index names, else its top
    folder's *.safetensors files."""
    if INDEX in by_name:
        url = hub.resolve_url(repo, commit, INDEX)
        raw = _kept(by_name[INDEX][1], "index", _INDEX_LIMIT,
                    lambda: hub_small(url, f"{written}/{INDEX}", _INDEX_LIMIT))
        names = _index_names(raw, f"{written}/{INDEX}")
        missing = [n for n in names if n not in by_name]
        if missing:
            raise RemoteError(f"{written}/{INDEX} names a shard the revision does not hold: "
                              f"{missing[0]}")
        return names
    shards = sorted(n for n in by_name if n.endswith(".safetensors") and "/" not in n)
    if not shards:
        raise _no_safetensors(written, [n for n in by_name if "/" not in n])
    return shards


def _kept(digest: str, kind: str, limit: int, fetch: Callable[[], bytes]) -> bytes:
    """A small file of known content (``digest``), from figspec's cache, else
    fetched and kept there."""
    from .. import cache
    from ..files import read_bounded

    name = f"remote/{hashlib.sha256(digest.encode()).hexdigest()}.{kind}"
    try:
        return read_bounded(cache.folder() / name, limit)
    except OSError:
        raw = fetch()
        cache.put(name, raw)
        return raw


def _no_safetensors(written: str, names: list[str]) -> RemoteError:
    pickles = sorted(n for n in names if n.endswith(_PICKLES))
    if pickles:
        return RemoteError(f"{written} holds PyTorch pickle weights ({', '.join(pickles[:3])}); "
                           "figspec reads safetensors only (it never unpickles: a pickle can "
                           "run code)", "convert it to safetensors, or use a revision that has "
                           "them")
    return RemoteError(f"{written} holds neither {INDEX} nor *.safetensors files")


def _index_names(raw: bytes, what: str) -> list[str]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise RemoteError(f"{what} is not a readable index: {e}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) and "/" not in v
                                                   and v not in (".", "..")
                                                   for v in weight_map.values()):
        raise RemoteError(f"{what} has no `weight_map` of tensor name to shard file")
    return sorted(set(weight_map.values()))


def _in_store(written: str) -> Found:
    """A file or a folder in a store, through fsspec."""
    from .remote import explained

    reader = Reader()
    fs, path = reader.store(written)
    try:
        # asked afresh: fsspec keeps a filesystem's listings for the process,
        # and a listing from before an overwrite would name the old content
        fs.invalidate_cache(path)
        info = fs.info(path)
        if info.get("type") == "directory":
            entries = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e
                       for e in fs.ls(path, detail=True) if e.get("type") != "directory"}
        else:
            entries = {path.rsplit("/", 1)[-1]: info}
    except RemoteError:
        raise
    except Exception as e:
        raise explained(e, clean(written)) from None
    folder = info.get("type") == "directory"
    base = written.rstrip("/")
    if folder and INDEX in entries:
        index = _store_blob(written, base, INDEX, entries[INDEX])
        names = _index_names(reader.read(index, 0, index.size), index.shown)
        missing = [n for n in names if n not in entries]
        if missing:
            raise RemoteError(f"{index.shown} names a shard that is not there: {missing[0]}")
    elif folder:
        names = sorted(n for n in entries if n.endswith(".safetensors"))
        if not names:
            raise _no_safetensors(clean(written), list(entries))
    else:
        names = list(entries)
    blobs = tuple(_store_blob(written, base if folder else base.rsplit("/", 1)[0], n,
                              entries[n]) for n in names)
    return Found(written, blobs, None)


def _store_blob(written: str, base: str, name: str, info: dict[str, Any]) -> Blob:
    """A store's file, its identity the hash the store gives (ETag, MD5, CRC)."""
    tag = next((str(info[k]) for k in ("ETag", "etag", "md5Hash", "crc32c", "checksum")
                if info.get(k)), None)
    if tag is None:  # no hash: its size and time are all there is
        tag = f"{info.get('size')}:{info.get('LastModified') or info.get('mtime') or ''}"
    url = f"{base}/{name}"
    return Blob("store", url, int(info.get("size") or 0), "etag:" + tag.strip('"'), clean(url))


# -- headers -------------------------------------------------------------------------

def tensors(ctx: Context, found: Found) -> dict[str, Tensor]:
    """Every tensor of a checkpoint read in place: each shard's header (from
    figspec's cache when its content was read before, else two range
    requests, the shards in parallel); the checkpoint stamped in ``ctx.stamps``."""
    from concurrent.futures import ThreadPoolExecutor

    reader = Reader()
    with ThreadPoolExecutor(max_workers=min(8, len(found.blobs)) or 1) as pool:
        headers = list(pool.map(lambda b: header(b, reader), found.blobs))
    out: dict[str, Tensor] = {}
    for blob, shard in zip(found.blobs, headers):
        for name, t in shard.items():
            if name in out:
                raise CheckpointError(f"is also in {out[name].file}", blob, name)
            out[name] = t
    ctx.stamps[stamp_path(found.written)] = stamp(found)
    return out


def header(blob: Blob, reader: Reader) -> dict[str, Tensor]:
    """One shard's tensors from its header, cached by the shard's content."""
    from .. import cache
    from ..files import read_bounded
    from .safetensors import MAX_HEADER

    name = f"remote/{hashlib.sha256(blob.digest.encode()).hexdigest()}.header"
    try:
        raw = read_bounded(cache.folder() / name, MAX_HEADER)
    except OSError:
        try:
            length = header_length(blob, reader.read(blob, 0, min(8, blob.size)), blob.size)
            raw = reader.read(blob, 8, 8 + length)
        except RemoteError as e:
            raise CheckpointError(e.message, None, hint=e.hint, damaged=False) from None
        tensors = parse_header(blob, raw, blob.size)  # checked before it is kept
        cache.put(name, raw)
        return tensors
    return parse_header(blob, raw, blob.size)


# -- as an input of the figure, and as committed ----------------------------------------

def stamp_path(written: str) -> Path:
    """The manifest's name for a checkpoint read in place."""
    return Path(f"{clean(written)}::{REMOTE_PART}")


def stamp(found: Found) -> Stamp:
    held = found.commit or found.identity
    return Stamp(sum(b.size for b in found.blobs), 0, found.identity,
                 part=REMOTE_PART + clean(found.written), label=clean(found.written), held=held)


def still(stamp: dict[str, Any]) -> bool:
    """Whether a checkpoint read in place still holds what ``stamp`` (as the
    manifest keeps it) says: a Hub commit always does; otherwise it is asked
    again, online only; when it cannot be asked, what was known stands."""
    written = str(stamp["part"])[len(REMOTE_PART):]
    if written.startswith("hf:") and _GLOB.search(written.partition("@")[2]):  # a run's refs
        if hub.offline():
            return True
        try:
            return _refs_digest(hub_run(written)) == stamp["sha256"]
        except RemoteError:
            return True
    parsed = hub.parsed(written) if written.startswith("hf:") else None
    if parsed is not None and (hub.offline() or _COMMIT.fullmatch(parsed[1] or "")):
        return True
    try:
        return find(written).identity == stamp["sha256"]
    except (RemoteError, CheckpointError):
        return True


def change(stamp: dict[str, Any]) -> str:
    """How ``status`` says a checkpoint read in place changed."""
    was = str(stamp.get("held", ""))
    written = str(stamp["part"])[len(REMOTE_PART):]
    if written.startswith("hf:") and not _GLOB.search(written.partition("@")[2]):
        try:
            now = find(written).commit or ""
            return f"{stamp.get('label')} is now {now[:12]} (was {was[:12]})"
        except (RemoteError, CheckpointError):
            pass
    return f"{stamp.get('label')} changed (was {was[:12]})"


def side(found: Found) -> dict[str, Any]:
    """One side of a pair as committed: as written, its commit, each shard's
    size and content hash."""
    return {"written": clean(found.written), "revision": found.commit,
            "files": {b.shown: {"size": b.size, "digest": b.digest} for b in found.blobs}}


# -- a run over a Hub repository's branches and tags --------------------------------

_GLOB = re.compile(r"[*?\[]")


def is_hub_run(written: str) -> bool:
    """Whether ``written`` is a run over a Hub repository's revisions
    (``hf:org/name@step*``) read online."""
    repo, at, pattern = written[3:].partition("@")
    return written.startswith("hf:") and bool(at) and bool(_GLOB.search(pattern)) and \
        hub.parsed(f"hf:{repo}") is not None and not hub.offline() and _client()


def hub_run(written: str) -> list[tuple[str, str]]:
    """``hf:org/name@pattern``: the repository's refs (branches, then tags)
    whose names match, each (name, commit); RemoteError when unreadable."""
    repo, _, pattern = written[3:].partition("@")
    return [(name, commit) for name, commit in hub_refs(repo)
            if fnmatch.fnmatchcase(name, pattern)]


def run_refs(ctx: Context, written: str, key: Loc) -> list[tuple[str, str]] | None:
    """The refs of a run over Hub revisions (see :func:`hub_run`), stamped as
    an input of the figure (a new branch makes it stale); None when the Hub
    cannot be reached (the committed numbers may draw it); FigspecError
    when it cannot be read."""
    try:
        refs = hub_run(written)
    except RemoteError as e:
        if e.unreachable:
            return None
        raise ctx.error(key, e.message, e.hint) from None
    digest = _refs_digest(refs)
    ctx.stamps[stamp_path(written)] = Stamp(len(refs), 0, digest, part=REMOTE_PART + written,
                                            label=written, held=f"{len(refs)} revisions")
    return refs


def _refs_digest(refs: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(refs)).encode()).hexdigest()
