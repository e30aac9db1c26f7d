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
stdout closed or full        1       ``figspec: error: cannot write ...``
anything else (a bug)        3       one line, and a log with the traceback
                                     and versions, whose path is printed
===========================  ======  =========================================
"""

from __future__ import annotations

import errno
import io
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from .diagnostics import FigspecError, UsageError, format_text

OK, INVALID, USAGE, INTERNAL, INTERRUPTED, BROKEN_PIPE = 0, 1, 2, 3, 130, 141


def run(command: Callable[[], int]) -> int:
    """Run one command and return its exit status, whatever it raises."""
    stdout = sys.stdout
    sys.stdout = _Output(stdout)  # type: ignore[assignment]
    try:
        status = int(command())
        sys.stdout.flush()  # a full disk says so now, not as Python exits
        return status
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
        _silence_stdout()
        return BROKEN_PIPE
    except OutputError as e:
        # `figspec table s.yaml > /dev/full`, or stdout closed: the output is
        # lost, which is an error to report, not a bug.
        _silence_stdout()
        print(f"figspec: error: cannot write to standard output: {e}", file=sys.stderr)
        return INVALID
    except Exception as e:  # a bug: say so briefly, keep the details
        return _internal(e)
    finally:
        sys.stdout = stdout


def _internal(e: BaseException) -> int:
    log = crash_log(e)
    where = f"; details in {log}" if log else ""
    print(f"figspec: internal error: {type(e).__name__}: {e}{where}; please report it",
          file=sys.stderr)
    return INTERNAL


class OutputError(Exception):
    """Standard output cannot be written: full, or closed (the reason)."""


class _Output:
    """Standard output as a command sees it: a failed write (not a closed
    pipe: that stays BrokenPipeError) is an OutputError, so it is told from
    any other OSError; no standard output at all (``>&-``, where print()
    would drop the output silently) fails as a closed descriptor does."""

    def __init__(self, stream: TextIO | None):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        self._call("flush")

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def _call(self, name: str, *args: Any) -> Any:
        if self._stream is None:
            raise OutputError(os.strerror(errno.EBADF))
        try:
            return getattr(self._stream, name)(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e.strerror or str(e)) from e

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _silence_stdout() -> None:
    """Standard output points at /dev/null, so that Python's own flush as it
    exits neither fails again nor prints a second, unhelpful message."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # no descriptor (closed, or a test's capture): nothing to flush at exit
    finally:
        os.close(null)


def crash_log(error: BaseException) -> str | None:
    """Write the traceback, the command line and the versions that matter to a
    log in figspec's cache; its path, or None when it cannot be written."""
    from . import cache
    from .versions import VERSION, environment_key

    text = "".join([
        f"figspec {VERSION} on Python {platform.python_version()}, {platform.platform()}\n",
        f"command: {' '.join(sys.argv)}\n",
        f"versions: {environment_key()}\n\n",
        *traceback.format_exception(error),
    ])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = cache.put(f"logs/crash-{stamp}-{os.getpid()}.log", text.encode())
    return str(path) if path else None
