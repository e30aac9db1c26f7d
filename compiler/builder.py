"""What `build`, `check` and `status` do with many specs: check them through
the pipeline (:mod:`figspec.pipeline`), plan what is stale, draw in the
worker pool, write the files, and return what happened. Nothing here prints.

A build is incremental: the manifest in the out dir says which figures are
up to date, and only the others are checked and drawn. Drawing happens in
worker processes when more than one figure needs it. Heavy modules (pydantic
through ``spec``/``cells``, Altair and vl-convert through ``chart``/``render``)
are imported only when something must be checked or drawn, so a no-op build
loads none of them.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostic, FigspecError, display_path
from .events import Event, FigureDone, Finished, Reduced, Result, Sent, Started, Working
from .files import Stamp, recording, sweep_temporaries, write_together
from .finding import SPEC_SUFFIXES, Unreadable, find_specs, is_partial
from .manifest import Manifest
from .pipeline import check_partial, failure, prepare, render_job
from .render import Drawing
from .session import Session
from .versions import environment_key
from .workers import Drawer


@dataclass(frozen=True)
class Options:
    out_dir: Path = Path("out")
    allow_outside: bool = False
    force: bool = False
    #: worker processes for drawing; None: one per CPU
    jobs: int | None = None
    #: False for `check`: sources read what is cheap (a checkpoint's headers)
    #: and no metric is computed
    compute: bool = True
    #: where a build reduces checkpoints: None (or "local"), this process's
    #: threads; a Dask scheduler's address, that cluster (figspec.engine)
    engine: str | None = None


# -- checking ---------------------------------------------------------------------

def check(paths: Sequence[Path], options: Options = Options()) -> list[Result]:
    """Validate specs and their data without rendering."""
    session = _session(options, compute=False)
    specs, unreadable = _find([p for p in paths if not _is_input(p)])
    results = [_check_one(p, options, session) for p in specs]
    inputs = [p for p in paths if _is_input(p) or (p.is_file() and is_partial(p))]
    if inputs:
        results += _readers_of(inputs, {r.spec.resolve() for r in results}, options, session)
    _check_unique_names(results + _others_names(results))
    return unreadable + results


def _find(paths: Sequence[Path]) -> tuple[list[Path], list[Result]]:
    """The specs to work on, and a failed Result per folder that cannot be read."""
    unreadable: list[Unreadable] = []
    specs = find_specs(paths, unreadable)
    return specs, [Result(p, "failed", diagnostics=[d]) for p, d in unreadable]


def _is_input(path: Path) -> bool:
    """A file named to `check` that is not a spec: a data file, a checkpoint's
    index or shard, figspec.yaml. `check` then checks the specs reading it
    (what a pre-commit hook passes when such a file is staged)."""
    from .project import FILENAME

    return path.is_file() and (path.suffix not in SPEC_SUFFIXES or path.name == FILENAME)


def _readers_of(inputs: list[Path], done: set[Path], options: Options, session: Session
                ) -> list[Result]:
    """The specs of the inputs' projects that read one of them (or inherit it,
    or are governed by it), checked."""
    from . import project

    wanted = {p.resolve() for p in inputs}
    folders = {project.of(p).specs_dir for p in inputs}
    results = []
    for spec in find_specs(sorted(f for f in folders if f.is_dir())):
        if spec.resolve() in done:
            continue
        r = _check_one(spec, options, session)
        settings = project.of(spec).settings
        read = {f.resolve() for f in r.looked_at} | (
            {settings.path.resolve()} if settings else set())
        if read & wanted:
            results.append(r)
    return results


def _check_one(path: Path, options: Options, session: Session, reason: str | None = None
               ) -> Result:
    start = time.perf_counter()
    session.beside.pop(path, None)  # checked again: what it writes is what this read says
    with recording() as seen:
        try:
            if is_partial(path):  # named on the command line: no figure of its own
                check_partial(path)
                return Result(path, "checked", reason=reason, looked_at=seen,
                              seconds=time.perf_counter() - start)
            prepared = prepare(path, session)
        except FigspecError as e:
            return Result(path, "failed", diagnostics=e.diagnostics, reason=reason,
                          seconds=time.perf_counter() - start, looked_at=seen,
                          notes=session.notes.get(path, []))
    return Result(path, "checked", name=prepared.loaded.name, reason=reason,
                  seconds=time.perf_counter() - start, prepared=prepared, looked_at=seen,
                  values_unchecked=prepared.loaded.path in session.unchecked,
                  notes=session.notes.get(path, []), beside=_beside(session, path))


def _beside(session: Session, path: Path) -> dict[Path, bytes]:
    """What the spec's sources write beside it when its figure is built."""
    out = {}
    for target, made in session.beside.get(path, {}).items():
        content = made.content()
        if content is not None:
            out[target] = content
    return out


