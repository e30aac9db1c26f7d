"""Spec + data source -> the cell table: one finite number per (layer, module).

Every value is checked here, in Python, before anything is rendered: Vega
silently turns NaN and infinity into null and drops the cell, so a bad value
must never reach it. Problems in the data point at the data file and line;
problems with what the spec asks of the data (a module the data lacks, a
missing cell) point at the spec.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostic, FigspecError, closest, did_you_mean, display_path, unique
from .files import Stamp, looked_at, read_stamped
from .models import MAX_LAYER_INDEX, Module, Panel, Spec
from .source import Document, Loc, read_text

#: Largest data file read. Reading one costs at most ~30 times its size in
#: memory (tests/test_limits.py measures it): 1.5 GB at this limit.
MAX_DATA_BYTES = 50_000_000
#: Most layers one heatmap may draw (the grid is bounded before anything
#: proportional to it is built).
MAX_LAYERS = 10_000
SHOW_MISSING = 5
#: Problems of one kind shown one by one before the rest are summed up.
SHOW_REPEATED = 5

#: Where a row came from: a line of a data file, or a location in the spec.
Origin = int | Loc
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


@dataclass
class _Rows:
    """Rows of a data source with their origins, and the columns they have."""

    rows: list[tuple[Origin, dict[str, Any]]]
    columns: list[str]
    shown: str  # how to name the source in messages


@dataclass
class _Reader:
    view: Panel
    doc: Document
    #: where the view was written: () or ("panels", i)
    base: Loc
    root: Path | None
    allow_outside: bool
    problems: list[Diagnostic] = field(default_factory=list)
    stamps: dict[Path, Stamp] = field(default_factory=dict)
    #: problems of each kind seen, and the first of those not shown
    kinds: dict[str, tuple[int, Diagnostic | None]] = field(default_factory=dict)

    # -- where problems are reported ------------------------------------
    def at(self, origin: Origin, shown: str, message: str, hint: str | None = None,
           kind: str | None = None) -> None:
        """A problem in a row. Problems of one ``kind`` (a second row for a cell,
        say) are shown SHOW_REPEATED times, then summed up in one line."""
        if isinstance(origin, int):
            problem = Diagnostic(shown, origin, None, message, hint)
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

    # -- reading ----------------------------------------------------------
    def rows(self) -> _Rows:
        data = self.view.data
        if data.values is not None:
            rows = [(("data", "values", i), r) for i, r in enumerate(data.values)]
            columns = sorted({k for _, r in rows for k in r})
            return _Rows(rows, columns, "data.values")
        path = self.check_path(data.path or "")
        shown = display_path(path)
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet":
                rows, columns = self.parquet(path)
            else:
                text, self.stamps[path] = read_text(path, MAX_DATA_BYTES)
                if data.layout == "params" and suffix == ".json" and text.lstrip()[:1] == "{":
                    rows, columns = _json_object(text, data.param, data.value)
                else:
                    parse = {".csv": _csv, ".tsv": _tsv, ".json": _json, ".jsonl": _jsonl}[suffix]
                    rows, columns = parse(text)
        except _ParseError as e:
            raise FigspecError([Diagnostic(shown, e.line, e.column, e.message, e.hint)]) from None
        if not rows:
            raise FigspecError([Diagnostic(shown, 1, None, "the data file has no rows",
                                           "add rows, or point `data.path` at another file")])
        return _Rows(rows, columns, shown)

    def parquet(self, path: Path) -> Parsed:
        """Rows of a Parquet file (through pyarrow, the `parquet` extra); a row's
        origin is its number, counted from 1."""
        try:
            import pyarrow.parquet as pq
        except ImportError:
            self.in_spec(("data", "path"), "reading .parquet files needs pyarrow, which is not "
                         "installed", "pip install 'figspec[parquet]'")
            raise self.fail() from None
        try:
            raw, self.stamps[path] = read_stamped(path, MAX_DATA_BYTES)
        except OSError as e:
            self.in_spec(("data", "path"), f"cannot read {display_path(path)}: {e.strerror}")
            raise self.fail() from None
        try:
            table = pq.read_table(io.BytesIO(raw))
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise _ParseError(None, f"not a readable Parquet file: {e}") from None
        return [(i, r) for i, r in enumerate(table.to_pylist(), 1)], list(table.column_names)

    def check_path(self, relative: str) -> Path:
        path = (self.doc.path.parent / relative).resolve()
        looked_at(path)  # a watch retries this figure when the file appears
        if self.root is not None and not self.allow_outside and not path.is_relative_to(self.root):
            self.in_spec(("data", "path"), f"data path {relative!r} lies outside the project "
                         "(the folder holding .git, figspec.yaml or pyproject.toml)",
                         "move the file into the project, or pass --allow-outside")
            raise self.fail()
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "does not exist"
            self.in_spec(("data", "path"), f"data file {display_path(path)} {what}")
            raise self.fail()
        return path


def read_tables(doc: Document, spec: Spec, *, root: Path | None = None,
                allow_outside: bool = False) -> list[Table]:
    """One table per view (panel) of the spec, or FigspecError listing every
    problem of every view."""
    tables, problems = [], []
    for i, view in enumerate(spec.views):
        try:
            tables.append(read_table(doc, view, spec.view_loc(i), root=root,
                                     allow_outside=allow_outside))
        except FigspecError as e:
            problems += e.diagnostics
    if problems:
        raise FigspecError(unique(problems))
    return tables


def read_table(doc: Document, view: Panel, base: Loc = (), *, root: Path | None = None,
               allow_outside: bool = False) -> Table:
    """Read one view's data into a complete table, or raise FigspecError
    listing every problem found."""
    reader = _Reader(view, doc, base, root.resolve() if root else None, allow_outside)
    source = reader.rows()
    if not _check_columns(reader, source):
        raise reader.fail()
    rows = [(o, r) for o, r in source.rows if _matches(r, view.data.where)]
    if not rows and view.data.where:
        _no_row_matches(reader, source)
        raise reader.fail()
    if view.data.layout == "params":
        rows = _param_rows(reader, source, rows)
    if view.data.layout == "wide":
        cells, present = _wide_cells(reader, source, rows)
    else:
        cells, present = _long_cells(reader, source, rows)
    _check_modules(reader, source, present)
    layers = _layer_range(reader, cells)
    if layers:
        _check_complete(reader, source, cells, layers)
    if reader.problems:
        raise reader.fail()
    combine = _AGGREGATES[view.data.aggregate or "min"]  # one value per cell unless aggregating
    drawn = set(layers)
    values = {k: float(combine(vs)) for k, (vs, _) in cells.items() if k[0] in drawn}
    return Table(tuple(layers), tuple(view.modules), values, reader.stamps)


# -- checks --------------------------------------------------------------------

def _check_columns(reader: _Reader, source: _Rows) -> bool:
    data = reader.view.data
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
        any(m.name in source.columns for m in reader.view.modules)
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


def _no_row_matches(reader: _Reader, source: _Rows) -> None:
    """``where:`` left no row: say which condition, and what the column holds."""
    where = reader.view.data.where
    for col, want in where.items():
        if not any(_matches(r, {col: want}) for _, r in source.rows):
            held = sorted({_text(r.get(col)) for _, r in source.rows}, key=str)
            shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10
                                             else "")
            reader.in_spec(("data", "where", col), f"no row of {source.shown} has `{col}` "
                           f"equal to {_show(want)}; the column holds: {shown}",
                           did_you_mean(str(want), held))
            return
    reader.in_spec(("data", "where"), f"no row of {source.shown} matches all of `where:` at "
                   "once (each condition alone matches some rows)")


def _param_rows(reader: _Reader, source: _Rows, rows: list[tuple[Origin, dict[str, Any]]]
                ) -> list[tuple[Origin, dict[str, Any]]]:
    """Parameter-name rows -> long rows: the layer and module found in each name.
    Names without a layer (embeddings, lm_head, final norms) are skipped; a
    module path matches a listed module exactly or by its last dotted parts."""
    data = reader.view.data
    pattern = data.param_pattern
    names = sorted((m.name for m in reader.view.modules), key=len, reverse=True)
    out = []
    for origin, row in rows:
        m = pattern.search(_text(row.get(data.param)))
        if m is None:
            continue
        module = m.group("module")
        module = next((n for n in names if module == n or module.endswith("." + n)), module)
        out.append((origin, {data.layer: m.group("layer"), data.module: module,
                             data.value: row.get(data.value)}))
    return out


def _long_cells(reader: _Reader, source: _Rows, rows: list[tuple[Origin, dict[str, Any]]]
                ) -> tuple[Cells, set[str]]:
    data = reader.view.data
    wanted = {m.name for m in reader.view.modules}
    cells: Cells = {}
    present: set[str] = set()
    for origin, row in rows:
        module = _text(row.get(data.module))
        present.add(module)
        if module not in wanted:
            continue
        layer = _layer(reader, source, origin, row.get(data.layer), data.layer)
        if layer is None or not _in_range(reader.view, layer):
            continue
        value = _number(reader, source, origin, row.get(data.value), data.value)
        _put(reader, source, cells, (layer, module), value, origin)
    return cells, present


def _wide_cells(reader: _Reader, source: _Rows, rows: list[tuple[Origin, dict[str, Any]]]
                ) -> tuple[Cells, set[str]]:
    data = reader.view.data
    present = set(source.columns) - {data.layer} - set(data.where)
    cells: Cells = {}
    for origin, row in rows:
        layer = _layer(reader, source, origin, row.get(data.layer), data.layer)
        if layer is None or not _in_range(reader.view, layer):
            continue
        for m in reader.view.modules:
            if m.name in row:
                value = _number(reader, source, origin, row[m.name], m.name)
                _put(reader, source, cells, (layer, m.name), value, origin)
    return cells, present


def _put(reader: _Reader, source: _Rows, cells: Cells, key: tuple[int, str],
         value: float | None, origin: Origin) -> None:
    """Record a cell's value. A bad value (None, already reported) still marks
    the cell as present, so it is not reported a second time as missing."""
    value = math.nan if value is None else value
    if key not in cells:
        cells[key] = ([value], origin)
    elif reader.view.data.aggregate:
        cells[key][0].append(value)
    else:
        first = cells[key][1]
        where = f"line {first}" if isinstance(first, int) else f"record {first[-1]}"
        reader.at(origin, source.shown, f"a second row for layer {key[0]}, module `{key[1]}` "
                  f"(first at {where})", "combine them with `aggregate: mean` (or median, min, "
                  "max), or narrow the rows with `where:`", kind="second rows for a cell")


_AGGREGATES = {"mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}


def _check_modules(reader: _Reader, source: _Rows, present: set[str]) -> None:
    for i, m in enumerate(reader.view.modules):
        if m.name not in present:
            near = closest(m.name, present, n=3, cutoff=0.5)
            hint = (f"did you mean {', '.join(f'`{n}`' for n in near)}?" if near
                    else f"modules in the data: {_names(sorted(present))}")
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


def _check_complete(reader: _Reader, source: _Rows, cells: dict[tuple[int, str], Any],
                    layers: list[int]) -> None:
    present_modules = {name for _, name in cells}
    # A module that is absent altogether was already reported once. Missing
    # cells are counted, not listed: a sparse file can leave millions out.
    names = [m.name for m in reader.view.modules if m.name in present_modules]
    first, last = layers[0], layers[-1]
    wanted = set(names)
    count = len(layers) * len(names) - sum(1 for layer, name in cells
                                           if name in wanted and first <= layer <= last)
    if not count:
        return
    shown = list(itertools.islice(((layer, name) for layer in layers for name in names
                                   if (layer, name) not in cells), SHOW_MISSING))
    loc: Loc = ("data", "path") if reader.view.data.path is not None else ("data", "values")
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


#: The number syntax data files define (JSON's, and CSV's in practice): ASCII
#: digits, a point, an exponent. Python's float() also takes `0_5`, `٥` and
#: `５`, which would turn typos into data.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity",
               "-infinity"}
#: The magnitudes a value may have: Vega's colour
#: scale divides by the domain's width, which overflows past 1e300 apart and
#: loses every digit among subnormal numbers (it then draws no cell at all).
_SMALLEST, _LARGEST = 1e-300, 1e300


def parse_number(raw: Any) -> float | None:
    """A number as the data file wrote it: a JSON number, or text in the number
    syntax above (``nan``/``inf`` too, refused later as not finite); else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        try:
            return float(raw)
        except OverflowError:  # a 400-digit integer
            return math.inf
    if isinstance(raw, str):
        text = raw.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
        if text.lower() in _NON_FINITE:
            return float(text)
    return None


