"""The one problem type, the one user-error class, and their formatting.

Every mistake a user can make (a bad spec, bad data, a bad path) becomes a
:class:`Diagnostic` that names a file and, where one is known, a line and a
column. Code that finds problems collects them and raises one
:class:`FigspecError` carrying all of them; the command line turns that into
exit status 1. Nothing else is caught, so a real bug still shows its
traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


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
    import difflib  # only a mistake asks: not imported by every command that succeeds

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


# -- output formats: one emitter each, as ruff's message/ does -------------------

def format_text(diagnostics: Iterable[Diagnostic]) -> str:
    """One line each, ``path:line:col: error: message; hint``: what editors,
    pre-commit and compilers' users read."""
    return "".join(d.format() + "\n" for d in diagnostics)


def format_full(diagnostics: Iterable[Diagnostic]) -> str:
    """Each line of :func:`format_text`, then the source line it points at
    and a caret under the column, as rustc and ruff show them."""
    out = []
    for d in diagnostics:
        out.append(d.format())
        line = source_line(d)
        if line is not None and d.line is not None:
            gutter = f"{d.line} | "
            out.append(gutter + line)
            if d.column is not None:
                caret = "".join("\t" if ch == "\t" else " " for ch in line[:d.column - 1])
                out.append(" " * (len(gutter) - 2) + "| " + caret + "^")
        out.append("")
    return "\n".join(out)


def format_json(diagnostics: Iterable[Diagnostic]) -> str:
    """A JSON list of ``{file, line, column, yaml_path, message, hint, severity}``."""
    return json.dumps([d.to_json() for d in diagnostics], indent=2) + "\n"


def format_markdown(diagnostics: Iterable[Diagnostic]) -> str:
    """A list for a pull request's comment: place in code, then the message."""
    lines = []
    for d in diagnostics:
        where = ":".join(str(x) for x in (d.file, d.line, d.column) if x is not None)
        hint = f" ({_md(d.hint)})" if d.hint else ""
        lines.append(f"- `{where.replace('`', '')}` **{d.severity}**: {_md(d.message)}{hint}")
    return "\n".join(lines) + ("\n" if lines else "")


def format_github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands (``::error file=...,line=...,col=...::msg``):
    each problem is shown on the file's line in a pull request."""
    kinds = {"error": "error", "warning": "warning", "note": "notice"}
    lines = []
    for d in diagnostics:
        props = [f"file={_gh_property(d.file)}"] + \
            [f"{k}={v}" for k, v in (("line", d.line), ("col", d.column)) if v is not None]
        text = d.message + (f"; {d.hint}" if d.hint else "")
        lines.append(f"::{kinds.get(d.severity, 'error')} {','.join(props)},title=figspec::"
                     f"{_gh_data(text)}")
    return "".join(line + "\n" for line in lines)


#: --format name -> emitter
FORMATS = {"text": format_text, "full": format_full, "json": format_json,
           "markdown": format_markdown, "github": format_github}


def render(diagnostics: Iterable[Diagnostic], format: str = "text") -> str:
    return FORMATS[format](list(diagnostics))


def source_line(d: Diagnostic, limit: int = 10_000_000) -> str | None:
    """The line of the file a diagnostic points at, if it can be read."""
    if not d.line:
        return None
    try:
        with open(d.file, "rb") as f:
            raw = f.read(limit)
    except OSError:
        return None
    lines = raw.decode("utf-8", errors="replace").splitlines()
    return lines[d.line - 1] if d.line <= len(lines) else None


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _md(text: str) -> str:
    """Text that Markdown shows as written (no links, emphasis or HTML); the
    `code` in figspec's messages stays code."""
    text = " ".join(text.split())
    parts = text.split("`")
    if len(parts) % 2 == 0 or "``" in text:  # no clean pairs of single backticks: no code
        parts = ["`".join(parts)]
    return "`".join(p if i % 2 else "".join("\\" + ch if ch in "\\`*_[]<>#|!&" else ch
                                           for ch in p) for i, p in enumerate(parts))

