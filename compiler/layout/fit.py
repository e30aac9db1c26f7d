"""Fitting a figure to its ``size``: the cell size at which the whole drawing,
measured on Vega's scenegraph, is as large as asked; what takes the room when
no cell size fits; and the colorbar's span under several panels (measured
too). Fitting measures unchecked drafts (:func:`.vegalite.draft`)."""

from __future__ import annotations

import math
from typing import Any

from ..cells import Table
from ..fonts import family_of, text_width
from ..models import Spec
from ..units import UNITS, svg_length, to_points, unit_of
from ..vega import scenegraph
from .errors import FitError, LabelError, either
from .plan import legend_bottom, panel_titles
from .text import FIGURE_TITLE_SIZE, label_angle, label_need, label_size, widest_label
from .vegalite import draft, snap_cells

#: Measurements taken at most to fit a figure to its size.
_FIT_ROUNDS = 5


def measure(vl: dict[str, Any]) -> tuple[float, float]:
    """Width and height Vega draws a chart at (pt)."""
    sg = scenegraph(vl)
    return float(sg["width"]), float(sg["height"])


def fit(spec: Spec, tables: list[Table], cell: tuple[float, float]
        ) -> tuple[tuple[float, float], float, float]:
    """Cell size that makes the whole figure ``size``, and the figure's width
    and height (pt). The figure's width is linear in the cell width (the
    columns of its widest row), and so is its height in the cell height;
    what surrounds the cells (labels, titles, colorbar) is measured on
    Vega's scenegraph, again until the drawing is close to the size asked
    for (see ``_close``: Vega rounds its size to whole points). With only a
    width, the cells keep their shape unless the figure would then be taller
    than wide: it is then as high as wide."""
    assert spec.size is not None
    want_w = to_points(spec.size.width) if spec.size.width else None
    want_h = to_points(spec.size.height) if spec.size.height else None
    fitted = _fit_to(spec, tables, cell, want_w, want_h)
    if want_w is not None and want_h is None and fitted[2] > want_w + 0.5:
        try:
            fitted = _fit_to(spec, tables, fitted[0], want_w, want_w)
        except FitError:
            pass  # too little height for the labels: taller than wide, as the cells' shape gives
    return fitted


def _fit_to(spec: Spec, tables: list[Table], cell: tuple[float, float],
            want_w: float | None, want_h: float | None
            ) -> tuple[tuple[float, float], float, float]:
    cols, rows = _grid_counts(spec, tables)
    cw, ch = cell
    for _ in range(_FIT_ROUNDS):
        got_w, got_h = measure(draft(spec, tables, (cw, ch)))
        if _close(got_w, want_w) and _close(got_h, want_h):
            break
        new_cw = cw + (want_w - got_w) / cols if want_w else None
        new_ch = ch + (want_h - got_h) / rows if want_h else None
        # One side given: the cells keep their shape.
        new_cw = new_cw if new_cw is not None else new_ch * cell[0] / cell[1]  # type: ignore
        new_ch = new_ch if new_ch is not None else new_cw * cell[1] / cell[0]
        if new_cw < 1:
            raise _no_room(spec, tables, "width", want_w or got_w, (cw, ch), got_w - cols * cw)
        if new_ch < 1:
            raise _no_room(spec, tables, "height", want_h or got_h, (cw, ch), got_h - rows * ch)
        cw, ch = new_cw, new_ch
    else:
        got_w, got_h = measure(draft(spec, tables, (cw, ch)))
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


def svg_size(spec: Spec, width: float, height: float) -> tuple[str, str, float, float]:
    """A sized figure's SVG width and height attributes, and its size in pt."""
    assert spec.size is not None
    return (_attr(spec.size.width, width, spec.size.height),
            _attr(spec.size.height, height, spec.size.width), width, height)