def _layer(reader: _Reader, source: _Rows, origin: Origin, raw: Any, column: str) -> int | None:
    """One rule for every format: a whole number, written `12` or `12.0`."""
    number = parse_number(raw)
    value = None
    if number is not None and math.isfinite(number) and number.is_integer():
        value = int(raw) if isinstance(raw, int) else int(number)
    if value is None or value < 0:
        reader.at(origin, source.shown, f"layer {_show(raw)} in column `{column}` is not a "
                  "non-negative whole number", kind="layers that are not whole numbers")
        return None
    if value > MAX_LAYER_INDEX:
        reader.at(origin, source.shown, f"layer {_show(raw)} in column `{column}` is larger "
                  f"than {MAX_LAYER_INDEX:,}", kind="layers that are not whole numbers")
        return None
    return value


def _number(reader: _Reader, source: _Rows, origin: Origin, raw: Any, column: str) -> float | None:
    value = parse_number(raw)
    what = None
    if value is None:
        what = "not a number"
    elif not math.isfinite(value):
        what = "not a finite number"
    elif abs(value) > _LARGEST or 0 < abs(value) < _SMALLEST:
        what = (f"outside what a colour scale can compute with (0, or {_SMALLEST:g} to "
                f"{_LARGEST:g} in size)")
    if what is not None:
        reader.at(origin, source.shown, f"value {_show(raw)} in column `{column}` is {what}",
                  kind="values that are not finite numbers")
        return None
    return value


