"""Data sources: where a heatmap's numbers come from.

Each kind of source is a module of this package with a ``SOURCE`` object, a
:class:`Source`, that reads what the spec's ``data`` names into :class:`Rows`:
records, each with an origin a diagnostic can point at. :mod:`figspec.cells`
then turns rows into checked cells, whatever their source. The registry
(:mod:`figspec.sources.registry`) maps what a spec names (a key of ``data``
such as ``values``; for ``data.path``, the file's suffix) to the module,
which is imported only when a spec uses it.

Everything the rest of figspec needs of a source goes through
:class:`Source` and the :class:`Context` it reads in:

- its rows: :meth:`Source.read`;
- its input stamps: every file it read, stamped as read, put in
  ``ctx.stamps`` (:func:`figspec.files.read_stamped`; a file too large to
  hash by identity; a folder's matches with :meth:`Context.glob`), so the
  manifest knows when the figure is stale without knowing the source;
- how its rows are drawn: :meth:`Source.parts` splits them into the tables
  they make (a plain source: one; a run: one per step) and
  :meth:`Source.arrange` says how the spec's ``x`` draws those
  (:mod:`figspec.views`: a panel per part, or the parts as columns);
- the columns a part adds to ``figspec table``: :attr:`Source.columns`.

A source that defines ``read`` alone is a plain one: one table per view.
So a new kind of source touches three places and nothing else: its module
here, its line in the registry, and its fields in
:class:`figspec.models.Data` (none for a new file suffix).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..diagnostics import Diagnostic, FigspecError, display_path
from ..files import BadPath, glob_input, glob_names, looked_at, resolved
from ..session import Session
from .registry import BY_KEY, BY_SUFFIX

if TYPE_CHECKING:
    from ..files import Stamp
    from ..models import Data
    from ..project import Settings
    from ..yaml_reader import Document, Loc


@dataclass(frozen=True)
class Where:
    """A place in a data source: a file's line (and column), or something
    inside a file that has no lines (``what``: "tensor model.layers.3.mlp...")."""

    file: str
    line: int | None = None
    column: int | None = None
    what: str | None = None

    def diagnostic(self, message: str, hint: str | None = None) -> Diagnostic:
        return Diagnostic(self.file, self.line, self.column,
                          f"{self.what}: {message}" if self.what else message, hint)


#: Where a row came from: a line of the file the Rows name (an int: cheap,
#: for files of millions of rows), another place (Where), or a location in
#: the spec (inline records).
Origin = Union[int, Where, "Loc"]
Row = tuple[Origin, dict[str, Any]]


@dataclass
class Rows:
    """What a source read: records with their origins, the columns they have,
    and how to name the source in messages."""

    rows: list[Row]
    columns: list[str]
    shown: str
    #: the module paths found in the data's names (``self_attn.q_proj``) when
    #: the rows hold only those listed (a checkpoint's: the rest is never
    #: read), so a module listed that is missing is told from one that is
    #: there, and the names it could be are suggested; None: the rows hold
    #: every module the data has
    modules: tuple[str, ...] | None = None


class ParseError(Exception):
    """A file that is not what its suffix says, at a line (and column)."""

    def __init__(self, line: int | None, message: str, hint: str | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.line, self.message, self.hint, self.column = line, message, hint, column


@dataclass
class Context:
    """What a source needs to read one heatmap's data, and where it reports."""

    data: Data
    #: the spec (its folder is where relative paths start; its keys are where
    #: problems with what it asks for are reported)
    doc: Document
    #: where the heatmap was written: () or ("panels", i)
    base: Loc
    #: the spec's project (None: anywhere)
    root: Path | None
    #: the invocation this read belongs to: what it computed, what it may
    #: compute, whether it may read outside the project (always the
    #: invocation's own: one made up here would drop --allow-outside)
    session: Session
    #: the files read, stamped as they were read (a source fills it)
    stamps: dict[Path, Stamp] = field(default_factory=dict)
    #: the project's figspec.yaml: its roots (``$name/...`` paths); a root
    #: read through is an input of the figure
    settings: Settings | None = None
    #: the layers drawn, first and last (None: to the data's last): a source
    #: may skip what lies outside
    layers: tuple[int, int | None] = (0, None)
    #: the modules listed (names as in the data): a source may skip the others
    modules: tuple[str, ...] = ()

    @property
    def allow_outside(self) -> bool:
        return self.session.allow_outside

    @property
    def roots(self) -> dict[str, str]:
        """Named roots from figspec.yaml: name -> folder as written."""
        return self.settings.roots if self.settings else {}

    def error(self, loc: Loc, message: str, hint: str | None = None) -> FigspecError:
        """A problem with what the spec asks of its source, at that key."""
        return FigspecError([self.doc.diagnostic(self.base + loc, message, hint)])

    def path(self, relative: str, key: Loc = ("data", "path")) -> Path:
        """``relative`` to the spec, checked: inside the project (unless
        allowed), and a file. A watch retries the figure when it appears."""
        path = self._resolved(self.doc.path.parent / relative, relative, key)
        looked_at(path)
        if self.root is not None and not self.allow_outside and \
                not path.is_relative_to(self.root) and self._lent(path) is None:
            raise self.error(key, f"data path {relative!r} lies outside the project (the folder "
                             "holding .git, figspec.yaml or pyproject.toml)",
                             "move the file into the project, or pass --allow-outside")
        if not path.is_file():
            what = ("is a directory, not a file" if path.is_dir() else
                    "is not a regular file" if path.exists() else "does not exist")
            raise self.error(key, f"data file {display_path(path)} {what}")
        return path

    def glob(self, folder: Path, pattern: str) -> list[str] | None:
        """The names in ``folder`` matching ``pattern`` (as
        :func:`figspec.files.glob_names` says; None: no such folder), the glob
        stamped as an input of the figure: a new match makes it stale."""
        names = glob_names(folder, pattern)
        self.stamps.update([glob_input(folder, pattern)])
        return names

    def rooted(self, written: str, key: Loc) -> Path:
        """A path that may start with ``$name/`` (a root named in figspec.yaml)
        or be ``hf:org/name``; see :meth:`locate`."""
        return self.locate(written, key)[0]

    def locate(self, written: str, key: Loc) -> tuple[Path, Path | None, str]:
        """Where ``written`` is, the folder every file read through it must lie
        in once links are followed (None: anywhere), and that folder's name.

        ``$name/...`` is under a root of figspec.yaml (whose folder may be
        ``$ENVVAR`` or ``${ENVVAR}/...``), which may lie outside the project
        since the project's settings say so, and which ``..`` cannot leave;
        ``hf:org/name[@revision]`` is a model in the local Hugging Face hub
        cache; any other path is relative to the spec and inside the project."""
        if written.startswith("hf:"):
            from .hub import snapshot

            # the branch or tag read is an input: a new download moves it
            path = snapshot(written, lambda message, hint=None: self.error(key, message, hint),
                            self.stamps)
            return path, path.parent.parent.resolve(), "its Hugging Face cache folder"
        if not written.startswith("$"):
            path = self._resolved(self.doc.path.parent / written, written, key)
            lent = self._lent(path)
            if self.root is not None and not self.allow_outside and \
                    not path.is_relative_to(self.root) and lent is None:
                raise self.error(key, f"{written!r} lies outside the project", "name it under "
                                 "a root of figspec.yaml (`roots: {ckpt: /shared/ckpt}`, then "
                                 "`$ckpt/...`), or pass --allow-outside")
            within = (lent or self.root) if self.root is not None and not self.allow_outside \
                else None
            plain = Path(os.path.normpath(self.doc.path.parent.absolute() / written))
            return path, _hub_model(plain) or within, "the project"
        name, _, rest = written[1:].partition("/")
        folder = self._root(name, key)
        path = self._resolved(folder / rest, written, key)
        if not path.is_relative_to(folder):
            raise self.error(key, f"{written!r} leaves the root `${name}` ({folder})",
                             f"write a path below `${name}/`, or add a root for it to "
                             "figspec.yaml")
        within = None if self.allow_outside else folder
        plain = Path(os.path.normpath(folder / rest))
        return path, _hub_model(plain) or within, f"the root `${name}` ({folder})"

    def _lent(self, path: Path) -> Path | None:
        """The working tree's top, for a path (resolved) under a file or folder
        `figspec diff` lent from it to the revision this spec is in; else None."""
        root = self.root
        if root is None or path.is_relative_to(root):
            return None
        return next((top for (tree, lent), top in self.session.lent.items()
                     if root.is_relative_to(tree) and path.is_relative_to(lent)), None)

    def _root(self, name: str, key: Loc) -> Path:
        """The folder of root ``name``, resolved."""
        if name not in self.roots:
            listed = ", ".join(f"`${n}`" for n in self.roots) or "none"
            raise self.error(key, f"`${name}` is not a root in figspec.yaml (roots: {listed})",
                             f"add `roots: {{{name}: /path/to/folder}}` to figspec.yaml")
        folder = self.roots[name]
        env = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?(/.*)?", folder)
        if env:
            variable = env.group(1)
            if variable not in os.environ:
                raise self.error(key, f"root `{name}` in figspec.yaml takes its folder from "
                                 f"the environment variable {variable}, which is not set",
                                 f"export {variable}=/path/to/folder")
            if not os.environ[variable].strip():
                raise self.error(key, f"root `{name}` in figspec.yaml takes its folder from "
                                 f"the environment variable {variable}, which is empty",
                                 f"export {variable}=/path/to/folder")
            folder = os.environ[variable] + (env.group(2) or "")
        if self.settings is not None:  # the figure depends on this root, not all of figspec.yaml
            from ..project import part_input

            self.stamps.update([part_input(self.settings, f"roots.{name}")])
        base = self.settings.folder if self.settings else self.doc.path.parent
        try:
            return resolved(base / folder)
        except BadPath as e:
            message = f"the folder of root `{name}`, {folder!r}, {e.why}"
            if self.settings is not None and not env:  # the mistake is in figspec.yaml
                raise FigspecError([self.settings.doc.diagnostic(("roots", name), message)]
                                   ) from None
            raise self.error(key, message) from None

    def _resolved(self, path: Path, written: str, key: Loc) -> Path:
        """``path`` resolved; a located diagnostic for one that contains a NUL
        character or runs into a loop of symbolic links."""
        try:
            return resolved(path)
        except BadPath as e:
            raise self.error(key, f"{written!r} {e.why}") from None


