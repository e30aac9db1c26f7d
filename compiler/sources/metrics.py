"""The metrics a checkpoint figure can draw: one table, one row each (its
name, whether it compares with a base, its formula, when it is undefined,
and how it is made of a tensor's sums). The spec language's `metric` values,
the JSON Schema's description and the README's metric table are made from
it (a test holds the README to it): a new metric is one row here, if the
kernel's sums (:mod:`figspec.sources.kernel`) already give what it needs.

A tensor's sums (float64, over its n entries): ``tt`` = ‖T‖², ``bb`` = ‖B‖²,
``tb`` = ⟨T, B⟩, ``dd`` = ‖T − B‖² (summed from T − B itself), ``max_abs``,
and ``changed:KIND:VALUE`` counts (see :func:`changed_key`). Where a sum
would have overflowed, it is of the values times 2**-k and ``scaled:NAME``
holds k (:data:`figspec.sources.reduce.SCALE`): :func:`root` undoes it, exactly.

Two runs' updates from one base (``other``: O, the other run's tensor) are
made of the sums of one pass over T, O and B (:data:`TRIPLE_SUMS`): with
U = T − B, V = O − B and W = T − O, each taken of the values themselves,
``uu`` = ‖U‖², ``vv`` = ‖V‖², ``uv`` = ⟨U, V⟩, ``ww`` = ‖W‖², and the
non-finite entries of each side; scaled as the others where they overflowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The sums the kernel gives of each chunk, in the order of its result
#: (:data:`figspec.sources.kernel.FIELDS`); a tensor's sums add its entries
#: ``n`` and the "changed" counts.
SUMS = ("tt", "bb", "tb", "dd", "max_abs", "bad_t", "bad_b")
#: The sums the kernel gives of each chunk of two runs' tensors and their
#: base (:data:`figspec.sources.kernel.TRIPLE_FIELDS`), in its order.
TRIPLE_SUMS = ("uu", "vv", "uv", "ww", "bad_t", "bad_o", "bad_b")
#: What "changed" means: ("exact", 0), ("abs", tolerance) or ("rel", relative_tolerance).
Option = tuple[str, float]
Sums = dict[str, float]
#: a test on a tensor's sums, why the metric is undefined then, what to use instead
Undefined = tuple[Callable[[Sums], bool], str, str]

_NO_UPDATE = ("leave its module out of `modules` (`metric: update_norm` of each run "
              "shows which modules moved)")
_NO_BASE_NORM = "use `metric: update_norm` or `update_rms`, which need no norm of the base"


@dataclass(frozen=True)
class Metric:
    name: str
    needs_base: bool
    #: the README's formula (Markdown)
    formula: str
    #: the schema's words for it
    summary: str
    value: Callable[[Sums, Option], float]
    undefined: tuple[Undefined, ...] = ()
    #: compares the update of `checkpoint` with the update of `other` (a
    #: second run's) from one `base`: made of :data:`TRIPLE_SUMS`
    needs_other: bool = False


def root(s: Sums, key: str, n: float | None = None) -> float:
    """sqrt(s[key]) (or sqrt(s[key] / n)) of the values as stored: times 2**k
    (exact) where the sum was taken of the values times 2**-k."""
    x = math.sqrt(s[key] if n is None else s[key] / n)
    k = s.get(f"scaled:{key}")
    return x if k is None else math.ldexp(x, int(k))


def _fraction_changed(s: Sums, option: Option) -> float:
    return s[changed_key(option)] / s["n"] if s["n"] else 0.0


def _cosine(s: Sums, option: Option, keys: tuple[str, str, str] = ("tt", "bb", "tb")
            ) -> float:
    """tb / (‖T‖‖B‖), exactly 1 for a tensor with itself (sqrt of a rounded
    square is exact), and never past ±1 however the sums round. ``keys``:
    the two squares and the product (U and V's for `update_cosine`)."""
    tt, bb, tb = (s[key] for key in keys)
    if not (tt and bb):
        return math.nan
    k = [int(s.get(f"scaled:{key}", 0)) for key in keys]
    if any(k):  # sums of scaled values: tb * 4**k_tb / (sqrt(tt) 2**k_tt sqrt(bb) 2**k_bb)
        ratio = math.ldexp(tb / (math.sqrt(tt) * math.sqrt(bb)), 2 * k[2] - k[0] - k[1])
        return max(-1.0, min(1.0, ratio))
    both = tt * bb
    norms = math.sqrt(both) if math.isfinite(both) and both > 0 else math.sqrt(tt) * math.sqrt(bb)
    return max(-1.0, min(1.0, tb / norms))


METRICS: tuple[Metric, ...] = (
    Metric("relative_change", True, "‖T − B‖_F / ‖B‖_F", "||T-B||/||B||",
           lambda s, o: root(s, "dd") / root(s, "bb"),
           ((lambda s: not s["bb"], "its base is all zeros (‖B‖ = 0), so ‖T − B‖ / ‖B‖ is "
             "undefined", _NO_BASE_NORM),)),
    Metric("changed_fraction", True, "fraction of entries with T ≠ B as stored (bit for "
           "bit); with `tolerance: t`, \\|T − B\\| > t; with `relative_tolerance: η`, "
           "\\|T − B\\| > η·max(\\|T\\|, \\|B\\|)", "entries with T != B as stored",
           _fraction_changed),
    Metric("sparsity", True, "1 − `changed_fraction`, same options", "1 - changed_fraction",
           lambda s, o: 1 - _fraction_changed(s, o)),
    Metric("cosine", True, "⟨T, B⟩ / (‖T‖_F ‖B‖_F)", "<T,B>/(||T|| ||B||)", _cosine,
           ((lambda s: not s["tt"], "it is all zeros in the checkpoint (‖T‖ = 0), so the "
             "cosine of T and B is undefined", "use `metric: update_norm` or `update_rms`"),
            (lambda s: not s["bb"], "its base is all zeros (‖B‖ = 0), so the cosine of T and "
             "B is undefined", "use `metric: update_norm` or `update_rms`"))),
    Metric("update_norm", True, "‖T − B‖_F", "||T-B||", lambda s, o: root(s, "dd")),
    Metric("update_rms", True, "‖T − B‖_F / √n", "||T-B||/sqrt(n)",
           lambda s, o: root(s, "dd", s["n"]) if s["n"] else 0.0),
    Metric("update_rank", True, "numerical rank of T − B over min(rows, cols), a fraction "
           "(a rank-4 update reads 0.0625 on a 64-wide matrix, 0.125 on a 32-wide one), as "
           "`torch.linalg.matrix_rank` on float32: singular values above σ_max · max(rows, "
           "cols) · ε_float32 (only when asked; see below)",
           "numerical rank of T-B / min(rows, cols)", lambda s, o: s["update_rank"]),
    Metric("update_rank_absolute", True, "numerical rank of T − B itself, a count (rank 4 "
           "is 4 on every matrix): `update_rank` not divided, from the same pass",
           "numerical rank of T-B (a count)", lambda s, o: s["update_rank_absolute"]),
    Metric("update_cosine", True, "with `other` O, a second run's checkpoint from the same "
           "base: ⟨T − B, O − B⟩ / (‖T − B‖_F ‖O − B‖_F), one pass over T, O and B",
           "cos(T-B, O-B), O: `other`", lambda s, o: _cosine(s, o, ("uu", "vv", "uv")),
           ((lambda s: not s["uu"], "it is not updated in the checkpoint (T = B), so the "
             "cosine of the two updates is undefined", _NO_UPDATE),
            (lambda s: not s["vv"], "it is not updated in `other` (O = B), so the cosine of "
             "the two updates is undefined", _NO_UPDATE)), needs_other=True),
    Metric("update_difference", True, "with `other` O: ‖(T − B) − (O − B)‖_F / ‖T − B‖_F, "
           "the numerator summed from T − O itself; 0 where the updates agree, 1 where O "
           "did not move", "||T-O||/||T-B||, O: `other`",
           lambda s, o: root(s, "ww") / root(s, "uu"),
           ((lambda s: not s["uu"], "it is not updated in the checkpoint (T = B), so the "
             "difference relative to its update is undefined", _NO_UPDATE),),
           needs_other=True),
    Metric("norm", False, "‖T‖_F", "||T||", lambda s, o: root(s, "tt")),
    Metric("rms", False, "‖T‖_F / √n", "||T||/sqrt(n)",
           lambda s, o: root(s, "tt", s["n"]) if s["n"] else 0.0),
    Metric("max_abs", False, "max \\|T\\|", "max |T|", lambda s, o: s["max_abs"]),
)
BY_NAME = {m.name: m for m in METRICS}
NAMES = tuple(BY_NAME)
NEEDS_BASE = tuple(m.name for m in METRICS if m.needs_base)
#: The metrics of two runs' updates (with `other`, or `others` for two runs' steps).
NEEDS_OTHER = tuple(m.name for m in METRICS if m.needs_other)
#: The metrics computed from the singular values of T − B (one pass gives
#: both), each kept in a tensor's sums under its own name.
RANKS = ("update_rank", "update_rank_absolute")


def value(name: str, sums: Sums, option: Option = ("exact", 0.0)) -> float:
    """One metric from a tensor's sums."""
    return BY_NAME[name].value(sums, option)


def undefined(name: str, sums: Sums) -> list[tuple[str, str]]:
    """Why ``name`` cannot be computed from these sums, and what to use instead."""
    return [(why, hint) for test, why, hint in BY_NAME[name].undefined if test(sums)]


def option_of(data: Any) -> Option:
    """What "changed" means for a spec's `data`."""
    if data.tolerance is not None:
        return ("abs", data.tolerance)
    if data.relative_tolerance is not None:
        return ("rel", data.relative_tolerance)
    return ("exact", 0.0)


def changed_key(option: Option) -> str:
    return f"changed:{option[0]}:{option[1]!r}"


def schema_description() -> str:
    """The `metric` field's description in the JSON Schema."""
    return ("What is computed from each weight matrix (T: the checkpoint's, B: the base's, "
            "O: `other`'s, as float64 from their stored values): " +
            ", ".join(f"{m.name} {m.summary}" for m in METRICS) + ".")


def markdown_table() -> str:
    """The README's metric table."""
    def needs(m: Metric) -> str:
        return "yes, and `other`" if m.needs_other else "yes" if m.needs_base else "no"

    rows = [f"| `{m.name}` | {needs(m)} | {m.formula} |" for m in METRICS]
    return "\n".join(["| metric | needs `base` | value |", "|---|---|---|", *rows]) + "\n"
