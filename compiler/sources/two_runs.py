"""Two runs' updates against each other: ``data.other``.

``data: {checkpoint: $runs/sft, other: $runs/rl, base: $ckpt/base, metric:
update_cosine}``: per weight matrix, the update of `checkpoint` from `base`
(T − B) against the update of `other`, a second run from the same base
(O − B). Each side's headers are read and checked as a checkpoint pair's
(:mod:`figspec.sources.checkpoint`): the tensors drawn chosen from
`checkpoint`, each compared with the base's; and `other` must hold the same
tensors, shaped alike.

The three tensors are reduced in one pass by the fused kernel
(:func:`figspec.sources.kernel.triple`), which sums ‖T − B‖², ‖O − B‖²,
⟨T − B, O − B⟩ and ‖T − O‖², each difference taken of the values
themselves; the metrics are functions of those sums
(:mod:`figspec.sources.metrics`). The sums are cached (figspec's cache,
keyed by the three sides' files' identities), and committed beside the spec
(:mod:`figspec.sources.numbers`, a "triple" of three sides), so that a clone
without the checkpoints draws the figure.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from ..diagnostics import Diagnostic, FigspecError, display_path
from . import Context, Rows, Where, metrics, numbers
from .checkpoint import Checkpoint, Pair, cached, store
from .metrics import TRIPLE_SUMS
from .safetensors import CheckpointError, Tensor, shown_file
from .shard_data import Files

#: Bump when what is cached changes meaning.
CACHE_VERSION = 1
#: The sums rescaled where they overflowed (see figspec.sources.reduce.SCALE).
_SCALED = ("uu", "vv", "uv", "ww")
#: Which side each non-finite count is of.
_BAD = {"bad_t": "checkpoint", "bad_o": "other", "bad_b": "base"}


@dataclass(frozen=True)
class Triple(Pair):
    """Two runs' checkpoints and their base as a figure reads them: the
    checkpoint's tensors drawn (``chosen``), the base's, and ``other``'s
    tensors of the same names; ``key``: the key of the three's sums."""

    other: dict[str, Tensor] = field(default_factory=dict)


