"""Find specs, run the stages (spec -> table -> chart -> files), write the
files, and return what happened. Nothing here prints.

A build is incremental: the manifest in the out dir says which figures are
up to date, and only the others are checked and drawn. Drawing happens in
worker processes when more than one figure needs it. Heavy modules (pydantic
through ``spec``/``data``, Altair and vl-convert through ``chart``/``render``)
are imported only when something must be checked or drawn, so a no-op build
loads none of them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Literal, Sequence

from .diagnostics import Diagnostic, FigspecError, UsageError, display_path
from .events import Event, FigureDone, Finished, Started, Waiting, Working
from .files import Seen, Stamp, file_state, recording, sweep_temporaries, write_together
from .manifest import Manifest, environment_key
from .drawing import Drawer
from .render import MAX_PNG_PIXELS, RenderJob
from .session import Session

if TYPE_CHECKING:
    from .chart import Figure
    from .data import Table
    from .source import Document
    from .spec import LoadedSpec

SPEC_SUFFIXES = (".yaml", ".yml")
#: Room around the cells for axes, labels, title and colorbar (px), generously.
_MARGIN = 400

Status = Literal["built", "checked", "up to date", "stale", "failed"]


@dataclass
class Result:
    """What happened to one spec."""

    spec: Path
    status: Status
    name: str | None = None
    outputs: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    seconds: float = 0.0
    #: why the figure was (or would be) rebuilt
    reason: str | None = None
    #: the checked spec and table, kept so that a build does not read them twice
    prepared: Prepared | None = field(default=None, repr=False, compare=False)
    #: every file checking looked at (read, or looked for), failed or not: a
    #: watch retries a failed figure when one of them changes
    looked_at: Seen = field(default_factory=Seen, repr=False, compare=False)
    #: checked without its values: a checkpoint metric not computed yet
    values_unchecked: bool = False

    @property
    def ok(self) -> bool:
        return self.status != "failed"


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


# -- finding specs ----------------------------------------------------------------

def find_specs(paths: Sequence[Path], unreadable: list[Result] | None = None) -> list[Path]:
    """Spec files named, and ``*.yaml``/``*.yml`` below folders named, sorted
    (but not hidden ones, or partial specs whose names start with ``_``).
    A folder that cannot be read is a failed Result in ``unreadable``, never
    skipped in silence.

    A path that does not exist is a usage error (exit status 2)."""
    found: dict[Path, None] = {}
    for p in paths:
        if p.is_dir():
            for f in _walk(p, unreadable):
                if f.suffix in SPEC_SUFFIXES and f.is_file() and not _hidden(f, p):
                    found[f] = None
        elif p.is_file():
            found[p] = None
        else:
            raise UsageError(f"{display_path(p)}: no such file or folder")
    return list(found)


def _walk(folder: Path, unreadable: list[Result] | None) -> list[Path]:
    """Every file below ``folder``, sorted; unreadable folders reported."""
    def failed(e: OSError) -> None:
        if unreadable is not None:
            unreadable.append(Result(Path(e.filename), "failed", diagnostics=[Diagnostic(
                display_path(e.filename), message=f"cannot read this folder: {e.strerror}",
                hint="make it readable, or move it out of the specs folder")]))

    files = []
    for top, dirs, names in os.walk(folder, onerror=failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(top) / n for n in names]
    return sorted(files)


def _hidden(f: Path, base: Path) -> bool:
    """Hidden files, and partial specs (``_base.yaml``): shared fields that
    other specs `extends:`, not figures of their own."""
    parts = f.relative_to(base).parts
    return any(part.startswith(".") for part in parts) or _partial(f)


# -- checking ---------------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    """A spec whose spec and data are valid: ready to draw."""

    loaded: LoadedSpec
    #: one table per heatmap (panel)
    tables: list[Table]
    #: the Vega-Lite, fitted to `size` and checked for overlapping text
    figure: Figure

    @property
    def reads_checkpoints(self) -> bool:
        return any(v.data is not None and v.data.checkpoint is not None
                   for v in self.loaded.spec.views)

    @property
    def inputs(self) -> dict[Path, Stamp]:
        """Every file read (the spec, what it inherits, its data), stamped as
        read. Of figspec.yaml, only the parts the figure depends on: its
        `defaults`, and the roots its data was read through."""
        from . import project

        out = dict(self.loaded.inputs)
        settings = project.of(self.loaded.path).settings
        if settings is not None:
            out.pop(settings.path.resolve(), None)
            out.update([project.part_input(settings, "defaults")])
        for t in self.tables:
            out.update(t.stamps)
        return out


def prepare(path: Path, options: Options, doc: Document | None = None,
            session: Session | None = None) -> Prepared:
    """Load, validate and read the data of one spec (raises FigspecError);
    ``doc``: the spec as values already (from Python), its file never read;
    ``session``: the invocation's, shared by the specs it prepares."""
    from . import project
    from .data import read_tables
    from .spec import load_spec

    where = project.of(path)
    root = where.root
    loaded = load_spec(path, where.settings, root, doc)
    _check_font(loaded)
    _check_characters(loaded)
    tables = read_tables(loaded.doc, loaded.spec, root=root, allow_outside=options.allow_outside,
                         settings=where.settings,
                         session=session or Session(compute=options.compute))
    _check_size(loaded, tables)
    return Prepared(loaded, tables, _layout(loaded, tables))


