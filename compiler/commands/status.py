"""``figspec status`` (and ``build --dry-run``): what a build would do, and why."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..diagnostics import display_path, format_text
from ..errors import INVALID, OK
from . import options, spec_paths

_LABELS = {"stale": "stale", "up to date": "up to date", "failed": "failing",
           "checked": "partial"}


def status(paths: Sequence[Path], *, out: Path | None = None,
           allow_outside: bool = False) -> int:
    from ..builder import status as plan

    results = plan(spec_paths(paths), options(paths, out, allow_outside=allow_outside))
    for r in results:
        why = f" ({r.reason})" if r.status != "up to date" and r.reason else ""
        print(f"{_LABELS[r.status]:<11} {display_path(r.spec)}{why}")
    for r in results:
        sys.stderr.write(format_text(r.diagnostics))
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    if notes:  # said once: a figure drawn from committed numbers, or theirs stale
        sys.stderr.write(format_text(notes))
    return INVALID if any(not r.ok for r in results) else OK
