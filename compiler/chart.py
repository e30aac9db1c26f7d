"""Spec + cell tables -> Vega-Lite. Pure: no files; no rendering, except that a
figure of a given size is measured once on Vega's scenegraph to fit it.

The Vega-Lite is written as plain dicts rather than through Altair: Altair's
import and its per-record walk in ``to_dict()`` cost more than Vega's own
drawing of a figure. Tests validate every shape produced against the
Vega-Lite schema, and :func:`build_chart` gives the Altair chart (for
notebooks) from the same dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .data import Table
from .fonts import family_of, text_width
from .models import Panel, Spec
from .units import UNITS, svg_length, to_points, unit_of

if TYPE_CHECKING:
    import altair as alt

#: Vega's default sizes (pt), used where the spec gives no font size.
_LABEL_SIZE, _TITLE_SIZE, _FIGURE_TITLE_SIZE = 10, 11, 13
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


def tick_step(given: int | None, cell_height: float, label_size: float,
              strict: bool = True) -> int:
    """``tick_every`` as given, or the smallest of TICK_STEPS leaving TICK_ROOM
    label heights between ticks. LayoutError when given labels would overlap."""
    if given is not None:
        if strict and given * cell_height < label_size:
            fits = math.ceil(label_size / cell_height)
            raise LayoutError(
                ("layers", "tick_every"), f"layer labels every {given} overlap: the cells are "
                f"{cell_height:.3g} pt high and the labels {label_size:g} pt",
                f"use `tick_every: {fits}` or more, or leave it out to have one chosen")
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


class LayoutError(ValueError):
    """A figure that cannot be drawn readably, with where in the spec (relative
    to the heatmap's own place: the top level or a panel) and how to fix it."""

    def __init__(self, loc: tuple[str | int, ...], message: str, hint: str | None = None):
        super().__init__(message)
        self.loc, self.hint = loc, hint


class FitError(LayoutError):
    """The requested size is too small for what surrounds the cells."""

    def __init__(self, message: str):
        super().__init__(("size",), message,
                         "give a larger size, a smaller `font.size`, or fewer layers")


@dataclass(frozen=True)
class Figure:
    """What the renderer needs: the Vega-Lite, and how large to make the files."""

    vegalite: dict[str, Any]
    png_scale: float
    #: SVG width and height attributes (``3.25in``) and the size in pt, for sized figures
    svg_size: tuple[str, str, float, float] | None = None


def figure(spec: Spec, tables: list[Table]) -> Figure:
    """The figure, fitted to ``size`` when the spec gives one."""
    cell = (spec.cell.width, spec.cell.height)
    if spec.size is None:
        return Figure(vegalite(spec, tables, cell), png_scale(spec))
    cell, width, height = _fit(spec, tables, cell)
    return Figure(vegalite(spec, tables, cell), png_scale(spec),
                  (_attr(spec.size.width, width, spec.size.height),
                   _attr(spec.size.height, height, spec.size.width), width, height))


def _attr(given: str | None, points: float, other: str | None) -> str:
    """An SVG length: as written, or the measured size in the other side's unit."""
    if given is not None:
        return svg_length(given)
    unit = unit_of(other or "1pt")
    return f"{round(points / UNITS[unit], 4):g}{unit}"


#: Measurements taken at most to fit a figure to its size.
_FIT_ROUNDS = 5


def _fit(spec: Spec, tables: list[Table], cell: tuple[float, float]
         ) -> tuple[tuple[float, float], float, float]:
    """Cell size that makes the whole figure ``size``. The figure's width is
    linear in the cell width (the columns of its widest row), and so is its
    height in the cell height; what surrounds the cells (labels, titles,
    colorbar) is measured on Vega's scenegraph, again until the drawing is
    close to the size asked for (see ``_close``: Vega rounds its size to
    whole points)."""
    assert spec.size is not None
    want_w = to_points(spec.size.width) if spec.size.width else None
    want_h = to_points(spec.size.height) if spec.size.height else None
    cols, rows = _grid_counts(spec, tables)
    cw, ch = cell
    for _ in range(_FIT_ROUNDS):
        got_w, got_h = measure(vegalite(spec, tables, (cw, ch), strict=False))
        if _close(got_w, want_w) and _close(got_h, want_h):
            break
        new_cw = cw + (want_w - got_w) / cols if want_w else None
        new_ch = ch + (want_h - got_h) / rows if want_h else None
        # One side given: the cells keep their shape.
        new_cw = new_cw if new_cw is not None else new_ch * cell[0] / cell[1]  # type: ignore
        new_ch = new_ch if new_ch is not None else new_cw * cell[1] / cell[0]
        if new_cw < 1 or new_ch < 1:
            raise FitError(f"{spec.size.width or spec.size.height} leaves no room for the "
                           "cells once the labels, titles and colorbar are drawn")
        cw, ch = new_cw, new_ch
    else:
        got_w, got_h = measure(vegalite(spec, tables, (cw, ch), strict=False))
    return (cw, ch), want_w or got_w, want_h or got_h


def _close(got: float, want: float | None) -> bool:
    """Near enough: the drawing is shown in a box of the size asked for, so it
    may fall short by a little (white space) but never overflow it by more
    than half a point of its padding."""
    return want is None or want - 2 <= got <= want + 0.5


def _grid_counts(spec: Spec, tables: list[Table]) -> tuple[int, int]:
    """Cell columns across the widest row of panels, cell rows down all rows."""
    per_row = spec.columns or len(tables)
    rows = [tables[i:i + per_row] for i in range(0, len(tables), per_row)]
    return (max(sum(len(t.modules) for t in row) for row in rows),
            sum(max(len(t.layers) for t in row) for row in rows))


def measure(vl: dict[str, Any]) -> tuple[float, float]:
    """Width and height Vega draws a chart at (pt)."""
    from .render import scenegraph

    sg = scenegraph(vl)
    return float(sg["width"]), float(sg["height"])


def vegalite(spec: Spec, tables: list[Table], cell: tuple[float, float] | None = None,
             strict: bool = True) -> dict[str, Any]:
    """The self-contained Vega-Lite of the figure. ``strict``: LayoutError if
    labels or values would overlap (not while a figure is being fitted)."""
    cell = cell or (spec.cell.width, spec.cell.height)
    views = spec.views
    shared = spec.scale == "shared" or len(views) == 1
    domain = color_domain(spec, tables) if shared else None
    # Every panel has one plot height, that of the one with most layers at
    # this cell height: bottoms, x labels and the colorbar line up.
    plot_height = max(len(t.layers) for t in tables) * cell[1]
    charts = []
    for i, (view, table) in enumerate(zip(views, tables)):
        scale_name = "color" if shared else f"concat_{i}_color"
        try:
            charts.append(_heatmap(spec, view, table, domain or color_domain(spec, table),
                                   (cell[0], plot_height), scale_name, strict))
        except LayoutError as e:
            e.loc = spec.view_loc(i) + e.loc if e.loc[0] == "layers" else e.loc
            raise
    if spec.panels is None:
        vl = charts[0]
    else:
        vl = {"concat": charts, "columns": spec.columns or len(charts),
              "resolve": {"scale": {"color": "shared" if shared else "independent",
                                    "x": "independent", "y": "independent"}}}
    out: dict[str, Any] = {"$schema": "https://vega.github.io/schema/vega-lite/v6.json",
                           "config": _config(spec)}
    if spec.title:
        out["title"] = spec.title
    out.update(vl)
    return out


def _config(spec: Spec) -> dict[str, Any]:
    family = family_of(spec.font.family)
    size = spec.font.size
    # The figure's title is centred like the panels' titles.
    config: dict[str, Any] = {"font": family, "title": {"anchor": "middle"}}
    if size is not None:
        config["axis"] = {"labelFontSize": size, "titleFontSize": size}
        config["legend"] = {"labelFontSize": size, "titleFontSize": size}
        config["title"].update({"fontSize": size + 2, "subtitleFontSize": size})
    return config


def _heatmap(spec: Spec, view: Panel, table: Table, domain: tuple[float, float],
             plot: tuple[float, float], scale_name: str, strict: bool = True
             ) -> dict[str, Any]:
    """One heatmap: ``plot`` is the cell width and the height of the whole plot."""
    labels = [m.shown for m in table.modules]
    layers = list(table.layers)
    order = layers[::-1] if view.layers.zero_at == "bottom" else layers
    cell_height = plot[1] / len(layers)
    label_size = spec.font.size or _LABEL_SIZE
    step = tick_step(view.layers.tick_every, cell_height, label_size, strict)
    x = {"field": "module", "type": "nominal", "scale": {"domain": labels}, "sort": labels,
         "axis": {"title": None, "labelAngle": -45, "labelAlign": "right"}}
    y = {"field": "layer", "type": "ordinal", "scale": {"domain": order},
         "axis": {"values": ticks(layers[0], layers[-1], step,
                                  math.ceil(TICK_ROOM * label_size / cell_height)),
                  "title": view.layers.title}}
    color = {"field": "value", "type": "quantitative", "scale": _color_scale(spec, domain),
             "legend": _legend(spec, domain, plot[1])}
    rect = {"mark": "rect", "encoding": {
        "x": x, "y": y, "color": color,
        "tooltip": [{"field": "layer", "type": "ordinal"}, {"field": "module", "type": "nominal"},
                    # In full, not in the colorbar's format (15 digits: as written).
                    {"field": "value", "type": "quantitative", "format": ".15~g"}]}}
    chart: dict[str, Any] = {"data": {"values": table.records()},
                             "width": len(labels) * plot[0], "height": plot[1]}
    if view.title:
        chart["title"] = view.title
    if spec.annotate is None:
        chart.update(rect)
    else:
        size = _annotation_size(spec, table, plot[0], cell_height, strict)
        chart["layer"] = [rect, _annotations(spec, x, y, scale_name, size)]
    return chart


def _color_scale(spec: Spec, domain: tuple[float, float]) -> dict[str, Any]:
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


def _legend(spec: Spec, domain: tuple[float, float], length: float) -> dict[str, Any]:
    lo, hi = domain
    mid = spec.color.mid if spec.color.mid is not None else (lo + hi) / 2
    # Labels at the ends and the middle, as many as fit without overlapping
    # (a one-layer heatmap has a colorbar one cell high).
    size = spec.font.size or _LABEL_SIZE
    values = [lo, mid, hi] if length >= 2.4 * size else [lo, hi] if length >= 1.2 * size \
        else [hi]
    # The title stands beside the colorbar, turned, not above it: the gradient
    # then spans exactly the cells' height.
    legend: dict[str, Any] = {"values": values, "gradientLength": length,
                              "title": spec.legend.title, "titleOrient": "right"}
    if spec.legend.format:
        legend["format"] = spec.legend.format
    return legend


#: Room (pt) an annotation leaves to its cell's sides, and above and below.
_ANNOTATION_MARGIN = (2.0, 1.0)


def _annotation_size(spec: Spec, table: Table, cell_width: float, cell_height: float,
                     strict: bool = True) -> float:
    """The values' font size; LayoutError when the widest value, measured in
    the figure's font, would not fit its cell."""
    assert spec.annotate is not None
    size = spec.annotate.size or (spec.font.size or _LABEL_SIZE) - 2
    if not strict:
        return size
    family = family_of(spec.font.family) or ""
    widest = max(text_width(family, d3_number(spec.annotate.format, v))
                 for v in table.values.values())
    fits = min((cell_width - _ANNOTATION_MARGIN[0]) / widest if widest else math.inf,
               cell_height - _ANNOTATION_MARGIN[1])
    if size <= fits:
        return size
    given = spec.annotate.size is not None
    largest = math.floor(fits * 2) / 2
    hint = (f"use `annotate: {{size: {largest:g}}}` or less, a shorter `format`, or larger cells"
            if largest >= 2 else "use a shorter `format`, larger cells, or fewer layers")
    raise LayoutError(("annotate", "size") if given else ("annotate",),
                      f"values written in {size:g} pt do not fit cells {cell_width:.3g} x "
                      f"{cell_height:.3g} pt: they would run into each other", hint)


def d3_number(fmt: str, value: float) -> str:
    """``value`` written roughly as d3-format writes it with ``fmt``: near enough
    to measure its width (Python's format mini-language is d3's origin)."""
    spec = fmt.replace("~", "").replace("r", "g").replace("s", "g").replace("p", "%")
    try:
        text = format(value, spec)
    except ValueError:
        text = format(value, ".6g")
    return text.replace("-", "\u2212")


def _annotations(spec: Spec, x: dict[str, Any], y: dict[str, Any], scale_name: str,
                 size: float) -> dict[str, Any]:
    """Each cell's value, in white or black, whichever contrasts more with the
    cell's colour (WCAG contrast, computed by Vega from the colour scale)."""
    assert spec.annotate is not None
    fill = f"scale('{scale_name}', datum.value)"
    return {"mark": {"type": "text", "baseline": "middle", "align": "center", "fontSize": size},
            "encoding": {
                "x": x, "y": y,  # the same as the cells': one scale and one axis each
                "text": {"field": "value", "type": "quantitative",
                         "format": spec.annotate.format},
                "color": {"condition": {"test": f"contrast('white', {fill}) > "
                                                f"contrast('black', {fill})", "value": "white"},
                          "value": "black"}}}


def build_chart(spec: Spec, tables: list[Table] | Table) -> alt.TopLevelMixin:
    """The figure as an Altair chart (for notebooks), validated."""
    import altair as alt

    if isinstance(tables, Table):
        tables = [tables]
    vl = figure(spec, tables).vegalite
    kind = (alt.ConcatChart if "concat" in vl else alt.LayerChart if "layer" in vl
            else alt.Chart)
    return kind.from_dict(vl, validate=True)
