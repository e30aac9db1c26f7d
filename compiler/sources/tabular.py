"""Tables in files: CSV, TSV, JSON (a list of records; with `layout: params`
also an object of parameter name to number), JSON Lines, and Parquet
(through pyarrow, the `parquet` extra). One parser per suffix, in one table;
a row's origin is its line (for Parquet, its number, counted from 1).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, FigspecError, display_path
from ..files import read_stamped
from ..yaml_reader import read_text
from . import Context, ParseError, Row, Rows, Source

#: Largest data file read. Reading one costs at most ~30 times its size in
#: memory (tests/test_limits.py measures it): 1.5 GB at this limit.
MAX_DATA_BYTES = 50_000_000


class Tabular(Source):
    """Reads ``data.path`` with the parser for its suffix."""

    at = ("data", "path")

    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        path = ctx.path(data.path or "")
        shown = display_path(path)
        suffix = path.suffix.lower()
        try:
            if suffix in _BINARY:
                rows, columns = _BINARY[suffix](ctx, path)
            else:
                text, ctx.stamps[path] = read_text(path, MAX_DATA_BYTES)
                if data.layout == "params" and suffix == ".json" and text.lstrip()[:1] == "{":
                    rows, columns = _json_object(text, data.param, data.value)
                else:
                    rows, columns = _TEXT[suffix](text)
        except ParseError as e:
            raise FigspecError([Diagnostic(shown, e.line, e.column, e.message, e.hint)]) from None
        if not rows:
            raise FigspecError([Diagnostic(shown, 1, None, "the data file has no rows",
                                           "add rows, or point `data.path` at another file")])
        return Rows(rows, columns, shown)


SOURCE = Tabular()

Parsed = tuple[list[Row], list[str]]


def _parquet(ctx: Context, path: Path) -> Parsed:
    """Rows of a Parquet file (through pyarrow, the `parquet` extra); a row's
    origin is its number, counted from 1."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ctx.error(("data", "path"), "reading .parquet files needs pyarrow, which is not "
                        "installed", "pip install 'figspec[parquet]'") from None
    try:
        raw, ctx.stamps[path] = read_stamped(path, MAX_DATA_BYTES)
    except OSError as e:
        raise ctx.error(("data", "path"), f"cannot read {display_path(path)}: "
                        f"{e.strerror or e}") from None
    try:
        table = pq.read_table(io.BytesIO(raw))
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise ParseError(None, f"not a readable Parquet file: {e}") from None
    return [(i, r) for i, r in enumerate(table.to_pylist(), 1)], list(table.column_names)


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
            raise ParseError(1, f"column `{dup}` appears twice in the header")
        rows: list[Row] = []
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(header):
                raise ParseError(reader.line_num, f"row has {len(cells)} fields, the header "
                                  f"has {len(header)}")
            rows.append((reader.line_num, dict(zip(header, cells))))
    except csv.Error as e:
        raise ParseError(reader.line_num, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}:"
                          f" {e}") from None
    return rows, header


def _jsonl(text: str) -> Parsed:
    rows: list[Row] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise ParseError(number, f"invalid JSON: {e.msg}", column=e.colno) from None
        except RecursionError:
            raise ParseError(number, "JSON nested too deeply") from None
        except _DuplicateKey as e:
            raise ParseError(number, f"key `{e}` appears twice in one record",
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
            raise ParseError(1, "expected a JSON list of records ([{...}, ...])")
        rows: list[Row] = []
        columns: dict[str, None] = {}
        pos = _skip(text, pos + 1)
        while pos < len(text) and text[pos] != "]":
            try:
                record, end = decoder.raw_decode(text, pos)
            except _DuplicateKey as e:
                raise ParseError(text.count("\n", 0, pos) + 1, f"key `{e}` appears twice in "
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
        raise ParseError(e.lineno, f"invalid JSON: {e.msg}", column=e.colno) from None
    except RecursionError:
        raise ParseError(1, "JSON nested too deeply") from None
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
        raise ParseError(None, f"parameter `{e}` appears twice", "keep one of them") from None
    except json.JSONDecodeError as e:
        raise ParseError(e.lineno, f"invalid JSON: {e.msg}", column=e.colno) from None
    except RecursionError:
        raise ParseError(1, "JSON nested too deeply") from None
    rows: list[Row] = []
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
        raise ParseError(line, f"expected a record ({{...}}), got {type(record).__name__}")
    return record


#: Parsers of text files, by suffix; of binary ones (which read the file themselves).
_TEXT: dict[str, Callable[[str], Parsed]] = {".csv": _csv, ".tsv": _tsv, ".json": _json,
                                             ".jsonl": _jsonl}
_BINARY: dict[str, Callable[[Context, Path], Parsed]] = {".parquet": _parquet}