class TwoRuns(Checkpoint):
    """The source of ``data.other``. ``keys`` and ``names``: as
    :class:`figspec.sources.checkpoint.Checkpoint`'s, with the other run's
    (`other`; a step of two runs: `others`, "step 300 of the other run")."""

    def __init__(self, keys: dict[str, str] | None = None,
                 names: dict[str, str] | None = None, *, step: int | None = None) -> None:
        super().__init__(keys, names, step=step)
        self.keys = {"other": "other", **self.keys}
        self.names = {"other": "the other run's checkpoint", **self.names}

    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        held = numbers.committed_pair(ctx, self.keys["checkpoint"], self.keys["base"],
                                      self.keys["other"])
        if held is not None:  # a side is not here: the committed numbers are
            return self._from_numbers(ctx, held)
        triple = self.plan(ctx)
        sums = self._triple_sums(ctx, triple)
        if sums is None:  # checking: the values are not known without reading the three
            ctx.session.unchecked.add(ctx.doc.path)
            values = {name: 0.0 for name in triple.chosen}
        else:
            values = self._values(ctx, triple.chosen, sums)
            self._commit(ctx, triple, sums)
        shown = {f: shown_file(f) for f in {t.file for t in triple.chosen.values()}}
        rows = [(Where(shown[t.file], what=f"tensor `{name}`"),
                 {data.param: name, data.value: values[name]})
                for name, t in triple.chosen.items()]
        folder = display_path(self.path(ctx, "checkpoint"))
        return Rows(rows, [data.param, data.value], folder,  # type: ignore[arg-type]
                    triple.modules)

    def absent(self, ctx: Context) -> bool:
        return super().absent(ctx) or \
            numbers.absent(ctx, ctx.data.other, ("data", self.keys["other"]))

    def plan(self, ctx: Context) -> Triple:
        """The three sides' headers read and checked: the checkpoint against
        the base (as a pair), `other` holding the same tensors shaped alike,
        and `other` against the base."""
        first = super().plan(ctx)
        second_source, second_ctx = self._second(ctx)
        try:
            tensors = second_source._open(second_ctx, "checkpoint")
        except CheckpointError as e:
            raise second_source.error(second_ctx, e) from None
        self._same_tensors(ctx, first.chosen, tensors)
        second = second_source.plan(second_ctx)
        key = hashlib.sha256(json.dumps(["two runs", CACHE_VERSION, first.key, second.key])
                             .encode()).hexdigest()
        return Triple(first.chosen, first.base, key, first.modules,
                      other={name: second.chosen[name] for name in first.chosen})

    def _second(self, ctx: Context) -> tuple[Checkpoint, Context]:
        """`other` read as a checkpoint of its own against the base."""
        source = Checkpoint({"checkpoint": self.keys["other"], "base": self.keys["base"]},
                            {"checkpoint": self.names["other"], "base": self.names["base"]},
                            step=self.step)
        return source, replace(ctx, data=ctx.data.model_copy(
            update={"checkpoint": ctx.data.other}))

    def _same_tensors(self, ctx: Context, chosen: dict[str, Tensor],
                      tensors: dict[str, Tensor]) -> None:
        """FigspecError at `other` for a drawn tensor it lacks or shapes otherwise."""
        problems, at = [], ctx.base + ("data", self.keys["other"])
        first, second = self.names["checkpoint"], self.names["other"]
        hint = ("`other` is a second run of the same model (the same tensors, shaped alike), "
                "from the same `base`")
        for name, t in chosen.items():
            o = tensors.get(name)
            if o is None:
                problems.append(ctx.doc.diagnostic(
                    at, f"tensor `{name}` of {first} is not in {second}", hint))
            elif o.shape != t.shape:
                problems.append(ctx.doc.diagnostic(
                    at, f"tensor `{name}` is {list(t.shape)} in {first} and {list(o.shape)} "
                    f"in {second}", hint))
        if problems:
            raise FigspecError(_summed(problems))

    def error(self, ctx: Context, e: CheckpointError) -> FigspecError:
        """A file that cannot be read, at the key of the side it is of."""
        key = "checkpoint"
        if e.file is not None:
            key = next((k for k in ("base", "other") if self._under(e.file, ctx, k)),
                       "checkpoint")
        return ctx.error(("data", self.keys[key]), e.text(), e.hint)

    def _sides(self, ctx: Context, pair: Pair) -> dict[str, dict[str, Any]]:
        """The identity of each of the three sides, as committed: the
        checkpoint's and the base's as a pair's, `other`'s as the checkpoint
        of its own pair against the base (local, remote or an adapter alike)."""
        assert isinstance(pair, Triple)
        out = super()._sides(ctx, pair)
        second, second_ctx = self._second(ctx)
        out["other"] = second._sides(second_ctx, Pair(pair.other, pair.base, pair.key)
                                     )["checkpoint"]
        return out

    def _triple_sums(self, ctx: Context, triple: Triple) -> dict[str, dict[str, float]] | None:
        """The sums of every tensor drawn: from this session, figspec's cache,
        the committed numbers of these very files, else (building) one pass
        over the three. None when checking and they are not known yet."""
        key, chosen = triple.key, triple.chosen
        sums = ctx.session.sums.get(key) or cached(key, _SUM_KEYS) or {}
        if not all(n in sums for n in chosen):
            held = self._held(ctx, triple)
            if held is not None:
                sums = {**sums, **held}
        todo = {n: (t, triple.other[n], triple.base[n]) for n, t in chosen.items()
                if n not in sums and triple.base is not None}
        if not todo:
            ctx.session.sums[key] = sums
            return sums
        if not ctx.session.compute:
            return None
        try:
            fresh = reduce_triples(todo, ctx.session.reduce_threads())
        except CheckpointError as e:
            raise self.error(ctx, e) from None
        sums = {**sums, **fresh}
        ctx.session.sums[key] = sums
        store(key, sums)
        return sums

    def _held(self, ctx: Context, triple: Triple) -> dict[str, dict[str, float]] | None:
        """The committed sums of the tensors drawn, where the three sides'
        identity is the committed one (a note names a file that changed)."""
        data = ctx.data
        committed = self.committed(ctx)
        if committed is None:
            return None
        entry = committed.pairs.get(numbers.key(str(data.checkpoint), data.base, data.other))
        if entry is None:
            return None
        try:
            sides = self._sides(ctx, triple)
        except (OSError, FigspecError):
            return None
        for key, now in sides.items():
            why = numbers.changed(entry["sides"].get(key, {}), now)
            if why is not None:  # stale: computed again, and the file rewritten
                numbers.note(ctx, committed.path, f"{why} changed since these committed "
                             "numbers were computed", "`figspec build` computes them again "
                             "and rewrites this file")
                return None
        sums = {n: entry["tensors"][n]["sums"] for n in triple.chosen if n in entry["tensors"]}
        return sums if len(sums) == len(triple.chosen) else None

    def _values(self, ctx: Context, chosen: dict[str, Tensor], sums: dict[str, dict[str, float]]
                ) -> dict[str, float]:
        """Each drawn tensor's metric; a diagnostic for weights that are not
        finite (at the side holding them), and where the metric is undefined."""
        data = ctx.data
        bad = [n for n in chosen if any(sums[n][k] for k in _BAD)]
        if bad:
            s = sums[bad[0]]
            count, which = next((s[k], side) for k, side in _BAD.items() if s[k])
            raise ctx.error(("data", self.keys[which]), f"tensor `{bad[0]}` holds "
                            f"{int(count):,} non-finite weights (NaN or infinity) in "
                            f"{self.names[which]}" +
                            (f"; and {len(bad) - 1} more tensors" if len(bad) > 1 else ""))
        problems = [ctx.doc.diagnostic(ctx.base + ("data", "metric"),
                                       f"tensor `{name}`: {why}", hint)
                    for name in chosen
                    for why, hint in metrics.undefined(str(data.metric), sums[name])]
        if problems:
            raise FigspecError(_summed(problems))
        return {name: metrics.value(str(data.metric), sums[name]) for name in chosen}


