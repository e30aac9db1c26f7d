"""Which spec files a command works on: those named, and the specs below the
folders named, in a stable order. Nothing here reads a spec."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .diagnostics import Diagnostic, UsageError, display_path

SPEC_SUFFIXES = (".yaml", ".yml")


#: A folder that cannot be read, and the diagnostic saying so.
Unreadable = tuple[Path, Diagnostic]


def find_specs(paths: Sequence[Path], unreadable: list[Unreadable] | None = None
               ) -> list[Path]:
    """Spec files named, and ``*.yaml``/``*.yml`` below folders named, sorted
    (but not hidden ones, or partial specs whose names start with ``_``).
    A folder that cannot be read goes into ``unreadable`` with its
    diagnostic, never skipped in silence.

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


def _walk(folder: Path, unreadable: list[Unreadable] | None) -> list[Path]:
    """Every file below ``folder``, sorted; unreadable folders reported."""
    def failed(e: OSError) -> None:
        if unreadable is not None:
            unreadable.append((Path(e.filename), Diagnostic(
                display_path(e.filename), message=f"cannot read this folder: {e.strerror}",
                hint="make it readable, or move it out of the specs folder")))

    files = []
    for top, dirs, names in os.walk(folder, onerror=failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(top) / n for n in names]
    return sorted(files)


def _hidden(f: Path, base: Path) -> bool:
    """Hidden files, and partial specs (``_base.yaml``): shared fields that
    other specs `extends:`, not figures of their own."""
    parts = f.relative_to(base).parts
    return any(part.startswith(".") for part in parts) or is_partial(f)


def is_partial(path: Path) -> bool:
    """Partial specs (``_base.yaml``): shared fields that others `extends:`,
    not figures of their own."""
    return path.name.startswith("_")
