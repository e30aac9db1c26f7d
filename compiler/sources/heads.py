"""Attention heads as columns of their own: ``data: {checkpoint: ..., heads: true}``.

Each attention projection drawn is cut into one tensor per head before it is
reduced, and each head's slice goes through the same reduction as a whole
tensor (:mod:`figspec.sources.reduce`): every metric, update_rank included,
is the metric of the head's slice. The heads come from the checkpoint's
config.json: ``num_attention_heads`` (GPT-2: ``n_head``), ``num_key_value_heads``
(grouped-query attention: k and v have fewer; default: as many) and
``head_dim`` (default: ``hidden_size / num_attention_heads``).

Where each head lies (rows and columns as stored, ``y = x W^T``):

- ``q_proj``, ``k_proj``, ``v_proj`` and their biases: head h is rows
  ``h*d .. (h+1)*d``, one contiguous block of the file;
- ``o_proj`` (``out_proj``): head h is columns ``h*d .. (h+1)*d``, a strided
  view (each row gives one segment; :class:`figspec.sources.safetensors.Tensor`);
  its bias is added after the heads are summed, and has none;
- Phi-3's fused ``qkv_proj``: its rows are q's, then k's, then v's heads;
- GPT-2's ``attn.c_attn`` (a Conv1D, stored transposed, ``y = x W``): its
  columns are q's, then k's, then v's heads; ``attn.c_proj``'s rows are the heads.

A head's tensor is named as its module's with ``.heads.H`` after the module
(``model.layers.3.self_attn.q_proj.heads.5.weight``; a fused projection's H
is ``q5``, ``k1``, ``v1``), so the table draws it as a column of its own, as
an expert's (:func:`figspec.sources.params.head_column`), and its sums are
cached and committed under that name. The pair's cache key holds the heads
(:func:`keyed`), and config.json is an input of the figure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, FigspecError, display_path
from ..files import TooLarge, looked_at, read_stamped
from . import Context
from .params import expert_matcher, split_head
from .safetensors import DTYPES, Tensor

CONFIG = "config.json"
#: A config.json larger than this is refused (real ones are a few KB).
CONFIG_LIMIT = 10_000_000
#: Attention projections by the last parts of their module path -> how their
#: heads lie: (the axis cut: 0 rows, 1 columns; the parts, each q, k or v's heads).
KINDS: dict[str, tuple[int, str]] = {
    "q_proj": (0, "q"), "k_proj": (0, "k"), "v_proj": (0, "v"), "o_proj": (1, "o"),
    "out_proj": (1, "o"), "qkv_proj": (0, "qkv"), "attn.c_attn": (1, "qkv"),
    "attn.c_proj": (0, "o"),
}
_HINT_CONFIG = ("put the model's config.json beside its weights (save_pretrained writes "
                "it), or leave `heads` out")


@dataclass(frozen=True)
class Geometry:
    """The attention heads config.json gives."""

    heads: int
    kv_heads: int
    #: None: each tensor's own size over its heads
    head_dim: int | None
    config: Path

    def count(self, part: str) -> int:
        return self.kv_heads if part in "kv" else self.heads


@dataclass(frozen=True)
class Split:
    """A pair's tensors with every split module's tensors replaced by its heads'."""

    chosen: dict[str, Tensor]
    base: dict[str, Tensor] | None
    geometry: Geometry


def split(ctx: Context, checkpoint: Path, chosen: dict[str, Tensor],
          base: dict[str, Tensor] | None) -> Split:
    """The heads of every tensor of a module ``data.heads`` splits (and the
    base's); FigspecError with every problem (no config.json, a module that
    is not attention, a head count that does not divide a tensor)."""
    data = ctx.data
    split_modules, problems = _split_modules(ctx)
    if problems:
        raise FigspecError(problems)
    geometry = read_geometry(ctx, checkpoint)
    match = expert_matcher(ctx.modules)
    out: dict[str, Tensor] = {}
    sides = dict(base) if base is not None else None
    told: set[str] = set()
    for name, t in chosen.items():
        m = data.param_pattern.search(name)
        listed = match(m.group("module"))[0] if m else None
        if m is None or listed not in split_modules:
            out[name] = t
            continue
        cut, why = _cuts(m.group("module"), t, geometry, data.tensor)
        if cut is None:
            if listed not in told:  # once per module, not once per layer
                told.add(listed)
                problems.append(ctx.doc.diagnostic(
                    ctx.base + split_modules[listed], f"tensor `{name}`: {why}",
                    _NOT_ATTENTION if kind(m.group("module")) is None else _NOT_DIVIDED))
            continue
        axis, pieces = cut
        for head, lo, hi in pieces:
            named = name[:m.end("module")] + f".heads.{head}" + name[m.end("module"):]
            out[named] = _slice(t, named, axis, lo, hi)
            if sides is not None and name in sides:
                sides[named] = _slice(sides[name], named, axis, lo, hi)
    if problems:
        raise FigspecError(problems)
    return Split(out, sides, geometry)


