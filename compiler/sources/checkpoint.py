"""Per-module metrics computed straight from safetensors checkpoints.

``data: {checkpoint: ..., base: ..., metric: relative_change}``: every weight
matrix of the checkpoint, compared with the base's, gives one cell; its layer
and module come from the tensor's name (``model.layers.12.self_attn.q_proj
.weight``), as with ``layout: params``.

This module is the source: which tensors a figure draws, what it wants of
its pair (said to the session, so that a build reads each pair once for all
its figures), the sums from the session, figspec's cache or one pass
(:mod:`figspec.sources.reduce`), and each cell's value from the metric
table (:mod:`figspec.sources.metrics`), or a diagnostic where a metric does
not apply. Files are read by :mod:`figspec.sources.safetensors`. The sums
are cached (figspec's cache, keyed by the files' size, mtime, inode and
ctime), so a rebuild after changing a colour reads no checkpoint.

A build also writes the numbers each figure drew beside its spec, to be
committed (:mod:`figspec.sources.numbers`): where the pair is absent, they
are its rows; where it is present and its identity the committed one, its
sums (no reduction).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, FigspecError, display_path
from ..files import BadPath, Stamp, resolved
from ..session import Option, Reduction
from . import Context, Rows, Source, Where, inplace, metrics, numbers, peft
from .metrics import SUMS, changed_key, option_of
from .params import module_matcher
from .reduce import reduce_all
from .remote import Blob
from .safetensors import (
    CheckpointError,
    File,
    Tensor,
    Within,
    open_checkpoint,
    readable,
    shown_file,
)

#: Bump when what is cached changes meaning (2: sums that overflowed are scaled).
CACHE_VERSION = 2
#: A cached entry larger than this is not read (it is computed again): a
#: few hundred bytes per tensor.
MAX_CACHED_BYTES = 256_000_000

# -- the source --------------------------------------------------------------------

class Checkpoint(Source):
    """The source of ``data.checkpoint``. ``keys``: where the spec wrote each
    side when it is not at its own key (a run's checkpoints, read as pairs
    by :mod:`figspec.sources.trajectory`, are at `checkpoints`). Its rows
    make one table, as a plain source's (:class:`figspec.sources.Source`).
    ``names``: how a message calls each side (a run's step: "step 300
    (runs/checkpoint-300)"; the one it is compared with: "the previous step
    (step 200)")."""

    def __init__(self, keys: dict[str, str] | None = None,
                 names: dict[str, str] | None = None, *, step: int | None = None,
                 model: str | None = None) -> None:
        self.keys = {"checkpoint": "checkpoint", "base": "base", **(keys or {})}
        self.names = {"checkpoint": "the checkpoint", "base": "the base", **(names or {})}
        self.at = ("data", self.keys["checkpoint"])
        #: the run's step this pair is (its committed numbers say so)
        self.step = step
        #: the model a peft adapter on either side adapts, where `base` is not it
        #: (a run's previous step); None: `base`
        self.model = model

    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        held = numbers.committed_pair(ctx, self.keys["checkpoint"], self.keys["base"])
        if held is not None:  # the checkpoints are not here: their committed numbers are
            return self._from_numbers(ctx, held)
        pair = self.plan(ctx)
        chosen = pair.chosen
        sums = self._sums(ctx, pair)
        if sums is None:  # checking: the values are not known without reading the pair
            ctx.session.unchecked.add(ctx.doc.path)
            values = {name: 0.0 for name in chosen}
        else:
            values = self._values(ctx, chosen, sums)
            self._commit(ctx, pair, sums)
        shown = {f: shown_file(f) for f in {t.file for t in chosen.values()}}
        rows = [(Where(shown[t.file], what=f"tensor `{name}`"),
                 {data.param: name, data.value: values[name]})
                for name, t in chosen.items()]
        written = str(data.checkpoint)
        folder = inplace.clean(written) if inplace.remote(written) else \
            display_path(self.path(ctx, "checkpoint"))
        return Rows(rows, [data.param, data.value], folder,  # type: ignore[arg-type]
                    pair.modules)

    def absent(self, ctx: Context) -> bool:
        """Whether a side of the pair is not on this machine."""
        return numbers.absent(ctx, ctx.data.checkpoint, ("data", self.keys["checkpoint"])) or \
            numbers.absent(ctx, ctx.data.base, ("data", self.keys["base"]))

    def _from_numbers(self, ctx: Context, held: dict[str, Any]) -> Rows:
        """The rows of a pair whose checkpoints are absent, from the committed
        numbers: any subset of the tensors, any metric their sums give."""
        data = ctx.data
        chosen, modules = self._tensors(ctx, numbers.tensors_of(held))
        problems = self._applicable(ctx, chosen)
        if data.heads or any(".heads." in n for n in chosen):
            from .heads import committed

            problems += committed(ctx, chosen, numbers.path_of(ctx.doc.path))
        if problems:
            raise FigspecError(_summed(problems))
        wanted = []
        if data.base is not None and data.metric in ("changed_fraction", "sparsity"):
            wanted.append(changed_key(option_of(data)))
        if data.metric in metrics.RANKS:
            wanted.append(str(data.metric))
        numbers.check_held(ctx, numbers.path_of(ctx.doc.path), chosen, held, wanted)
        sums = {n: held["tensors"][n]["sums"] for n in chosen}
        values = self._values(ctx, chosen, sums)
        rows = [(Where(numbers.shown(ctx, held["tensors"][name]["file"]),
                       what=f"tensor `{name}`"),
                 {data.param: name, data.value: values[name]}) for name in chosen]
        return Rows(rows, [data.param, data.value],  # type: ignore[arg-type]
                    numbers.shown(ctx, str(data.checkpoint)), modules)

    def _sides(self, ctx: Context, pair: Pair) -> dict[str, dict[str, Any]]:
        """The identity of each side of the pair, as committed."""
        files = {"checkpoint": [f for t in pair.chosen.values() for f in t.inputs]}
        if pair.config is not None:  # the heads it cut are the pair's too
            files["checkpoint"].append(pair.config)
        if pair.base is not None:
            files["base"] = [f for n in pair.chosen for f in pair.base[n].inputs]
        out: dict[str, dict[str, Any]] = {}
        for key, some in files.items():
            found = inplace.located(ctx, getattr(ctx.data, key), ("data", self.keys[key]))
            if found is not None:  # read in place: its identity is its content's
                out[key] = {**inplace.side(found), "folder": None}
                continue
            folder = self.path(ctx, key)
            out[key] = {**numbers.side(getattr(ctx.data, key), folder,
                                        [f for f in some if isinstance(f, Path)],
                                        ctx.session.parsed), "folder": folder}
        model = _model_files(pair)
        if self.model is not None and model:  # adapters of a model that is not `base`
            folder = ctx.rooted(self.model, ("data", "base"))
            local = [f for f in model if isinstance(f, Path)]  # adapters are local files
            out["model"] = {**numbers.side(self.model, folder, local, ctx.session.parsed),
                            "folder": folder}
        return out

    def _commit(self, ctx: Context, pair: Pair, sums: dict[str, dict[str, float]]) -> None:
        """The pair's numbers, to be written beside the spec when it is built."""
        if numbers.writer(ctx) is None:
            return
        try:
            sides = self._sides(ctx, pair)
        except OSError:  # gone meanwhile: its next build writes them
            return
        numbers.record(ctx, numbers.entry(ctx, sides, pair.chosen, sums, self.step))

    @staticmethod
    def committed(ctx: Context) -> Any:
        """The spec's committed numbers, where they may be drawn from; None
        where there are none (or the spec is in memory), or they are damaged
        (said in a note: the checkpoints are here to compute them)."""
        if ctx.doc.in_memory:
            return None
        committed = numbers.load(numbers.path_of(ctx.doc.path), ctx)
        if committed is not None and committed.problem:
            numbers.note(ctx, committed.path, f"this numbers file {committed.problem}",
                         "`figspec build` computes them from the checkpoints and writes "
                         "this file again")
            return None
        return committed

    def held(self, ctx: Context, pair: Pair) -> dict[str, dict[str, float]] | None:
        """The sums of the tensors drawn from the committed numbers, where the
        pair's identity is the committed one and they hold what the figure
        needs; None otherwise (a note names the file that changed)."""
        data = ctx.data
        committed = self.committed(ctx)
        if committed is None:
            return None
        entry = committed.pairs.get(numbers.key(str(data.checkpoint), data.base))
        if entry is None:
            return None
        try:
            sides = self._sides(ctx, pair)
        except (OSError, FigspecError):
            return None
        for key, now in sides.items():
            why = numbers.changed(entry["sides"].get(key, {}), now)
            if why is not None:  # stale: computed again where they are, and rewritten
                numbers.note(ctx, committed.path, f"{why} changed since these committed "
                             "numbers were computed", "`figspec build` computes them again "
                             "and rewrites this file")
                return None
        sums = {n: entry["tensors"][n]["sums"] for n in pair.chosen if n in entry["tensors"]}
        options = {option_of(data)} if pair.base is not None else set()
        ranks = set(pair.chosen) if data.metric in metrics.RANKS and pair.base else set()
        return sums if _covers(sums, pair.chosen, options, ranks, (str(data.metric),)) else None

    def plan(self, ctx: Context) -> Pair:
        """The pair's headers read and checked, the tensors drawn chosen, and
        what the figure wants of the pair said to the session."""
        data = ctx.data
        try:
            tuned = self._open(ctx, "checkpoint")
            base = self._open(ctx, "base") if data.base else None
        except CheckpointError as e:
            raise self.error(ctx, e) from None
        chosen, modules = self._tensors(ctx, tuned)
        peft.check_drawn(ctx, chosen, ("data", self.keys["checkpoint"]))
        if base is not None:
            peft.check_drawn(ctx, {n: base[n] for n in chosen if n in base},
                             ("data", self.keys["base"]))
        try:  # only the tensors drawn need a dtype figspec reads
            readable(chosen, base)
        except CheckpointError as e:
            raise self.error(ctx, e) from None
        problems = self._compare_headers(ctx, chosen, base) if base is not None else []
        geometry = None
        if data.heads and not problems:  # whole tensors checked, then cut into heads
            from .heads import split

            cut = split(ctx, self.path(ctx, "checkpoint"), chosen, base)
            chosen, base, geometry = cut.chosen, cut.base, cut.geometry
        problems += self._applicable(ctx, chosen)
        if problems:
            raise FigspecError(_summed(problems))
        key = self._pair_key(chosen, base, data, ctx.stamps)
        if geometry is not None:
            from .heads import keyed

            key = keyed(key, geometry)
        self._want(ctx, key, chosen)
        config = geometry.config if geometry and self.path(ctx, "checkpoint").is_dir() else None
        return Pair(chosen, base, key, modules, config)

    def error(self, ctx: Context, e: CheckpointError) -> FigspecError:
        """A checkpoint that cannot be read, at the key that names it."""
        data = ctx.data
        key = "base" if data.base and e.file is not None and \
            self._under(e.file, ctx, "base") else "checkpoint"
        return ctx.error(("data", self.keys[key]), e.text(), e.hint)

    def _open(self, ctx: Context, key: str) -> dict[str, Tensor]:
        at = ("data", self.keys[key])
        found = inplace.located(ctx, getattr(ctx.data, key), at)
        if found is not None:  # the Hub, a store: read in place
            return inplace.tensors(ctx, found)
        path, folder, shown = ctx.locate(getattr(ctx.data, key), at)
        pickles = pickle_weights(path)
        if pickles:
            raise ctx.error(at, *pickle_message(display_path(path), pickles))
        within = Within(folder, shown) if folder else None
        if peft.is_adapter(path):  # the model's tensors, merged with the adapter's update
            model = self.model if self.model is not None else \
                (ctx.data.base if key == "checkpoint" else None)
            if model is None:
                raise peft.no_base(ctx, path, at)
            return peft.open_adapter(ctx, path, self._model(ctx, model), ctx.stamps, within, at)
        return open_checkpoint(path, ctx.stamps, within)

    def _model(self, ctx: Context, written: str) -> dict[str, Tensor]:
        """The headers of the model an adapter adapts (`base`)."""
        path, folder, shown = ctx.locate(written, ("data", "base"))
        if peft.is_adapter(path):
            raise ctx.error(("data", "base"), f"{display_path(path)} is a peft adapter too: "
                            "an adapter's base is the model it adapts",
                            "give `base:` the model's folder")
        pickles = pickle_weights(path)
        if pickles:
            raise ctx.error(("data", "base"), *pickle_message(display_path(path), pickles))
        return open_checkpoint(path, ctx.stamps, Within(folder, shown) if folder else None)

    def path(self, ctx: Context, key: str) -> Path:
        """Where the checkpoint (``key``: "checkpoint" or "base") is."""
        written = getattr(ctx.data, key)
        return ctx.rooted(written, ("data", self.keys[key]))

    def _under(self, path: File, ctx: Context, key: str) -> bool:
        if isinstance(path, Blob):
            return path.shown.startswith(inplace.clean(str(getattr(ctx.data, key))) + "/")
        try:
            return resolved(path).is_relative_to(self.path(ctx, key))
        except (FigspecError, BadPath):
            return False

    @staticmethod
    def _tensors(ctx: Context, tensors: dict[str, Tensor]
                 ) -> tuple[dict[str, Tensor], tuple[str, ...]]:
        """The weights (or biases) of the modules and layers drawn: nothing else
        is ever read (embeddings, norms, lm_head, modules not listed); and
        every module path the names hold, in order (what the spec could list)."""
        data = ctx.data
        suffix, (first, last) = "." + data.tensor, ctx.layers
        pattern, listed = data.param_pattern, module_matcher(ctx.modules)
        chosen: dict[str, Tensor] = {}
        modules: dict[str, None] = {}  # ordered, each once
        for name, t in tensors.items():
            m = pattern.search(name) if name.endswith(suffix) else None
            if m is not None:
                modules[m.group("module")] = None
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
        return chosen, tuple(modules)

    def _compare_headers(self, ctx: Context, chosen: dict[str, Tensor],
                         base: dict[str, Tensor]) -> list[Diagnostic]:
        problems, at = [], ctx.base + ("data", self.keys["base"])
        tuned, other_side = self.names["checkpoint"], self.names["base"]
        for name, t in chosen.items():
            other = base.get(name)
            if other is None:
                problems.append(ctx.doc.diagnostic(
                    at, f"tensor `{name}` of {tuned} is not in {other_side}"))
            elif other.shape != t.shape:
                problems.append(ctx.doc.diagnostic(
                    at, f"tensor `{name}` is {list(t.shape)} in {tuned} and "
                    f"{list(other.shape)} in {other_side}"))
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
            elif metric_name in metrics.RANKS and len(t.shape) != 2:
                why = (f"tensor `{name}` has shape {list(t.shape)}: {metric_name} is the rank "
                       "of a matrix")
            if why:
                problems.append(ctx.doc.diagnostic(
                    ctx.base + ("data", "metric"), why, "leave its module out of `modules`, "
                    "or choose another `metric`"))
        return problems

    @staticmethod
    def _pair_key(chosen: dict[str, Tensor], base: dict[str, Tensor] | None, data: Any,
                  stamps: dict[Path, Stamp]) -> str:
        files = sorted({f for t in chosen.values() for f in t.inputs} |
                       {f for n in chosen if base and n in base for f in base[n].inputs} |
                       set(_model_files(Pair(chosen, base, ""))), key=str)
        return _cache_key(files, data, stamps)

    @staticmethod
    def _want(ctx: Context, key: str, chosen: dict[str, Tensor]) -> None:
        """Say what this figure wants of the pair, so the session reads it once for all."""
        data, request = ctx.data, ctx.session.request(key)
        request.tensors.update(chosen)
        if data.base is not None:  # "changed" compares two checkpoints
            request.options.add(option_of(data))
            if data.metric in metrics.RANKS:
                request.ranks.update(chosen)

    def _sums(self, ctx: Context, pair: Pair) -> dict[str, dict[str, float]] | None:
        """The sums of every tensor the session wants of the pair: from this
        session, else figspec's cache, else (building) one pass over the pair.
        None when checking and they are not known yet."""
        key, base = pair.key, pair.base
        need = self.todo(ctx, pair)  # the pair as planned: its config.json is its identity too
        if not need.tensors:
            ctx.session.sums[key] = need.sums
            return need.sums
        if not ctx.session.compute:
            if ctx.session.engine is not None:  # reduced elsewhere, with every other pair
                self._defer(ctx, key, need, base)
            return None
        try:
            fresh = reduce_all(need.tensors, base, frozenset(need.options), need.ranks,
                               ctx.session.reduce_threads())
        except CheckpointError as e:
            raise self.error(ctx, e) from None
        return keep(ctx.session, key, need.sums, fresh)

    def _defer(self, ctx: Context, key: str, need: Todo,
               base: dict[str, Tensor] | None) -> None:
        """The pair's reduction, said to the session for its engine
        (:mod:`figspec.engine`): plain data, and how to keep its sums."""
        shown = display_path(self.path(ctx, "checkpoint"))
        if base is not None:
            shown += f" against {display_path(self.path(ctx, 'base'))}"
        sides = {n: base[n] for n in need.tensors} if base is not None else None
        reduction = Reduction(need.tensors, sides, frozenset(need.options),
                              frozenset(need.ranks), shown)
        session, known = ctx.session, need.sums
        ctx.session.defer(key, reduction, ctx.doc.path,
                          lambda fresh: keep(session, key, known, fresh))

    def todo(self, ctx: Context, pair: Pair) -> Todo:
        """What is known of the pair's sums (this session's, figspec's cache's),
        and what is still to be reduced for every figure that wants the pair."""
        key, chosen, base = pair.key, pair.chosen, pair.base
        session, request = ctx.session, ctx.session.request(key)
        sums = session.sums.get(key) or cached(key) or {}
        want_rank = ctx.data.metric in metrics.RANKS and base is not None
        if _covers(sums, chosen, request.options if base is not None else set(),
                   set(chosen) if want_rank else set()):
            return Todo(sums, {}, set(), set())
        held = self.held(ctx, pair)  # committed, of these very files: no reduction
        if held is not None:
            return Todo({**sums, **held}, {}, set(), set())
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
        return Todo(sums, todo, options, ranks)

    def _values(self, ctx: Context, chosen: dict[str, Tensor], sums: dict[str, dict[str, float]]
                ) -> dict[str, float]:
        """Each drawn tensor's metric; a diagnostic for weights that are not
        finite, and for tensors the metric is undefined for."""
        data = ctx.data
        bad = [n for n in chosen if sums[n]["bad_t"] or sums[n]["bad_b"]]
        if bad:
            s = sums[bad[0]]
            which = "checkpoint" if s["bad_t"] else "base"
            raise ctx.error(("data", self.keys[which]), f"tensor `{bad[0]}` holds "
                            f"{int(s['bad_t'] or s['bad_b']):,} non-finite weights (NaN or "
                            f"infinity) in {self.names[which]}" +
                            (f"; and {len(bad) - 1} more tensors" if len(bad) > 1 else ""))
        problems = [ctx.doc.diagnostic(ctx.base + ("data", "metric"),
                                       f"tensor `{name}`: {why}", hint)
                    for name in chosen
                    for why, hint in metrics.undefined(str(data.metric), sums[name])]
        if problems:
            raise FigspecError(_summed(problems))
        return {name: metrics.value(str(data.metric), sums[name], option_of(data))
                for name in chosen}


@dataclass(frozen=True)
class Pair:
    """A checkpoint pair as a figure reads it: the tensors drawn, the base's
    (None: a metric of one checkpoint), and the key of its sums."""

    chosen: dict[str, Tensor]
    base: dict[str, Tensor] | None
    key: str
    #: every module path the checkpoint's names hold (see :class:`Rows`)
    modules: tuple[str, ...] = ()
    #: the config.json its heads were cut by (:mod:`figspec.sources.heads`)
    config: Path | None = None


@dataclass(frozen=True)
class Todo:
    """A pair's sums known so far, and the tensors still to reduce, with every
    option and rank any figure of the session (or the cache before) asked."""

    sums: dict[str, dict[str, float]]
    tensors: dict[str, Tensor]
    options: set[Option]
    ranks: set[str]


def keep(session: Any, key: str, sums: dict[str, dict[str, float]],
         fresh: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Sums just reduced, added to the pair's: in the session and figspec's cache."""
    sums = {**sums, **fresh}
    session.sums[key] = sums
    store(key, sums)
    return sums


# -- PyTorch pickles: named, never opened -------------------------------------------

#: Pickled weights (``pytorch_model.bin``, a peft ``adapter_model.bin``, shards
#: of either, ``model.pt``); a Trainer checkpoint's other pickles are no weights.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_NOT_WEIGHTS = re.compile(r"(optimizer|scheduler|scaler|rng_state|random_states|"
                          r"training_args)", re.IGNORECASE)


def pickle_weights(path: Path) -> list[str]:
    """The PyTorch pickle weights a checkpoint holds when it holds no
    safetensors (its names, sorted); [] otherwise or when it is unreadable
    (reading it says why)."""
    try:
        if path.is_file():
            return [path.name] if path.suffix.lower() in _PICKLE_SUFFIXES else []
        if not path.is_dir():
            return []
        names = [e.name for e in os.scandir(path)]
    except (OSError, ValueError):
        return []
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        return []
    return sorted(n for n in names if Path(n).suffix.lower() in _PICKLE_SUFFIXES
                  and not _NOT_WEIGHTS.match(n))


def pickle_message(what: str, pickles: list[str]) -> tuple[str, str]:
    """What to say of a checkpoint (``what``: how to name it) of pickle
    weights, and how to convert it."""
    shown = ", ".join(pickles[:3]) + (f" and {len(pickles) - 3} more" if len(pickles) > 3
                                      else "")
    return (f"{what} holds PyTorch pickle weights ({shown}); figspec reads "
            "safetensors only (it never unpickles: a pickle can run code)",
            "convert it: load the model and `model.save_pretrained(folder, "
            "safe_serialization=True)`, or `safetensors.torch.save_file(torch.load(p, "
            "weights_only=True), 'model.safetensors')`")


def _model_files(pair: Pair) -> list[File]:
    """The files of the model a peft adapter's merged tensors are made of."""
    sides = [pair.chosen] + ([pair.base] if pair.base is not None else [])
    return sorted({t.base.file for side in sides for n, t in side.items()
                   if n in pair.chosen and isinstance(t, peft.Merged)}, key=str)


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


def _covers(sums: dict[str, dict[str, float]], chosen: dict[str, Tensor],
            options: set[Option], ranks: set[str],
            rank_keys: tuple[str, ...] = metrics.RANKS) -> bool:
    """Whether the sums hold every tensor, option and rank wanted (a pass
    over the singular values gives every one of ``rank_keys``)."""
    for name in chosen:
        have = sums.get(name)
        if have is None or (name in ranks and not all(k in have for k in rank_keys)):
            return False
        if not all(changed_key(o) in have for o in options):
            return False
    return True


def _cache_key(files: list[File], data: Any, stamps: dict[Path, Stamp]) -> str:
    """The files' identity as their headers were read (the stamps taken then:
    a shard rewritten in place changes its mtime and ctime), and which
    tensors are reduced."""
    parts: list[Any] = [CACHE_VERSION, data.tensor]
    for f in files:
        if isinstance(f, Blob):  # read in place: by content, wherever it lies
            parts.append(["content", f.digest, f.size])
            continue
        st = stamps.get(f) or Stamp.identity(f.stat())
        parts.append([str(f), st.size, st.mtime_ns, st.inode, st.ctime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def cached(key: str, required: frozenset[str] | None = None
            ) -> dict[str, dict[str, float]] | None:
    """The sums figspec's cache holds under ``key`` (a pair's, or two runs'
    with their ``required`` sums); None if missing, or not of the shape
    written (a damaged or foreign entry is computed again). Only a regular
    file of bounded size is read: an entry replaced by a FIFO is never waited
    on, nor a device read without end."""
    from .. import cache
    from ..files import read_bounded

    try:
        raw = read_bounded(cache.folder() / "metrics" / f"{key}.json", MAX_CACHED_BYTES)
        sums = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None
    valid = isinstance(sums, dict) and all(
        isinstance(name, str) and isinstance(entry, dict) and
        all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in entry.items()) and (required or _SUM_KEYS) <= entry.keys()
        for name, entry in sums.items())
    return sums if valid else None


#: What every tensor's cached sums hold: its entries and the kernel's sums.
_SUM_KEYS = frozenset({"n", *SUMS})


def store(key: str, sums: dict[str, dict[str, float]]) -> None:
    from .. import cache

    cache.put(f"metrics/{key}.json", json.dumps(sums, sort_keys=True).encode())


SOURCE = Checkpoint()
