"""``figspec table SPEC``: the cells behind a figure, as CSV, for any source:
the numbers can be published with the paper and read without a plot."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

from ..diagnostics import UsageError, display_path
from ..errors import OK

#: What a spreadsheet takes for the start of a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def table(spec: Path, *, allow_outside: bool = False) -> int:
    """One row per cell: panel (with panels), layer, module (as in the data),
    label (as drawn), value (in full, as Python's repr: round-trips). Text
    that a spreadsheet would run as a formula is prefixed with ``'``."""
    from ..pipeline import prepare
    from ..session import Session

    if not spec.is_file():
        raise UsageError(f"{display_path(spec)}: no such file")
    prepared = prepare(spec, Session(allow_outside=allow_outside))
    named = next((t.part_columns for t in prepared.tables if t.part_columns), ())
    if named:
        return _parts_table(prepared.tables, named)
    panels = prepared.loaded.spec.panels
    _row((["panel"] if panels else []) + ["layer", "module", "label", "value"])
    for i, t in enumerate(prepared.tables):
        panel = [_text(panels[i].title) if panels[i].title else i] if panels else []
        for layer in t.layers:
            for m in t.modules:
                _row(panel + [layer, _text(m.name), _text(m.shown),
                              repr(t.values[(layer, m.name)])])
    return OK


def _parts_table(tables: list[Any], named: tuple[str, ...]) -> int:
    """Data whose source comes in parts (a run's steps): one row per part,
    layer and module, headed by the columns the source names a part with,
    whichever way the figure draws the parts (a panel each, or as columns).
    A panel of other data leaves those columns empty, and comes first."""
    cells: dict[tuple[tuple[Any, ...], int, str], tuple[Any, float]] = {}
    order: dict[str, int] = {}
    _row(list(named) + ["layer", "module", "label", "value"])
    for t in tables:
        if not t.part_columns:
            for layer in t.layers:
                for m in t.modules:
                    _row([""] * len(named) + [layer, _text(m.name), _text(m.shown),
                                              repr(t.values[(layer, m.name)])])
            continue
        for key, layer, m, value in t.by_part():
            order.setdefault(m.name, len(order))
            cells[(key, layer, m.name)] = (m, value)
    for (key, layer, name) in sorted(cells, key=lambda k: (k[0], k[1], order[k[2]])):
        m, value = cells[(key, layer, name)]
        _row([_value(v) for v in key] + [layer, _text(name), _text(m.shown), repr(value)])
    return OK


def _row(fields: list[Any]) -> None:
    """One CSV line ending in \\n. The csv module quotes a field holding a
    character of its line terminator, so it is given \\r\\n (a label holding
    a carriage return stays one quoted field), and the line's own is replaced."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\r\n").writerow(fields)
    sys.stdout.write(line.getvalue()[:-2] + "\n")


def _value(value: Any) -> Any:
    """A part's key value: a number as it is, else as text."""
    return value if isinstance(value, int) and not isinstance(value, bool) else _text(value)


def _text(value: Any) -> str:
    """A text cell as a spreadsheet shows it, never as a formula it would run
    (``=HYPERLINK(...)``, ``+SUM(1,2)``, ``@SUM(A1)``); numbers are not texts
    and are written as they are."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
