"""The views phase: each view's tables -> the panels drawn.

A view whose source's rows make one table is drawn as itself. A source whose
rows come in parts (a run's steps) says how the spec's ``x`` draws them
(:meth:`figspec.sources.Source.arrange`): a panel per part, titled by it
(the view itself when there is one part), or one panel per listed module,
its columns the parts. Nothing here knows a source: the parts, their keys
and titles are what the source said (:class:`figspec.sources.Part`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .cells import Table, ViewTables
from .diagnostics import FigspecError, unique
from .models import Module, Panel
from .sources import COLUMNS

if TYPE_CHECKING:
    from .models import Spec
    from .yaml_reader import Document


def expand(doc: Document, spec: Spec, read: list[ViewTables]) -> tuple[Spec, list[Table]]:
    """The spec as drawn (one panel per table where a view became several)
    and its tables, one per panel; FigspecError listing every view's problem."""
    tables: list[Table] = []
    problems = []
    for view in read:
        try:
            tables += _drawn(doc, view)
        except FigspecError as e:
            problems += e.diagnostics
    if problems:
        raise FigspecError(unique(problems))
    if len(tables) == len(spec.views) and all(t.module is None for t in tables):
        return spec, tables
    return spec.model_copy(update={"panels": [t.view for t in tables]}), tables


def _drawn(doc: Document, read: ViewTables) -> list[Table]:
    """One view's tables as its panels."""
    if read.arrange == COLUMNS:
        return _as_columns(doc, read)
    if len(read.tables) == 1:
        return read.tables
    return [replace(t, view=_panel(read.view, title, t.modules))
            for t, title in zip(read.tables, read.titles)]


def _as_columns(doc: Document, read: ViewTables) -> list[Table]:
    """One table per listed module, its columns the parts (named by their
    keys' first value); every part must have the same grid."""
    if not read.tables:
        return []
    first = read.tables[0]
    for t, title in zip(read.tables[1:], read.titles[1:]):
        if t.layers != first.layers or [m.name for m in t.modules] != \
                [m.name for m in first.modules]:
            raise FigspecError([doc.diagnostic(read.at, (
                f"{title} has other layers or modules than {read.titles[0]}: "
                "`x: step` draws one grid of layers for every step"))])
    keys = [t.step or () for t in read.tables]
    columns = tuple(Module(name=str(key[0]), label=str(key[0])) for key in keys)
    steps = {c.name: key for c, key in zip(columns, keys)}
    out = []
    for m in first.modules:
        values = {(layer, c.name): t.values[(layer, m.name)]
                  for c, t in zip(columns, read.tables) for layer in first.layers}
        out.append(Table(first.layers, columns, values, first.stamps,
                         view=_panel(read.view, m.shown, columns), module=m, steps=steps,
                         part_columns=first.part_columns))
    return out


def _panel(view: Panel, title: str, modules: tuple[Module, ...]) -> Panel:
    """One panel of the tables a view became, titled by its part or module."""
    return Panel.model_construct(title=f"{view.title}: {title}" if view.title else title,
                                 data=view.data, modules=list(modules), layers=view.layers)
