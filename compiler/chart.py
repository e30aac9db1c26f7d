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

from .cells import Table
from .fonts import family_of, text_width
from .models import NARROW, Panel, Spec
from .units import UNITS, svg_length, to_points, unit_of

if TYPE_CHECKING:
    import altair as alt

#: Vega's default sizes (pt), used where the spec gives no font size.
_LABEL_SIZE, _TITLE_SIZE, _FIGURE_TITLE_SIZE = 10, 11, 13
#: Vega's gap (pt) between a title and what it stands above.
_TITLE_OFFSET = 4
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

    def __init__(self, message: str, hint: str):
        super().__init__(("size",), message, hint)


class LabelError(LayoutError):
    """Module labels that run into each other; ``need`` is the cell width (pt)
    at which they would not, at the best angle allowed; ``options`` what fits."""

    def __init__(self, loc: tuple[str | int, ...], message: str, options: list[str],
                 need: float):
        super().__init__(loc, message, _either(options))
        self.need, self.options = need, options


def _either(options: list[str]) -> str | None:
    """``use a, b or c``."""
    if not options:
        return None
    return "use " + (", ".join(options[:-1]) + " or " if len(options) > 1 else "") + options[-1]


@dataclass(frozen=True)
class Figure:
    """What the renderer needs: the Vega-Lite, and how large to make the files."""

    vegalite: dict[str, Any]
    png_scale: float
    #: SVG width and height attributes (``3.25in``) and the size in pt, for sized figures
    svg_size: tuple[str, str, float, float] | None = None
    #: the HTML page's Vega-Lite, where it differs: a run's steps behind a slider
    html_vegalite: dict[str, Any] | None = None


def figure(spec: Spec, tables: list[Table]) -> Figure:
    """The figure, fitted to ``size`` when the spec gives one."""
    cell = (spec.cell.width, spec.cell.height)
    html = steps_slider(spec, tables) if "html" in spec.output.formats else None
    if spec.size is None:
        return Figure(_spanned(spec, vegalite(spec, tables, cell)), png_scale(spec),
                      html_vegalite=html)
    cell, width, height = _fit(spec, tables, cell)
    try:
        vl = vegalite(spec, tables, cell)
    except LabelError as e:
        raise _with_smallest_width(spec, tables, cell, e) from None
    return Figure(_spanned(spec, vl), png_scale(spec),
                  (_attr(spec.size.width, width, spec.size.height),
                   _attr(spec.size.height, height, spec.size.width), width, height), html)


#: The slider's parameter: a step of a run, as Vega-Lite names it.
STEP_PARAM = "figspec_step"


def steps_slider(spec: Spec, tables: list[Table]) -> dict[str, Any] | None:
    """A run's steps drawn `x: module` (one heatmap per step), for the HTML
    page: one heatmap and a slider over the steps (a Vega-Lite parameter
    bound to a range input; a select where the steps are not evenly spaced),
    the colour domain that of every step, so colours compare. None for
    any other figure, or one of several views."""
    if len(tables) < 2 or any(t.step is None or t.view is None for t in tables) or \
            len({id(t.view.data) for t in tables}) != 1:  # type: ignore[union-attr]
        return None  # not one run's steps
    first = tables[0]
    if any(t.layers != first.layers or t.modules != first.modules for t in tables):
        return None
    view = first.view or spec.views[0]
    one = spec.model_copy(update={
        "panels": None, "data": view.data, "modules": list(first.modules),
        "layers": view.layers, "domain": color_domain(spec, tables)})
    vl = vegalite(one, [first], strict=False)
    steps = [t.step[0] for t in tables]  # type: ignore[index]
    records = [{**r, "step": t.step[0]} for t in tables  # type: ignore[index]
               for r in t.records()]
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    bind: dict[str, Any] = ({"input": "range", "min": steps[0], "max": steps[-1],
                             "step": gaps.pop(), "name": "step "} if len(gaps) == 1 else
                            {"input": "select", "options": steps, "name": "step "})
    vl["data"] = {"values": records}
    vl["params"] = [{"name": STEP_PARAM, "value": steps[0], "bind": bind}]
    vl["transform"] = [{"filter": f"datum.step == {STEP_PARAM}"}]
    return vl


