"""What a change did to the figures: each figure at two revisions, compared
by what would be drawn (its Vega-Lite and output settings), not by pixels.

The old side is the revision's tracked files, unpacked by ``git archive`` into
a temporary folder of figspec's own (removed afterwards, even on Ctrl-C); the
new side is the working tree or another revision. Nothing of the working tree,
its out dir or its manifest is written. Git runs as a subprocess with the
repository's own settings and without the ``GIT_*`` variables a hook sets.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from .diagnostics import Diagnostic, FigspecError, UsageError

if TYPE_CHECKING:
    from .builder import Prepared

Kind = Literal["added", "removed", "changed", "unchanged", "failed"]


def git(repo: Path, *args: str, binary: bool = False) -> Any:
    """Run git in ``repo``; UsageError (exit 2) with git's own words on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True)
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout if binary else done.stdout.decode().strip()


def repository(start: Path) -> Path:
    try:
        return Path(git(start, "rev-parse", "--show-toplevel"))
    except UsageError:
        raise UsageError(f"{start}: not in a git repository; figspec diff compares "
                         "revisions") from None


def resolve(repo: Path, rev: str) -> str:
    """The commit a revision names, or UsageError saying why not."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except UsageError:
        shallow = git(repo, "rev-parse", "--is-shallow-repository") == "true"
        raise UsageError(f"unknown revision {rev!r}" + (
            " (this is a shallow clone: `git fetch --unshallow` brings the history)"
            if shallow else "")) from None


@contextlib.contextmanager
def checkout(repo: Path, commit: str) -> Iterator[Path]:
    """The files tracked at ``commit``, in a temporary folder removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="figspec-diff-"))
    try:
        raw = git(repo, "archive", "--format=tar", commit, binary=True)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: no link or path tricks
                tar.extractall(folder, filter="data")
            else:  # pragma: no cover - git archive of the user's own repository
                tar.extractall(folder)
        (folder / ".git").mkdir(exist_ok=True)  # the project's root, as in the repository
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Side:
    """One figure at one revision."""

    prepared: Prepared | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: files the spec needs that this revision does not hold (relative to the tree)
    untracked: list[str] = field(default_factory=list)
    #: the figure's PNG as committed in the revision's out dir, if any
    committed_image: Path | None = None


@dataclass
class FigureDiff:
    spec: str  # relative to the repository
    kind: Kind
    old: Side
    new: Side
    #: (panel, layer, module label, before, after) of changed cells, largest first
    cells: list[tuple[int, int, str, float, float]] = field(default_factory=list)
    added_cells: int = 0
    removed_cells: int = 0
    total_cells: int = 0
    #: what else changed: "title", "domain [0.1, 0.2] -> [0.1, 0.3]", ...
    other: list[str] = field(default_factory=list)
    #: what could not be compared, and why
    notes: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)


def compare(old: Side, new: Side, spec: str) -> FigureDiff:
    if old.prepared is None and not old.diagnostics:
        return FigureDiff(spec, "added", old, new)
    if new.prepared is None and not new.diagnostics:
        return FigureDiff(spec, "removed", old, new)
    if old.prepared is None and old.untracked and new.prepared is not None:
        # The revision lacks a file the figure reads (ignored, too large, a
        # checkpoint outside the repository): compare with its committed image.
        d = FigureDiff(spec, "changed", old, new)
        d.notes = [f"{u} is not tracked at the old revision" for u in old.untracked]
        d.notes.append("the old side is the committed image, without cell changes"
                       if old.committed_image else "no image of it is committed there")
        return d
    if old.prepared is None or new.prepared is None:
        return FigureDiff(spec, "failed", old, new)
    a, b = old.prepared, new.prepared
    if _drawn(a) == _drawn(b):
        return FigureDiff(spec, "unchanged", old, new)
    d = FigureDiff(spec, "changed", old, new)
    _cells(d, a, b)
    d.other = _other(a, b)
    return d


def _drawn(p: Prepared) -> tuple[Any, ...]:
    """Everything that decides what is drawn, and in which files."""
    spec = p.loaded.spec
    return (p.figure.vegalite, p.figure.png_scale, p.figure.svg_size,
            tuple(spec.output.formats), p.loaded.name)


