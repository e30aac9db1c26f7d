"""``figspec serve``: a live preview that redraws as you save a spec."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import OK
from . import spec_paths


def serve(paths: Sequence[Path], *, host: str = "127.0.0.1", port: int = 8765,
          open: bool = False, allow_outside: bool = False) -> int:
    from .. import serve as server

    def announce(url: str) -> None:
        print(url, flush=True)  # first on stdout, for scripts and tests
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"figspec: warning: serving on {host}: anyone who can reach this machine "
                  "sees the figures", file=sys.stderr, flush=True)
        if open:
            import webbrowser

            webbrowser.open(url)

    try:
        server.serve(spec_paths(paths), host, port, allow_outside, announce)
    except KeyboardInterrupt:
        pass
    return OK