def _attr(given: str | None, points: float, other: str | None) -> str:
    """An SVG length: as written, or the measured size in the other side's unit."""
    if given is not None:
        return svg_length(given)
    unit = unit_of(other or "1pt")
    return f"{round(points / UNITS[unit], 4):g}{unit}"


def _length(spec: Spec, points: float) -> str:
    """A length for a message, in the unit the spec's size is written in."""
    given = spec.size.width or spec.size.height if spec.size else None
    unit = unit_of(given) if given else "in"
    digits = 0 if unit in ("pt", "px", "mm") else 2
    shown = math.ceil(points / UNITS[unit] * 10 ** digits) / 10 ** digits
    return f"{shown:.{digits}f}{unit}"


#: Measurements taken at most to fit a figure to its size.
_FIT_ROUNDS = 5


def _fit(spec: Spec, tables: list[Table], cell: tuple[float, float]
         ) -> tuple[tuple[float, float], float, float]:
    """Cell size that makes the whole figure ``size``. The figure's width is
    linear in the cell width (the columns of its widest row), and so is its
    height in the cell height; what surrounds the cells (labels, titles,
    colorbar) is measured on Vega's scenegraph, again until the drawing is
    close to the size asked for (see ``_close``: Vega rounds its size to
    whole points). With only a width, the cells keep their shape unless the
    figure would then be taller than wide: it is then as high as wide."""
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
        got_w, got_h = measure(vegalite(spec, tables, (cw, ch), strict=False))
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
        got_w, got_h = measure(vegalite(spec, tables, (cw, ch), strict=False))
    return (cw, ch), want_w or got_w, want_h or got_h


def _no_room(spec: Spec, tables: list[Table], side: str, want: float,
             cell: tuple[float, float], around: float) -> FitError:
    """FitError naming what takes the room and the smallest size that fits:
    the size drawn with the smallest cells on that side (as wide as turned
    labels need; one point high), as they are on the other."""
    smallest = (label_need(spec, tables, 90), cell[1]) if side == "width" else (cell[0], 1.0)
    got_w, got_h = measure(vegalite(spec, tables, smallest, strict=False))
    need = got_w if side == "width" else got_h
    given = (spec.size.width if side == "width" else spec.size.height) or \
        (spec.size.width or spec.size.height)  # type: ignore[union-attr]
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
    title_size = (spec.font.size + 2) if spec.font.size else _FIGURE_TITLE_SIZE
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
    angle = label_angle(spec, tables, cell_width, strict=False)
    if not angle:
        return ""
    family = family_of(spec.font.family) or ""
    size = spec.font.size or _LABEL_SIZE
    longest = max((m.shown for t in tables for m in t.modules),
                  key=lambda s: text_width(family, s))
    height = text_width(family, longest) * size * math.sin(math.radians(angle))
    return f" (the module labels, \"{longest}\" turned {angle}°: {_length(spec, height)})"


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
    from .vega import scenegraph

    sg = scenegraph(vl)
    return float(sg["width"]), float(sg["height"])


# -- module labels ----------------------------------------------------------------

#: Angles module labels may be turned to; the room (em) kept between level
#: ones, and the pitch (em) of turned ones across their slant (about
#: matplotlib's line spacing: labels one em apart touch).
ANGLES = (0, 45, 90)
_LABEL_GAP, _TURNED_PITCH = 0.3, 1.15


def label_need(spec: Spec, tables: list[Table], angle: int) -> float:
    """The cell width (pt) at which module labels turned ``angle`` degrees do
    not run into each other: level ones side by side, measured with the
    font's advance widths; turned ones _TURNED_PITCH em apart across their slant."""
    size = spec.font.size or _LABEL_SIZE
    if angle:
        return _TURNED_PITCH * size / math.sin(math.radians(angle))
    family = family_of(spec.font.family) or ""
    need = 0.0
    for table in tables:
        widths = [text_width(family, m.shown) * size for m in table.modules]
        for a, b in zip(widths, widths[1:]):
            need = max(need, (a + b) / 2 + _LABEL_GAP * size)
    return need


