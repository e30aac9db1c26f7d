"""The project a spec belongs to, and its settings (``figspec.yaml``).

A spec's project is found from the spec, never from the working directory:
its **root** is the nearest folder above the spec holding ``.git``,
``figspec.yaml`` or ``pyproject.toml`` (or, where there is none, the folder
holding the spec's folder: for ``paper/specs/fig.yaml``, ``paper``); data and
``extends:`` files must lie inside it. Its **settings** are the nearest
``figspec.yaml`` above the spec. A command's project (where ``specs/`` and
``out/`` are by default) is that of the first PATH named, or found from the
working directory when none is; a folder named is taken as a folder of specs.


    specs: specs          # folder searched for specs (default: specs)
    out: out              # where figures are written (default: out)
    defaults:             # any spec fields, applied under every spec
      font: {family: serif, size: 8}
    engine: tcp://scheduler:8786   # reduce checkpoints on a Dask cluster (default: local)

Checked by hand rather than by pydantic, so that a no-op build, which reads
only where the folders are, imports nothing heavy. ``defaults`` is checked
as part of each spec it applies to, with diagnostics pointing here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .caches import memo
from .diagnostics import FigspecError, did_you_mean
from .files import Stamp
from .session import ENGINE
from .yaml_reader import Document

FILENAME = "figspec.yaml"
ROOT_MARKERS = (".git", FILENAME, "pyproject.toml")
_KEYS = ("specs", "out", "defaults", "roots", "engine")


@dataclass(frozen=True)
class Project:
    """Where a spec's project is, and its settings."""

    root: Path
    settings: Settings | None

    @property
    def specs_dir(self) -> Path:
        """The folder ``build`` and ``check`` search when no PATH is given."""
        return self._folder("specs")

    @property
    def out_dir(self) -> Path:
        """Where figures are written unless ``--out`` says otherwise."""
        return self._folder("out")

    def _folder(self, key: str) -> Path:
        if self.settings is not None and key in self.settings.doc.data:
            return self.settings.folder_setting(key, key)
        return self.root / key

    @property
    def engine(self) -> str | None:
        """Where a build reduces checkpoints (figspec.yaml's ``engine``):
        a Dask scheduler's address, ``local``, or None (not said: local)."""
        value = self.settings.doc.data.get("engine") if self.settings is not None else None
        return value if isinstance(value, str) else None

    @property
    def settings_key(self) -> str:
        """Which figspec.yaml applies, for the build's environment key."""
        return str(self.settings.path.resolve()) if self.settings else "None"


def root_of(spec: Path) -> Path:
    """The root of the project holding ``spec`` (see the module's docstring)."""
    spec = spec.absolute()
    for folder in spec.parents:
        if any((folder / m).exists() for m in ROOT_MARKERS):
            return folder.resolve()
    return spec.parent.parent.resolve()


def of(spec: Path) -> Project:
    """The project of one spec file: its root and the figspec.yaml above it."""
    return Project(root_of(spec), load(find(spec.absolute().parent)))


def of_command(paths: list[Path]) -> Project:
    """The project of a command: that of the first PATH (a folder is a folder
    of specs), else the one found from the working directory (with no root
    marker above it, the working directory itself)."""
    if paths:
        first = paths[0]
        return of(first / "_" if first.is_dir() else first)
    here = Path.cwd()
    root = next((f for f in (here, *here.parents) if any((f / m).exists() for m in ROOT_MARKERS)),
                here)
    return Project(root.resolve(), load(find(here)))


@dataclass(frozen=True)
class Settings:
    """A loaded ``figspec.yaml``."""

    path: Path
    doc: Document

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def defaults(self) -> dict[str, Any]:
        return self.doc.data.get("defaults") or {}

    @property
    def roots(self) -> dict[str, str]:
        """Named folders, possibly outside the project (shared checkpoints),
        that specs name as ``$name/...``; a folder may be ``$ENVVAR``."""
        return dict(self.doc.data.get("roots") or {})

    def folder_setting(self, key: str, default: str) -> Path:
        value = self.doc.data.get(key, default)
        return self.folder / value


#: Parts of figspec.yaml a figure depends on, as input names: what every spec
#: inherits (``defaults``), and each root a spec reads through (``roots.NAME``).
#: Adding a root, or changing one a figure does not use, redraws nothing.
PART_SEPARATOR = "::"


def part_input(settings: Settings, part: str) -> tuple[Path, Stamp]:
    """An input of a figure standing for one part of figspec.yaml, stamped;
    a root taken from the environment holds the folder it resolved to."""
    st = settings.path.stat()
    variable = root_variable(settings, part)
    held = None if variable is None else os.environ.get(variable[0], "") + variable[1]
    return (Path(f"{settings.path}{PART_SEPARATOR}{part}"),
            Stamp(0, st.st_mtime_ns, part_digest(settings, part), part=part,
                  label=f"root `{part.partition('.')[2]}`" if variable else None, held=held))


