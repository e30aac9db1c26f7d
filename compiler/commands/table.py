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
    from ..builder import Options, prepare

    if not spec.is_file():
        raise UsageError(f"{display_path(spec)}: no such file")
    prepared = prepare(spec, Options(allow_outside=allow_outside))
    panels = prepared.loaded.spec.panels
    _row((["panel"] if panels else []) + ["layer", "module", "label", "value"])
    for i, t in enumerate(prepared.tables):
        panel = [_text(panels[i].title) if panels[i].title else i] if panels else []
        for layer in t.layers:
            for m in t.modules:
                _row(panel + [layer, _text(m.name), _text(m.shown),
                              repr(t.values[(layer, m.name)])])
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
