"""``figspec diff [REV [REV2]] [PATH ...]``: which figures a change altered,
and how: the cells that moved, what else changed, and images to review."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..diagnostics import Diagnostic, FigspecError, UsageError, display_path
from ..errors import INVALID, OK

SHOW_CELLS = 10
#: Review images drawn in worker processes from this many on (else here).
POOL_FROM = 8


def diff(args: Sequence[str], *, out: Path | None = None, format: str = "text",
         exit_code: bool = False, allow_outside: bool = False) -> int:
    from .. import diff as d
    from ..project import of_command

    repo = d.repository(Path.cwd())
    revs, paths = _split(repo, list(args))
    old_rev = revs[0] if revs else "HEAD"
    old_commit = d.resolve(repo, old_rev)
    new_commit = d.resolve(repo, revs[1]) if len(revs) > 1 else None
    project = of_command([Path(p) for p in paths])
    rel_paths = [_in_repository(repo, Path(p), p) for p in paths] or \
        [_in_repository(repo, project.specs_dir, "the specs folder")]
    folder = out or project.out_dir / "diff"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {display_path(folder)}: not a folder (it is a file)")
    with d.checkout(repo, old_commit) as old_tree, _new_tree(repo, new_commit) as new_tree:
        names = sorted(set(d.specs_below(old_tree, rel_paths)) |
                       set(d.specs_below(new_tree, rel_paths)))
        inputs = d.recorded_inputs(repo, project.out_dir, names)
        same = d.unchanged_inputs(repo, inputs, old_tree, new_tree)
        with _Images(folder, 3 * (len(names) - len(same))) as images:
            figures = []
            for n in names:  # each figure's images are drawn while the next is checked
                for tree in (old_tree, new_tree):  # what it read last time, fetched at once
                    for r in inputs.get(n, []) if n not in same else []:
                        tree.fetch(r)
                figures.append(d.FigureDiff(n, "unchanged", d.Side(), d.Side()) if n in same
                               else d.compare(
                                   d.prepare_side(old_tree.folder / n, allow_outside, old_tree),
                                   d.prepare_side(new_tree.folder / n, allow_outside,
                                                  None if new_commit is None else new_tree), n))
                images.submit(figures[-1])
        new_label = revs[1] if len(revs) > 1 else "working tree"
        if any(f.kind != "unchanged" for f in figures):
            _page(figures, folder, old_rev, new_label)
        text = {"text": _text, "markdown": _markdown, "json": _json}[format](
            figures, old_rev, new_label, folder)
        # The revisions' temporary folders are never shown: their files are
        # named as `REV:path`, as git names them.
        for tree, label in ((old_tree, old_rev), (new_tree, new_label)):
            if tree.folder != repo:
                text = text.replace(str(tree.folder) + "/", f"{label}:")
    sys.stdout.write(text)
    changed = any(f.kind != "unchanged" for f in figures)
    return INVALID if exit_code and changed else OK


def _split(repo: Path, args: list[str]) -> tuple[list[str], list[str]]:
    """Leading arguments that name revisions (and are not files here), then PATHs."""
    from .. import diff as d

    revs: list[str] = []
    for i, arg in enumerate(args):
        if len(revs) == 2 or Path(arg).exists():
            paths = args[i:]
            missing = [p for p in paths if not Path(p).exists()]
            if missing:
                raise UsageError(f"{missing[0]}: no such file or folder")
            return revs, paths
        d.resolve(repo, arg)  # UsageError: "unknown revision ..."
        revs.append(arg)
    return revs, []


def _in_repository(repo: Path, path: Path, what: str) -> str:
    """``path`` relative to the repository's top, or UsageError: a diff
    compares what git holds, and git holds nothing outside."""
    try:
        return str(path.resolve().relative_to(repo))
    except ValueError:
        raise UsageError(f"{what}: outside the repository ({repo}); figspec diff compares "
                         "the files git holds") from None


@contextlib.contextmanager
def _new_tree(repo: Path, commit: str | None) -> Iterator[Any]:
    from .. import diff as d

    if commit is None:
        yield d.WorkingTree(repo)
    else:
        with d.checkout(repo, commit) as tree:
            yield tree


# -- images -------------------------------------------------------------------------

class _Images:
    """The review images: before, after, and after minus before in the
    figure's own layout, on a diverging scale centred at 0. Drawn by the
    build's worker processes (one per CPU) as each figure is compared, or in
    this process when few could be needed (a worker costs ~2 s to start);
    written together when all are drawn.

    Each image is named by its spec's path in the repository, extension kept,
    then ``.before.png`` and so on, in the spec's folders under ``folder``:
    two specs' images never share a name (``x__y.yaml`` and ``x/y.yaml``,
    ``a.yaml`` and ``a.yml``)."""

    def __init__(self, folder: Path, most: int):
        from ..drawing import Drawer

        self.folder = folder
        self.files: dict[Path, bytes] = {}
        self.figures: list[Any] = []
        self.drawer = Drawer(None if most >= POOL_FROM else 1, most)

    def __enter__(self) -> _Images:
        self.drawing = False  # the workers start with the first image to draw
        return self

    def submit(self, f: Any) -> None:
        from ..builder import render_job

        if f.kind == "unchanged":
            return
        self.figures.append(f)
        for side, name in ((f.old, "before"), (f.new, "after")):
            if side.prepared is not None:
                self._draw(f, name, render_job(side.prepared))
            elif side.committed_image is not None and f.kind == "changed":
                self.files[self.folder / _image_name(f, name)] = \
                    side.committed_image.read_bytes()
                f.images[name] = _image_name(f, name)
        if f.kind == "changed" and f.old.prepared and f.new.prepared:
            self._draw(f, "difference", render_job(_difference(f.old.prepared,
                                                               f.new.prepared)))

    def _draw(self, f: Any, name: str, job: Any) -> None:
        if not self.drawing:
            self.drawer.__enter__()
            self.drawing = True
        self.drawer.submit(_Image(f, name), dataclasses.replace(job, formats=("png",)))  # type: ignore[arg-type]

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            if kind is None and self.drawing:
                self._collect()
        finally:
            if self.drawing:
                self.drawer.__exit__(kind, *exc)  # type: ignore[arg-type]
        if kind is None:
            self._write()

    def _collect(self) -> None:
        for image, drawn, error, _ in self.drawer.results():
            f = image.figure  # type: ignore[attr-defined]
            if drawn is None:
                f.notes.append(f"the {image.name} image could not be drawn: {error}")
            else:
                self.files[self.folder / _image_name(f, image.name)] = drawn["png"]
                f.images[image.name] = _image_name(f, image.name)
        for f in self.figures:  # in one order, however the drawing finished
            f.images = {k: f.images[k] for k in ("before", "after", "difference")
                        if k in f.images}

    def _write(self) -> None:
        from ..files import write_together

        try:
            for path in self.files:
                path.parent.mkdir(parents=True, exist_ok=True)
            write_together(self.files)
        except OSError as e:
            raise FigspecError([Diagnostic(
                display_path(e.filename if isinstance(e.filename, str) else self.folder),
                message=f"cannot write the review images: {e.strerror or e}",
                hint="name a writable folder with --out")]) from None


@dataclass
class _Image:
    """One review image being drawn (what the Drawer reports back)."""

    figure: Any
    name: str
    seconds: float = 0.0


def _image_name(f: Any, name: str) -> str:
    return f"{f.spec}.{name}.png"


def _difference(old: Any, new: Any) -> Any:
    from ..chart import figure
    from ..data import Table
    from ..models import Color, Legend

    tables = []
    for i, t in enumerate(new.tables):
        before = old.tables[i].values if i < len(old.tables) else {}
        values = {k: v - before.get(k, v) for k, v in t.values.items()}
        tables.append(Table(t.layers, t.modules, values))
    largest = max((abs(v) for t in tables for v in t.values.values()), default=0.0) or 1.0
    spec = new.loaded.spec.model_copy(update={
        "domain": (-largest, largest), "annotate": None,
        "color": Color(scheme="redblue", reverse=True),
        "legend": Legend(title="after - before", format=".2~g"),
        "title": f"{new.loaded.spec.title or new.loaded.name}: after - before"})
    return dataclasses.replace(new, figure=figure(spec, tables), tables=tables)


def _page(figures: list[Any], folder: Path, old: str, new: str) -> None:
    """index.html: every figure that changed, before and after side by side, a
    swipe and an onion-skin view, its changed cells; added and removed ones alone."""
    from ..files import write_atomic

    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<title>figspec diff: {e(old)} .. {e(new)}</title>\n<style>{_CSS}</style>\n"
             f"</head>\n<body>\n<h1>figspec diff: {e(old)} &rarr; {e(new)}</h1>\n"]
    for f in figures:
        if f.kind == "unchanged":
            continue
        parts.append(f'<section class="figure {f.kind}"><h2>{e(f.kind)}: {e(f.spec)}</h2>\n')
        src = {k: e(_url(v)) for k, v in f.images.items()}
        if f.kind == "changed" and {"before", "after"} <= f.images.keys():
            before, after = src["before"], src["after"]
            parts.append(
                f'<div class="pair"><figure><img class="before" src="{before}" alt="before">'
                f'<figcaption>{e(old)}</figcaption></figure><figure><img class="after" '
                f'src="{after}" alt="after"><figcaption>{e(new)}</figcaption></figure></div>\n'
                f'<div class="swipe"><img src="{before}" alt="before"><img class="top" '
                f'src="{after}" alt="after"><input class="swipe-control" type="range" min="0" '
                f'max="100" value="50" aria-label="swipe"></div>\n'
                f'<div class="onion"><img src="{before}" alt="before"><img class="top" '
                f'src="{after}" alt="after"><input class="onion-control" type="range" min="0" '
                f'max="100" value="50" aria-label="onion skin"></div>\n'
                + (f'<img class="difference" src="{src["difference"]}" '
                   f'alt="after minus before">\n' if "difference" in f.images else "")
                + _cell_table(f))
        else:
            for name in ("before", "after"):
                if name in f.images:
                    parts.append(f'<img class="{name}" src="{src[name]}" alt="{name}">\n')
            for d in f.old.diagnostics + f.new.diagnostics:
                parts.append(f"<pre>{e(d.format())}</pre>\n")
        parts.append("</section>\n")
    parts.append(f"<script>{_JS}</script>\n</body>\n</html>\n")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "index.html", "".join(parts).encode())
    except OSError as e:
        raise FigspecError([Diagnostic(display_path(folder / "index.html"), message=f"cannot "
                                       f"write the review page: {e.strerror or e}",
                                       hint="name a writable folder with --out")]) from None


def _url(path: str) -> str:
    """A relative URL of an image: `#`, `?`, spaces in a spec's path kept as text."""
    from urllib.parse import quote

    return quote(path)