def _partial(path: Path) -> bool:
    """Partial specs (``_base.yaml``): shared fields that others `extends:`."""
    return path.name.startswith("_")


def _check_partial(path: Path) -> None:
    from . import project
    from .spec import load_partial

    load_partial(path, None, project.of(path).root)


def _check_font(loaded: LoadedSpec) -> None:
    """A family whose files are missing would draw no text at all (vl-convert
    drops text it has no font for): refuse it."""
    from .fonts import family_of, font_dir, missing

    family = family_of(loaded.spec.font.family)
    assert family is not None  # the model checked the name
    lost = missing(family)
    if lost:
        raise FigspecError([loaded.doc.diagnostic(
            ("font", "family"), f"font family {family!r} is not installed: {', '.join(lost)} "
            f"missing from {font_dir() or 'matplotlib (not installed)'}",
            "reinstall figspec's fonts: pip install --force-reinstall matplotlib")])


def _check_characters(loaded: LoadedSpec) -> None:
    """Text in characters the figure's font lacks would be drawn as empty boxes
    in PNG and PDF (the SVG keeps the text, so nobody notices): refuse it."""
    from .fonts import family_of, missing_characters

    spec = loaded.spec
    family = family_of(spec.font.family)
    assert family is not None
    texts: list[tuple[tuple[str | int, ...], str | None]] = [
        (("title",), spec.title), (("legend", "title"), spec.legend.title)]
    for i, view in enumerate(spec.views):
        base = spec.view_loc(i)
        texts += [(base + ("title",), view.title), (base + ("layers", "title"), view.layers.title)]
        texts += [(base + ("modules", j), m.shown) for j, m in enumerate(view.modules)]
    problems = []
    for loc, text in texts:
        lost = missing_characters(family, text or "")
        if lost:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in lost[:5])
            problems.append(loaded.doc.diagnostic(
                loc, f"the font ({family}) has no {shown}{' ...' if len(lost) > 5 else ''}: "
                "they would be drawn as empty boxes", "write the text in Latin, Greek or "
                "Cyrillic letters, or choose another `font.family`"))
    if problems:
        raise FigspecError(list(dict.fromkeys(problems)))


def _check_size(loaded: LoadedSpec, tables: list[Table]) -> None:
    """Refuse a PNG so large that drawing it would exhaust memory."""
    from .chart import png_scale
    from .units import to_points

    spec = loaded.spec
    if "png" not in spec.output.formats:
        return
    if spec.size is not None:
        width = to_points(spec.size.width) if spec.size.width else None
        height = to_points(spec.size.height) if spec.size.height else None
        # One side given: take the other as 4x as long, more than any heatmap's shape.
        width = width or 4 * height  # type: ignore[operator]
        height = height or 4 * width
        where: tuple[str, ...] = ("output", "dpi")
    else:
        width = sum(len(t.modules) * spec.cell.width + _MARGIN for t in tables)
        height = max(len(t.layers) * spec.cell.height for t in tables) + _MARGIN
        where = ("output", "dpi") if spec.output.dpi else ("output", "scale")
    pixels = width * height * png_scale(spec) ** 2
    if pixels > MAX_PNG_PIXELS:
        raise FigspecError([loaded.doc.diagnostic(
            where, f"the PNG would have about {pixels / 1e6:.0f} million pixels, "
            f"more than {MAX_PNG_PIXELS / 1e6:.0f} million",
            "lower `output.scale` or `output.dpi`, the size, or draw fewer layers")])