def _cells(d: FigureDiff, a: Prepared, b: Prepared) -> None:
    for i, (ta, tb) in enumerate(zip(a.tables, b.tables)):
        label = {m.name: m.shown for m in tb.modules}
        label.update({m.name: m.shown for m in ta.modules if m.name not in label})
        for key in ta.values.keys() & tb.values.keys():
            before, after = ta.values[key], tb.values[key]
            if before != after:
                d.cells.append((i, key[0], label[key[1]], before, after))
        d.added_cells += len(tb.values.keys() - ta.values.keys())
        d.removed_cells += len(ta.values.keys() - tb.values.keys())
        d.total_cells += len(tb.values)
    d.cells.sort(key=lambda c: (-abs(c[4] - c[3]), c[0], c[1], c[2]))


def _other(a: Prepared, b: Prepared) -> list[str]:
    from .chart import color_domain

    sa, sb = a.loaded.spec, b.loaded.spec
    out = []
    if sa.title != sb.title:
        out.append(f"title {sa.title!r} -> {sb.title!r}")
    da, db = color_domain(sa, a.tables), color_domain(sb, b.tables)
    if da != db:
        out.append(f"domain [{da[0]:.4g}, {da[1]:.4g}] -> [{db[0]:.4g}, {db[1]:.4g}]")
    if sa.color != sb.color:
        out.append(f"colours {sa.color.effective_scheme or 'custom'} -> "
                   f"{sb.color.effective_scheme or 'custom'}")
    la = [[m.shown for m in v.modules] for v in sa.views]
    lb = [[m.shown for m in v.modules] for v in sb.views]
    if la != lb:
        out.append("module labels")
    if [v.layers for v in sa.views] != [v.layers for v in sb.views]:
        out.append("layer axis")
    if a.figure.svg_size != b.figure.svg_size or sa.cell != sb.cell:
        out.append("size")
    if sa.font != sb.font:
        out.append(f"font {sa.font.family} -> {sb.font.family}")
    if sa.legend != sb.legend:
        out.append("colorbar")
    if sa.output != sb.output:
        out.append("output")
    return out


def prepare_side(path: Path, allow_outside: bool, tree: Path | None = None) -> Side:
    """The figure of the spec at ``path``; in a revision's ``tree``, also which
    files it needs that the revision does not hold, and its committed image."""
    from .builder import Options, prepare
    from .files import recording

    if not path.is_file():
        return Side()
    with recording() as seen:
        try:
            return Side(prepare(path, Options(allow_outside=allow_outside)))
        except FigspecError as e:
            side = Side(diagnostics=e.diagnostics)
    if tree is not None:
        side.untracked = sorted(str(f.relative_to(tree)) for f in seen
                                if f.is_relative_to(tree) and not f.exists())
        side.committed_image = _committed_image(path, tree)
    return side


def _committed_image(spec: Path, tree: Path) -> Path | None:
    """The PNG the revision's out dir holds for this spec, if it committed one."""
    from . import project
    from .source import load_yaml

    try:
        name = (load_yaml(spec).data.get("output") or {}).get("name") or spec.stem
        image = project.of(spec).out_dir / f"{name}.png"
    except (FigspecError, AttributeError):
        return None
    return image if image.is_file() and image.is_relative_to(tree) else None


def unchanged_inputs(repo: Path, out_dir: Path, names: list[str], old: Path, new: Path
                     ) -> set[str]:
    """Specs whose every input (the spec, what it extends, figspec.yaml, its
    data), as the working tree's manifest lists them, is the same file in both
    trees: their figures are the same, and are not even checked. A spec the
    manifest does not know, or whose inputs it cannot tell, is checked."""
    from .manifest import Manifest

    manifest = Manifest.load(out_dir)
    same = set()
    for name in names:
        inputs = manifest.inputs_of(repo / name)
        if not inputs or not all(p.is_relative_to(repo) for p in inputs):
            continue
        rel = [p.relative_to(repo) for p in inputs]
        if all(_same_file(old / r, new / r) for r in rel):
            same.add(name)
    return same


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def specs_below(folder: Path, paths: Sequence[str]) -> list[str]:
    """The specs (relative paths) a diff covers in one tree."""
    from .builder import find_specs

    roots = [folder / p for p in paths if (folder / p).exists()]
    return [str(s.relative_to(folder)) for s in find_specs(roots)] if roots else []
