"""What the figure will be at a given cell size: every choice of the drawing
(the colorbar's place, the module labels' angle, each heatmap's domain, tick
step, colorbar values and annotation size), none of them checked. One plan
is both emitted (:mod:`.vegalite`) and checked (:func:`figspec.layout.check`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..cells import Table
from ..models import Panel, Spec
from ..units import to_points
from .scales import color_domain, legend_values, tick_step
from .text import annotation_size, label_angle, label_size

#: A figure at most this wide (pt) gets its colorbar under the plot by default.
NARROW = 4 * 72


@dataclass(frozen=True)
class Heatmap:
    """How one heatmap is drawn within the figure."""

    view: Panel
    table: Table
    domain: tuple[float, float]
    scale_name: str               # its colour scale's name in Vega
    cell_height: float            # pt: the plot's height over its layers
    tick_step: int                # a layer label every this many layers
    legend_length: float          # the colorbar's, pt
    legend_values: list[float]    # the colorbar's labelled values
    annotation_size: float | None  # the values' font size, where written in the cells
    title: str | None             # the panel's title, lettered
    repeat: bool                  # its layer axis is its row's first panel's: no labels, no title


@dataclass(frozen=True)
class Plan:
    """The figure's choices at one cell size."""

    cell: tuple[float, float]     # width, height (pt)
    plot_height: float            # every panel's, that of the one with most layers
    angle: int                    # module labels' turn, degrees
    bottom: bool                  # the colorbar under the plot
    shared: bool                  # one colour scale for every heatmap
    per_row: int                  # panels in a row
    heatmaps: list[Heatmap]


def plan(spec: Spec, tables: list[Table], cell: tuple[float, float] | None = None) -> Plan:
    """The choices at ``cell`` (the spec's cell size by default)."""
    cell = cell or (spec.cell.width, spec.cell.height)
    views = spec.views
    shared = spec.scale == "shared" or len(views) == 1
    domain = color_domain(spec, tables) if shared else None
    bottom = legend_bottom(spec)
    # Every panel has one plot height, that of the one with most layers at
    # this cell height: bottoms, x labels and the colorbar line up.
    plot_height = max(len(t.layers) for t in tables) * cell[1]
    per_row = spec.columns or len(views)
    titles = panel_titles(spec)
    heatmaps = []
    for i, (view, table) in enumerate(zip(views, tables)):
        # A panel repeats nothing of the layer axis of its row's first panel.
        first = i - i % per_row
        repeat = i % per_row != 0 and _same_axis(view, table, views[first], tables[first])
        this = domain or color_domain(spec, table)
        cell_height = plot_height / len(table.layers)
        length = len(table.modules) * cell[0] if bottom else plot_height
        heatmaps.append(Heatmap(
            view, table, this, "color" if shared else f"concat_{i}_color", cell_height,
            tick_step(view.layers.tick_every, cell_height, label_size(spec)), length,
            legend_values(spec, this, length, bottom),
            annotation_size(spec) if spec.annotate is not None else None, titles[i], repeat))
    return Plan(cell, plot_height, label_angle(spec, tables, cell[0]), bottom, shared, per_row,
                heatmaps)


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


def _same_axis(view: Panel, table: Table, first: Panel, first_table: Table) -> bool:
    """Whether a panel's layer axis is its row's first panel's: same layers,
    same direction, same title (one plot height makes the ticks line up)."""
    return (list(table.layers) == list(first_table.layers)
            and view.layers.zero_at == first.layers.zero_at
            and view.layers.tick_every == first.layers.tick_every
            and view.layers.title == first.layers.title)