def label_angle(spec: Spec, tables: list[Table], cell_width: float, strict: bool = True
                ) -> int:
    """The angle module labels are drawn at: as given, or the smallest that
    fits. LabelError (when ``strict``) where it does not fit."""
    given = spec.module_labels.angle
    allowed = ANGLES if given == "auto" else (given,)
    fits = [a for a in allowed if label_need(spec, tables, a) <= cell_width + 1e-9]
    if fits:
        return fits[0]
    if not strict:
        return allowed[-1]
    raise _label_error(spec, tables, cell_width)


def _label_error(spec: Spec, tables: list[Table], cell_width: float) -> LabelError:
    size = spec.font.size or _LABEL_SIZE
    given = spec.module_labels.angle
    # At 90°, the cells' width is the labels' pitch.
    largest = math.floor(cell_width / _TURNED_PITCH * 2) / 2
    if given == "auto":
        loc = _label_loc(spec)
        need = label_need(spec, tables, 90)
        options = [f"`cell: {{width: {math.ceil(need)}}}` or more"] if not spec.size else []
        if largest >= 4:
            options.append(f"`font.size: {largest:g}` or less")
        return LabelError(loc, f"module labels run into each other at every angle: the cells "
                          f"are {cell_width:.3g} pt wide and the labels {size:g} pt high",
                          options + ["fewer modules"], need)
    need = label_need(spec, tables, given)
    detail = ""
    if given == 0:
        family = family_of(spec.font.family) or ""
        widest = max((m.shown for t in tables for m in t.modules),
                     key=lambda s: text_width(family, s))
        detail = f" (\"{widest}\" is {text_width(family, widest) * size:.3g} pt wide)"
    fits = [a for a in ANGLES if label_need(spec, tables, a) <= cell_width]
    options = [f"`angle: {fits[0]}` (it fits)"] if fits else []
    if given == 0:
        options.append("shorter labels (`label:` in `modules`)")
    if not spec.size:
        options.append(f"`cell: {{width: {math.ceil(need)}}}` or more")
    return LabelError(("module_labels", "angle"), f"module labels at {given}° run into each "
                      f"other: the cells are {cell_width:.3g} pt wide{detail}", options, need)


def _label_loc(spec: Spec) -> tuple[str | int, ...]:
    """Where labels that collide at every angle are reported: the size that
    squeezes the cells, else the cell width or font size written, else the
    modules."""
    if spec.size:
        return ("size",)
    if "cell" in spec.model_fields_set:
        return ("cell", "width")
    return ("font", "size") if spec.font.size is not None else ("modules",)


def _with_smallest_width(spec: Spec, tables: list[Table], cell: tuple[float, float],
                         e: LabelError) -> LabelError:
    """The label error of a sized figure, with the width at which it would fit
    (the figure grows by its columns times the cells' shortfall) and, where
    titles wider than their panels squeeze the cells, that."""
    cols, _ = _grid_counts(spec, tables)
    width, _ = measure(vegalite(spec, tables, cell, strict=False))
    # Plus the 2 pt a fitted drawing may fall short of its size (see _close).
    need = width + cols * (e.need - cell[0]) + 2
    culprit = _culprit(spec, tables, "width", width, (e.need, 1.0), 0.0, titles_only=True)
    if culprit:
        e.args = (f"{e.args[0]}, as {culprit}",)
        e.options = e.options + ["shorter panel titles"]
    e.options = e.options + [f"a width of at least {_length(spec, need)}"]
    e.hint = _either(e.options)
    return e


# -- the drawing --------------------------------------------------------------------