def _hub_model(path: Path) -> Path | None:
    """The model folder (``models--org--name``) of a path inside a Hugging Face
    hub cache snapshot: its files are links into that folder's ``blobs``."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and parts[i - 1].startswith("models--"):
            return Path(*parts[:i])
    return None


@dataclass(frozen=True)
class Part:
    """Rows of a source that make a table of their own (a run's step)."""

    rows: Rows
    #: the values of the source's :attr:`Source.columns` for these rows (a
    #: run's: the step and its checkpoint as written). The first, a whole
    #: number, orders the parts, and names each as a column (parts as
    #: columns) and on the HTML page's slider; () for a source of one part.
    key: tuple[Any, ...] = ()
    #: a panel of it is titled so ("step 100"), after its view's title
    title: str = ""


#: How a view's parts are drawn (:meth:`Source.arrange`, :mod:`figspec.views`):
#: a panel each (the view itself when there is one), or one panel per listed
#: module with a column per part (each part's key needed).
PANELS, COLUMNS = "panels", "columns"


class Source:
    """A kind of data source: what figspec asks of one (see the module's
    docstring). ``read`` is all a plain source defines; the rest says how a
    source's rows become tables, and has a plain source's answer here."""

    #: the columns naming a part in ``figspec table`` (a run's: step,
    #: checkpoint); none for a source whose rows make one table
    columns: tuple[str, ...] = ()
    #: where the spec names this source, under its view: a problem with its
    #: parts as a whole is reported there
    at: Loc = ("data",)

    def read(self, ctx: Context) -> Rows:
        """The rows of ``ctx.data``; FigspecError with every problem found."""
        raise NotImplementedError

    def parts(self, ctx: Context, rows: Rows) -> list[Part]:
        """``rows`` split into the tables they make, in order; each is
        checked as a table of its own (:mod:`figspec.cells`). A plain source's
        rows make one."""
        return [Part(rows)]

    def arrange(self, doc: Document, x: str) -> str:
        """How the spec's ``x`` draws this source's parts: PANELS or COLUMNS;
        FigspecError (before anything is read) for an ``x`` it cannot draw."""
        if x != "module":
            raise FigspecError([doc.diagnostic(("x",), f"`x: {x}` draws a run's checkpoints: "
                                               "it goes with `data.checkpoints`")])
        return PANELS


class _Plain(Source):
    """A source object defining ``read`` alone (as the first seam asked): a
    plain source, the rest as :class:`Source` says."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def read(self, ctx: Context) -> Rows:
        return self.source.read(ctx)  # type: ignore[no-any-return]


def suffixes() -> tuple[str, ...]:
    """The data file suffixes some source reads."""
    return tuple(BY_SUFFIX)


def for_data(data: Data) -> Source:
    """The source that reads ``data``: by the key it sets, else by its path's suffix."""
    for key, source in BY_KEY.items():
        if getattr(data, key, None) is not None:
            return _loaded(source)
    suffix = Path(data.path or "").suffix.lower()
    return _loaded(BY_SUFFIX[suffix])


def _loaded(source: Any) -> Source:
    if isinstance(source, str):
        source = importlib.import_module(source).SOURCE
    return source if isinstance(source, Source) else _Plain(source)
