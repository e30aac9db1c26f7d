"""Spec + data source -> the cell table: one finite number per (layer, module).

Every value is checked here, in Python, before anything is rendered: Vega
silently turns NaN and infinity into null and drops the cell, so a bad value
must never reach it. Problems in the data point at the data file and line;
problems with what the spec asks of the data (a module the data lacks, a
missing cell) point at the spec.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sources
from .diagnostics import Diagnostic, FigspecError, closest, did_you_mean, unique
from .files import Stamp
from .models import MAX_LAYER_INDEX, Module, Panel, Spec
from .session import Session
from .yaml_reader import Document, Loc

if TYPE_CHECKING:
    from .models import Data
    from .project import Settings
from .sources import Context, Origin, Row, Rows, Where
from .sources.params import (
    EXPERT,
    expert_column,
    expert_matcher,
    fitting_preset,
    head_column,
    head_order,
    listable,
    module_matcher,
    split_head,
)
from .values import LARGEST, SMALLEST, matches, parse_number, show, text

#: Most layers one heatmap may draw (the grid is bounded before anything
#: proportional to it is built).
MAX_LAYERS = 10_000
SHOW_MISSING = 5
#: Problems of one kind shown one by one before the rest are summed up.
SHOW_REPEATED = 5

#: (layer, module) -> (the values of its rows, where the first row came from)
Cells = dict[tuple[int, str], tuple[list[float], Origin]]


@dataclass(frozen=True)
class Table:
    """The cells to draw, complete and finite."""

    layers: tuple[int, ...]
    modules: tuple[Module, ...]
    values: dict[tuple[int, str], float]
    #: data files read, stamped as they were read, for incremental builds
    stamps: dict[Path, Stamp] = field(default_factory=dict)
    #: the panel this table is drawn as (a source whose rows come in parts,
    #: a run's steps, makes several tables of one view: one per part, or one
    #: per module; see :mod:`figspec.views`)
    view: Panel | None = None
    #: a part drawn as a panel of its own: its key, the values of the
    #: source's columns (a run's: its step, and where that step was read;
    #: see :class:`figspec.sources.Part`)
    step: tuple[Any, ...] | None = None
    #: parts drawn as columns: the module this table draws, and each
    #: column's part (its key)
    module: Module | None = None
    steps: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: the names of a part's key, as ``figspec table`` heads them (the
    #: source's :attr:`~figspec.sources.Source.columns`); () for a plain one
    part_columns: tuple[str, ...] = ()

    @property
    def sources(self) -> tuple[Path, ...]:
        return tuple(self.stamps)

    def records(self) -> list[dict[str, Any]]:
        """One record per cell, layer by layer, modules in the listed order."""
        return [
            {"layer": layer, "module": m.shown, "value": self.values[(layer, m.name)]}
            for layer in self.layers
            for m in self.modules
        ]

    def extent(self) -> tuple[float, float]:
        vs = self.values.values()
        return min(vs), max(vs)

    def by_part(self) -> Iterator[tuple[tuple[Any, ...], int, Module, float]]:
        """Each cell in the data's terms, whichever way it is drawn: its
        part's key, its layer, the module (as listed) and the value."""
        if self.module is not None:  # the columns are parts
            for column in self.modules:
                for layer in self.layers:
                    yield (self.steps[column.name], layer, self.module,
                           self.values[(layer, column.name)])
            return
        for layer in self.layers:
            for m in self.modules:
                yield self.step or (), layer, m, self.values[(layer, m.name)]


@dataclass(frozen=True)
class ViewTables:
    """One view's tables, one per part of its source's rows, each checked;
    :mod:`figspec.views` draws them as panels."""

    view: Panel
    #: how its parts are drawn, as its source said for the spec's `x`
    #: (:data:`figspec.sources.PANELS` or :data:`~figspec.sources.COLUMNS`)
    arrange: str
    #: where a problem with its parts as a whole is reported
    at: Loc
    tables: list[Table]
    #: each table's part's title ("step 100")
    titles: list[str]