def check(paths: Sequence[Path], options: Options = Options()) -> list[Result]:
    """Validate specs and their data without rendering."""
    unreadable: list[Result] = []
    session = Session(compute=False)
    specs = [p for p in paths if not _is_input(p)]
    results = [_check_one(p, options, session) for p in find_specs(specs, unreadable)]
    inputs = [p for p in paths if _is_input(p) or (p.is_file() and _partial(p))]
    if inputs:
        results += _readers_of(inputs, {r.spec.resolve() for r in results}, options, session)
    _check_unique_names(results)
    return unreadable + results


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
    with recording() as seen:
        try:
            if _partial(path):  # named on the command line: no figure of its own
                _check_partial(path)
                return Result(path, "checked", reason=reason, looked_at=seen,
                              seconds=time.perf_counter() - start)
            prepared = prepare(path, options, session=session)
        except FigspecError as e:
            return Result(path, "failed", diagnostics=e.diagnostics, reason=reason,
                          seconds=time.perf_counter() - start, looked_at=seen)
    return Result(path, "checked", name=prepared.loaded.name, reason=reason,
                  seconds=time.perf_counter() - start, prepared=prepared, looked_at=seen,
                  values_unchecked=prepared.loaded.path in session.unchecked)


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


# -- planning ---------------------------------------------------------------------

def _environment(spec: Path) -> str:
    """Versions that shape every figure, and which figspec.yaml applies to the
    spec: adding or removing one changes its figures (editing one is caught by
    its stamp)."""
    from . import project

    return f"{environment_key()}|project={project.of(spec).settings_key}"


def _reasons(specs: list[Path], manifest: Manifest, options: Options) -> dict[Path, str | None]:
    """Why each spec's figure must be rebuilt; None for those up to date."""
    return {s: "--force" if options.force else manifest.stale_reason(s, _environment(s))
            for s in specs}


def plan(paths: Sequence[Path], options: Options = Options()) -> tuple[list[Result], Manifest]:
    """Each spec as up to date, or checked / failed with the reason it is stale."""
    manifest = Manifest.load(options.out_dir)
    unreadable: list[Result] = []
    specs = find_specs(paths, unreadable)
    session = Session(compute=options.compute)
    results = [Result(s, "up to date", name=manifest.name_of(s)) if reason is None
               else _check_one(s, options, session, reason)
               for s, reason in _reasons(specs, manifest, options).items()]
    _check_unique_names(results)
    return unreadable + results, manifest