def _check_unique_names(results: Iterable[Result]) -> None:
    """Two specs writing the same output file: an error in the one just checked
    (up-to-date figures were checked before, and carry no document)."""
    first: dict[str, Result] = {}
    for r in results:
        if r.name is None or not r.ok:
            continue
        if r.name not in first:
            first[r.name] = r
            continue
        other = first[r.name]
        culprit, kept = (r, other) if r.prepared is not None else (other, r)
        if culprit.prepared is None:
            continue  # both up to date: the clash was reported when one was built
        culprit.status = "failed"
        culprit.diagnostics.append(culprit.prepared.loaded.doc.diagnostic(
            ("output", "name"), f"output name `{r.name}` is also used by "
            f"{display_path(kept.spec)}", "give each spec its own `output.name`"))
        first[r.name] = kept


def _others_names(done: list[Result], checked: Iterable[Path] | None = None) -> list[Result]:
    """The other specs of the projects of the specs checked (``checked``:
    those, where their Results no longer say), each with the name it writes,
    read cheaply (no data, no validation): checked alone (as the pre-commit
    hook checks the staged files), a spec renamed onto the name another spec
    writes is refused, as checking both would refuse it."""
    # Only where a spec was checked now: a no-op build reads nothing more.
    if checked is None:
        checked = [r.spec for r in done if r.prepared is not None and r.ok]
    return _names_in(checked, {r.spec.resolve() for r in done})


def _names_in(checked: Iterable[Path], seen: set[Path]) -> list[Result]:
    """Every spec of the projects of ``checked`` but those ``seen``
    (resolved), with the name it writes."""
    from . import project

    folders = {project.of(s).specs_dir for s in checked}
    others = []
    for spec in find_specs(sorted(f for f in folders if f.is_dir())):
        if spec.resolve() in seen or is_partial(spec):
            continue
        name = _written_name(spec)
        if name is not None:
            others.append(Result(spec, "up to date", name=name))
    return others


def _written_name(spec: Path) -> str | None:
    """The base name of a spec's files: its `output.name` (written or
    inherited), else its file's stem; None where it cannot be read (its own
    check says why)."""
    from .pipeline import load

    try:
        data = load(spec).data
    except FigspecError:
        return None
    output = data.get("output") if isinstance(data, dict) else None
    name = output.get("name") if isinstance(output, dict) else None
    if name is None:
        return spec.stem
    return name if isinstance(name, str) else None


# -- planning ---------------------------------------------------------------------

def environment(spec: Path) -> str:
    """Versions that shape every figure, and which figspec.yaml applies to the
    spec: adding or removing one changes its figures (editing one is caught by
    its stamp)."""
    from . import project

    return f"{environment_key()}|project={project.of(spec).settings_key}"


def _reasons(specs: list[Path], manifest: Manifest, options: Options) -> dict[Path, str | None]:
    """Why each spec's figure must be rebuilt; None for those up to date."""
    return {s: "--force" if options.force else manifest.stale_reason(s, environment(s))
            for s in specs}


