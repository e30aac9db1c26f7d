"""The command line: argument parsing, and the one place that maps errors to
exit statuses (0 success, 1 invalid input, 2 misused command line)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TextIO

from . import __version__
from .diagnostics import FigspecError, UsageError, display_path, format_json, format_text

if TYPE_CHECKING:
    from .builder import Options, Result
    from .project import Project

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a build as Ctrl-C does
    if not getattr(args, "command", None):
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as e:
        print(f"figspec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FigspecError as e:
        sys.stderr.write(format_text(e.diagnostics))
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`figspec compile s.yaml | head -1`): stop
        # quietly, as Unix tools do, with the status of a SIGPIPE death.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="figspec", description="Compile YAML heatmap specs into "
                                "SVG, PNG, PDF and HTML figures.")
    p.add_argument("--version", action="version", version=f"figspec {__version__}")
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
    _outside(b)
    b.set_defaults(run=cmd_build)

    st = sub.add_parser("status", help="list each figure as up to date, stale (and why) "
                        "or failing")
    _paths(st)
    _out(st)
    _outside(st)
    st.set_defaults(run=cmd_status, force=False)

    c = sub.add_parser("check", help="validate specs and their data without rendering")
    _paths(c)
    c.add_argument("--format", choices=("text", "json"), default="text",
                   help="how diagnostics are printed (default: text)")
    _outside(c)
    c.set_defaults(run=cmd_check)

    k = sub.add_parser("compile", help="print a spec's Vega-Lite JSON (data inline)")
    k.add_argument("spec", type=Path, metavar="SPEC")
    _outside(k)
    k.set_defaults(run=cmd_compile)

    s = sub.add_parser("schema", help="print the JSON Schema of a spec")
    s.set_defaults(run=cmd_schema)

    cl = sub.add_parser("clean", help="remove figures of specs that were deleted or renamed "
                        "(only files figspec wrote, unchanged since)")
    _out(cl)
    cl.set_defaults(run=cmd_clean, paths=[])
    return p


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


def _outside(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-outside", action="store_true",
                   help="let specs read data files outside their project")


def _project(args: argparse.Namespace) -> Project:
    """The command's project: that of the first PATH, else of the working directory."""
    from .project import of_command

    return of_command(list(getattr(args, "paths", None) or []))


def _spec_paths(args: argparse.Namespace) -> list[Path]:
    if args.paths:
        return list(args.paths)
    return [Path(display_path(_project(args).specs_dir))]


def cmd_check(args: argparse.Namespace) -> int:
    from .builder import Options, check

    results = check(_spec_paths(args), Options(allow_outside=args.allow_outside))
    # A mistake inherited by several specs (in figspec.yaml, say) is shown once.
    problems = list({d.format(): d for r in results for d in r.diagnostics}.values())
    if args.format == "json":
        sys.stdout.write(format_json(problems))
    else:
        sys.stderr.write(format_text(problems))
    return EXIT_INVALID if problems else EXIT_OK


def _options(args: argparse.Namespace) -> Options:
    from .builder import Options

    out = args.out or Path(display_path(_project(args).out_dir))
    return Options(out_dir=out, allow_outside=args.allow_outside,
                   force=getattr(args, "force", False), jobs=getattr(args, "jobs", None))


def cmd_build(args: argparse.Namespace) -> int:
    if args.dry_run:
        return cmd_status(args)
    from .builder import build, watch

    progress = _Progress(sys.stdout)
    if args.watch:
        print("watching specs and their data; Ctrl-C to stop", flush=True)
        try:
            options = _options(args)
            watch(_spec_paths(args), options,
                  lambda rs: _report(rs, progress, None, options.out_dir), progress,
                  poll=args.poll)
        except KeyboardInterrupt:
            progress.done()
        return EXIT_OK
    start = time.perf_counter()
    options = _options(args)
    results = build(_spec_paths(args), options, progress=progress)
    return _report(results, progress, start, options.out_dir)


def _report(results: list[Result], progress: _Progress, start: float | None,
            out_dir: Path | None = None) -> int:
    """Failures with their diagnostics, figures left behind, then one summary line."""
    progress.done()
    failed = [r for r in results if not r.ok]
    for r in failed:
        sys.stderr.write(format_text(r.diagnostics))
    if out_dir is not None:
        _report_orphans(out_dir)
    counts = [f"{sum(r.status == 'built' for r in results)} built",
              f"{sum(r.status == 'up to date' for r in results)} up to date",
              f"{len(failed)} failed"]
    took = f" in {time.perf_counter() - start:.1f}s" if start is not None else ""
    print(", ".join(counts) + took, flush=True)
    return EXIT_INVALID if failed else EXIT_OK


def _report_orphans(out_dir: Path) -> None:
    from .manifest import Manifest

    orphans = Manifest.load(out_dir).orphans()
    if orphans:
        names = ", ".join(display_path(p) for p in orphans)
        print(f"{len(orphans)} file{'s' if len(orphans) > 1 else ''} in "
              f"{display_path(out_dir)} belong{'s' if len(orphans) == 1 else ''} to no spec now "
              f"(deleted or renamed): {names}; `figspec clean` removes them", flush=True)


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove what figspec wrote for specs that are gone: its manifest says
    which files; a file edited since it was written is kept."""
    from .manifest import Manifest

    out_dir = args.out or Path(display_path(_project(args).out_dir))
    manifest = Manifest.load(out_dir)
    removed, kept = manifest.clean()
    manifest.save()
    for p in removed:
        print(f"removed {display_path(p)}")
    for p in kept:
        print(f"kept    {display_path(p)} (edited since figspec wrote it)")
    print(f"{len(removed)} removed, {len(kept)} kept")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .builder import status

    results = status(_spec_paths(args), _options(args))
    for r in results:
        label = {"stale": "stale", "up to date": "up to date", "failed": "failing"}[r.status]
        why = f" ({r.reason})" if r.status != "up to date" and r.reason else ""
        print(f"{label:<11} {display_path(r.spec)}{why}")
    for r in results:
        sys.stderr.write(format_text(r.diagnostics))
    return EXIT_INVALID if any(not r.ok for r in results) else EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from .builder import Options, compile_spec

    if not args.spec.is_file():
        raise UsageError(f"{display_path(args.spec)}: no such file")
    vl = compile_spec(args.spec, Options(allow_outside=args.allow_outside))
    json.dump(vl, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from .models import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return EXIT_OK


class _Progress:
    """A live counter on a terminal; one plain line per figure elsewhere (CI, pipes)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.live = stream.isatty()

    def __call__(self, result: Result, done: int, total: int) -> None:
        what = {"built": "built", "failed": "FAILED"}.get(result.status, result.status)
        line = f"[{done}/{total}] {what:<10} {display_path(result.spec)}"
        if self.live:
            self.stream.write("\r\033[K" + line)
        elif result.status != "up to date":  # a no-op build stays quiet in logs
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