def status(paths: Sequence[Path], options: Options = Options()) -> list[Result]:
    """What a build would do, without drawing: up to date, stale (and why), failed.
    Cheap, as `check` is: no checkpoint metric is computed."""
    results, manifest = plan(paths, dataclasses.replace(options, compute=False))
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
    drawing workers at once, so drawing overlaps checking. Files are written
    only after every spec was checked: a clash of output names, found then,
    must not overwrite anything."""
    start = time.perf_counter()
    manifest = Manifest.load(options.out_dir)
    sweep_temporaries(options.out_dir)
    unreadable: list[Result] = []
    specs = find_specs(paths, unreadable)
    reasons = _reasons(specs, manifest, options)
    results = {s: Result(s, "up to date", name=manifest.name_of(s)) for s in specs
               if reasons[s] is None}
    stale = [s for s in specs if reasons[s] is not None]
    count = _Count(len(specs) + len(unreadable))
    yield Started(count.total)
    for r in [*unreadable, *results.values()]:
        yield count.done(r)
    with Drawer(options.jobs, len(stale)) as drawer:
        # Specs are checked cheaply first (a checkpoint's headers, not its
        # metrics), so that every figure has said what it wants of each
        # checkpoint pair before one is read: a pair is then read once for all.
        session, costly = Session(compute=False), []
        for s in stale:
            r = results[s] = _check_one(s, options, session, reasons[s])
            if r.ok and r.prepared is not None:
                if r.values_unchecked:  # a checkpoint metric not cached yet
                    costly.append(s)
                else:
                    drawer.submit(r, render_job(r.prepared))
        session.compute = options.compute
        for s in costly:
            yield Working(s, _costly_work(results[s]))
            r = results[s] = _check_one(s, options, session, reasons[s])
            if r.ok and r.prepared is not None:
                drawer.submit(r, render_job(r.prepared))
        ordered = [results[s] for s in specs]
        _check_unique_names(ordered)
        for s in stale:  # failed checks, partial specs: done now
            if not drawer.drawing(results[s]):
                yield count.done(results[s])
        saver = _Saver(manifest)
        for r, files, error, bug in drawer.results():
            if r.status != "failed":  # else a name clash found after it was sent to draw
                if files is None:
                    _render_failed(r, error, bug)
                else:
                    _write(r, files, options, manifest)
                    if r.status == "built":
                        saver.soon()
            yield count.done(r)
    saver.done()
    yield Finished(unreadable + ordered, time.perf_counter() - start)


def _costly_work(r: Result) -> str:
    assert r.prepared is not None
    metrics = {v.data.metric for v in r.prepared.loaded.spec.views if v.data and v.data.metric}
    if "update_rank" in metrics:
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


def _render_failed(r: Result, error: str | None, bug: bool = True) -> None:
    r.status = "failed"
    r.diagnostics = [_bug(r.spec, error) if bug else Diagnostic(
        display_path(r.spec), message=f"cannot draw the figure: {error}",
        hint="lower `output.scale` or `output.dpi`, shorten long texts, or draw fewer layers")]


def _bug(spec: Path, error: str | None) -> Diagnostic:
    return Diagnostic(display_path(spec), message=f"rendering failed: {error}",
                      hint="this is a bug in figspec; please report it")


def _write(r: Result, files: dict[str, bytes], options: Options, manifest: Manifest) -> None:
    """Replace the figure's files together, or leave them all as they were and
    fail this figure with the reason (a full disk, a read-only out dir)."""
    assert r.prepared is not None and r.name is not None
    out_dir = options.out_dir
    written = {fmt: (out_dir / f"{r.name}.{fmt}", content) for fmt, content in files.items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_together(dict(written.values()))
    except OSError as e:
        r.status = "failed"
        where = e.filename if isinstance(e.filename, str) else out_dir
        r.diagnostics = [Diagnostic(display_path(where), message=f"cannot write the figure: "
                                    f"{e.strerror or e}", hint="free some space, or make the out "
                                    "dir writable; the figure's previous files are unchanged")]
        return
    r.outputs += [target for target, _ in written.values()]
    manifest.record(r.spec, r.name, _environment(r.spec), r.prepared.inputs, written)
    r.status = "built"


def render_job(prepared: Prepared | None) -> RenderJob:
    """What a worker needs to draw a figure: its Vega-Lite and output settings."""
    assert prepared is not None
    spec = prepared.loaded.spec
    fig = prepared.figure
    return RenderJob(fig.vegalite, tuple(spec.output.formats), fig.png_scale,
                     spec.title or prepared.loaded.name, fig.svg_size,
                     sum(len(t.layers) * len(t.modules) for t in prepared.tables))


def compile_spec(path: Path, options: Options = Options()) -> dict:
    """The self-contained Vega-Lite of one spec."""
    return prepare(path, options).figure.vegalite


def _layout(loaded: LoadedSpec, tables: list[Table]) -> Figure:
    """The figure, or FigspecError where it cannot be drawn readably: a size
    too small for the labels, labels or values that would overlap. Part of
    checking, so `check` refuses what `build` would; a figure with a `size`
    is measured on Vega's scenegraph for it (vl-convert is imported)."""
    from .chart import LayoutError, figure

    try:
        return figure(loaded.spec, tables)
    except LayoutError as e:
        raise FigspecError([loaded.doc.diagnostic(e.loc, str(e), e.hint)]) from None
    except Exception as e:  # a bug building the chart: fail this figure only
        raise FigspecError([_bug(loaded.path, f"{type(e).__name__}: {e}")]) from None


# -- watching ---------------------------------------------------------------------

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
        while snapshot(paths, options, failed) == before:
            time.sleep(poll)


def _changed_during(results: list[Result], options: Options) -> bool:
    """Whether an input of a figure just built changed while it was being built
    (the manifest holds the stamps of the inputs as they were read)."""
    manifest = Manifest.load(options.out_dir)
    return any(manifest.stale_reason(r.spec, _environment(r.spec)) is not None
               for r in results if r.status in ("built", "up to date"))
