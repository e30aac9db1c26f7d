"""``figspec table SPEC``: the cells behind a figure, as CSV, for any source:
the numbers can be published with the paper and read without a plot."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ..diagnostics import UsageError, display_path
from ..errors import OK


def table(spec: Path, *, allow_outside: bool = False) -> int:
    """One row per cell: panel (with panels), layer, module (as in the data),
    label (as drawn), value (in full, as Python's repr: round-trips)."""
    from ..builder import Options, prepare

    if not spec.is_file():
        raise UsageError(f"{display_path(spec)}: no such file")
    prepared = prepare(spec, Options(allow_outside=allow_outside))
    panels = prepared.loaded.spec.panels
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow((["panel"] if panels else []) + ["layer", "module", "label", "value"])
    for i, t in enumerate(prepared.tables):
        for layer in t.layers:
            for m in t.modules:
                out.writerow(([panels[i].title or i] if panels else []) +
                             [layer, m.name, m.shown, repr(t.values[(layer, m.name)])])
    return OK
