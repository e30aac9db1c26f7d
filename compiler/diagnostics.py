"""The one problem type, the one user-error class, and their formatting.

Every mistake a user can make (a bad spec, bad data, a bad path) becomes a
:class:`Diagnostic` that names a file and, where one is known, a line and a
column. Code that finds problems collects them and raises one
:class:`FigspecError` carrying all of them; the command line turns that into
exit status 1. Nothing else is caught, so a real bug still shows its
traceback.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem, at one place."""

    file: str
    line: int | None = None
    column: int | None = None
    message: str = ""
    hint: str | None = None
    #: where in the spec, as a dotted path (``modules[2].name``), if in a spec
    yaml_path: str | None = None
    severity: str = "error"

    def format(self) -> str:
        """``path:line:col: error: message; hint`` on one line, like a compiler."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.severity}: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.splitlines())

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class FigspecError(Exception):
    """A user error: bad input, reported as diagnostics, exit status 1."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=_order)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class UsageError(FigspecError):
    """The command line (or the Python API) was misused: exit status 2. A
    FigspecError too, so ``except figspec.FigspecError`` catches every
    mistake a user can make."""

    def __init__(self, message: str):
        super().__init__([Diagnostic("figspec", message=message)])
        self.message = message

    def __str__(self) -> str:
        return self.message


def _order(d: Diagnostic) -> tuple[str, int, int]:
    return (d.file, d.line or 0, d.column or 0)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the working directory
    when it lies below it, else absolute."""
    p = Path(path).absolute()
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.as_posix()


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """A ``did you mean `x`?`` hint naming the closest choice, if any is close."""
    close = closest(word, choices, n=1, cutoff=cutoff)
    return f"did you mean `{close[0]}`?" if close else None


def closest(word: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The choices closest to ``word``, compared case-insensitively."""
    by_lower: dict[str, str] = {}
    for c in choices:
        by_lower.setdefault(str(c).lower(), str(c))
    hits = difflib.get_close_matches(str(word).lower(), list(by_lower), n=n, cutoff=cutoff)
    return [by_lower[h] for h in hits]


def unique(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Each problem once: a mistake inherited by several specs or panels (in
    figspec.yaml, say) is one mistake, reported at the place it was written,
    whatever dotted path (``panels[1].data.x``) led to it."""
    seen: dict[tuple[object, ...], Diagnostic] = {}
    for d in diagnostics:
        seen.setdefault((d.file, d.line, d.column, d.message.split(": ", 1)[-1], d.hint), d)
    return list(seen.values())


def format_text(diagnostics: Iterable[Diagnostic]) -> str:
    return "".join(d.format() + "\n" for d in diagnostics)


def format_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2) + "\n"