def _cell_table(f: Any) -> str:
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _fields(c)) + "</tr>"
                   for c in f.cells[:50])
    head = "".join(f"<th>{h}</th>" for h in _HEADS)
    return f"<table><tr>{head}</tr>{rows}</table>\n"


_CSS = ("body{font-family:sans-serif;margin:16px}.pair{display:flex;gap:16px}"
        ".swipe,.onion{position:relative;display:inline-block;margin:8px 0}"
        ".swipe img.top,.onion img.top{position:absolute;left:0;top:0}"
        ".swipe img.top{clip-path:inset(0 0 0 50%)}.onion img.top{opacity:.5}"
        "input[type=range]{display:block;width:100%}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}")
_JS = ("document.querySelectorAll('.swipe-control').forEach(function(c){c.addEventListener("
       "'input',function(){c.parentNode.querySelector('img.top').style.clipPath="
       "'inset(0 0 0 '+c.value+'%)';});});"
       "document.querySelectorAll('.onion-control').forEach(function(c){c.addEventListener("
       "'input',function(){c.parentNode.querySelector('img.top').style.opacity="
       "String(c.value/100);});});")


# -- text ---------------------------------------------------------------------------

_HEADS = ("layer", "module", "before", "after", "change")


def _fields(c: tuple[int, int, str, float, float]) -> tuple[str, str, str, str, str]:
    """A changed cell as written in every output: layer, module, before, after, change."""
    _, layer, module, a, b = c
    return str(layer), module, f"{a:.6g}", f"{b:.6g}", f"{b - a:+.3g}"