def plan(paths: Sequence[Path], options: Options = Options()) -> tuple[list[Result], Manifest]:
    """Each spec as up to date, or checked / failed with the reason it is stale."""
    manifest = Manifest.load(options.out_dir)
    specs, unreadable = _find(paths)
    session = _session(options, compute=options.compute)
    results = [Result(s, "up to date", name=manifest.name_of(s)) if reason is None
               else _check_one(s, options, session, reason)
               for s, reason in _reasons(specs, manifest, options).items()]
    _check_unique_names(results)
    return unreadable + results, manifest


def status(paths: Sequence[Path], options: Options = Options()) -> list[Result]:
    """What a build would do, without drawing: up to date, stale (and why), failed.
    Cheap, as `check` is: no checkpoint metric is computed."""
    results, manifest = plan(paths, _replace(options, compute=False))
    for r in results:
        if r.status == "checked":
            r.status = "stale"
    manifest.save(refresh_only=True)
    return results


# -- building ---------------------------------------------------------------------

def build(paths: Sequence[Path], options: Options = Options()) -> list[Result]:
    """Draw and write every figure that is not up to date; keep going past
    failures. One Result per spec (and per unreadable folder)."""
    for event in build_events(paths, options):
        if isinstance(event, Finished):
            return event.results
    raise AssertionError("a build always finishes")  # pragma: no cover


def build_events(paths: Sequence[Path], options: Options = Options()) -> Iterator[Event]:
    """The build as events: Started, a FigureDone per spec as it is done,
    Finished. Closing the iterator early stops the build (its workers too).

    Stale specs are checked here one by one and each valid one goes to the
    drawing workers at once, so drawing overlaps checking. A figure whose
    output name no other spec claims (names read cheaply first) is written
    as soon as it is drawn, and then let go: the build's memory does not
    grow with its specs. One whose name another spec claims too is written
    only after every spec was checked: a clash of output names, found then,
    must not overwrite anything."""
    start = time.perf_counter()
    manifest = Manifest.load(options.out_dir)
    sweep_temporaries(options.out_dir)
    specs, unreadable = _find(paths)
    reasons = _reasons(specs, manifest, options)
    results = {s: Result(s, "up to date", name=manifest.name_of(s)) for s in specs
               if reasons[s] is None}
    stale = [s for s in specs if reasons[s] is not None]
    count = _Count(len(specs) + len(unreadable))
    yield Started(count.total)
    for r in [*unreadable, *results.values()]:
        yield count.done(r)
    saver = _Saver(manifest)
    # A figure whose name no other spec claims is written as soon as it is
    # drawn (no clash found later can concern it), and the build waits for
    # its drawing workers to keep up: its memory is bounded, not the sum of
    # every figure's state. The others wait for every spec to be checked.
    alone = _claimed_once(stale, results, specs)
    held: list[tuple[Result, Drawing]] = []
    sent: set[Path] = set()

    def take(drawn: Iterable[tuple[Result, Drawing]], early: bool) -> Iterator[Event]:
        for r, drawing in drawn:
            if early and (r.name is None or alone.get(r.name) != r.spec):
                held.append((r, drawing))
                continue
            _finish(r, drawing, options, manifest, saver)
            yield count.done(r)

    with Drawer(options.jobs, len(stale)) as drawer:
        window = 2 * drawer.jobs

        def send(r: Result) -> Iterator[Event]:
            assert r.prepared is not None
            drawer.submit(r, render_job(r.prepared))
            sent.add(r.spec)
            yield from take(drawer.finished(window), early=True)

        # Specs are checked cheaply first (a checkpoint's headers, not its
        # metrics), so that every figure has said what it wants of each
        # checkpoint pair before one is read: a pair is then read once for all.
        session, costly = _session(options, compute=False), []
        session.engine = options.engine if options.engine != "local" else None
        for s in stale:
            r = results[s] = _check_one(s, options, session, reasons[s])
            if r.ok and r.prepared is not None:
                if r.values_unchecked:  # a checkpoint metric not cached yet
                    costly.append(s)
                else:
                    yield from send(r)
        session.compute = options.compute
        # One budget of cores: the workers drawing what was sent in the cheap
        # pass hold theirs while checkpoints are reduced here.
        session.drawing = drawer.busy()
        refused: dict[Path, Diagnostic] = {}
        if session.engine is not None and costly and options.compute:
            # every pair at once, a task each, before the figures wanting them
            refused = yield from _reduce_on(session.engine, session, costly, results)
        for s in costly:
            spec_path = _doc_path(results[s])
            if spec_path in refused:
                results[s] = Result(s, "failed", diagnostics=[refused[spec_path]],
                                    reason=reasons[s], notes=session.notes.get(spec_path, []))
                continue
            if session.engine is None:
                yield Working(s, _costly_work(results[s]))
            r = results[s] = _check_one(s, options, session, reasons[s])
            if r.ok and r.prepared is not None:
                yield from send(r)
        ordered = [results[s] for s in specs]
        _check_unique_names(ordered + _others_names(ordered, sent))
        for s in stale:  # failed checks, partial specs: done now
            if s not in sent:
                yield count.done(results[s])
        yield from take(held, early=False)
        yield from take(drawer.results(), early=False)
    saver.done()
    yield Finished(unreadable + ordered, time.perf_counter() - start)