def _show(raw: Any) -> str:
    return '""' if raw is None or raw == "" else json.dumps(raw, ensure_ascii=False)


def _text(raw: Any) -> str:
    if isinstance(raw, bool):
        return str(raw).lower()
    return "" if raw is None else str(raw)


def _norm(v: Any) -> str:
    """A value as compared by `where:`: "1", 1 and 1.0 are equal, so are true and "true"."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        f = parse_number(v)
        return repr(f) if f is not None and math.isfinite(f) else v.strip()
    if isinstance(v, (int, float)):
        f = parse_number(v)
        return repr(f) if f is not None and math.isfinite(f) else str(v)
    return json.dumps(v, sort_keys=True)


def _matches(row: dict[str, Any], where: dict[str, Any]) -> bool:
    return all(_norm(row.get(col)) in ({_norm(w) for w in want} if isinstance(want, list)
                                       else {_norm(want)})
               for col, want in where.items())


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:12])
    return shown + (", ..." if len(names) > 12 else "") if names else "(none)"


# -- file formats ----------------------------------------------------------------

class _ParseError(Exception):
    def __init__(self, line: int | None, message: str, hint: str | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.line, self.message, self.hint, self.column = line, message, hint, column


Parsed = tuple[list[tuple[Origin, dict[str, Any]]], list[str]]


def _csv(text: str) -> Parsed:
    return _delimited(text, ",")


def _tsv(text: str) -> Parsed:
    return _delimited(text, "\t")


def _delimited(text: str, delimiter: str) -> Parsed:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return [], []
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise _ParseError(1, f"column `{dup}` appears twice in the header")
        rows: list[tuple[Origin, dict[str, Any]]] = []
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(header):
                raise _ParseError(reader.line_num, f"row has {len(cells)} fields, the header "
                                  f"has {len(header)}")
            rows.append((reader.line_num, dict(zip(header, cells))))
    except csv.Error as e:
        raise _ParseError(reader.line_num, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}:"
                          f" {e}") from None
    return rows, header


def _jsonl(text: str) -> Parsed:
    rows: list[tuple[Origin, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise _ParseError(number, f"invalid JSON: {e.msg}", column=e.colno) from None
        except RecursionError:
            raise _ParseError(number, "JSON nested too deeply") from None
        except _DuplicateKey as e:
            raise _ParseError(number, f"key `{e}` appears twice in one record",
                              "keep one of them") from None
        rows.append((number, _record(record, number)))
        columns.update(dict.fromkeys(record))
    return rows, list(columns)


def _json(text: str) -> Parsed:
    """A JSON list of records, each with the line it starts on."""
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    try:
        pos = _skip(text, 0)
        if pos >= len(text) or text[pos] != "[":
            # Not a list: parse it all for a precise syntax error, else say what it is.
            json.loads(text)
            raise _ParseError(1, "expected a JSON list of records ([{...}, ...])")
        rows: list[tuple[Origin, dict[str, Any]]] = []
        columns: dict[str, None] = {}
        pos = _skip(text, pos + 1)
        while pos < len(text) and text[pos] != "]":
            try:
                record, end = decoder.raw_decode(text, pos)
            except _DuplicateKey as e:
                raise _ParseError(text.count("\n", 0, pos) + 1, f"key `{e}` appears twice in "
                                  "one record", "keep one of them") from None
            line = text.count("\n", 0, pos) + 1
            rows.append((line, _record(record, line)))
            columns.update(dict.fromkeys(record))
            pos = _skip(text, end)
            if pos < len(text) and text[pos] == ",":
                pos = _skip(text, pos + 1)
            elif pos < len(text) and text[pos] != "]":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        if pos >= len(text):
            raise json.JSONDecodeError("Expecting ']'", text, pos)
        if _skip(text, pos + 1) < len(text):
            raise json.JSONDecodeError("Extra data", text, _skip(text, pos + 1))
    except json.JSONDecodeError as e:
        raise _ParseError(e.lineno, f"invalid JSON: {e.msg}", column=e.colno) from None
    except RecursionError:
        raise _ParseError(1, "JSON nested too deeply") from None
    return rows, list(columns)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a key twice in one object is an error (as in
    YAML), not the last value silently kept."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json_object(text: str, key_column: str, value_column: str) -> Parsed:
    """A JSON object of parameter name -> number, each with the line of its key."""
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise _ParseError(None, f"parameter `{e}` appears twice", "keep one of them") from None
    except json.JSONDecodeError as e:
        raise _ParseError(e.lineno, f"invalid JSON: {e.msg}", column=e.colno) from None
    except RecursionError:
        raise _ParseError(1, "JSON nested too deeply") from None
    rows: list[tuple[Origin, dict[str, Any]]] = []
    pos = 0
    for key, value in obj.items():
        at = text.find(json.dumps(key), pos)  # keys appear in order; escapes may differ
        line = text.count("\n", 0, at) + 1 if at >= 0 else 1
        pos = at + 1 if at >= 0 else pos
        rows.append((line, {key_column: key, value_column: value}))
    return rows, [key_column, value_column]


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _record(record: Any, line: int) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _ParseError(line, f"expected a record ({{...}}), got {type(record).__name__}")
    return record
