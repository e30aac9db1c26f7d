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
    if any(t.step or t.module for t in prepared.tables):
        return _run_table(prepared.tables)
    panels = prepared.loaded.spec.panels
    _row((["panel"] if panels else []) + ["layer", "module", "label", "value"])
    for i, t in enumerate(prepared.tables):
        panel = [_text(panels[i].title) if panels[i].title else i] if panels else []
        for layer in t.layers:
            for m in t.modules:
                _row(panel + [layer, _text(m.name), _text(m.shown),
                              repr(t.values[(layer, m.name)])])
    return OK


def _run_table(tables: list[Any]) -> int:
    """A run's checkpoints: one row per step, layer and module, with the step
    and the checkpoint (its path as the spec writes it), whichever way the
    figure draws them (`x: module` or `x: step`)."""
    cells: dict[tuple[int, int, str], tuple[str, Any, float]] = {}
    order: dict[str, int] = {}
    _row(["step", "checkpoint", "layer", "module", "label", "value"])
    for t in tables:
        if t.module is None and t.step is None:  # a panel of other data: no step
            for layer in t.layers:
                for m in t.modules:
                    _row(["", "", layer, _text(m.name), _text(m.shown),
                          repr(t.values[(layer, m.name)])])
        elif t.module is not None:  # x: step: the columns are steps
            order.setdefault(t.module.name, len(order))
            for column, (step, written) in t.steps.items():
                for layer in t.layers:
                    cells[(step, layer, t.module.name)] = (written, t.module,
                                                           t.values[(layer, column)])
        else:
            step, written = t.step
            for m in t.modules:
                order.setdefault(m.name, len(order))
                for layer in t.layers:
                    cells[(step, layer, m.name)] = (written, m, t.values[(layer, m.name)])
    for (step, layer, name) in sorted(cells, key=lambda k: (k[0], k[1], order[k[2]])):
        written, m, value = cells[(step, layer, name)]
        _row([step, _text(written), layer, _text(name), _text(m.shown), repr(value)])
    return OK


def _row(fields: list[Any]) -> None:
    """One CSV line ending in \\n. The csv module quotes a field holding a
    character of its line terminator, so it is given \\r\\n (a label holding
    a carriage return stays one quoted field), and the line's own is replaced."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\r\n").writerow(fields)
    sys.stdout.write(line.getvalue()[:-2] + "\n")


def _text(value: Any) -> str:
    """A text cell as a spreadsheet shows it, never as a formula it would run
    (``=HYPERLINK(...)``, ``+SUM(1,2)``, ``@SUM(A1)``); numbers are not texts
    and are written as they are."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
