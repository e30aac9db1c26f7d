"""Spec + cell tables -> Vega-Lite. Pure: no files; no rendering, except that a
figure of a given size is measured once on Vega's scenegraph to fit it.

The Vega-Lite is written as plain dicts rather than through Altair: Altair's
import and its per-record walk in ``to_dict()`` cost more than Vega's own
drawing of a figure. Tests validate every shape produced against the
Vega-Lite schema, and :func:`build_chart` gives the Altair chart (for
notebooks) from the same dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .data import Table
from .fonts import family_of
from .models import Panel, Spec
from .units import UNITS, svg_length, to_points, unit_of

if TYPE_CHECKING:
    import altair as alt

#: Vega's default sizes (pt), used where the spec gives no font size.
_LABEL_SIZE, _TITLE_SIZE, _FIGURE_TITLE_SIZE = 10, 11, 13
DEFAULT_DPI = 300


def ticks(first: int, last: int, every: int) -> list[int]:
    """Every ``every`` layers from ``first``, plus ``last`` (0, 3, ..., 33, 35)."""
    out = list(range(first, last + 1, every))
    if out[-1] != last:
        out.append(last)
    return out


def color_domain(spec: Spec, tables: list[Table] | Table) -> tuple[float, float]:
    """The spec's domain, else min..max of the drawn cells (widened if all are equal)."""
    if spec.domain is not None:
        return spec.domain
    if isinstance(tables, Table):
        tables = [tables]
    extents = [t.extent() for t in tables]
    lo, hi = min(e[0] for e in extents), max(e[1] for e in extents)
    if lo == hi:
        pad = abs(lo) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def png_scale(spec: Spec) -> float:
    """PNG pixels per drawing unit (a drawing unit is 1 pt)."""
    if spec.output.dpi is not None or spec.size is not None:
        return (spec.output.dpi or DEFAULT_DPI) / 72
    return spec.output.scale


class FitError(ValueError):
    """The requested size is too small for what surrounds the cells."""


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


def _fit(spec: Spec, tables: list[Table], cell: tuple[float, float]
         ) -> tuple[tuple[float, float], float, float]:
    """Cell size that makes the whole figure ``size``. The figure's width is
    linear in the cell width (the columns of its widest row), and so is its
    height in the cell height; what surrounds the cells (labels, titles,
    colorbar) is measured on Vega's scenegraph. A second measurement corrects
    what the first could not foresee (labels that change with the size)."""
    assert spec.size is not None
    want_w = to_points(spec.size.width) if spec.size.width else None
    want_h = to_points(spec.size.height) if spec.size.height else None
    cols, rows = _grid_counts(spec, tables)
    cw, ch = cell
    for _ in range(2):
        got_w, got_h = measure(vegalite(spec, tables, (cw, ch)))
        new_cw = cw + (want_w - got_w) / cols if want_w else None
        new_ch = ch + (want_h - got_h) / rows if want_h else None
        # One side given: the cells keep their shape.
        new_cw = new_cw if new_cw is not None else new_ch * cell[0] / cell[1]  # type: ignore
        new_ch = new_ch if new_ch is not None else new_cw * cell[1] / cell[0]
        if new_cw < 1 or new_ch < 1:
            raise FitError(f"{spec.size.width or spec.size.height} leaves no room for the "
                           "cells once the labels, titles and colorbar are drawn")
        cw, ch = new_cw, new_ch
    if want_w and want_h:
        return (cw, ch), want_w, want_h
    got_w, got_h = measure(vegalite(spec, tables, (cw, ch)))  # the side not given
    return (cw, ch), want_w or got_w, want_h or got_h


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


def vegalite(spec: Spec, tables: list[Table], cell: tuple[float, float] | None = None
             ) -> dict[str, Any]:
    """The self-contained Vega-Lite of the figure."""
    cell = cell or (spec.cell.width, spec.cell.height)
    views = spec.views
    shared = spec.scale == "shared" or len(views) == 1
    domain = color_domain(spec, tables) if shared else None
    legend_length = max(len(t.layers) for t in tables) * cell[1]
    charts = []
    for i, (view, table) in enumerate(zip(views, tables)):
        scale_name = "color" if shared else f"concat_{i}_color"
        charts.append(_heatmap(spec, view, table, domain or color_domain(spec, table), cell,
                               legend_length if shared else len(table.layers) * cell[1],
                               scale_name))
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
    config: dict[str, Any] = {"font": family}
    if size is not None:
        config["axis"] = {"labelFontSize": size, "titleFontSize": size}
        config["legend"] = {"labelFontSize": size, "titleFontSize": size}
        config["title"] = {"fontSize": size + 2, "subtitleFontSize": size}
    return config


def _heatmap(spec: Spec, view: Panel, table: Table, domain: tuple[float, float],
             cell: tuple[float, float], legend_length: float, scale_name: str) -> dict[str, Any]:
    labels = [m.shown for m in table.modules]
    layers = list(table.layers)
    order = layers[::-1] if view.layers.zero_at == "bottom" else layers
    fmt = spec.legend.format
    x = {"field": "module", "type": "nominal", "scale": {"domain": labels}, "sort": labels,
         "axis": {"title": None, "labelAngle": -45, "labelAlign": "right"}}
    y = {"field": "layer", "type": "ordinal", "scale": {"domain": order},
         "axis": {"values": ticks(layers[0], layers[-1], view.layers.tick_every),
                  "title": view.layers.title}}
    color = {"field": "value", "type": "quantitative", "scale": _color_scale(spec, domain),
             "legend": _legend(spec, domain, legend_length)}
    rect = {"mark": "rect", "encoding": {
        "x": x, "y": y, "color": color,
        "tooltip": [{"field": "layer", "type": "ordinal"}, {"field": "module", "type": "nominal"},
                    {"field": "value", "type": "quantitative", "format": fmt or ".4f"}]}}
    chart: dict[str, Any] = {"data": {"values": table.records()},
                             "width": len(labels) * cell[0], "height": len(layers) * cell[1]}
    if view.title:
        chart["title"] = view.title
    if spec.annotate is None:
        chart.update(rect)
    else:
        chart["layer"] = [rect, _annotations(spec, x, y, scale_name)]
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
    legend: dict[str, Any] = {"values": [lo, mid, hi], "gradientLength": length,
                              "title": spec.legend.title}
    if spec.legend.format:
        legend["format"] = spec.legend.format
    return legend


def _annotations(spec: Spec, x: dict[str, Any], y: dict[str, Any], scale_name: str
                 ) -> dict[str, Any]:
    """Each cell's value, in white or black, whichever contrasts more with the
    cell's colour (WCAG contrast, computed by Vega from the colour scale)."""
    assert spec.annotate is not None
    fill = f"scale('{scale_name}', datum.value)"
    size = spec.annotate.size or (spec.font.size or _LABEL_SIZE) - 2
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