def _attr(given: str | None, points: float, other: str | None) -> str:
    """An SVG length: as written, or the measured size in the other side's unit."""
    if given is not None:
        return svg_length(given)
    unit = unit_of(other or "1pt")
    return f"{round(points / UNITS[unit], 4):g}{unit}"


# -- what takes the room ------------------------------------------------------------

def _length(spec: Spec, points: float) -> str:
    """A length for a message, in the unit the spec's size is written in."""
    given = spec.size.width or spec.size.height if spec.size else None
    unit = unit_of(given) if given else "in"
    digits = 0 if unit in ("pt", "px", "mm") else 2
    shown = math.ceil(points / UNITS[unit] * 10 ** digits) / 10 ** digits
    return f"{shown:.{digits}f}{unit}"


def _no_room(spec: Spec, tables: list[Table], side: str, want: float,
             cell: tuple[float, float], around: float) -> FitError:
    """FitError naming what takes the room and the smallest size that fits:
    the size drawn with the smallest cells on that side (as wide as turned
    labels need; one point high), as they are on the other."""
    assert spec.size is not None
    smallest = (label_need(spec, tables, 90), cell[1]) if side == "width" else (cell[0], 1.0)
    got_w, got_h = measure(draft(spec, tables, smallest))
    need = got_w if side == "width" else got_h
    given = (spec.size.width if side == "width" else spec.size.height) or \
        (spec.size.width or spec.size.height)
    culprit = _culprit(spec, tables, side, want, smallest, around)
    return FitError(f"{given} leaves no room for the cells: {culprit}",
                    f"give a {side} of at least {_length(spec, need)}, a smaller `font.size`, "
                    "or shorter titles")


def _culprit(spec: Spec, tables: list[Table], side: str, want: float,
             smallest: tuple[float, float], around: float, titles_only: bool = False
             ) -> str | None:
    """What takes the room, in words: a title wider than the cells under it,
    or (unless ``titles_only``) what surrounds the cells."""
    family = family_of(spec.font.family) or ""
    bold = spec.font.title_weight == "bold"
    title_size = (spec.font.size + 2) if spec.font.size else FIGURE_TITLE_SIZE
    titles = panel_titles(spec)
    if side == "width":
        widest = []
        for table, title in zip(tables, titles):
            if title:
                width = text_width(family, title, bold) * title_size
                if width > len(table.modules) * smallest[0]:
                    widest.append((width, f"the panel title \"{title}\" needs "
                                          f"{_length(spec, width)}"))
        if spec.title:
            width = text_width(family, spec.title, bold) * title_size
            widest.append((width, f"the title \"{spec.title}\" needs {_length(spec, width)}"))
        big = [w for w in widest if w[0] > want / 2 or titles_only]
        if big:
            return max(big)[1]
        if titles_only:
            return None
        return (f"the layer labels and titles and the colorbar take {_length(spec, around)} "
                f"of {_length(spec, want)}")
    if titles_only:
        return None
    rows = _grid_counts(spec, tables)[1]
    left = f", leaving {want - around:.2g} pt for {rows} layers" if around < want else ""
    return (f"the titles, module labels and colorbar take {_length(spec, around)} of "
            f"{_length(spec, want)}{_labels_height(spec, tables, smallest[0])}{left}")


def _labels_height(spec: Spec, tables: list[Table], cell_width: float) -> str:
    """`` (the module labels, "mlp. down" turned 45°: 0.52in)``, for turned labels."""
    angle = label_angle(spec, tables, cell_width)
    if not angle:
        return ""
    family = family_of(spec.font.family) or ""
    longest = widest_label(spec, tables)
    height = text_width(family, longest) * label_size(spec) * math.sin(math.radians(angle))
    return f" (the module labels, \"{longest}\" turned {angle}°: {_length(spec, height)})"


