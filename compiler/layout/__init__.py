"""Layout: spec + cell tables -> the figure's Vega-Lite, fitted to its size,
every text checked. Pure: no files; no rendering, except that a figure of a
given size (and a colorbar under several panels) is measured on Vega's
scenegraph.

    plan       every choice at a cell size: angles, ticks, colorbar values  (plan, scales, text)
    fit        the cell size that makes the figure ``size``  (fit)
    check      the final plan's text, once: overlaps, cells too small  (text)
    emit       the plan as Vega-Lite  (vegalite)

Drafts measured while fitting are never checked; the figure is checked once,
at its final cell size, before it is emitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cells import Table
from ..models import Spec
from .errors import FitError, LabelError, LayoutError
from .fit import fit, snap, span_colorbar, svg_size, with_smallest_width
from .plan import NARROW, Plan, legend_bottom, panel_titles, plan
from .scales import check_mid, color_domain, nice, png_scale, ticks
from .slider import STEP_PARAM, steps_slider
from .text import (
    check_annotations,
    check_colorbar_labels,
    check_module_labels,
    check_tick_labels,
    d3_number,
    label_size,
)
from .vegalite import emit

__all__ = [
    "NARROW",
    "STEP_PARAM",
    "Figure",
    "FitError",
    "LabelError",
    "LayoutError",
    "check",
    "color_domain",
    "d3_number",
    "figure",
    "legend_bottom",
    "nice",
    "panel_titles",
    "png_scale",
    "ticks",
]


@dataclass(frozen=True)
class Figure:
    """What the renderer needs: the Vega-Lite, and how large to make the files."""

    #: the Vega-Lite as laid out and checked, its cells' inner edges not yet
    #: on the PNG's pixels (see ``vegalite``)
    laid_out: dict[str, Any]
    png_scale: float
    #: SVG width and height attributes (``3.25in``) and the size in pt, for sized figures
    svg_size: tuple[str, str, float, float] | None = None
    #: the HTML page's Vega-Lite, where it differs: a run's steps behind a slider
    html_vegalite: dict[str, Any] | None = None

    @property
    def vegalite(self) -> dict[str, Any]:
        """The self-contained Vega-Lite drawn: the cells meeting on the PNG's
        pixels. Where the plots lie is measured on Vega's scenegraph each time
        it is asked for (as long as drawing the SVG; never for a single heatmap
        at a whole number of pixels per pt), so checking a figure never
        measures it; a build asks once per figure."""
        return snap(self.laid_out, self.png_scale)


def figure(spec: Spec, tables: list[Table]) -> Figure:
    """The figure, fitted to ``size`` when the spec gives one; LayoutError
    where it cannot be drawn readably."""
    html = steps_slider(spec, tables) if "html" in spec.output.formats else None
    cell = (spec.cell.width, spec.cell.height)
    if spec.size is None:
        chosen = plan(spec, tables, cell)
        check(spec, tables, chosen)
        return Figure(span_colorbar(spec, emit(spec, chosen)), png_scale(spec),
                      html_vegalite=html)
    cell, width, height = fit(spec, tables, cell)
    chosen = plan(spec, tables, cell)
    try:
        check(spec, tables, chosen)
    except LabelError as e:
        raise with_smallest_width(spec, tables, cell, e) from None
    return Figure(span_colorbar(spec, emit(spec, chosen)), png_scale(spec),
                  svg_size(spec, width, height), html)


def check(spec: Spec, tables: list[Table], chosen: Plan) -> None:
    """LayoutError for the first text of the plan that would run into other
    text or out of its cell: module labels, then each heatmap's colour scale
    (its `color.mid` inside its domain), layer labels, colorbar labels and
    values, in turn."""
    check_module_labels(spec, tables, chosen.cell[0])
    for i, h in enumerate(chosen.heatmaps):
        check_mid(spec, h.domain, None if chosen.shared else f"panel {i + 1}")
        try:
            check_tick_labels(h.view.layers.tick_every, h.cell_height, label_size(spec))
            check_colorbar_labels(spec, h.legend_values, h.domain, h.legend_length,
                                  chosen.bottom)
            if spec.annotate is not None:
                check_annotations(spec, h.table, chosen.cell[0], h.cell_height)
        except LayoutError as e:
            # A layer axis is a view's: its place is the panel's.
            e.loc = spec.view_loc(i) + e.loc if e.loc[0] == "layers" else e.loc
            raise
