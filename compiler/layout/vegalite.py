"""The figure's Vega-Lite, written from a :class:`~.plan.Plan` whose every
choice is made: emitting decides and checks nothing.

The Vega-Lite is written as plain dicts rather than through Altair: Altair's
import and its per-record walk in ``to_dict()`` cost more than Vega's own
drawing of a figure. Tests validate every shape produced against the
Vega-Lite schema (and the API's Altair chart is made from this dict)."""

from __future__ import annotations

from typing import Any

from ..cells import Table
from ..fonts import family_of
from ..models import Spec
from .plan import Heatmap, Plan, plan
from .scales import color_scale, png_scale, ticks
from .text import TITLE_OFFSET, colorbar_format, label_size


def draft(spec: Spec, tables: list[Table], cell: tuple[float, float] | None = None
          ) -> dict[str, Any]:
    """The Vega-Lite at ``cell``, unchecked (to measure, while fitting)."""
    return emit(spec, plan(spec, tables, cell))


def emit(spec: Spec, chosen: Plan) -> dict[str, Any]:
    """The self-contained Vega-Lite of the figure."""
    charts = [_heatmap(spec, chosen, h, i) for i, h in enumerate(chosen.heatmaps)]
    if spec.panels is None:
        vl = charts[0]
    else:
        # 12 pt between panels, not Vega's 20: room goes to the cells.
        vl = {"concat": charts, "columns": chosen.per_row, "spacing": 12,
              "resolve": {"scale": {"color": "shared" if chosen.shared else "independent",
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
    weight = spec.font.title_weight
    # The figure's title is centred like the panels' titles. A colorbar
    # close to the cells and thinner than Vega's 16 px: room goes to the cells.
    config: dict[str, Any] = {"font": family, "title": {"anchor": "middle", "fontWeight": weight,
                                                        "offset": TITLE_OFFSET},
                              "axis": {"titleFontWeight": weight},
                              "legend": {"titleFontWeight": weight, "offset": 8,
                                         "gradientThickness": 10}}
    if size is not None:
        config["axis"].update({"labelFontSize": size, "titleFontSize": size})
        config["legend"].update({"labelFontSize": size, "titleFontSize": size})
        config["title"].update({"fontSize": size + 2, "subtitleFontSize": size})
    return config


#: Vega's labelAngle, labelAlign and labelBaseline for each angle: turned
#: labels end at their tick and read bottom to top.
_LABEL_STYLE = {0: {"labelAngle": 0, "labelAlign": "center"},
                45: {"labelAngle": -45, "labelAlign": "right"},
                90: {"labelAngle": -90, "labelAlign": "right", "labelBaseline": "middle"}}


def _heatmap(spec: Spec, chosen: Plan, h: Heatmap, index: int) -> dict[str, Any]:
    """One heatmap."""
    table, view = h.table, h.view
    labels = [m.shown for m in table.modules]
    layers = list(table.layers)
    order = layers[::-1] if view.layers.zero_at == "bottom" else layers
    size = label_size(spec)
    # A run's steps along x (`x: step`) say so under their numbers.
    x = {"field": "module", "type": "nominal", "scale": {"domain": labels}, "sort": labels,
         "axis": {"title": "step" if table.module is not None else None,
                  **_LABEL_STYLE[chosen.angle]}}
    y_axis: dict[str, Any] = {"values": ticks(layers[0], layers[-1], h.tick_step,
                                              h.cell_height, size),
                              "title": None if h.repeat else view.layers.title}
    if h.repeat:
        y_axis["labels"] = False
    y = {"field": "layer", "type": "ordinal", "scale": {"domain": order}, "axis": y_axis}
    color = {"field": "value", "type": "quantitative", "scale": color_scale(spec, h.domain),
             "legend": _legend(spec, h, chosen.bottom)}
    width = len(labels) * chosen.cell[0]
    prefix = "" if spec.panels is None else f"concat_{index}_"
    cells: dict[str, Any] = {"mark": "rect", "encoding": {
        **_cell_edges(prefix, width, chosen.plot_height, (0.0, 0.0), png_scale(spec)),
        "color": color,
        "tooltip": [{"field": "layer", "type": "ordinal"}, {"field": "module", "type": "nominal"},
                    # In full, not in the colorbar's format (15 digits: as written).
                    {"field": "value", "type": "quantitative", "format": ".15~g"}]}}
    # The scales and axes come from a layer drawing nothing: the cells place
    # their edges themselves (see _cell_edges). A rect layer, so that the
    # scales are bands, as the cells' are.
    axes: dict[str, Any] = {"mark": "rect", "transform": [{"filter": "false"}],
                            "encoding": {"x": x, "y": y}}
    drawn = [cells, axes]
    if h.annotation_size is not None:
        drawn.append(_annotations(spec, x, y, h.scale_name, h.annotation_size))
    chart: dict[str, Any] = {"data": {"values": table.records()}, "width": width,
                             "height": chosen.plot_height, "layer": drawn}
    if h.title:
        chart["title"] = h.title
        overhang = (size - h.cell_height) / 2
        if h.repeat and overhang > 0:
            # Vega sets a title above its panel's bounds; the row's first
            # panel has its top layer label standing out above the cells by
            # this much (and Vega pads a text's bounds by half a point), this one no
            # labels: raised alike, the titles line up.
            chart["title"] = {"text": h.title, "offset": TITLE_OFFSET + overhang + 0.5}
    return chart


def _cell_edges(prefix: str, width: float, height: float, origin: tuple[float, float],
                scale: float) -> dict[str, Any]:
    """The cells' x, x2, y and y2: their bands' edges, moved to the nearest
    device pixel of the PNG (``scale`` pixels per pt) given where the plot's
    top left corner lies in the drawing (``origin``, pt), so that neighbouring
    cells meet on a pixel boundary and anti-aliasing leaves no lighter seam
    between them. The plot's own edges stay where they are: the drawing's
    layout (its bounds) is the same whatever the origin, and SVG and PDF,
    drawn from the same SVG, have the same coordinates."""
    def edge(channel: str, band: str, extent: float, at: float, far: bool) -> dict[str, Any]:
        e = f"scale('{prefix}{channel}', datum.{band})"
        if far:
            e = f"({e} + bandwidth('{prefix}{channel}'))"
        return {"value": {"expr": f"{e} < 1e-6 ? 0 : {e} > {extent!r} - 1e-6 ? {extent!r} : "
                          f"round(({at!r} + {e}) * {scale!r}) / {scale!r} - {at!r}"}}

    return {"x": edge("x", "module", width, origin[0], False),
            "x2": edge("x", "module", width, origin[0], True),
            "y": edge("y", "layer", height, origin[1], False),
            "y2": edge("y", "layer", height, origin[1], True)}


def snap_cells(vl: dict[str, Any], scale: float,
               origins: list[tuple[float, float]]) -> dict[str, Any]:
    """A copy of ``vl`` with each heatmap's cells on the pixels of a PNG of
    ``scale`` pixels per pt, its plot's top left corner lying at
    ``origins[i]`` in the drawing (pt, as measured on Vega's scenegraph)."""
    def snapped(chart: dict[str, Any], prefix: str, origin: tuple[float, float]
                ) -> dict[str, Any]:
        cells = chart["layer"][0]
        edges = _cell_edges(prefix, chart["width"], chart["height"], origin, scale)
        cells = {**cells, "encoding": {**cells["encoding"], **edges}}
        return {**chart, "layer": [cells, *chart["layer"][1:]]}

    if "concat" not in vl:
        return snapped(vl, "", origins[0])
    return {**vl, "concat": [snapped(chart, f"concat_{i}_", origin) for i, (chart, origin)
                             in enumerate(zip(vl["concat"], origins))]}


def _legend(spec: Spec, h: Heatmap, bottom: bool) -> dict[str, Any]:
    """The colorbar, as long as the cells are high (beside them) or wide (under
    them), its title turned to read bottom to top beside it or level under it."""
    legend: dict[str, Any] = {"values": h.legend_values, "gradientLength": h.legend_length,
                              "title": spec.legend.title}
    if bottom:
        legend.update({"orient": "bottom", "direction": "horizontal", "titleOrient": "bottom",
                       "titleAnchor": "middle"})
    else:
        # Beside the colorbar, not above it: the gradient then spans exactly
        # the cells' height. Vega turns a right-hand title to read top to
        # bottom and has no property for its angle: its encoding sets it, so
        # it reads bottom to top as matplotlib's colorbar label (rotation 90).
        legend["titleOrient"] = "right"
        if spec.legend.title:
            legend["encode"] = {"title": {"update": {"angle": {"value": 270},
                                                          "baseline": {"value": "top"}}}}
    legend["format"] = colorbar_format(spec, h.legend_values, h.domain)
    return legend


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
