"""What a change did to the figures: each figure at two revisions, compared
by what would be drawn (its Vega-Lite and output settings), not by pixels.

The old side is the revision's files as committed (``git ls-tree`` and
``git cat-file``, never ``git archive``, whose export attributes change what
it gives), fetched one at a time as checking asks for them into a temporary
folder of figspec's own (removed afterwards, even on Ctrl-C); the new side
is the working tree or another revision. A file or folder git tracks at
neither revision (git-ignored checkpoints inside the repository, say) is the
same on both sides: the revision's folder gets a link to the working tree's,
and the report names what was read from it. Nothing of the working tree,
its out dir or its manifest is written. Git runs as a subprocess with the
repository's own settings and without the ``GIT_*`` variables a hook sets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .diagnostics import Diagnostic, FigspecError, UsageError
from .session import Session

if TYPE_CHECKING:
    from .pipeline import Prepared

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


#: Links followed within one path, at most (as the kernel's own limit).
MAX_LINKS = 40
_LINK, _TREE_FILE = "120000", ("100644", "100755")


class Tree:
    """The files of one commit as committed (``git ls-tree``, ``git cat-file``:
    never through ``export-ignore`` or ``export-subst``), written into a
    temporary folder of figspec's own only as they are needed: a spec, what
    it extends, figspec.yaml, the data it names. One blob at a time is
    streamed to disk, never a whole revision into memory."""

    def __init__(self, repo: Path, commit: str, folder: Path):
        self.repo, self.commit, self.folder = repo, commit, folder
        #: path -> (mode, object id) of every blob and link in the commit
        self.entries: dict[str, tuple[str, str]] = {}
        #: links that leave the repository (absolute, or ``..`` past its top)
        self.outside: dict[str, str] = {}
        raw = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, binary=True)
        for record in raw.split(b"\0"):
            if record:
                info, _, path = record.partition(b"\t")
                mode, kind, oid = info.decode().split()
                if kind == "blob":
                    self.entries[path.decode("utf-8", "surrogateescape")] = (mode, oid)
        self._cat: subprocess.Popen[bytes] | None = None
        #: the working tree's top and the other side, set by :meth:`lending`
        self.working: Path | None = None
        self.other: Tree | WorkingTree | None = None
        #: path in the tree -> the working tree's file or folder linked there
        self.lent: dict[str, Path] = {}
        (folder / ".git").mkdir(exist_ok=True)  # the project's root, as in the repository
        for path in self.entries:  # project roots and settings, wherever they are
            if Path(path).name in ROOT_FILES:
                self.fetch(path)

    def fetch(self, rel: str) -> bool:
        """Write the file at ``rel`` (a path in the tree, through the links
        the commit holds) into the folder; whether it is there now. A folder
        gets its files (not its subfolders: those come when asked for)."""
        real = self.resolve(rel)
        if real is None:
            inside = self.resolve(rel, folder=True)
            if inside is None:
                return False
            prefix = inside + "/" if inside else ""
            children = [p for p in self.entries if p.startswith(prefix) and "/" not in
                        p[len(prefix):]]
            return any([self.fetch(c) for c in children])
        target = self.folder / real
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            self._blob(self.entries[real][1], real, target)
        return True

    def lending(self, working: Path, other: Tree | WorkingTree) -> None:
        """Files tracked neither here nor at ``other`` may be lent from the
        working tree at ``working`` (:meth:`lend`)."""
        self.working, self.other = working.resolve(), other

    def tracks(self, head: str) -> bool:
        """Whether the commit holds the file, link or a file in the folder ``head``."""
        return head in self.entries or any(e.startswith(head + "/") for e in self.entries)

    def lend(self, rel: str, session: Session) -> bool:
        """A file the commit does not hold at ``rel``: where git tracks it at
        neither revision and the working tree has it, it is the same file on
        both sides, so the outermost folder (or the file) of it that git
        tracks nothing in is linked into the folder from the working tree,
        and ``session`` lets this revision's specs read it. Whether it is
        there now."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if self.working is None or self.other is None or ".." in parts:
            return False
        for i in range(1, len(parts) + 1):
            head = "/".join(parts[:i])
            if head in self.entries:
                return False  # the commit holds it (a file, or a link)
            if self.tracks(head):
                continue  # a folder with files git tracks: lend from further down
            source, made = self.working / head, self.folder / head
            if os.path.lexists(made) or not os.path.lexists(source) or self.other.tracks(head):
                return False
            target = source.resolve()
            if not target.is_relative_to(self.working):
                return False  # a link out of the working tree: its own side says so
            made.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, made)
            self.lent[head] = target
            session.lent[self.folder, target] = self.working
            return True
        return False

    def oid(self, rel: str) -> str | None:
        """The object id of the file at ``rel``, or None where the commit has none."""
        real = self.resolve(rel)
        return None if real is None else self.entries[real][1]

    def resolve(self, rel: str, folder: bool = False) -> str | None:
        """The path of the file ``rel`` names, links followed as the commit
        stores them (each written into the folder on the way) and ``..``
        taken after them, as the system does; None where there is no such
        file, or a link leaves the repository (kept in ``outside``)."""
        todo, links = rel.split("/"), 0
        done: list[str] = []
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    return None  # above the repository's top
                done.pop()
                continue
            head = "/".join([*done, part])
            entry = self.entries.get(head)
            if entry is not None and entry[0] == _LINK:
                links += 1
                target = self._read_link(head, entry[1]) if links <= MAX_LINKS else None
                if target is None:
                    return None
                todo = target.split("/") + todo  # from the link's own folder
                continue
            if entry is not None and any(p not in ("", ".") for p in todo):
                return None  # a file is not a folder
            done.append(part)
        path = "/".join(done)
        if folder:
            return path if any(e.startswith(path + "/") for e in self.entries) else None
        return path if path in self.entries else None

    def _read_link(self, path: str, oid: str) -> str | None:
        """Where the link at ``path`` leads, as the commit stores it (relative
        to the link's folder); the link itself is made in the folder, so
        paths through it work. None, kept in ``outside``, for a link out of
        the repository."""
        target = self._read(oid, path).decode("utf-8", "surrogateescape")
        joined = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if os.path.isabs(target) or joined == ".." or joined.startswith("../"):
            self.outside[path] = target
            return None
        made = self.folder / path
        if not made.is_symlink():
            made.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, made)
        return target

    def _start(self) -> subprocess.Popen[bytes]:
        if self._cat is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
            # --filters: the content a checkout would write (end of lines,
            # smudge filters such as Git LFS), as `git archive` gave it.
            self._cat = subprocess.Popen(["git", "cat-file", "--batch", "--filters"],
                                         cwd=self.repo, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self._cat

    def _request(self, oid: str, path: str) -> tuple[Any, int]:
        cat = self._start()
        assert cat.stdin is not None and cat.stdout is not None
        cat.stdin.write(f"{oid} {path}\n".encode("utf-8", "surrogateescape"))
        cat.stdin.flush()
        header = cat.stdout.readline().split()
        if len(header) != 3:
            raise UsageError(f"git cat-file: cannot read {path} at {self.commit[:12]}")
        return cat.stdout, int(header[2])

    def _read(self, oid: str, path: str) -> bytes:
        out, size = self._request(oid, path)
        data = out.read(size)
        out.read(1)  # the newline after the content
        return data

    def _blob(self, oid: str, path: str, target: Path) -> None:
        if "\n" in path:  # cat-file's requests are lines
            return
        out, size = self._request(oid, path)
        with open(target, "wb") as f:
            while size:
                chunk = out.read(min(size, 1 << 20))
                if not chunk:
                    raise UsageError(f"git cat-file: {path} at {self.commit[:12]} ended early")
                f.write(chunk)
                size -= len(chunk)
        out.read(1)

    def close(self) -> None:
        if self._cat is not None:
            with contextlib.suppress(OSError):
                assert self._cat.stdin is not None
                self._cat.stdin.close()
            self._cat.wait()


class WorkingTree:
    """The working tree, as a Tree: every file is there already."""

    def __init__(self, repo: Path):
        self.repo = self.folder = repo
        self.outside: dict[str, str] = {}

    def fetch(self, rel: str) -> bool:
        return (self.folder / rel).exists()

    def tracks(self, head: str) -> bool:
        """Whether git tracks the file, link or a file in the folder ``head``
        (it is in the index): an untracked or ignored file is tracked nowhere."""
        return bool(git(self.repo, "--literal-pathspecs", "ls-files", "-z", "--", head))


#: Files that make a folder a project's root, or hold its settings.
ROOT_FILES = ("figspec.yaml", "pyproject.toml")


@contextlib.contextmanager
def checkout(repo: Path, commit: str) -> Iterator[Tree]:
    """The files tracked at ``commit``, fetched as needed into a temporary
    folder removed afterwards (even on Ctrl-C)."""
    folder = Path(tempfile.mkdtemp(prefix="figspec-diff-")).resolve()
    tree = None
    try:
        tree = Tree(repo, commit, folder)
        yield tree
    finally:
        if tree is not None:
            tree.close()
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
    #: files and folders (relative to the tree) tracked at neither revision,
    #: read from the working tree
    borrowed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """A changed cell: its panel (None in a figure of one heatmap), layer,
    module as labelled, and value before and after."""

    panel: str | None
    layer: int
    module: str
    before: float
    after: float




@dataclass
class FigureDiff:
    spec: str  # relative to the repository
    kind: Kind
    old: Side
    new: Side
    #: changed cells, largest change first
    cells: list[Cell] = field(default_factory=list)
    added_cells: int = 0
    removed_cells: int = 0
    total_cells: int = 0
    #: what else changed: "title", "domain [0.1, 0.2] -> [0.1, 0.3]", ...
    other: list[str] = field(default_factory=list)
    #: what could not be compared, and why
    notes: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    #: each image's width on the review page, CSS px: its size as printed
    widths: dict[str, float] = field(default_factory=dict)

    @property
    def borrowed(self) -> list[str]:
        """What either side read from the working tree, tracked at neither revision."""
        return sorted(set(self.old.borrowed) | set(self.new.borrowed))


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
    names = panel_names(b)
    for i, (ta, tb) in enumerate(zip(a.tables, b.tables)):
        label = {m.name: m.shown for m in tb.modules}
        label.update({m.name: m.shown for m in ta.modules if m.name not in label})
        for key in ta.values.keys() & tb.values.keys():
            before, after = ta.values[key], tb.values[key]
            if before != after:
                d.cells.append(Cell(names[i], key[0], label[key[1]], before, after))
        d.added_cells += len(tb.values.keys() - ta.values.keys())
        d.removed_cells += len(ta.values.keys() - tb.values.keys())
        d.total_cells += len(tb.values)
    order = {name: i for i, name in enumerate(names)}
    d.cells.sort(key=lambda c: (-abs(c.after - c.before), order[c.panel], c.layer, c.module))


def panel_names(p: Prepared) -> list[str | None]:
    """How each heatmap of a figure is named in a review: its panel's title
    (after its letter, as drawn), else "panel N"; None for a figure of one."""
    from .layout import panel_titles

    if not p.loaded.spec.panels or len(p.tables) < 2:
        return [None] * len(p.tables)
    return [title or f"panel {i + 1}" for i, title in enumerate(panel_titles(p.loaded.spec))]


def _other(a: Prepared, b: Prepared) -> list[str]:
    from .layout import color_domain

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
    la = [[m.shown for m in v.modules or ()] for v in sa.views]
    lb = [[m.shown for m in v.modules or ()] for v in sb.views]
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


def prepare_side(path: Path, session: Session, tree: Tree | None = None) -> Side:
    """The figure of the spec at ``path``; in a revision's ``tree``, also which
    files it needs that the revision does not hold, and its committed image.
    The revision's files are fetched as checking asks for them: checked
    again while it looked for a file the revision holds and had not fetched,
    or one tracked at neither revision, lent from the working tree."""
    from .files import recording
    from .pipeline import prepare

    if not path.is_file():
        return Side()
    for _ in range(MAX_ROUNDS):
        with recording() as seen:
            try:
                side = Side(prepare(path, session))
            except FigspecError as e:
                side = Side(diagnostics=e.diagnostics)
        if tree is None:
            return side
        side.borrowed = _borrowed(tree, seen)
        if side.prepared is not None:
            return side
        missing = [str(f.relative_to(tree.folder)) for f in sorted(seen)
                   if f.is_relative_to(tree.folder) and not f.exists()]
        if not any([tree.fetch(m) or tree.lend(m, session) for m in missing]):
            break
    assert tree is not None  # without a tree, the first round returned
    side.untracked = [_untracked(m, tree) for m in missing]
    side.committed_image = _committed_image(path, tree)
    return side


#: Rounds of checking and fetching for one spec: an `extends` chain (16 files
#: at most) is found a file a round, then its data.
MAX_ROUNDS = 24


def _borrowed(tree: Tree, seen: Iterable[Path]) -> list[str]:
    """What the tree lent from the working tree that a spec looked at."""
    return sorted(head for head, target in tree.lent.items()
                  if any(f.is_relative_to(tree.folder / head) or f.is_relative_to(target)
                         for f in seen))


def _untracked(rel: str, tree: Tree) -> str:
    """A file the revision does not hold, and why when a link leads out."""
    for link, target in tree.outside.items():
        if rel == link or rel.startswith(link + "/"):
            return f"{rel} (a link to {target}, outside the repository)"
    return rel


def _committed_image(spec: Path, tree: Tree) -> Path | None:
    """The PNG the revision's out dir holds for this spec, if it committed one:
    named by its `output.name`, which it may inherit."""
    from . import project
    from .pipeline import load

    try:
        name = (load(spec).data.get("output") or {}).get("name") or spec.stem
        image = project.of(spec).out_dir / f"{name}.png"
    except (FigspecError, AttributeError):
        return None
    if not image.is_relative_to(tree.folder):
        return None
    tree.fetch(str(image.relative_to(tree.folder)))
    return image if image.is_file() else None


def recorded_inputs(repo: Path, out_dir: Path, names: list[str]) -> dict[str, list[str]]:
    """Each spec's inputs (the spec, what it extends, figspec.yaml, its data)
    as the working tree's manifest lists them, relative to the repository;
    a spec it does not know, or with an input outside, is left out."""
    from .manifest import Manifest

    manifest = Manifest.load(out_dir)
    inputs = {}
    for name in names:
        paths = manifest.inputs_of(repo / name)
        if paths and all(p.is_relative_to(repo) for p in paths):
            inputs[name] = [str(p.relative_to(repo)) for p in paths]
    return inputs


def unchanged_inputs(repo: Path, inputs: dict[str, list[str]], old: Tree,
                     new: Tree | WorkingTree) -> set[str]:
    """Specs whose every recorded input is the same file in both trees
    (compared by git's object ids: nothing is fetched): their figures are the
    same, and are not even checked. A spec without inputs is checked."""
    wanted = sorted({r for rel in inputs.values() for r in rel})
    old_ids = {r: old.oid(r) for r in wanted}
    new_ids = ({r: new.oid(r) for r in wanted} if isinstance(new, Tree) else
               _working_ids(repo, [r for r in wanted if old_ids[r] is not None]))
    return {name for name, rel in inputs.items()
            if all(old_ids[r] is not None and old_ids[r] == new_ids.get(r) for r in rel)}


def _working_ids(repo: Path, rel: list[str]) -> dict[str, str | None]:
    """The object id each working-tree file would have if added (its clean
    filters applied), by one `git hash-object`; None for a file not there."""
    files = [r for r in rel if (repo / r).is_file() and "\n" not in r]
    if not files:
        return {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(["git", "hash-object", "--stdin-paths"], cwd=repo, env=env,
                          input="\n".join(files).encode("utf-8", "surrogateescape"),
                          capture_output=True)
    ids = done.stdout.decode().split()
    if done.returncode != 0 or len(ids) != len(files):
        return {}  # compare nothing: every figure is checked
    return dict(zip(files, ids))


def specs_below(tree: Tree | WorkingTree, paths: Sequence[str]) -> list[str]:
    """The specs (relative paths) a diff covers in one tree."""
    from .builder import SPEC_SUFFIXES, find_specs

    if isinstance(tree, Tree):
        for p in paths:
            prefix = p.strip("/") + "/" if p not in ("", ".") else ""
            for f in tree.entries:
                if (f == p or f.startswith(prefix)) and Path(f).suffix in SPEC_SUFFIXES:
                    tree.fetch(f)
    folder = tree.folder
    roots = [folder / p for p in paths if (folder / p).exists()]
    return [str(s.relative_to(folder)) for s in find_specs(roots)] if roots else []