def _change(c: tuple[int, int, str, float, float]) -> str:
    layer, module, a, b, delta = _fields(c)
    return f"layer {layer}, {module}: {a} -> {b} ({delta})"


def _text(figures: list[Any], old: str, new: str, folder: Path) -> str:
    lines = [f"figspec diff {old} .. {new}"]
    for f in figures:
        if f.kind == "unchanged":
            continue
        lines.append(f"{f.kind:<9} {f.spec}")
        if f.kind == "changed" and f.total_cells:
            lines.append(f"  {len(f.cells)} of {f.total_cells} cells changed"
                         + (f", {f.added_cells} added" if f.added_cells else "")
                         + (f", {f.removed_cells} removed" if f.removed_cells else ""))
            lines += [f"    {_change(c)}" for c in f.cells[:SHOW_CELLS]]
            if len(f.cells) > SHOW_CELLS:
                lines.append(f"    ... and {len(f.cells) - SHOW_CELLS} more")
        if f.other:
            lines.append(f"  also changed: {'; '.join(f.other)}")
        lines += [f"  note: {n}" for n in f.notes]
        for d in f.old.diagnostics:
            lines.append(f"  at {old}: {d.format()}")
        for d in f.new.diagnostics:
            lines.append(f"  at {new}: {d.format()}")
    unchanged = sum(f.kind == "unchanged" for f in figures)
    lines.append(f"{len(figures) - unchanged} of {len(figures)} figures differ"
                 + (f"; images in {display_path(folder)}/index.html"
                    if unchanged < len(figures) else ""))
    return "\n".join(lines) + "\n"