def _summed(problems: list[Diagnostic]) -> list[Diagnostic]:
    """Five problems of one place shown, the rest counted."""
    if len(problems) <= 5:
        return problems
    first = problems[0]
    return problems[:5] + [Diagnostic(first.file, first.line, first.column,
                                      f"... and {len(problems) - 5} more like this")]


# -- the reduction -------------------------------------------------------------------

class _Buffers:
    """One thread's byte buffers for a chunk of each of the three tensors."""

    def __init__(self, chunk: int) -> None:
        from .safetensors import DTYPES

        size = chunk * max(DTYPES.values())
        self.t, self.o, self.b = bytearray(size), bytearray(size), bytearray(size)


def reduce_triples(triples: dict[str, tuple[Tensor, Tensor, Tensor]], threads: int
                   ) -> dict[str, dict[str, float]]:
    """The sums of each (T, O, B) of ``triples`` (:data:`TRIPLE_SUMS`, and
    ``n``), each chunk of the three passed through the fused kernel once
    (:func:`figspec.sources.kernel.triple`) and the chunks added in order, on
    ``threads`` threads each taking the next tensor in file order: the sums
    do not depend on which thread reduced which tensor. The sums that
    overflowed though every entry is finite are taken again of the values
    scaled by 2**-SCALE, as a pair's are (:mod:`figspec.sources.reduce`)."""
    from concurrent.futures import ThreadPoolExecutor

    from . import kernel

    files = Files()
    path = kernel.path()  # once: the environment is read, and --verbose told, here
    local = threading.local()

    def one(item: tuple[str, tuple[Tensor, Tensor, Tensor]]) -> tuple[str, dict[str, float]]:
        from .reduce import CHUNK, SCALE

        name, (t, o, b) = item
        if not hasattr(local, "buffers"):
            local.buffers = _Buffers(CHUNK)
        sums = _reduced(t, o, b, files, local.buffers, path, 1.0)
        again = [] if any(sums[k] for k in _BAD) else \
            [k for k in _SCALED if not math.isfinite(sums[k])]
        if again:
            scaled = _reduced(t, o, b, files, local.buffers, path, 2.0 ** -SCALE)
            for k in again:
                sums[k] = scaled[k]
                sums[f"scaled:{k}"] = float(SCALE)
        return name, sums

    order = sorted(triples.items(), key=lambda kv: (str(kv[1][0].file), kv[1][0].start))
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            return dict(pool.map(one, order))
    finally:
        files.close()


def _reduced(t: Tensor, o: Tensor, b: Tensor, files: Files, buf: _Buffers, path: str,
             scale: float) -> dict[str, float]:
    from . import kernel
    from .reduce import CHUNK

    out = {"n": float(t.count), **dict.fromkeys(TRIPLE_SUMS, 0.0)}
    for i in range(0, t.count, CHUNK):
        n = min(CHUNK, t.count - i)
        part = kernel.triple(files.read_into(t, i, n, buf.t), t.dtype,
                             files.read_into(o, i, n, buf.o), o.dtype,
                             files.read_into(b, i, n, buf.b), b.dtype, path, scale)
        for k, name in enumerate(TRIPLE_SUMS):
            out[name] += float(part[k])
    return out


#: What every tensor's cached sums hold (read by :func:`figspec.sources.checkpoint.cached`).
_SUM_KEYS = frozenset({"n", *TRIPLE_SUMS})


SOURCE = TwoRuns()
