"""The one watcher: files polled (a stat per file per round: no dependency,
and cheap), for `build --watch` and `figspec serve` alike. A file's state is
its size, mtime, inode and ctime (:func:`figspec.files.file_state`); a file
a check looked at is remembered in the state it had before it was read
(:class:`figspec.files.Seen`), so an edit made while it is read is seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .builder import Options, build_events, environment
from .events import Event, Finished, Result, Waiting
from .files import file_state
from .finding import find_specs
from .manifest import Manifest


def polling(interval: float, stop: threading.Event | None = None) -> Iterator[None]:
    """Once every ``interval`` seconds, until ``stop`` is set (if given)."""
    stop = stop or threading.Event()
    while not stop.wait(interval):
        yield


def snapshot(paths: Sequence[Path], options: Options, failed: Iterable[Result] = ()
             ) -> dict[Path, tuple[int, ...]]:
    """Size, mtime, inode and ctime of every spec, every file a figure was
    built from (a checkpoint's shards too), and every file a failed figure
    looked at (so fixing its data retries it). The inode and ctime notice a
    file rewritten in place with its mtime set back."""
    files: set[Path] = set()
    for spec in find_specs(paths):
        files.add(spec.resolve())
    manifest = Manifest.load(options.out_dir)
    for spec in list(files):
        files.update(manifest.inputs_of(spec))
    for r in failed:
        files.update(r.looked_at)
    return {f: file_state(f) for f in sorted(files)}


def watch(paths: Sequence[Path], options: Options, poll: float = 0.5) -> Iterator[Event]:
    """Build, then build again whenever a spec, a file a figure was built from,
    or a file a failed figure looked at changes: the events of every build,
    and Waiting between them, for as long as the consumer takes them. Polls:
    no dependency, and cheap (a stat per file per round)."""
    while True:
        results: list[Result] = []
        for event in build_events(paths, options):
            if isinstance(event, Finished):
                results = event.results
            yield event
        failed = [r for r in results if not r.ok]
        before = snapshot(paths, options, failed)
        if _changed_during(results, options) or any(r.looked_at.changed() for r in failed):
            continue
        yield Waiting(tuple(before))
        for _ in polling(poll):
            if snapshot(paths, options, failed) != before:
                break


def _changed_during(results: list[Result], options: Options) -> bool:
    """Whether an input of a figure just built changed while it was being built
    (the manifest holds the stamps of the inputs as they were read)."""
    manifest = Manifest.load(options.out_dir)
    return any(manifest.stale_reason(r.spec, environment(r.spec)) is not None
               for r in results if r.status in ("built", "up to date"))
