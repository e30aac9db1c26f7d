"""``figspec compile SPEC``: the spec's Vega-Lite, data inline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..diagnostics import UsageError, display_path
from ..errors import OK


def compile_(spec: Path, *, allow_outside: bool = False) -> int:
    from ..builder import Options, compile_spec

    if not spec.is_file():
        raise UsageError(f"{display_path(spec)}: no such file")
    vl = compile_spec(spec, Options(allow_outside=allow_outside))
    json.dump(vl, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return OK
