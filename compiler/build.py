"""Find specs, run the stages (spec -> table -> chart -> files), write the
files, and return what happened. Nothing here prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

from .data import Table, read_table
from .diagnostics import Diagnostic, FigspecError, UsageError, display_path
from .spec import LoadedSpec, load_spec

SPEC_SUFFIXES = (".yaml", ".yml")
ROOT_MARKERS = (".git", "figspec.yaml", "pyproject.toml")

# mkstemp makes files private (0600); outputs get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)

Status = Literal["built", "checked", "failed"]


@dataclass
class Result:
    """What happened to one spec."""

    spec: Path
    status: Status
    name: str | None = None
    outputs: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    seconds: float = 0.0
    #: the checked spec and table, kept so that a build does not read them twice
    prepared: Prepared | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class Options:
    out_dir: Path = Path("out")
    allow_outside: bool = False


def find_specs(paths: Sequence[Path]) -> list[Path]:
    """Spec files named, and ``*.yaml``/``*.yml`` below folders named, sorted.

    A path that does not exist is a usage error (exit status 2)."""
    found: dict[Path, None] = {}
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix in SPEC_SUFFIXES and f.is_file() and not _hidden(f, p):
                    found[f] = None
        elif p.is_file():
            found[p] = None
        else:
            raise UsageError(f"{display_path(p)}: no such file or folder")
    return list(found)


def _hidden(f: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(base).parts)


def project_root(spec: Path) -> Path:
    """The project holding a spec: the nearest folder up with a ``.git``,
    ``figspec.yaml`` or ``pyproject.toml``; else the working directory if the
    spec lies below it; else the spec's own folder."""
    spec = spec.resolve()
    for folder in spec.parents:
        if any((folder / m).exists() for m in ROOT_MARKERS):
            return folder
    cwd = Path.cwd().resolve()
    return cwd if spec.is_relative_to(cwd) else spec.parent


@dataclass(frozen=True)
class Prepared:
    """A spec whose spec and data are valid: ready to draw."""

    loaded: LoadedSpec
    table: Table


#: Largest PNG drawn, in pixels: 60 megapixels is ~240 MB of pixmap.
MAX_PNG_PIXELS = 60_000_000
#: Room around the cells for axes, labels, title and colorbar (px), generously.
_MARGIN = 400


def prepare(path: Path, options: Options) -> Prepared:
    """Load, validate and read the data of one spec (raises FigspecError)."""
    loaded = load_spec(path)
    table = read_table(loaded.doc, loaded.spec, root=project_root(path),
                       allow_outside=options.allow_outside)
    _check_size(loaded, table)
    return Prepared(loaded, table)


def _check_size(loaded: LoadedSpec, table: Table) -> None:
    """Refuse a PNG so large that drawing it would exhaust memory."""
    spec = loaded.spec
    if "png" not in spec.output.formats:
        return
    width = len(table.modules) * spec.cell.width + _MARGIN
    height = len(table.layers) * spec.cell.height + _MARGIN
    pixels = width * height * spec.output.scale**2
    if pixels > MAX_PNG_PIXELS:
        raise FigspecError([loaded.doc.diagnostic(
            ("output", "scale"), f"the PNG would have about {pixels / 1e6:.0f} million pixels, "
            f"more than {MAX_PNG_PIXELS / 1e6:.0f} million",
            "lower `output.scale` or `cell` size, or draw fewer layers")])


def check(paths: Sequence[Path], options: Options = Options()) -> list[Result]:
    """Validate specs and their data without rendering."""
    results = [_check_one(p, options) for p in find_specs(paths)]
    _check_unique_names(results)
    return results


def _check_one(path: Path, options: Options) -> Result:
    start = time.perf_counter()
    try:
        prepared = prepare(path, options)
    except FigspecError as e:
        return Result(path, "failed", diagnostics=e.diagnostics,
                      seconds=time.perf_counter() - start)
    return Result(path, "checked", name=prepared.loaded.name,
                  seconds=time.perf_counter() - start, prepared=prepared)


def _check_unique_names(results: Iterable[Result]) -> None:
    """Two specs writing the same output file is an error in the later one."""
    first: dict[str, Result] = {}
    for r in results:
        if r.name is None:
            continue
        if r.name in first:
            other = display_path(first[r.name].spec)
            r.status = "failed"
            assert r.prepared is not None
            r.diagnostics.append(r.prepared.loaded.doc.diagnostic(
                ("output", "name"), f"output name `{r.name}` is also used by {other}",
                "give each spec its own `output.name`"))
        else:
            first[r.name] = r


def build(paths: Sequence[Path], options: Options = Options(),
          progress: Callable[[Result, int, int], None] | None = None) -> list[Result]:
    """Check every spec, then draw and write the valid ones; keep going past failures."""
    results = check(paths, options)
    for i, r in enumerate(results, 1):
        if r.ok:
            _build_one(r, options)
        if progress:
            progress(r, i, len(results))
    return results


def _build_one(result: Result, options: Options) -> None:
    start = time.perf_counter()
    prepared = result.prepared
    assert prepared is not None, "only checked specs are drawn"
    try:
        files = draw(prepared)
    except FigspecError as e:
        result.status, result.diagnostics = "failed", e.diagnostics
        return
    out_dir = options.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt, content in files.items():
        target = out_dir / f"{prepared.loaded.name}.{fmt}"
        write_atomic(target, content)
        result.outputs.append(target)
    result.status = "built"
    result.seconds += time.perf_counter() - start


def draw(prepared: Prepared) -> dict[str, bytes]:
    """Every requested format's bytes, in memory: nothing is written unless all succeed."""
    from .chart import vegalite
    from .render import render

    spec = prepared.loaded.spec
    vl = vegalite(spec, prepared.table)
    return render(vl, spec.output.formats, scale=spec.output.scale,
                  title=spec.title or prepared.loaded.name)


def compile_spec(path: Path, options: Options = Options()) -> dict:
    """The self-contained Vega-Lite of one spec."""
    from .chart import vegalite

    prepared = prepare(path, options)
    return vegalite(prepared.loaded.spec, prepared.table)


def write_atomic(target: Path, content: bytes) -> bool:
    """Write ``content`` to ``target`` through a temporary file and a rename,
    so a reader (or a crash) never sees a truncated file. Returns False, and
    leaves the file untouched, when it already holds exactly ``content``."""
    try:
        if target.stat().st_size == len(content) and target.read_bytes() == content:
            return False
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
