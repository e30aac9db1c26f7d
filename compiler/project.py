"""``figspec.yaml``: project settings, found from the working directory upward.

    specs: specs          # folder searched for specs (default: specs)
    out: out              # where figures are written (default: out)
    defaults:             # any spec fields, applied under every spec
      font: {family: serif, size: 8}

Checked by hand rather than by pydantic, so that a no-op build, which reads
only where the folders are, imports nothing heavy. ``defaults`` is checked
as part of each spec it applies to, with diagnostics pointing here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diagnostics import FigspecError, did_you_mean
from .source import Document

FILENAME = "figspec.yaml"
_KEYS = ("specs", "out", "defaults")


@dataclass(frozen=True)
class Project:
    """A loaded ``figspec.yaml``."""

    path: Path
    doc: Document

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def defaults(self) -> dict[str, Any]:
        return self.doc.data.get("defaults") or {}

    def folder_setting(self, key: str, default: str) -> Path:
        value = self.doc.data.get(key, default)
        return self.folder / value


def find(start: Path | None = None) -> Path | None:
    """The nearest ``figspec.yaml`` from ``start`` (the working directory) upward."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / FILENAME
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _load(path: Path, size: int, mtime_ns: int) -> Project:
    from .source import load_yaml

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
        elif key != "defaults" and (not isinstance(value, str) or not value.strip()):
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
    return Project(path, doc)


def current() -> Project | None:
    """The settings that apply here: the figspec.yaml from the working directory up."""
    return load(find())


def load(path: Path | None) -> Project | None:
    """The project settings at ``path`` (None: no figspec.yaml), or FigspecError."""
    if path is None:
        return None
    st = path.stat()
    return _load(path.resolve(), st.st_size, st.st_mtime_ns)
