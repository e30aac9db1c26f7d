"""The command line: argument parsing only. Each command is a function in
:mod:`figspec.commands`; :func:`figspec.errors.run` maps what it raises to
an exit status."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .errors import INTERRUPTED, USAGE, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_usage(sys.stderr)
        return USAGE
    if args.verbose:
        _log_to_stderr()
    if threading.current_thread() is not threading.main_thread():
        return run(lambda: args.run(args))
    # `kill` stops a build as Ctrl-C does, for this call only: a program
    # calling main() keeps its own handler afterwards.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(lambda: args.run(args))
    finally:
        if previous is not None:  # None: a handler set outside Python, not ours to restore
            signal.signal(signal.SIGTERM, previous)


def entry() -> NoReturn:
    """The `figspec` command and `python -m figspec`: :func:`main`, then the
    process ends (:func:`end`). Only these call it: a program calling
    :func:`main` gets its status back and keeps its interpreter."""
    end(main())


#: Modules whose presence says a checkpoint was reduced in this process.
_KERNEL = frozenset({"numba", "figspec.sources.kernel"})


def end(status: int) -> NoReturn:
    """End the command's process with ``status``. Where a checkpoint was
    reduced (figspec's kernel loaded: numba's, or the C kernel, with numpy),
    the interpreter's own exit would spend 0.07-0.5 s tearing down numba's
    and llvmlite's compiled code, or numpy's and the kernel's; so, once stdout and
    stderr are flushed, every atexit handler has run (temporary files, the
    multiprocessing machinery) and no other thread is left working, the
    process ends at once (``os._exit``). An interrupted command (Ctrl-C,
    SIGTERM) ends so too, whatever threads are left once they have had
    :data:`GRACE` seconds to end: the interpreter's exit would join the
    drawing pool's manager thread, which waits forever for the rest of a
    result that a worker killed mid-write never sends (its workers end with
    this process). Otherwise, or where flushing fails (a
    closed pipe: the interpreter reports it), it exits as usual."""
    if status != INTERRUPTED and (not _KERNEL.intersection(sys.modules) or _others_running()):
        sys.exit(status)
    if status == INTERRUPTED:
        _let_others_finish(GRACE)
    import atexit

    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        atexit._clear()  # run once, even if the usual exit follows
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - the usual exit says what went wrong
        sys.exit(status)
    os._exit(status)


#: Seconds an interrupted command gives the threads still working to end.
GRACE = 2.0


def _let_others_finish(seconds: float) -> None:
    """Wait up to ``seconds`` in all for the other threads still working: the
    drawing pool's manager thread marks its figures failed and closes its
    queues as its killed workers end, and the atexit handlers run after it
    would close them under it (a traceback from that thread). One blocked
    forever is waited for no longer; a second interruption stops the wait."""
    deadline = time.monotonic() + seconds
    try:
        for t in threading.enumerate():
            # is_alive: a thread still starting is listed, and cannot be joined
            if t is not threading.current_thread() and not t.daemon and t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass


def _others_running() -> bool:
    """Whether a thread other than this one would keep the process alive."""
    return any(t is not threading.current_thread() and not t.daemon and t.is_alive()
               for t in threading.enumerate())


def _log_to_stderr() -> None:
    """--verbose: figspec's log (the "figspec" logger, silent unless a
    program configures it) on stderr. Only the command line does this: a
    library user's logging is left as it is."""
    import logging

    class ToStderr(logging.Handler):
        """Writes to sys.stderr as it is when a line is logged."""

        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
            except Exception:  # pragma: no cover - a closed stderr
                self.handleError(record)

    log = logging.getLogger("figspec")
    if not any(type(h).__name__ == "ToStderr" for h in log.handlers):  # main() again
        handler = ToStderr()
        handler.setFormatter(logging.Formatter("figspec: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _command(module: str, name: str, *params: str) -> Callable[[argparse.Namespace], int]:
    """The parsed arguments ``params`` passed to ``figspec.commands.<module>.<name>``,
    imported only when that command runs."""
    def call(args: argparse.Namespace) -> int:
        import importlib

        function = getattr(importlib.import_module(f"{__package__}.commands.{module}"), name)
        positional = [getattr(args, p) for p in params if p in ("paths", "spec", "args")]
        keywords = {p: getattr(args, p) for p in params if p not in ("paths", "spec", "args")}
        return int(function(*positional, **keywords))

    return call


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="figspec", description="Compile YAML heatmap specs into "
                                "SVG, PNG, PDF and HTML figures.")
    p.add_argument("--version", action="version", version=f"figspec {__version__}")
    _verbose(p, default=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    b = sub.add_parser("build", help="render the figures that are not up to date")
    _paths(b)
    _out(b)
    b.add_argument("--force", action="store_true", help="rebuild every figure")
    b.add_argument("--jobs", "-j", type=_positive, default=None, metavar="N",
                   help="worker processes for drawing (default: one per CPU)")
    b.add_argument("--dry-run", action="store_true",
                   help="say what would be built, and why, without building (as `status`)")
    b.add_argument("--watch", action="store_true",
                   help="rebuild whenever a spec or a data file changes, until interrupted")
    b.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    b.add_argument("--engine", type=_engine, default=None, metavar="ADDRESS",
                   help="reduce checkpoints on a Dask cluster: its scheduler's address "
                   "(tcp://host:8786), a task per checkpoint pair; `local`: this machine's "
                   "cores (default: figspec.yaml's `engine`, else local)")
    _outside(b)
    _verbose(b)
    b.set_defaults(run=_build)

    st = sub.add_parser("status", help="list each figure as up to date, stale (and why) "
                        "or failing")
    _paths(st)
    _out(st)
    _outside(st)
    _verbose(st)
    st.set_defaults(run=_command("status", "status", "paths", "out", "allow_outside"))

    c = sub.add_parser("check", help="validate specs and their data without rendering")
    _paths(c)
    c.add_argument("--format", choices=("text", "full", "json", "markdown", "github"),
                   default="text", help="how diagnostics are printed: text (one line each, "
                   "the default), full (with the source line and a caret), json, markdown, "
                   "github (workflow annotations)")
    _outside(c)
    _verbose(c)
    c.set_defaults(run=_command("check", "check", "paths", "format", "allow_outside"))

    k = sub.add_parser("compile", help="print a spec's Vega-Lite JSON (data inline)")
    k.add_argument("spec", type=Path, metavar="SPEC")
    _outside(k)
    _verbose(k)
    k.set_defaults(run=_command("compile", "compile_", "spec", "allow_outside"))

    t = sub.add_parser("table", help="print the cells behind a figure as CSV (layer, module, "
                       "label, value)")
    t.add_argument("spec", type=Path, metavar="SPEC")
    _outside(t)
    _verbose(t)
    t.set_defaults(run=_command("table", "table", "spec", "allow_outside"))

    d = sub.add_parser("diff", help="which figures a change altered, and how (cells, labels, "
                       "domain...), across git revisions")
    d.add_argument("args", nargs="*", metavar="[REV [REV2]] [PATH ...]",
                   help="revisions (default: HEAD against the working tree), then specs")
    d.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where images and index.html go (default: the out dir's diff/)")
    d.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    d.add_argument("--image-url", metavar="URL", default=None,
                   help="markdown: link images under URL, where the review folder is "
                   "published (default: their paths from the repository's root)")
    d.add_argument("--exit-code", action="store_true",
                   help="exit 1 when any figure differs, as git diff --exit-code")
    _outside(d)
    _verbose(d)
    d.set_defaults(run=_command("diff", "diff", "args", "out", "format", "exit_code",
                                "allow_outside", "image_url"))

    v = sub.add_parser("serve", help="a live preview in the browser, redrawn as specs and "
                       "data change")
    _paths(v)
    v.add_argument("--port", type=_port, default=8765,
                   help="0 picks a free port (default 8765)")
    v.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only)")
    v.add_argument("--open", action="store_true", help="open the page in a browser")
    _outside(v)
    _verbose(v)
    v.set_defaults(run=_command("serve", "serve", "paths", "host", "port", "open",
                                "allow_outside"))

    s = sub.add_parser("schema", help="print the JSON Schema of a spec")
    _verbose(s)
    s.set_defaults(run=_command("schema", "schema"))

    cl = sub.add_parser("clean", help="remove figures of specs that were deleted or renamed "
                        "(only files figspec wrote, unchanged since)")
    _out(cl)
    _verbose(cl)
    cl.set_defaults(run=_command("clean", "clean", "out"))
    return p


def _build(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _command("status", "status", "paths", "out", "allow_outside")(args)
    return _command("build", "build", "paths", "out", "force", "jobs", "allow_outside",
                    "watch", "poll", "engine")(args)


def _verbose(p: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """--verbose before or after the command (a subcommand's default leaves
    the top level's value alone)."""
    p.add_argument("--verbose", "-v", action="store_true", default=default,
                   help="say more on stderr: which checkpoint kernel computes metrics")


def _paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="spec files, or folders searched for *.yaml/*.yml (default: specs/)")


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where figures are written (default: figspec.yaml's `out`, else out/)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def _engine(text: str) -> str:
    from .session import ENGINE

    if not ENGINE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a Dask scheduler's address "
                                         f"(tcp://host:8786) or `local`, got {text!r}")
    return text


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535 (0: any free "
                                         f"one), got {text!r}")
    return n


def _outside(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-outside", action="store_true",
                   help="let specs read data files outside their project")


if __name__ == "__main__":  # pragma: no cover
    entry()