def with_smallest_width(spec: Spec, tables: list[Table], cell: tuple[float, float],
                        e: LabelError) -> LabelError:
    """The label error of a sized figure, with the width at which it would fit
    (the figure grows by its columns times the cells' shortfall) and, where
    titles wider than their panels squeeze the cells, that."""
    cols, _ = _grid_counts(spec, tables)
    width, _ = measure(draft(spec, tables, cell))
    # Plus the 2 pt a fitted drawing may fall short of its size (see _close).
    need = width + cols * (e.need - cell[0]) + 2
    culprit = _culprit(spec, tables, "width", width, (e.need, 1.0), 0.0, titles_only=True)
    if culprit:
        e.args = (f"{e.args[0]}, as {culprit}",)
        e.options = e.options + ["shorter panel titles"]
    e.options = e.options + [f"a width of at least {_length(spec, need)}"]
    e.hint = either(e.options)
    return e


# -- the colorbar under several panels ------------------------------------------------

def span_colorbar(spec: Spec, vl: dict[str, Any]) -> dict[str, Any]:
    """A colorbar under several panels spans their cells, from the first
    panel's left edge to the last one's right edge in the first row: where
    that is, Vega knows (the layer axes between them), so it is measured."""
    if "concat" not in vl or not legend_bottom(spec) or spec.scale != "shared":
        return vl
    row_height = vl["concat"][0]["height"]
    cells = _placed_cells(scenegraph(vl))
    top = min(c["y"] for c in cells)
    first_row = [c for c in cells if c["y"] < top + row_height]
    length = max(c["x"] + c["width"] for c in first_row) - min(c["x"] for c in first_row)
    for chart in vl["concat"]:
        rect = chart["layer"][0] if "layer" in chart else chart
        rect["encoding"]["color"]["legend"]["gradientLength"] = round(length, 3)
    return vl


# -- the cells on the PNG's pixels ------------------------------------------------------

def snap(vl: dict[str, Any], scale: float) -> dict[str, Any]:
    """``vl`` with its cells' edges on the pixels of a PNG of ``scale`` pixels
    per pt: where each plot's corner lies in the drawing is measured on
    Vega's scenegraph (the layout does not depend on the cells' inner edges,
    so it stays where measured). A figure of one heatmap has its plot at
    whole points (Vega's padding and the whole points it rounds its axes'
    room up to): at a whole number of pixels per point, as emitted (origin 0)
    is as measured, and the measuring (about 40 ms, as long as drawing the
    SVG) is skipped."""
    if "concat" not in vl and float(scale).is_integer():
        return vl
    return snap_cells(vl, scale, plot_origins(scenegraph(vl)))


def plot_origins(sg: dict[str, Any]) -> list[tuple[float, float]]:
    """Each heatmap's top left corner in the drawing (pt), in the order of
    the panels: where the group holding its cells' mark lies."""
    found: list[tuple[float, float]] = []

    def walk(node: Any, dx: float, dy: float) -> None:
        if not isinstance(node, dict):
            return
        if node.get("role") == "mark" and str(node.get("name", "")).endswith("layer_0_marks"):
            found.append((dx, dy))
        for item in node.get("items", []):
            if node.get("marktype") == "group":
                walk(item, dx + item.get("x", 0), dy + item.get("y", 0))
            else:
                walk(item, dx, dy)

    origin = sg.get("origin", (0, 0))
    walk(sg.get("scenegraph", sg), float(origin[0]), float(origin[1]))
    return found


def _placed_cells(sg: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells, their x and y made absolute (panels are groups in groups)."""
    cells: list[dict[str, Any]] = []

    def walk(node: Any, dx: float, dy: float) -> None:
        if not isinstance(node, dict):
            return
        hit = node.get("role") == "mark" and node.get("marktype") == "rect"
        for item in node.get("items", []):
            if hit:
                cells.append({**item, "x": item.get("x", 0) + dx, "y": item.get("y", 0) + dy})
            if node.get("marktype") == "group":
                walk(item, dx + item.get("x", 0), dy + item.get("y", 0))
            else:
                walk(item, dx, dy)

    walk(sg.get("scenegraph", sg), 0, 0)
    return cells