def part_digest(settings: Settings, part: str) -> str:
    """SHA-256 of one part of figspec.yaml's values (absent: of null). A root
    whose folder is ``$VAR`` or ``${VAR}/...`` depends on the environment as
    much as on the file: its digest covers the variable's value (or that it
    is not set), so pointing the variable elsewhere changes it."""
    value: Any = settings.doc.data
    for key in part.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    variable = root_variable(settings, part)
    if variable is not None:
        value = {"written": value, variable[0]: os.environ.get(variable[0])}
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def root_variable(settings: Settings, part: str) -> tuple[str, str] | None:
    """For ``roots.NAME`` written ``$VAR`` or ``${VAR}/rest``: (VAR, rest)."""
    kind, _, name = part.partition(".")
    folder = settings.roots.get(name) if kind == "roots" else None
    m = _VARIABLE.fullmatch(folder) if isinstance(folder, str) else None
    return (m.group(1), m.group(2) or "") if m else None


def part_change(settings: Settings, part: str, held: str | None) -> str | None:
    """Why a root from the environment is not what it was, in words (None:
    not such a root, or the file changed it)."""
    variable = root_variable(settings, part)
    if variable is None:
        return None
    name = part.partition(".")[2]
    if not os.environ.get(variable[0], "").strip():
        what = "is empty" if variable[0] in os.environ else "is not set"
        return f"root `{name}`'s variable {variable[0]} {what}"
    now = os.environ[variable[0]] + variable[1]
    return f"root `{name}` is now {now} (was {held})" if held and now != held else None


#: A root's folder taken from the environment: ``$VAR`` or ``${VAR}/...``.
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?(/.*)?")


def find(start: Path | None = None) -> Path | None:
    """The nearest ``figspec.yaml`` from ``start`` (a folder; by default the
    working directory) upward."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / FILENAME
        if candidate.is_file():
            return candidate
    return None


@memo("project.settings")
def _load(path: Path, size: int, mtime_ns: int) -> Settings:
    from .yaml_reader import load_yaml

    doc = load_yaml(path)
    problems = []
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise FigspecError([doc.diagnostic((), "figspec.yaml must be a mapping",
                                           "write `defaults:`, `specs:` or `out:` keys")])
    for key, value in doc.data.items():
        if key not in _KEYS:
            problems.append(doc.diagnostic((key,), f"unknown key `{key}` in figspec.yaml",
                                           did_you_mean(key, _KEYS)
                                           or f"the keys are {', '.join(_KEYS)}", key=True))
        elif key == "defaults" and not isinstance(value, (dict, type(None))):
            problems.append(doc.diagnostic((key,), "`defaults` must be a mapping of spec fields"))
        elif key == "roots":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)
                    and isinstance(v, str) and v.strip() for k, v in value.items()):
                problems.append(doc.diagnostic((key,), "`roots` must map names to folders",
                                               "roots: {ckpt: /shared/checkpoints}, or "
                                               "{ckpt: $CKPT_DIR} to take it from the "
                                               "environment"))
        elif key == "engine" and not (isinstance(value, str) and ENGINE.fullmatch(value)):
            problems.append(doc.diagnostic((key,), "`engine` must be a Dask scheduler's "
                                           "address or `local`", "engine: tcp://scheduler:8786 "
                                           "reduces checkpoints on that Dask cluster"))
        elif key in ("specs", "out") and (not isinstance(value, str) or not value.strip()):
            problems.append(doc.diagnostic((key,), f"`{key}` must be a folder path"))
    defaults = doc.data.get("defaults") or {}
    output = defaults.get("output") if isinstance(defaults, dict) else None
    for loc in [("defaults", k) for k in ("extends", "panels") if k in defaults] + \
            ([("defaults", "output", "name")] if isinstance(output, dict) and "name" in output
             else []):
        problems.append(doc.diagnostic(loc, f"`{'.'.join(loc[1:])}` cannot be a default: it "
                                       "belongs to one figure", "move it into the spec", key=True))
    if problems:
        raise FigspecError(problems)
    return Settings(path, doc)


def load(path: Path | None) -> Settings | None:
    """The project settings at ``path`` (None: no figspec.yaml), or FigspecError.

    Each call gets its own copy: a file is read and checked once while its
    size and mtime stay the same, and a caller that changes what it got (a
    ``defaults`` mapping merged into) changes nothing the next call sees."""
    if path is None:
        return None
    st = path.stat()
    return copy.deepcopy(_load(path.resolve(), st.st_size, st.st_mtime_ns))