def legend_bottom(spec: Spec) -> bool:
    """Whether the colorbar goes under the plot (see ``Legend.orient``)."""
    if spec.legend.orient is not None:
        return spec.legend.orient == "bottom"
    return bool(spec.size and spec.size.width and to_points(spec.size.width) <= NARROW)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def panel_titles(spec: Spec) -> list[str | None]:
    """Each view's title, with its letter when the spec asks for them."""
    views = spec.views
    if spec.panels is None or spec.panel_labels is None:
        return [v.title for v in views]
    out: list[str | None] = []
    for i, view in enumerate(views):
        letter = _LETTERS[i % 26] * (i // 26 + 1)
        if spec.panel_labels.startswith("(A") or spec.panel_labels.startswith("A"):
            letter = letter.upper()
        mark = spec.panel_labels.replace("a", letter).replace("A", letter)
        out.append(f"{mark} {view.title}" if view.title else mark)
    return out


def vegalite(spec: Spec, tables: list[Table], cell: tuple[float, float] | None = None,
             strict: bool = True) -> dict[str, Any]:
    """The self-contained Vega-Lite of the figure. ``strict``: LayoutError if
    labels or values would overlap (not while a figure is being fitted)."""
    cell = cell or (spec.cell.width, spec.cell.height)
    views = spec.views
    shared = spec.scale == "shared" or len(views) == 1
    domain = color_domain(spec, tables) if shared else None
    angle = label_angle(spec, tables, cell[0], strict)
    bottom = legend_bottom(spec)
    # Every panel has one plot height, that of the one with most layers at
    # this cell height: bottoms, x labels and the colorbar line up.
    plot_height = max(len(t.layers) for t in tables) * cell[1]
    per_row = spec.columns or len(views)
    titles = panel_titles(spec)
    charts = []
    for i, (view, table) in enumerate(zip(views, tables)):
        scale_name = "color" if shared else f"concat_{i}_color"
        # A panel repeats nothing of the layer axis of its row's first panel.
        first = views[i - i % per_row]
        repeat = i % per_row != 0 and _same_axis(view, table, first, tables[i - i % per_row])
        try:
            charts.append(_heatmap(spec, view, table, domain or color_domain(spec, table),
                                   (cell[0], plot_height), scale_name, strict,
                                   _Look(angle, bottom, titles[i], repeat)))
        except LayoutError as e:
            e.loc = spec.view_loc(i) + e.loc if e.loc[0] == "layers" else e.loc
            raise
    if spec.panels is None:
        vl = charts[0]
    else:
        # 12 pt between panels, not Vega's 20: room goes to the cells.
        vl = {"concat": charts, "columns": per_row, "spacing": 12,
              "resolve": {"scale": {"color": "shared" if shared else "independent",
                                    "x": "independent", "y": "independent"}}}
    out: dict[str, Any] = {"$schema": "https://vega.github.io/schema/vega-lite/v6.json",
                           "config": _config(spec)}
    if spec.title:
        out["title"] = spec.title
    out.update(vl)
    return out


def _same_axis(view: Panel, table: Table, first: Panel, first_table: Table) -> bool:
    """Whether a panel's layer axis is its row's first panel's: same layers,
    same direction, same title (one plot height makes the ticks line up)."""
    return (list(table.layers) == list(first_table.layers)
            and view.layers.zero_at == first.layers.zero_at
            and view.layers.tick_every == first.layers.tick_every
            and view.layers.title == first.layers.title)


def _spanned(spec: Spec, vl: dict[str, Any]) -> dict[str, Any]:
    """A colorbar under several panels spans their cells, from the first
    panel's left edge to the last one's right edge in the first row: where
    that is, Vega knows (the layer axes between them), so it is measured."""
    if "concat" not in vl or not legend_bottom(spec) or spec.scale != "shared":
        return vl
    from .vega import scenegraph

    row_height = vl["concat"][0]["height"]
    cells = _placed_cells(scenegraph(vl))
    top = min(c["y"] for c in cells)
    first_row = [c for c in cells if c["y"] < top + row_height]
    length = max(c["x"] + c["width"] for c in first_row) - min(c["x"] for c in first_row)
    for chart in vl["concat"]:
        rect = chart["layer"][0] if "layer" in chart else chart
        rect["encoding"]["color"]["legend"]["gradientLength"] = round(length, 3)
    return vl


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


def _config(spec: Spec) -> dict[str, Any]:
    family = family_of(spec.font.family)
    size = spec.font.size
    weight = spec.font.title_weight
    # The figure's title is centred like the panels' titles. A colorbar
    # close to the cells and thinner than Vega's 16 px: room goes to the cells.
    config: dict[str, Any] = {"font": family, "title": {"anchor": "middle", "fontWeight": weight,
                                                        "offset": _TITLE_OFFSET},
                              "axis": {"titleFontWeight": weight},
                              "legend": {"titleFontWeight": weight, "offset": 8,
                                         "gradientThickness": 10}}
    if size is not None:
        config["axis"].update({"labelFontSize": size, "titleFontSize": size})
        config["legend"].update({"labelFontSize": size, "titleFontSize": size})
        config["title"].update({"fontSize": size + 2, "subtitleFontSize": size})
    return config


@dataclass(frozen=True)
class _Look:
    """How one heatmap is drawn within the figure."""

    angle: int            # module labels' turn, degrees
    bottom: bool          # the colorbar under the plot
    title: str | None     # the panel's title, lettered
    repeat: bool          # its layer axis is its row's first panel's: no labels, no title


#: Vega's labelAngle, labelAlign and labelBaseline for each angle: turned
#: labels end at their tick and read bottom to top.
_LABEL_STYLE = {0: {"labelAngle": 0, "labelAlign": "center"},
                45: {"labelAngle": -45, "labelAlign": "right"},
                90: {"labelAngle": -90, "labelAlign": "right", "labelBaseline": "middle"}}


def _heatmap(spec: Spec, view: Panel, table: Table, domain: tuple[float, float],
             plot: tuple[float, float], scale_name: str, strict: bool, look: _Look
             ) -> dict[str, Any]:
    """One heatmap: ``plot`` is the cell width and the height of the whole plot."""
    labels = [m.shown for m in table.modules]
    layers = list(table.layers)
    order = layers[::-1] if view.layers.zero_at == "bottom" else layers
    cell_height = plot[1] / len(layers)
    label_size = spec.font.size or _LABEL_SIZE
    step = tick_step(view.layers.tick_every, cell_height, label_size, strict)
    # A run's steps along x (`x: step`) say so under their numbers.
    x = {"field": "module", "type": "nominal", "scale": {"domain": labels}, "sort": labels,
         "axis": {"title": "step" if table.module is not None else None,
                  **_LABEL_STYLE[look.angle]}}
    y_axis: dict[str, Any] = {"values": ticks(layers[0], layers[-1], step,
                                              math.ceil(TICK_ROOM * label_size / cell_height)),
                              "title": None if look.repeat else view.layers.title}
    if look.repeat:
        y_axis["labels"] = False
    y = {"field": "layer", "type": "ordinal", "scale": {"domain": order}, "axis": y_axis}
    width = len(labels) * plot[0]
    color = {"field": "value", "type": "quantitative", "scale": _color_scale(spec, domain),
             "legend": _legend(spec, domain, width if look.bottom else plot[1], look.bottom,
                               strict)}
    rect = {"mark": "rect", "encoding": {
        "x": x, "y": y, "color": color,
        "tooltip": [{"field": "layer", "type": "ordinal"}, {"field": "module", "type": "nominal"},
                    # In full, not in the colorbar's format (15 digits: as written).
                    {"field": "value", "type": "quantitative", "format": ".15~g"}]}}
    chart: dict[str, Any] = {"data": {"values": table.records()},
                             "width": width, "height": plot[1]}
    if look.title:
        chart["title"] = look.title
        overhang = (label_size - cell_height) / 2
        if look.repeat and overhang > 0:
            # Vega sets a title above its panel's bounds; the row's first
            # panel has its top layer label standing out above the cells by
            # this much (and Vega pads a text's bounds by half a point), this one no
            # labels: raised alike, the titles line up.
            chart["title"] = {"text": look.title, "offset": _TITLE_OFFSET + overhang + 0.5}
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


#: Room between colorbar labels: level ones (em), and one above the other (label heights).
_TICK_GAP, _TICK_ROOM = 0.5, 1.2


def _legend(spec: Spec, domain: tuple[float, float], length: float, bottom: bool,
            strict: bool = True) -> dict[str, Any]:
    """The colorbar, as long as the cells are high (beside them) or wide (under
    them), its title turned to read bottom to top beside it or level under it."""
    legend: dict[str, Any] = {"values": _legend_values(spec, domain, length, bottom, strict),
                              "gradientLength": length, "title": spec.legend.title}
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
    if spec.legend.format:
        legend["format"] = spec.legend.format
    return legend


def _legend_values(spec: Spec, domain: tuple[float, float], length: float, bottom: bool,
                   strict: bool) -> list[float]:
    """The labelled values: ``legend.ticks``, or the ends and the middle, as many
    as fit without overlapping (a one-layer heatmap has a colorbar one cell high)."""
    lo, hi = domain
    given = spec.legend.ticks
    if given is None:
        mid = spec.color.mid if spec.color.mid is not None else (lo + hi) / 2
        for values in ([lo, mid, hi], [lo, hi], [hi]):
            if _ticks_fit(spec, values, domain, length, bottom) is None:
                return values
        return [hi]
    if isinstance(given, int):
        values = [lo + (hi - lo) * i / (given - 1) for i in range(given)]
        values = [round(v, 12) for v in values]
    else:
        values = list(given)
        outside = [v for v in values if not lo <= v <= hi]
        if outside and strict:
            raise LayoutError(("legend", "ticks"), f"{outside[0]:g} lies outside the colour "
                              f"domain {lo:g}..{hi:g}", "give values inside the domain, or "
                              "set `domain`")
    if strict:
        problem = _ticks_fit(spec, values, domain, length, bottom)
        if problem is not None:
            raise LayoutError(("legend", "ticks"), f"the colorbar's labels run into each other: "
                              f"{problem}", "give fewer ticks, a shorter `legend.format`, or a "
                              "larger figure")
    return values


def _ticks_fit(spec: Spec, values: list[float], domain: tuple[float, float], length: float,
               bottom: bool) -> str | None:
    """Why these colorbar labels would overlap, or None when they fit."""
    if len(values) < 2:
        return None
    size = spec.font.size or _LABEL_SIZE
    span = domain[1] - domain[0]
    gaps = [(b - a) / span * length for a, b in zip(values, values[1:])]
    if not bottom:
        room = _TICK_ROOM * size
        tight = min(gaps)
        return None if tight >= room else (f"{len(values)} labels on a colorbar {length:.3g} pt "
                                           f"long, {tight:.3g} pt apart, are {size:g} pt high")
    family = family_of(spec.font.family) or ""
    fmt = spec.legend.format or ".6~g"
    widths = [text_width(family, d3_number(fmt, v)) * size for v in values]
    for (a, b), gap, wa, wb in zip(zip(values, values[1:]), gaps, widths, widths[1:]):
        if gap < (wa + wb) / 2 + _TICK_GAP * size:
            return (f"{d3_number(fmt, a)} and {d3_number(fmt, b)} are {gap:.3g} pt apart on a "
                    f"colorbar {length:.3g} pt long")
    return None


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
    vl = _schema_only(figure(spec, tables).vegalite)
    kind = (alt.ConcatChart if "concat" in vl else alt.LayerChart if "layer" in vl
            else alt.Chart)
    return kind.from_dict(vl, validate=True)


def _schema_only(node: Any) -> Any:
    """A copy without the colorbar title's ``encode`` (the one key outside
    Vega-Lite's published schema, which Altair enforces): in a notebook that
    title reads top to bottom, as Vega turns it."""
    if isinstance(node, dict):
        return {k: _schema_only(v) for k, v in node.items()
                if not (k == "encode" and "titleOrient" in node)}
    if isinstance(node, list):
        return [_schema_only(v) for v in node]
    return node