def _markdown(figures: list[Any], old: str, new: str, folder: Path) -> str:
    out = [f"## figspec diff `{old}` .. `{new}`\n"]
    for f in figures:
        if f.kind == "unchanged":
            continue
        out.append(f"### {f.kind}: `{f.spec}`\n")
        for name in ("before", "after", "difference"):
            if name in f.images:
                out.append(f"![{name}]({_url(f.images[name])}) ")
        out.append("\n")
        if f.cells:
            out.append("| " + " | ".join(_HEADS) + " |\n" + "|---" * len(_HEADS) + "|")
            out += ["| " + " | ".join(_fields(c)) + " |" for c in f.cells[:SHOW_CELLS]]
            out.append("")
        if f.other:
            out.append(f"Also changed: {'; '.join(f.other)}\n")
        out += [f"Note: {n}\n" for n in f.notes]
        for d in f.old.diagnostics + f.new.diagnostics:
            out.append(f"    {d.format()}")
    out.append(f"{sum(f.kind != 'unchanged' for f in figures)} of {len(figures)} figures "
               "differ.\n")
    return "\n".join(out)


def _json(figures: list[Any], old: str, new: str, folder: Path) -> str:
    data = {"old": old, "new": new, "figures": [{
        "spec": f.spec, "kind": f.kind, "total_cells": f.total_cells,
        "added_cells": f.added_cells, "removed_cells": f.removed_cells,
        "cells": [{"panel": p, "layer": layer, "module": m, "before": a, "after": b}
                  for p, layer, m, a, b in f.cells],
        "other": f.other, "notes": f.notes, "images": f.images,
        "diagnostics": [d.to_json() for d in f.old.diagnostics + f.new.diagnostics]}
        for f in figures]}
    return json.dumps(data, indent=2) + "\n"