def keyed(key: str, geometry: Geometry) -> str:
    """A pair's cache key with its heads: another config.json cuts other slices."""
    parts = [key, geometry.heads, geometry.kv_heads, geometry.head_dim]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def committed(ctx: Context, chosen: dict[str, Tensor], path: Path) -> list[Diagnostic]:
    """Where a figure is drawn from committed numbers: a module whose heads
    the spec asks for and the numbers hold whole, or the other way round."""
    split_modules, problems = _split_modules(ctx)
    if problems:
        return problems
    match = expert_matcher(ctx.modules)
    for name in chosen:
        m = ctx.data.param_pattern.search(name)
        if m is None:
            continue
        module, head = split_head(m.group("module"))
        listed = match(module)[0]
        if listed is None or (head is not None) == (listed in split_modules):
            continue
        what = "whole" if head is None else "head by head"
        return [ctx.doc.diagnostic(
            ctx.base + ("data", "heads"), f"the committed numbers {display_path(path)} hold "
            f"module `{listed}` {what}, and the checkpoints are not here to "
            f"{'split it into heads' if head is None else 'draw it whole'}",
            f"where the checkpoints are, run `figspec build {display_path(ctx.doc.path)}`, "
            f"then commit {display_path(path)}")]
    return []


# -- what is split -------------------------------------------------------------------

def _split_modules(ctx: Context) -> tuple[dict[str, tuple[Any, ...]], list[Diagnostic]]:
    """The listed modules split into heads, each with where the spec says so."""
    heads = ctx.data.heads
    if heads is True:
        return {name: ("modules", i) for i, name in enumerate(ctx.modules)}, []
    if not heads:
        return {}, []
    out, problems = {}, []
    for j, name in enumerate(heads):
        if name in ctx.modules:
            out[name] = ("data", "heads", j)
            continue
        listed = ", ".join(f"`{m}`" for m in ctx.modules[:10])
        problems.append(ctx.doc.diagnostic(
            ctx.base + ("data", "heads", j), f"module `{name}` is not in `modules` ({listed})",
            "list in `heads` the modules drawn whose heads you want, as `modules` names them"))
    return out, problems


_NOT_ATTENTION = ("split only attention projections (q, k, v, o, Phi-3's `qkv_proj`, "
                  "GPT-2's `attn.c_attn`, `attn.c_proj`): name them in `heads: [...]`")
_NOT_DIVIDED = ("check that config.json is this checkpoint's, or leave the module out of "
                "`heads: [...]`")


def kind(path: str) -> tuple[int, str] | None:
    """How a module path's heads lie (see :data:`KINDS`); None: not attention."""
    for tail, how in KINDS.items():
        if path == tail or path.endswith("." + tail):
            return how
    return None


def _cuts(path: str, t: Tensor, g: Geometry, tensor: str
          ) -> tuple[tuple[int, list[tuple[str, int, int]]] | None, str]:
    """Where each head of ``t`` lies: the axis cut and (head, first, end) along
    it; or why it cannot be cut."""
    how = kind(path)
    if how is None:
        return None, f"module `{path}` is not an attention projection: it has no heads"
    axis, parts = how
    if tensor == "bias":
        if parts == "o":
            return None, ("the output projection's bias is added after the heads are "
                          "summed: it has no heads")
        axis = 0
    if len(t.shape) != (1 if tensor == "bias" else 2):
        return None, f"its shape is {list(t.shape)}, not a matrix's (a bias': a vector's)"
    length = t.shape[axis]
    counts = [(p, g.count(p)) for p in (parts if parts != "o" else "q")]
    total = sum(n for _, n in counts)
    side = "rows" if axis == 0 or tensor == "bias" else "columns"
    explained = " + ".join(f"{n} {p}" for p, n in counts) if len(counts) > 1 else str(total)
    if length % total:
        return None, (f"its {length} {side} do not divide into {explained} heads, as "
                      f"{display_path(g.config)} gives them")
    size = length // total
    if g.head_dim is not None and size != g.head_dim:
        return None, (f"its {length} {side} make {explained} heads of {size}, but "
                      f"{display_path(g.config)} gives head_dim {g.head_dim}")
    pieces, at = [], 0
    for p, n in counts:
        prefix = p if len(counts) > 1 else ""
        for h in range(n):
            pieces.append((f"{prefix}{h}", at, at + size))
            at += size
    return (axis, pieces), ""


