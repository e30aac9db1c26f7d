"""The figure's scales, chosen: the colour domain and scale, the layer axis's
ticks, the colorbar's labelled values, the PNG's pixels per point. Nothing
here raises for a figure that would be hard to read: :mod:`.text` checks."""

from __future__ import annotations

import math
from typing import Any

from ..cells import Table
from ..models import Spec
from .text import colorbar_overlap

DEFAULT_DPI = 300

#: Steps a default ``tick_every`` is chosen from.
TICK_STEPS = (1, 2, 3, 4, 5, 10, 15, 20, 25, 50, 100, 200, 250, 500, 1000)
#: A default ``tick_every`` leaves at least this many label heights between ticks.
TICK_ROOM = 1.5


def ticks(first: int, last: int, every: int, apart: int = 1) -> list[int]:
    """Every ``every`` layers from ``first``, plus ``last`` (0, 3, ..., 33, 35);
    the tick before ``last`` is left out when it is closer than ``apart`` layers."""
    out = list(range(first, last + 1, every))
    if out[-1] != last:
        if len(out) > 1 and last - out[-1] < apart:
            out.pop()
        out.append(last)
    return out


def tick_step(given: int | None, cell_height: float, label_size: float) -> int:
    """``tick_every`` as given, or the smallest of TICK_STEPS leaving TICK_ROOM
    label heights between ticks (whether given labels overlap,
    :func:`.text.check_tick_labels` says)."""
    if given is not None:
        return given
    return next((s for s in TICK_STEPS if s * cell_height >= TICK_ROOM * label_size),
                TICK_STEPS[-1])


def color_domain(spec: Spec, tables: list[Table] | Table) -> tuple[float, float]:
    """The spec's domain, else min..max of the drawn cells (widened if all are equal)."""
    if isinstance(spec.domain, tuple):
        return spec.domain
    if isinstance(tables, Table):
        tables = [tables]
    extents = [t.extent() for t in tables]
    lo, hi = min(e[0] for e in extents), max(e[1] for e in extents)
    if lo == hi:
        pad = abs(lo) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    return nice(lo, hi) if spec.domain == "nice" else (lo, hi)


def nice(lo: float, hi: float) -> tuple[float, float]:
    """``lo..hi`` rounded outward to a multiple of the smallest step of 1, 2 or
    5 times a power of ten that cuts it into at most 10 parts: 0.096..0.172 ->
    0.09..0.18 (the colorbar's middle label is then round too, or half a step)."""
    power = 10.0 ** math.floor(math.log10(hi - lo))
    step = next(power * m for m in (0.1, 0.2, 0.5, 1, 2, 5, 10) if (hi - lo) / (power * m) <= 10)
    # Rounding in units of the step, then back, keeps 0.18 from becoming 0.18000000000000002.
    digits = max(0, -math.floor(math.log10(step)))
    return (round(math.floor(lo / step + 1e-9) * step, digits + 1),
            round(math.ceil(hi / step - 1e-9) * step, digits + 1))


def png_scale(spec: Spec) -> float:
    """PNG pixels per drawing unit (a drawing unit is 1 pt)."""
    if spec.output.dpi is not None or spec.size is not None:
        return (spec.output.dpi or DEFAULT_DPI) / 72
    return spec.output.scale


def color_scale(spec: Spec, domain: tuple[float, float]) -> dict[str, Any]:
    """The Vega-Lite colour scale."""
    lo, hi = domain
    mid = spec.color.mid
    scale: dict[str, Any] = {"domain": [lo, hi], "clamp": True}
    if spec.color.colors:
        # One domain stop per colour, evenly spaced (on each side of `mid`, if
        # given), interpolated in RGB: said explicitly, as Vega-Lite would
        # otherwise interpolate in HCL.
        n = len(spec.color.colors) - 1
        scale["domain"] = [_stop(lo, hi, mid, i / n) for i in range(n + 1)]
        scale["range"] = list(spec.color.colors)
        scale["interpolate"] = "rgb"
    else:
        scale["scheme"] = spec.color.effective_scheme
        if mid is not None:
            scale["domainMid"] = mid
    if spec.color.reverse:
        scale["reverse"] = True
    return scale


def _stop(lo: float, hi: float, mid: float | None, t: float) -> float:
    if t == 1:
        return hi
    if mid is None:
        return lo + (hi - lo) * t
    return lo + (mid - lo) * 2 * t if t <= 0.5 else mid + (hi - mid) * (2 * t - 1)


def legend_values(spec: Spec, domain: tuple[float, float], length: float, bottom: bool
                  ) -> list[float]:
    """The colorbar's labelled values: ``legend.ticks``, or the ends and the
    middle, as many as fit without overlapping (a one-layer heatmap has a
    colorbar one cell high)."""
    lo, hi = domain
    given = spec.legend.ticks
    if given is None:
        mid = spec.color.mid if spec.color.mid is not None else (lo + hi) / 2
        for values in ([lo, mid, hi], [lo, hi], [hi]):
            if colorbar_overlap(spec, values, domain, length, bottom) is None:
                return values
        return [hi]
    if isinstance(given, int):
        return [round(lo + (hi - lo) * i / (given - 1), 12) for i in range(given)]
    return list(given)
