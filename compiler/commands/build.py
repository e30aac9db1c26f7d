"""``figspec build``: the figures not up to date, with progress; ``--watch``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..diagnostics import display_path, format_text
from ..errors import INVALID, OK
from ..events import Event, FigureDone, Finished, Reduced, Sent, Waiting, Working
from . import options, spec_paths

if TYPE_CHECKING:
    from ..builder import Options
    from ..events import Result


def build(paths: Sequence[Path], *, out: Path | None = None, force: bool = False,
          jobs: int | None = None, allow_outside: bool = False, watch: bool = False,
          poll: float = 0.5, engine: str | None = None) -> int:
    from .. import builder

    opts = options(paths, out, allow_outside=allow_outside, force=force, jobs=jobs,
                   engine=engine)
    found = spec_paths(paths)
    report = Report(sys.stdout, opts)
    if not watch:
        status = OK
        for event in builder.build_events(found, opts):
            status = report(event)
        return status
    from ..watch import watch as watching

    print("watching specs and their data; Ctrl-C to stop", flush=True)
    try:
        for event in watching(found, opts, poll=poll):
            report(event)
    except KeyboardInterrupt:
        report.progress.done()
    return OK


class Report:
    """What a build's events look like on the command line: progress, then
    failures with their diagnostics, figures left behind, one summary line."""

    def __init__(self, stream: TextIO, opts: Options):
        self.progress = Progress(stream)
        self.out_dir = opts.out_dir

    def __call__(self, event: Event) -> int:
        if isinstance(event, FigureDone):
            self.progress(event.result, event.done, event.total)
        elif isinstance(event, Working):
            self.progress.working(event.spec, event.what)
        elif isinstance(event, Sent):
            self.progress.line(f"      reducing {event.total} checkpoint pair"
                               f"{'s' if event.total != 1 else ''} on the Dask cluster at "
                               f"{event.engine} ({event.workers} worker"
                               f"{'s' if event.workers != 1 else ''})")
        elif isinstance(event, Reduced):
            self.progress.line(f"      [{event.done}/{event.total}] "
                               f"{_verdict(event):<8} "
                               f"{event.what} ({_megabytes(event.nbytes)}"
                               f"{', on ' + event.worker if event.worker else ''})")
        elif isinstance(event, Finished):
            return self.finished(event.results, event.seconds)
        elif isinstance(event, Waiting):
            pass  # the summary line said what happened; the terminal stays quiet
        return OK

    def finished(self, results: list[Result], seconds: float) -> int:
        self.progress.done()
        failed = [r for r in results if not r.ok]
        for r in failed:
            sys.stderr.write(format_text(r.diagnostics))
        notes = list(dict.fromkeys(n for r in results for n in r.notes))
        if notes:
            sys.stderr.write(format_text(notes))
        report_orphans(self.out_dir)
        counts = [f"{sum(r.status == 'built' for r in results)} built",
                  f"{sum(r.status == 'up to date' for r in results)} up to date",
                  f"{len(failed)} failed"]
        print(", ".join(counts) + f" in {seconds:.1f}s", flush=True)
        return INVALID if failed else OK


def _verdict(event: Reduced) -> str:
    return "FAILED" if event.problem is not None else "left" if event.here else "reduced"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def report_orphans(out_dir: Path) -> None:
    from ..manifest import Manifest

    orphans = Manifest.load(out_dir).orphans()
    if orphans:
        names = ", ".join(display_path(p) for p in orphans)
        print(f"{len(orphans)} file{'s' if len(orphans) > 1 else ''} in "
              f"{display_path(out_dir)} belong{'s' if len(orphans) == 1 else ''} to no spec now "
              f"(deleted or renamed): {names}; `figspec clean` removes them", flush=True)


class Progress:
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

    def working(self, spec: Path, what: str) -> None:
        self.line(f"      {display_path(spec)}: {what}")

    def line(self, line: str) -> None:
        """A line of work under way, replaced by the next on a terminal."""
        self.stream.write(("\r\033[K" + line) if self.live else line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