def _finish(r: Result, drawing: Drawing, options: Options, manifest: Manifest,
            saver: _Saver) -> None:
    """A figure drawn: its files written (or why not), its heavy state dropped."""
    r.seconds += drawing.seconds
    if r.status != "failed":  # else a name clash found after it was sent to draw
        if drawing.files is None:
            r.status = "failed"
            r.diagnostics = [failure(r.spec, drawing.error, drawing.bug)]
        else:
            _write(r, drawing.files, options, manifest)
            if r.status == "built":
                saver.soon()
    _settle(r)


def _claimed_once(stale: list[Path], results: dict[Path, Result], specs: list[Path]
                  ) -> dict[str, Path]:
    """Each output name that one spec alone may write, with that spec: the
    names of the stale specs (read cheaply: no data, no validation), of the
    up-to-date ones, and of every other spec of their projects. A figure
    whose checked name is its spec's here can clash with nothing."""
    claims: dict[str, list[Path]] = {}
    for s in stale:
        name = None if is_partial(s) else _written_name(s)
        if name is not None:
            claims.setdefault(name, []).append(s)
    for r in [*results.values(), *_names_in(stale, {s.resolve() for s in specs})]:
        if r.name is not None:
            claims.setdefault(r.name, []).append(r.spec)
    return {name: owners[0] for name, owners in claims.items() if len(owners) == 1}


def _settle(r: Result) -> None:
    """A figure drawn and written: its heavy state (the parsed spec, its
    tables, its Vega-Lite, what it wrote beside the spec) is dropped, so that
    a build's memory stays bounded however many specs it has; the Result
    keeps what happened (status, files, diagnostics, what was looked at)."""
    r.prepared = None
    r.beside = {}


def _doc_path(r: Result) -> Path:
    """The spec's path as its sources name it."""
    assert r.prepared is not None
    return r.prepared.loaded.path