def _slice(t: Tensor, name: str, axis: int, lo: int, hi: int) -> Tensor:
    """Entries lo..hi of ``t`` along ``axis``: rows are one block of the file,
    columns a strided view."""
    size = DTYPES[t.dtype]
    if axis == 0:
        inner = 1
        for d in t.shape[1:]:
            inner *= d
        start = t.start + lo * inner * size
        return replace(t, name=name, shape=(hi - lo, *t.shape[1:]), start=start,
                       end=start + (hi - lo) * inner * size)
    rows, cols = t.shape
    start = t.start + lo * size
    end = start + max(0, (rows - 1) * cols + hi - lo) * size
    return replace(t, name=name, shape=(rows, hi - lo), start=start, end=end,
                   segment=hi - lo, stride=cols, origin=t.start)


# -- config.json ---------------------------------------------------------------------

def read_geometry(ctx: Context, checkpoint: Path) -> Geometry:
    """The heads the checkpoint's config.json gives (beside its weights),
    stamped as an input of the figure; FigspecError at ``data.heads``."""
    config = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / CONFIG
    at = ("data", "heads")
    looked_at(config)
    shown = display_path(config)
    if not config.is_file():
        raise ctx.error(at, f"heads need the checkpoint's {CONFIG}, and there is none "
                        f"({shown} does not exist)", _HINT_CONFIG)
    try:
        raw, stamp = read_stamped(config, CONFIG_LIMIT)
        values = json.loads(raw)
    except (OSError, TooLarge, ValueError, RecursionError) as e:
        raise ctx.error(at, f"{shown} cannot be read as JSON: {str(e)[:200]}",
                        _HINT_CONFIG) from None
    ctx.stamps[config.resolve()] = stamp
    if not isinstance(values, dict):
        raise ctx.error(at, f"{shown} is not a JSON object", _HINT_CONFIG)
    if "num_attention_heads" not in values and "n_head" not in values and \
            isinstance(values.get("text_config"), dict):
        values = values["text_config"]  # a multimodal model's language model
    heads = _whole(ctx, shown, values, ("num_attention_heads", "n_head"), required=True)
    assert heads is not None
    kv = _whole(ctx, shown, values, ("num_key_value_heads",)) or heads
    head_dim = _whole(ctx, shown, values, ("head_dim",))
    hidden = _whole(ctx, shown, values, ("hidden_size", "n_embd"))
    if head_dim is None and hidden is not None:
        if hidden % heads:
            raise ctx.error(at, f"{shown} gives hidden_size {hidden} and {heads} heads, and no "
                            f"head_dim: {heads} heads do not divide {hidden}",
                            "add `head_dim` to config.json, or leave `heads` out")
        head_dim = hidden // heads
    return Geometry(heads, kv, head_dim, config)


def _whole(ctx: Context, shown: str, values: dict[str, Any], keys: tuple[str, ...],
           required: bool = False) -> int | None:
    """The first of ``keys`` config.json gives, a whole number >= 1 (None: none given)."""
    for k in keys:
        v = values.get(k)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ctx.error(("data", "heads"), f"{shown} gives `{k}` {json.dumps(v)[:40]}, "
                            "not a whole number of at least 1", _HINT_CONFIG)
        return v
    if required:
        raise ctx.error(("data", "heads"), f"{shown} gives no `{keys[0]}`: the heads are "
                        "not known", "add `num_attention_heads` (and `num_key_value_heads` "
                        "for grouped-query attention) to config.json, or leave `heads` out")
    return None
