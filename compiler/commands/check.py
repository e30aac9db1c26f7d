"""``figspec check``: every problem of every spec, as a compiler reports them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ..diagnostics import format_json, format_text, unique
from ..errors import INVALID, OK
from . import spec_paths


def check(paths: Sequence[Path], *, format: str = "text", allow_outside: bool = False) -> int:
    from ..builder import Options, check as run

    results = run(spec_paths(paths), Options(allow_outside=allow_outside))
    # A mistake inherited by several specs (in figspec.yaml, say) is shown once.
    problems = unique(d for r in results for d in r.diagnostics)
    if format == "json":
        sys.stdout.write(format_json(problems))
    else:
        sys.stderr.write(format_text(problems))
    return INVALID if problems else OK
