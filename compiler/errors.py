"""The one error handler: every command runs through :func:`run`, which maps
what it raised to an exit status.

===========================  ======  =========================================
raised                       status  shown
===========================  ======  =========================================
nothing                      (its)   the command's own exit status
FigspecError (bad input)     1       its diagnostics, ``path:line:col: ...``
UsageError (misused CLI)     2       ``figspec: error: ...``
KeyboardInterrupt, SIGTERM   130     nothing
BrokenPipeError              141     nothing (the reader went away)
anything else (a bug)        3       one line, and a log with the traceback
                                     and versions, whose path is printed
===========================  ======  =========================================
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from typing import Callable

from .diagnostics import FigspecError, UsageError, format_text

OK, INVALID, USAGE, INTERNAL, INTERRUPTED, BROKEN_PIPE = 0, 1, 2, 3, 130, 141


def run(command: Callable[[], int]) -> int:
    """Run one command and return its exit status, whatever it raises."""
    try:
        return int(command())
    except UsageError as e:
        print(f"figspec: error: {e}", file=sys.stderr)
        return USAGE
    except FigspecError as e:
        sys.stderr.write(format_text(e.diagnostics))
        return INVALID
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # `figspec compile s.yaml | head -1`: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except Exception as e:  # a bug: say so briefly, keep the details
        log = crash_log(e)
        where = f"; details in {log}" if log else ""
        print(f"figspec: internal error: {type(e).__name__}: {e}{where}; please report it",
              file=sys.stderr)
        return INTERNAL


def crash_log(error: BaseException) -> str | None:
    """Write the traceback, the command line and the versions that matter to a
    log in figspec's cache; its path, or None when it cannot be written."""
    from . import __version__, cache
    from .manifest import environment_key

    text = "".join([
        f"figspec {__version__} on Python {platform.python_version()}, {platform.platform()}\n",
        f"command: {' '.join(sys.argv)}\n",
        f"versions: {environment_key()}\n\n",
        *traceback.format_exception(error),
    ])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = cache.put(f"logs/crash-{stamp}-{os.getpid()}.log", text.encode())
    return str(path) if path else None