def _reduce_on(engine: str, session: Session, costly: list[Path], results: dict[Path, Result]
               ) -> Generator[Event, None, dict[Path, Diagnostic]]:
    """The reductions the costly specs gathered, sent to the engine's cluster
    (:mod:`figspec.engine`), their sums kept as they come (in the session,
    and figspec's cache), an event each. Returns the specs that cannot be
    drawn (a pair the workers could not read, a cluster not reached), each
    with its diagnostic; a pair not reduced there otherwise (damaged) is
    reduced here, which says where."""
    from .engine import Cluster, EngineError

    wanted = {_doc_path(results[s]) for s in costly}
    pending = {k: p for k, p in session.pending.items() if p.specs & wanted}
    refused: dict[Path, Diagnostic] = {}
    total = len(pending)
    if not total:
        return refused
    try:
        with Cluster(engine) as cluster:
            yield Sent(engine, total, cluster.workers)
            work = {k: p.reduction for k, p in pending.items()}
            for done, (key, got) in enumerate(cluster.reduce(work), 1):
                p = pending.pop(key)
                if got.sums is not None:
                    p.keep(got.sums)
                elif got.problem is not None:
                    for spec in p.specs:
                        refused.setdefault(spec, Diagnostic(
                            display_path(spec), message=f"{p.reduction.shown}: {got.problem}",
                            hint=got.hint))
                yield Reduced(p.reduction.shown, done, total, p.reduction.nbytes, got.worker,
                              got.problem, here=got.sums is None and got.problem is None)
    except EngineError as e:
        for p in pending.values():
            for spec in p.specs:
                refused.setdefault(spec, Diagnostic(display_path(spec), message=e.message,
                                                    hint=e.hint))
    return refused


def _costly_work(r: Result) -> str:
    assert r.prepared is not None
    metrics = {v.data.metric for v in r.prepared.loaded.spec.views if v.data and v.data.metric}
    if metrics & {"update_rank", "update_rank_absolute"}:
        return "computing update_rank from checkpoints (one SVD per matrix; cached after)"
    return f"computing {', '.join(sorted(metrics))} from checkpoints (cached after)"


@dataclass
class _Count:
    total: int
    so_far: int = 0

    def done(self, r: Result) -> FigureDone:
        self.so_far += 1
        return FigureDone(r, self.so_far, self.total)


class _Saver:
    """Saves the manifest while figures are written (at most every
    SAVE_EVERY seconds), so a build killed half-way keeps what it built."""

    SAVE_EVERY = 0.5

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self.last = time.monotonic()
        self.built = False

    def soon(self) -> None:
        self.built = True
        if time.monotonic() - self.last >= self.SAVE_EVERY:
            self._save()

    def done(self) -> None:
        self._save()

    def _save(self) -> None:
        try:
            self.manifest.save(refresh_only=not self.built)
        except OSError:
            pass  # the figures' own writes failed too, and said why
        self.last = time.monotonic()


def _write(r: Result, files: dict[str, bytes], options: Options, manifest: Manifest) -> None:
    """Replace the figure's files together, or leave them all as they were and
    fail this figure with the reason (a full disk, a read-only out dir)."""
    assert r.prepared is not None and r.name is not None
    out_dir = options.out_dir
    written = {fmt: (out_dir / f"{r.name}.{fmt}", content) for fmt, content in files.items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_together({**dict(written.values()), **r.beside})
    except OSError as e:
        r.status = "failed"
        where = e.filename if isinstance(e.filename, str) else out_dir
        r.diagnostics = [Diagnostic(display_path(where), message=f"cannot write the figure: "
                                    f"{e.strerror or e}", hint="free some space, or make the out "
                                    "dir writable; the figure's previous files are unchanged")]
        return
    r.outputs += [target for target, _ in written.values()]
    # What was written beside the spec is an input of the figure as written now.
    inputs = {**r.prepared.inputs, **{p.resolve(): Stamp.of(p, c) for p, c in r.beside.items()}}
    manifest.record(r.spec, r.name, environment(r.spec), inputs, written)
    r.status = "built"


def compile_spec(path: Path, options: Options = Options()) -> dict:
    """The self-contained Vega-Lite of one spec."""
    return prepare(path, _session(options, compute=options.compute)).figure.vegalite


def _session(options: Options, *, compute: bool) -> Session:
    """The session of one invocation: what may be computed, what may be read."""
    return Session(compute=compute, allow_outside=options.allow_outside)


def _replace(options: Options, **changes: object) -> Options:
    from dataclasses import replace

    return replace(options, **changes)  # type: ignore[arg-type]


