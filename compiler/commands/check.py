"""``figspec check``: every problem of every spec, as a compiler reports them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..diagnostics import Diagnostic, display_path, render, unique
from ..errors import INVALID, OK
from . import spec_paths


def check(paths: Sequence[Path], *, format: str = "text", allow_outside: bool = False) -> int:
    from ..builder import Options
    from ..builder import check as run

    results = run(spec_paths(paths), Options(allow_outside=allow_outside))
    # A mistake inherited by several specs (in figspec.yaml, say) is shown once.
    problems = unique(d for r in results for d in r.diagnostics)
    notes = unique(n for r in results for n in r.notes)
    notes += _unchecked_values([r.spec for r in results if r.values_unchecked])
    # Machine-read formats go to stdout; a person reads the others on stderr.
    stream = sys.stderr if format in ("text", "full") else sys.stdout
    stream.write(render(problems + notes, format))
    return INVALID if problems else OK


def _unchecked_values(specs: list[Path]) -> list[Diagnostic]:
    """Said once: checkpoint values that only a build computes were not checked."""
    if not specs:
        return []
    what = (display_path(specs[0]) if len(specs) == 1 else
            f"{display_path(specs[0])} and {len(specs) - 1} more")
    return [Diagnostic(what, severity="note", message=(
        "checkpoint metrics not computed yet, so what depends on the values (the colour "
        "domain, annotations) was not checked"), hint=(
        "`figspec build` (or `figspec table SPEC`) computes and caches them; `figspec check` "
        "then checks the values too"))]