@dataclass
class _Reader:
    view: Panel
    doc: Document
    #: where the view was written: () or ("panels", i)
    base: Loc
    root: Path | None
    settings: Settings | None
    #: the invocation's own, always passed: one made up here would drop
    #: what it allows (--allow-outside) and what it computed
    session: Session
    problems: list[Diagnostic] = field(default_factory=list)
    #: the columns drawn: the listed modules, a module naming experts without
    #: `aggregate` replaced by one column per expert found
    modules: tuple[Module, ...] = ()
    expanded: set[str] = field(default_factory=set)
    #: listed modules (`w1`) matched by several experts' tensors (`experts.N.w1`)
    experts_in_one: set[str] = field(default_factory=set)
    stamps: dict[Path, Stamp] = field(default_factory=dict)
    #: problems of each kind seen, and the first of those not shown
    kinds: dict[str, tuple[int, Diagnostic | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modules = self.modules or tuple(self.listed)

    # -- where problems are reported ------------------------------------
    def at(self, origin: Origin, shown: str, message: str, hint: str | None = None,
           kind: str | None = None) -> None:
        """A problem in a row. Problems of one ``kind`` (a second row for a cell,
        say) are shown SHOW_REPEATED times, then summed up in one line."""
        if isinstance(origin, int):
            problem = Diagnostic(shown, origin, None, message, hint)
        elif isinstance(origin, Where):
            problem = origin.diagnostic(message, hint)
        else:
            problem = self.doc.diagnostic(self.base + origin, message, hint)
        if kind is not None:
            seen, first_hidden = self.kinds.get(kind, (0, None))
            if seen >= SHOW_REPEATED:
                first_hidden = first_hidden or problem
            self.kinds[kind] = (seen + 1, first_hidden)
            if first_hidden is not None:
                return
        self.problems.append(problem)

    def in_spec(self, loc: Loc, message: str, hint: str | None = None, key: bool = False) -> None:
        self.problems.append(self.doc.diagnostic(self.base + loc, message, hint, key=key))

    def fail(self) -> FigspecError:
        summaries = [Diagnostic(hidden.file, hidden.line, hidden.column,
                                f"... and {seen - SHOW_REPEATED} more {kind} from here on",
                                hidden.hint)
                     for kind, (seen, hidden) in self.kinds.items() if hidden is not None]
        return FigspecError(self.problems + summaries)

    # -- the view, complete --------------------------------------------
    @property
    def data(self) -> Data:
        """The view's data: every drawn view has it (validation saw to it)."""
        assert self.view.data is not None
        return self.view.data

    @property
    def listed(self) -> list[Module]:
        """The view's listed modules (every drawn view has them)."""
        assert self.view.modules is not None
        return self.view.modules

    # -- reading ----------------------------------------------------------
    def context(self) -> Context:
        """What the view's source reads in (see :mod:`figspec.sources`)."""
        return Context(self.data, self.doc, self.base, self.root, self.session,
                       self.stamps, self.settings,
                       (self.view.layers.first, self.view.layers.last),
                       tuple(m.name for m in self.listed))


def read_tables(doc: Document, spec: Spec, *, root: Path | None, settings: Settings | None,
                session: Session) -> list[ViewTables]:
    """Each view's (panel's) tables, or FigspecError listing every problem
    of every view."""
    out, problems = [], []
    for i, view in enumerate(spec.views):
        try:
            out.append(_view_tables(doc, view, spec.view_loc(i), spec.x, root=root,
                                    settings=settings, session=session))
        except FigspecError as e:
            problems += e.diagnostics
    if problems:
        raise FigspecError(unique(problems))
    return out


def read_table(doc: Document, view: Panel, base: Loc = (), *, root: Path | None = None,
               settings: Settings | None = None, session: Session) -> Table:
    """Read one view's data into one complete table (all its rows, in one
    part), or raise FigspecError listing every problem found."""
    reader = _Reader(view, doc, base, root.resolve() if root else None, settings, session)
    return _table(reader, sources.for_data(reader.data).read(reader.context()))


def _view_tables(doc: Document, view: Panel, base: Loc, x: str, *, root: Path | None,
                 settings: Settings | None, session: Session) -> ViewTables:
    """A view's source read, its rows split into the parts it says, each
    part's cells checked as any table's. Whether the spec's ``x`` can draw
    the source is asked first: nothing is read for a spec that cannot be drawn."""
    root = root.resolve() if root else None
    reader = _Reader(view, doc, base, root, settings, session)
    source = sources.for_data(reader.data)
    arrange = source.arrange(doc, x)
    ctx = reader.context()
    parts = source.parts(ctx, source.read(ctx))
    tables = []
    for part in parts:
        one = _Reader(view, doc, base, root, settings, session)
        table = _table(one, part.rows)
        tables.append(replace(table, stamps=reader.stamps, view=view, step=part.key or None,
                              part_columns=source.columns))
    return ViewTables(view, arrange, base + source.at, tables, [p.title for p in parts])


def _table(reader: _Reader, source: Rows) -> Table:
    """The checked table of what a source read."""
    data = reader.data
    if not _check_columns(reader, source):
        raise reader.fail()
    rows = [(o, r) for o, r in source.rows if matches(r, data.where)]
    if not rows and data.where:
        _no_row_matches(reader, source)
        raise reader.fail()
    if data.layout == "params":
        rows = _param_rows(reader, source, rows)
    if data.layout == "wide":
        cells, present = _wide_cells(reader, source, rows)
    else:
        cells, present = _long_cells(reader, source, rows)
    _check_modules(reader, source, present)
    layers = _layer_range(reader, cells)
    if layers:
        _check_complete(reader, source, cells, layers)
    if reader.problems:
        raise reader.fail()
    combine = _aggregate(data.aggregate or "min")  # one value per cell unless aggregating
    drawn = set(layers)
    values = {k: float(combine(vs)) for k, (vs, _) in cells.items() if k[0] in drawn}
    return Table(tuple(layers), reader.modules, values, reader.stamps)


# -- checks --------------------------------------------------------------------

def _check_columns(reader: _Reader, source: Rows) -> bool:
    data = reader.data
    needed: list[tuple[Loc, str]] = []
    if data.layout == "params":
        needed += [(("data", "param"), data.param), (("data", "value"), data.value)]
    else:
        needed += [(("data", "layer"), data.layer)]
    if data.layout == "long":
        needed += [(("data", "module"), data.module), (("data", "value"), data.value)]
    needed += [(("data", "where", col), col) for col in data.where]
    ok = True
    modules_as_columns = data.layout == "long" and \
        any(m.name in source.columns for m in reader.listed)
    for loc, col in needed:
        if col not in source.columns:
            ok = False
            hint = did_you_mean(col, source.columns) or f"columns are: {_names(source.columns)}"
            if modules_as_columns and loc == ("data", "module"):
                hint = ("the columns are module names, one row per layer: add `layout: wide`; "
                        + hint)
            reader.in_spec(loc, f"column `{col}` is not in {source.shown}", hint,
                           key=loc[-1] == col)
    return ok


def _no_row_matches(reader: _Reader, source: Rows) -> None:
    """``where:`` left no row: say which condition, and what the column holds."""
    where = reader.data.where
    for col, want in where.items():
        if not any(matches(r, {col: want}) for _, r in source.rows):
            held = sorted({text(r.get(col)) for _, r in source.rows}, key=str)
            shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10
                                             else "")
            reader.in_spec(("data", "where", col), f"no row of {source.shown} has `{col}` "
                           f"equal to {show(want)}; the column holds: {shown}",
                           did_you_mean(str(want), held))
            return
    reader.in_spec(("data", "where"), f"no row of {source.shown} matches all of `where:` at "
                   "once (each condition alone matches some rows)")


def _param_rows(reader: _Reader, source: Rows, rows: list[Row]
                ) -> list[Row]:
    """Parameter-name rows -> long rows: the layer and module found in each name.
    Names without a layer (embeddings, lm_head, final norms) are skipped; a
    module path matches a listed module as :func:`expert_matcher` says. A listed
    module naming experts (``experts.w1``) without ``aggregate`` becomes one
    column per expert found (``reader.modules``)."""
    data = reader.data
    pattern = data.param_pattern
    match = expert_matcher(m.name for m in reader.listed)
    out = []
    experts: dict[str, set[int]] = {}
    heads: dict[str, set[str]] = {}  # an attention head's column, as an expert's
    for origin, row in rows:
        m = pattern.search(text(row.get(data.param)))
        if m is None:
            continue
        module, head = split_head(m.group("module"))
        listed, expert = match(module)
        if listed is None:
            pass  # reported as absent, or not drawn
        elif head is not None and not data.aggregate:
            module = head_column(listed, head)
            heads.setdefault(listed, set()).add(head)
        elif expert is None or data.aggregate:
            if expert is None and EXPERT.search(module):
                reader.experts_in_one.add(listed)
            module = listed
        else:
            module = expert_column(listed, expert)
            experts.setdefault(listed, set()).add(expert)
        out.append((origin, {data.layer: m.group("layer"), data.module: module,
                             data.value: row.get(data.value)}))
    if experts or heads:
        reader.modules = tuple(column for m in reader.listed
                               for column in _columns(m, experts, heads))
        reader.expanded = set(experts) | set(heads)
    return out


def _columns(m: Module, experts: dict[str, set[int]], heads: dict[str, set[str]]
             ) -> list[Module]:
    """A listed module's columns: one per expert, or per head, found; else itself."""
    if m.name in experts:
        return [Module(name=expert_column(m.name, i), label=f"{m.shown} {i}")
                for i in sorted(experts[m.name])]
    if m.name in heads:
        return [Module(name=head_column(m.name, h), label=f"{m.shown} {h}")
                for h in sorted(heads[m.name], key=head_order)]
    return [m]


def _long_cells(reader: _Reader, source: Rows, rows: list[Row]
                ) -> tuple[Cells, set[str]]:
    data = reader.data
    wanted = {m.name for m in reader.modules}
    cells: Cells = {}
    present: set[str] = set()
    for origin, row in rows:
        module = text(row.get(data.module))
        present.add(module)
        if module not in wanted:
            continue
        layer = _layer(reader, source, origin, row.get(data.layer), data.layer)
        if layer is None or not _in_range(reader.view, layer):
            continue
        value = _number(reader, source, origin, row.get(data.value), data.value)
        _put(reader, source, cells, (layer, module), value, origin)
    return cells, present


def _wide_cells(reader: _Reader, source: Rows, rows: list[Row]
                ) -> tuple[Cells, set[str]]:
    data = reader.data
    present = set(source.columns) - {data.layer} - set(data.where)
    cells: Cells = {}
    for origin, row in rows:
        layer = _layer(reader, source, origin, row.get(data.layer), data.layer)
        if layer is None or not _in_range(reader.view, layer):
            continue
        for m in reader.listed:
            if m.name in row:
                value = _number(reader, source, origin, row[m.name], m.name)
                _put(reader, source, cells, (layer, m.name), value, origin)
    return cells, present


def _put(reader: _Reader, source: Rows, cells: Cells, key: tuple[int, str],
         value: float | None, origin: Origin) -> None:
    """Record a cell's value. A bad value (None, already reported) still marks
    the cell as present, so it is not reported a second time as missing."""
    value = math.nan if value is None else value
    if key not in cells:
        cells[key] = ([value], origin)
    elif reader.data.aggregate:
        cells[key][0].append(value)
    else:
        first = cells[key][1]
        where = (f"line {first}" if isinstance(first, int) else
                 (first.what or f"line {first.line}") if isinstance(first, Where) else
                 f"record {first[-1]}")
        experts = (f"; or list `experts.{key[1]}` to draw each expert in a column of its own"
                   if key[1] in reader.experts_in_one else "")
        reader.at(origin, source.shown, f"a second row for layer {key[0]}, module `{key[1]}` "
                  f"(first at {where})", "combine them with `aggregate: mean` (or median, min, "
                  f"max), or narrow the rows with `where:`{experts}",
                  kind="second rows for a cell")


def _aggregate(name: str) -> Callable[[list[float]], float]:
    """The function combining a cell's rows (``aggregate:``). statistics (and
    the decimal and fractions it imports) is imported only when a spec asks
    for a mean or a median: most data have one row per cell."""
    if name in ("min", "max"):
        return min if name == "min" else max
    import statistics

    return statistics.fmean if name == "mean" else statistics.median


def _check_modules(reader: _Reader, source: Rows, present: set[str]) -> None:
    missing = [(i, m) for i, m in enumerate(reader.listed)
               if m.name not in present and m.name not in reader.expanded]
    if not missing:
        return
    if source.modules is not None:
        _check_named_modules(reader, source, missing, source.modules)
        return
    for i, m in missing:
        near = closest(m.name, present, n=3, cutoff=0.5)
        hint = (f"did you mean {', '.join(f'`{n}`' for n in near)}?" if near
                else f"modules in the data: {_names(sorted(present))}")
        reader.in_spec(("modules", i), f"module `{m.name}` is not in {source.shown}", hint)


def _check_named_modules(reader: _Reader, source: Rows, missing: list[tuple[int, Module]],
                              paths: tuple[str, ...]) -> None:
    """Listed modules without rows, where the rows hold only those listed (see
    :attr:`Rows.modules`): one the data's names hold is outside the layers
    drawn; one they do not is suggested from the data's own modules, as a
    spec lists them, with the module preset that fits them."""
    as_listed = listable(paths)
    names = list(dict.fromkeys(as_listed.values()))
    # A name is suggested as written or in full (`attn.c_atn`: `attn.c_attn`), once.
    pool = {**{p: p for p in as_listed}, **{n: p for p, n in as_listed.items()}}
    preset = fitting_preset(paths)
    for i, m in missing:
        match = module_matcher([m.name])
        if any(match(p) is not None for p in paths):
            reader.in_spec(("modules", i), f"module `{m.name}` is in {source.shown}, but in no "
                           "layer drawn", "widen `layers:`")
            continue
        near: list[str] = []
        seen: set[str] = set()
        for n in closest(m.name, pool, n=6, cutoff=0.5):
            if pool[n] not in seen and len(near) < 3:
                seen.add(pool[n])
                near.append(n)
        hint = (f"did you mean {', '.join(f'`{n}`' for n in near)}? " if near else "") + \
            f"the modules it holds: {_names(names)}" + \
            (f"; `modules: {preset}` fits them" if preset else "")
        reader.in_spec(("modules", i), f"module `{m.name}` is not in {source.shown}", hint)


def _layer_range(reader: _Reader, cells: dict[tuple[int, str], Any]) -> list[int]:
    layers = reader.view.layers
    last = layers.last
    if last is None:
        seen = [layer for layer, _ in cells if layer >= layers.first]
        if not seen:
            if not reader.problems:
                reader.in_spec(("data",), f"no rows for the listed modules at layer {layers.first} "
                               "or above")
            return []
        last = max(seen)
    if last - layers.first + 1 > MAX_LAYERS:
        where: Loc = ("layers", "last") if layers.last is not None else ("data",)
        reader.in_spec(where, f"layers {layers.first} to {last} are {last - layers.first + 1:,} "
                       f"layers, more than the {MAX_LAYERS:,} a heatmap may have",
                       "set `layers: {first, last}` to the layers to draw")
        return []
    return list(range(layers.first, last + 1))


def _check_complete(reader: _Reader, source: Rows, cells: dict[tuple[int, str], Any],
                    layers: list[int]) -> None:
    present_modules = {name for _, name in cells}
    # A module that is absent altogether was already reported once. Missing
    # cells are counted, not listed: a sparse file can leave millions out.
    names = [m.name for m in reader.modules if m.name in present_modules]
    first, last = layers[0], layers[-1]
    wanted = set(names)
    count = len(layers) * len(names) - sum(1 for layer, name in cells
                                           if name in wanted and first <= layer <= last)
    if not count:
        return
    shown = list(itertools.islice(((layer, name) for layer in layers for name in names
                                   if (layer, name) not in cells), SHOW_MISSING))
    loc: Loc = ("data", "path") if reader.data.path is not None else ("data", "values")
    first_in_data = min(layer for layer, _ in cells)
    if first_in_data > first and count == (first_in_data - first) * len(names):
        reader.in_spec(loc, f"the data starts at layer {first_in_data}, the figure at layer "
                       f"{first}: {count} cells in range have no row in {source.shown}",
                       f"add `layers: {{first: {first_in_data}}}`")
        return
    listed = ", ".join(f"layer {layer} `{name}`" for layer, name in shown)
    more = f" and {count - len(shown):,} more" if count > len(shown) else ""
    reader.in_spec(loc, f"{count:,} cell{'s' if count > 1 else ''} in range "
                   f"{'have' if count > 1 else 'has'} no row in {source.shown}: "
                   f"{listed}{more}", "add the rows, or narrow `layers:`")


# -- values ---------------------------------------------------------------------

def _in_range(view: Panel, layer: int) -> bool:
    last = view.layers.last
    return layer >= view.layers.first and (last is None or layer <= last)


def _layer(reader: _Reader, source: Rows, origin: Origin, raw: Any, column: str) -> int | None:
    """One rule for every format: a whole number, written `12` or `12.0`."""
    number = parse_number(raw)
    value = None
    if number is not None and math.isfinite(number) and number.is_integer():
        value = int(raw) if isinstance(raw, int) else int(number)
    if value is None or value < 0:
        reader.at(origin, source.shown, f"layer {show(raw)} in column `{column}` is not a "
                  "non-negative whole number", kind="layers that are not whole numbers")
        return None
    if value > MAX_LAYER_INDEX:
        reader.at(origin, source.shown, f"layer {show(raw)} in column `{column}` is larger "
                  f"than {MAX_LAYER_INDEX:,}", kind="layers that are not whole numbers")
        return None
    return value


def _number(reader: _Reader, source: Rows, origin: Origin, raw: Any, column: str) -> float | None:
    value = parse_number(raw)
    what = None
    if value is None:
        what = "not a number"
    elif not math.isfinite(value):
        what = "not a finite number"
    elif abs(value) > LARGEST or 0 < abs(value) < SMALLEST:
        what = (f"outside what a colour scale can compute with (0, or {SMALLEST:g} to "
                f"{LARGEST:g} in size)")
    if what is not None:
        reader.at(origin, source.shown, f"value {show(raw)} in column `{column}` is {what}",
                  kind="values that are not finite numbers")
        return None
    return value


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:12])
    return shown + (", ..." if len(names) > 12 else "") if names else "(none)"
