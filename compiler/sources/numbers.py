"""The committed numbers of a checkpoint figure: ``<spec>.numbers.json``
beside its spec, so that the figure travels without its checkpoints.

A build of a figure drawn from checkpoints (:mod:`figspec.sources.checkpoint`,
a run's steps through :mod:`figspec.sources.trajectory`) writes, for each
checkpoint pair it drew: the sums of every tensor drawn (the metrics are
functions of them, :mod:`figspec.sources.metrics`), the ranks computed, and
each input's identity (its files as the spec writes them, their sizes, a
digest of each safetensors header and of bytes sampled across its data, the
hub revision of an ``hf:`` model). The text is JSON with sorted keys, one
tensor (and one file) per line, floats as Python's repr (exact), and a
digest of its content, so that a file edited by hand or damaged is refused,
never drawn.

Where a pair's checkpoints are absent (a co-author's laptop, CI), the pair
is read from here (a note names the file, once); where they are present and
their identity is the committed one, the numbers are used as they are (no
reduction); where it differs, the figure is built from the checkpoints and
the file rewritten. Nothing here is imported unless a checkpoint figure is
read: :mod:`json`, :mod:`hashlib` and :mod:`os` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, FigspecError, display_path
from ..files import TooLarge, glob_input, looked_at, read_stamped

if TYPE_CHECKING:
    from . import Context
    from .safetensors import Tensor

#: A spec's numbers file: ``specs/fig.yaml`` -> ``specs/fig.numbers.json``.
SUFFIX = ".numbers.json"
FORMAT = "figspec numbers 1"
#: A numbers file larger than this is refused (a 28 x 7 figure's is a few KB).
LIMIT = 64_000_000
#: Bytes of a shard's data hashed for its identity: SAMPLES blocks of BLOCK,
#: evenly spaced (a retrained checkpoint has the same header and size).
SAMPLES, BLOCK = 8, 1 << 16
#: The keys of a tensor's and a file's records, written one per line.
_LINES = ("tensors", "files")

Sums = dict[str, float]


def path_of(spec: Path) -> Path:
    """Where the numbers of ``spec`` are committed: beside it."""
    return spec.with_name(spec.name.rsplit(".", 1)[0] + SUFFIX)


# -- identity ------------------------------------------------------------------------

def identity(path: Path, memo: dict[Any, Any] | None = None) -> dict[str, Any]:
    """A shard's identity: its size, a digest of its header, and a digest of
    blocks sampled across its data. OSError where it cannot be read.
    ``memo``: the session's, so a base is hashed once for every step."""
    st = path.stat()
    at = ("identity", str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if memo is not None and at in memo:
        return memo[at]  # type: ignore[no-any-return]
    got = _identity(path)
    if memo is not None:
        memo[at] = got
    return got


def _identity(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else 0
        header = head + f.read(min(length, max(size - 8, 0)))
        start = len(header)
        sample = hashlib.sha256()
        span = max(size - start, 0)
        if span <= SAMPLES * BLOCK:
            sample.update(f.read())
        else:
            for k in range(SAMPLES):
                f.seek(start + (span - BLOCK) * k // (SAMPLES - 1))
                sample.update(f.read(BLOCK))
    return {"size": size, "header": hashlib.sha256(header).hexdigest(),
            "sample": sample.hexdigest()}


def side(written: str, folder: Path, files: list[Path], memo: dict[Any, Any] | None = None
         ) -> dict[str, Any]:
    """One side of a pair as committed: as the spec writes it, its hub
    revision (the snapshot's commit), each file it was read from."""
    revision = folder.name if written.startswith("hf:") else None
    named = {}
    for f in sorted(set(files)):
        try:
            rel = os.path.relpath(f, folder) if folder.is_dir() else ""
        except ValueError:
            rel = f.name
        shown = written if rel in ("", ".") else f"{written.rstrip('/')}/{Path(rel).as_posix()}"
        named[shown] = identity(f, memo)
    return {"written": written, "revision": revision, "files": named}


def changed(was: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first file read now (``now``) whose identity differs from the
    committed one. A committed file not read now (another panel's shard) is
    not this figure's input."""
    if was.get("revision") != now.get("revision"):
        return f"{now['written']} (revision {was.get('revision')} -> {now.get('revision')})"
    old, new = was.get("files", {}), now.get("files", {})
    for name in sorted(new):
        if old.get(name) != new.get(name):
            return name
    return None


# -- the file ------------------------------------------------------------------------

def key(checkpoint: str, base: str | None, other: str | None = None) -> str:
    """A pair's key in the file (two runs' checkpoints from one base: a triple's)."""
    if other is not None:
        return f"{checkpoint} and {other} against {base}"
    return checkpoint if base is None else f"{checkpoint} against {base}"


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def text(pairs: list[dict[str, Any]]) -> bytes:
    """The file's bytes: the same pairs always give the same bytes."""
    pairs = sorted(pairs, key=lambda p: (p.get("step") is None, p.get("step") or 0, p["key"]))
    body = {"format": FORMAT, "pairs": pairs}
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    return (_pretty({"digest": digest, **body}, 0) + "\n").encode()


def _pretty(value: Any, indent: int, inline: bool = False) -> str:
    """JSON, sorted, containers one entry per line except the records of
    ``tensors`` and ``files`` (each on its own line, whole)."""
    if inline or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, sort_keys=True)
    pad = " " * (indent + 1)
    if isinstance(value, list):
        items = [pad + _pretty(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = [f"{pad}{json.dumps(k)}: " + (
        _lines(v, indent + 1) if k in _LINES and isinstance(v, dict) else _pretty(v, indent + 1))
        for k, v in sorted(value.items())]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def _lines(value: dict[str, Any], indent: int) -> str:
    if not value:
        return "{}"
    pad = " " * (indent + 1)
    items = [f"{pad}{json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
             for k, v in sorted(value.items())]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


@dataclass
class Committed:
    """A spec's numbers file as read: its pairs by key, or why it is refused."""

    path: Path
    pairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: why the file cannot be used (damaged, edited by hand); None: it can
    problem: str | None = None


def load(path: Path, ctx: Context | None = None) -> Committed | None:
    """The numbers at ``path`` (None: no such file), stamped as an input of
    the figure in ``ctx``. A file whose digest does not match is refused."""
    looked_at(path)
    if not path.is_file():
        return None
    memo = ctx.session.parsed if ctx is not None else {}
    try:  # parsed once per invocation, however many steps and figures read it
        st = path.stat()
        at = ("numbers", str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if at not in memo:
            memo[at] = _parsed(path)
    except OSError as e:
        return Committed(path, problem=f"cannot be read: {e}")
    stamp, committed = memo[at]
    if ctx is not None and stamp is not None:
        ctx.stamps[path.resolve()] = stamp
    return committed  # type: ignore[no-any-return]


def _parsed(path: Path) -> tuple[Any, Committed]:
    try:
        raw, stamp = read_stamped(path, LIMIT)
    except (OSError, TooLarge) as e:
        return None, Committed(path, problem=f"cannot be read: {e}")
    return stamp, _checked(path, raw)


def _checked(path: Path, raw: bytes) -> Committed:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return Committed(path, problem=f"is not JSON ({e})")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return Committed(path, problem=f"is not a figspec numbers file ({FORMAT!r})")
    digest = data.pop("digest", None)
    if digest != hashlib.sha256(_canonical(data)).hexdigest():
        return Committed(path, problem="does not match its digest: it was edited by hand "
                         "or damaged")
    pairs = data.get("pairs")
    if not isinstance(pairs, list) or not all(_valid(p) for p in pairs):
        return Committed(path, problem="does not hold pairs as figspec writes them")
    return Committed(path, {p["key"]: p for p in pairs})


def _valid(pair: Any) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(pair, dict) or not isinstance(pair.get("key"), str) or \
            not isinstance(pair.get("tensors"), dict) or not isinstance(pair.get("sides"), dict):
        return False
    if not all(isinstance(s, dict) and isinstance(s.get("files", {}), dict)
               for s in pair["sides"].values()):
        return False
    step = pair.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        return False
    from .metrics import SUMS, TRIPLE_SUMS

    needed = {"n", *(TRIPLE_SUMS if "other" in pair["sides"] else SUMS)}
    return all(isinstance(name, str) and isinstance(t, dict) and isinstance(t.get("file"), str)
               and isinstance(t.get("shape"), list) and all(
                   isinstance(n, int) and not isinstance(n, bool) and n >= 0
                   for n in t["shape"]) and isinstance(t.get("sums"), dict)
               and all(isinstance(k, str) and number(v) for k, v in t["sums"].items())
               and needed <= t["sums"].keys()
               for name, t in pair["tensors"].items())


def damaged(committed: Committed) -> FigspecError:
    shown = display_path(committed.path)
    return FigspecError([Diagnostic(shown, message=f"this numbers file {committed.problem}",
                                    hint=f"restore it (`git checkout -- {shown}`), or run "
                                    "`figspec build` where the checkpoints are, which writes "
                                    "it again")])


def orphans(folder: Path) -> dict[Path, bool]:
    """Numbers files in ``folder`` (and below) whose spec is gone, each with
    whether it is as figspec wrote it (one edited since is never removed)."""
    out = {}
    for path in sorted(folder.rglob("*" + SUFFIX)) if folder.is_dir() else []:
        stem = path.name[:-len(SUFFIX)]
        if not any((path.parent / (stem + s)).exists() for s in (".yaml", ".yml")):
            got = load(path)
            out[path] = got is not None and got.problem is None
    return out


# -- what one build writes -------------------------------------------------------

@dataclass
class Writer:
    """The pairs a spec's figure drew in this invocation, to be written beside
    its spec when the figure is built (the session's ``beside``). A pair drawn
    from the committed numbers is kept as committed; a figure drawn from
    them alone leaves the file as it is."""

    path: Path
    pairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the pairs taken from the committed file, as they are there
    kept: set[str] = field(default_factory=set)

    def content(self) -> bytes | None:
        if not self.pairs or set(self.pairs) <= self.kept:
            return None
        return text(list(self.pairs.values()))


def writer(ctx: Context) -> Writer | None:
    """The spec's writer in this session (None: a spec given in Python)."""
    if ctx.doc.in_memory:
        return None
    path = path_of(ctx.doc.path)
    files = ctx.session.beside.setdefault(ctx.doc.path, {})
    made = files.get(path)
    if not isinstance(made, Writer):
        made = files[path] = Writer(path)
    return made


def record(ctx: Context, pair: dict[str, Any]) -> None:
    """A pair drawn from its checkpoints: written, with what other panels of
    the figure drew from the same pair (their modules, their sums)."""
    w = writer(ctx)
    if w is not None:
        w.pairs[pair["key"]] = _merged(w.pairs.get(pair["key"]), pair)
        w.kept.discard(pair["key"])


def keep(ctx: Context, pair: dict[str, Any]) -> None:
    """A committed pair drawn as it is: written again as it is (it holds what
    every panel of the figure drew from it when it was written)."""
    w = writer(ctx)
    if w is not None and pair["key"] not in w.pairs:
        w.pairs[pair["key"]] = pair
        w.kept.add(pair["key"])


def _merged(was: dict[str, Any] | None, pair: dict[str, Any]) -> dict[str, Any]:
    """One pair's record for two panels drawing from it: every tensor either
    drew, each with the sums either kept (a sum both kept is the same number,
    of the same bytes). Panels of weights and of biases name both."""
    if was is None:
        return pair
    tensors = dict(was["tensors"])
    for name, t in pair["tensors"].items():
        held = tensors.get(name)
        tensors[name] = t if held is None else {**t, "sums": dict(sorted(
            {**held["sums"], **t["sums"]}.items()))}
    sides = {k: {**was["sides"].get(k, {}), **side, "files": {
        **was["sides"].get(k, {}).get("files", {}), **side.get("files", {})}}
        for k, side in pair["sides"].items()}
    kinds = sorted({*was["tensor"].split(", "), pair["tensor"]})
    return {**pair, "tensor": ", ".join(kinds), "sides": sides, "tensors": tensors}


def entry(ctx: Context, sides: dict[str, dict[str, Any]], chosen: dict[str, Tensor],
          sums: dict[str, Sums], step: int | None) -> dict[str, Any]:
    """A pair's record: its sides' identities and each drawn tensor's sums."""
    data = ctx.data
    checkpoint = sides["checkpoint"]["written"]
    base = sides["base"]["written"] if "base" in sides else None
    other = sides["other"]["written"] if "other" in sides else None
    folder = sides["checkpoint"].get("folder")
    from .metrics import RANKS, SUMS, TRIPLE_SUMS, changed_key, option_of

    # What this figure drew from, whatever else its pair's sums hold (another
    # figure's options): the same figure always writes the same numbers.
    summed = TRIPLE_SUMS if other is not None else SUMS  # two runs' updates: a triple's
    kept = {"n", *summed, *(f"scaled:{k}" for k in summed)}
    if base is not None and other is None:
        kept.add(changed_key(option_of(data)))
        if data.metric in RANKS:
            kept.add(data.metric)
    tensors = {}
    for name, t in chosen.items():
        tensors[name] = {"file": _written_file(checkpoint, folder, t.file),
                         "shape": list(t.shape),
                         "sums": {k: v for k, v in sorted(sums[name].items()) if k in kept}}
    return {"key": key(checkpoint, base, other), "step": step, "tensor": data.tensor,
            "sides": {k: {x: v for x, v in s.items() if x != "folder"} for k, s in sides.items()},
            "tensors": tensors}


def _written_file(written: str, folder: Path | None, file: Any) -> str:
    if folder is None or not folder.is_dir():
        return written
    try:
        rel = os.path.relpath(file, folder)
    except ValueError:
        rel = file.name
    return f"{written.rstrip('/')}/{Path(rel).as_posix()}"


# -- where the checkpoints are absent --------------------------------------------

def absent(ctx: Context, written: str | None, at: tuple[str, ...]) -> bool:
    """Whether the checkpoint (or run folder) ``written`` is not on this
    machine: not there, or under a root or hub cache this machine lacks."""
    if written is None:
        return False
    from .inplace import located

    try:
        if located(ctx, written, at) is not None:  # read where it lives (the Hub, a store)
            return False
    except FigspecError:  # not there, or not readable: the committed numbers, if any
        return True
    try:
        path = ctx.locate(written, at)[0]
    except FigspecError:
        return written.startswith(("$", "hf:"))
    return not path.exists()


def note(ctx: Context, path: Path, message: str, hint: str | None = None) -> None:
    """A note at the numbers file, said once per spec (a command says each once)."""
    n = Diagnostic(display_path(path), severity="note", message=message, hint=hint)
    notes = ctx.session.notes.setdefault(ctx.doc.path, [])
    if n not in notes:
        notes.append(n)


def committed_pair(ctx: Context, checkpoint_key: str, base_key: str,
                   other_key: str | None = None) -> dict[str, Any] | None:
    """The committed pair of ``ctx.data`` where a side of it is absent; None
    where both are here, or nothing is committed (then reading it says why).
    ``other_key``: where the spec wrote `other` (two runs' updates: a triple).
    FigspecError for a numbers file that cannot be used."""
    data = ctx.data
    other = data.other if other_key is not None else None
    written = [(data.checkpoint, checkpoint_key), (data.base, base_key)]
    if other_key is not None:
        written.append((other, other_key))
    if ctx.doc.in_memory or not any(absent(ctx, w, ("data", at)) for w, at in written):
        return None
    committed = load(path_of(ctx.doc.path), ctx)
    if committed is None:
        return None
    if committed.problem:
        raise damaged(committed)
    name = key(str(data.checkpoint), data.base, other)
    pair = committed.pairs.get(name)
    if pair is None:
        raise _not_held(ctx, committed.path, f"hold no numbers of {name}",
                        ("data", checkpoint_key))
    note(ctx, committed.path, "the checkpoints are not here: the figure is drawn from the "
         "committed numbers in this file")
    for side, at in written:
        watch_for(ctx, side, ("data", at))
    keep(ctx, pair)
    return pair


def watch_for(ctx: Context, written: str | None, at: tuple[str, ...]) -> None:
    """An absent checkpoint as an input of the figure: its appearing (the
    co-author fetched the runs) makes the figure stale."""
    if written is None:
        return
    try:
        path = ctx.locate(written, at)[0]
    except FigspecError:
        return
    if not path.exists():
        ctx.stamps.update([glob_input(path.parent, path.name)])


def _not_held(ctx: Context, path: Path, what: str, loc: tuple[Any, ...]) -> FigspecError:
    """What the committed numbers lack: which checkpoints must be present, and
    the command to run there."""
    data = ctx.data
    needed = " and ".join(w for w in (data.checkpoint, data.other, data.base) if w)
    return FigspecError([ctx.doc.diagnostic(
        ctx.base + loc, f"the committed numbers {display_path(path)} {what}, and the "
        f"checkpoints are not here", f"where {needed} are, run `figspec build "
        f"{display_path(ctx.doc.path)}`, then commit {display_path(path)}")])


def shown(ctx: Context, written: str) -> str:
    """A file as the spec writes it, as a message names it: from here."""
    if written.startswith(("$", "hf:")):
        return written
    return display_path(Path(os.path.normpath(ctx.doc.path.parent / written)))


def tensors_of(pair: dict[str, Any]) -> dict[str, Tensor]:
    """The committed tensors as the checkpoint source chooses among them (names,
    files as written, shapes; no bytes to read)."""
    from .safetensors import Tensor

    return {name: Tensor(name, Path(t["file"]), "", tuple(t["shape"]), 0, 0)
            for name, t in pair["tensors"].items()}


def check_held(ctx: Context, path: Path, chosen: dict[str, Tensor], pair: dict[str, Any],
               wanted: list[str]) -> None:
    """FigspecError where the figure asks for what the numbers do not hold: a
    module listed that no committed tensor is, a sum (a "changed" option,
    update_rank) not computed."""
    from .params import module_matcher

    listed = module_matcher(ctx.modules)
    drawn = {listed(m.group("module")) for name in chosen
             if (m := ctx.data.param_pattern.search(name))}
    missing = [m for m in ctx.modules if m not in drawn]
    problems = []
    if missing:
        problems += _not_held(ctx, path, f"hold no tensor of module `{missing[0]}`"
                              + (f" (nor of {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              ("modules",)).diagnostics
    for k in wanted:
        lacking = [n for n in chosen if k not in pair["tensors"][n]["sums"]]
        if lacking:
            what = k if k.startswith("update_rank") else f"`{k}` counts"
            problems += _not_held(ctx, path, f"hold no {what} of tensor `{lacking[0]}`",
                                  ("data", "metric")).diagnostics
    if problems:
        raise FigspecError(problems)


def steps(ctx: Context) -> list[tuple[int, str]] | None:
    """A run's steps (step, checkpoint as written) from the committed numbers,
    where its folder is absent; None where it is here or nothing is committed."""
    written = str(ctx.data.checkpoints)
    head, _, pattern = written.rpartition("/")
    if ctx.doc.in_memory or not _run_absent(ctx, head or ".", pattern):
        return None
    watch_for(ctx, head or ".", ("data", "checkpoints"))
    committed = load(path_of(ctx.doc.path), ctx)
    if committed is None:
        return None
    if committed.problem:
        raise damaged(committed)
    base = ctx.data.base
    out = []
    for pair in committed.pairs.values():
        step, sides = pair.get("step"), pair["sides"]
        checkpoint = sides.get("checkpoint", {}).get("written")
        if step is None or not isinstance(checkpoint, str) or \
                not checkpoint.startswith(written.rpartition("/")[0]):
            continue
        if ctx.data.compare == "base" and sides.get("base", {}).get("written") != base:
            continue
        out.append((step, checkpoint))
    if not out:
        raise _not_held(ctx, committed.path, f"hold no step of {written}",
                        ("data", "checkpoints"))
    return sorted(set(out))


def two_run_steps(ctx: Context) -> list[tuple[int, str, str]] | None:
    """Two runs' steps (step, each run's checkpoint as written: `checkpoints`'
    and `others'`) from the committed numbers, where a run's folder is absent;
    None where both are here or nothing is committed."""
    data = ctx.data
    runs = [(str(data.checkpoints), ("data", "checkpoints")),
            (str(data.others), ("data", "others"))]
    heads = [written.rpartition("/")[0] for written, _ in runs]
    if ctx.doc.in_memory or not any(_run_absent(ctx, head or ".", written.rpartition("/")[2], at)
                                    for head, (written, at) in zip(heads, runs)):
        return None
    for head, (_, at) in zip(heads, runs):
        watch_for(ctx, head or ".", at)
    committed = load(path_of(ctx.doc.path), ctx)
    if committed is None:
        return None
    if committed.problem:
        raise damaged(committed)
    out = []
    for pair in committed.pairs.values():
        step, sides = pair.get("step"), pair["sides"]
        first, second = (sides.get(k, {}).get("written") for k in ("checkpoint", "other"))
        if step is None or not isinstance(first, str) or not isinstance(second, str) or \
                not first.startswith(heads[0]) or not second.startswith(heads[1]) or \
                sides.get("base", {}).get("written") != data.base:
            continue
        out.append((step, first, second))
    if not out:
        raise _not_held(ctx, committed.path, f"hold no step of {data.checkpoints} and "
                        f"{data.others}", ("data", "checkpoints"))
    return sorted(set(out))


def _run_absent(ctx: Context, head: str, pattern: str,
                at: tuple[str, ...] = ("data", "checkpoints")) -> bool:
    """Whether a run's folder is absent, or holds none of its checkpoints
    (deleted, the folder kept): a checkpoint appearing there is noticed."""
    if absent(ctx, head, at):
        return True
    try:
        folder = ctx.locate(head, at)[0]
    except FigspecError:
        return False
    return ctx.glob(folder, pattern) == []

