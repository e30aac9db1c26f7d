"""``figspec diff [REV [REV2]] [PATH ...]``: which figures a change altered,
and how: the cells that moved, what else changed, and images to review."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, FigspecError, UsageError, display_path
from ..errors import INVALID, OK
from ..session import Session

SHOW_CELLS = 10
#: Review images drawn in worker processes from this many on (else here).
POOL_FROM = 8


def diff(args: Sequence[str], *, out: Path | None = None, format: str = "text",
         exit_code: bool = False, allow_outside: bool = False,
         image_url: str | None = None) -> int:
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
        old_tree.lending(repo, new_tree)  # what git tracks at neither side is the same file
        if isinstance(new_tree, d.Tree):
            new_tree.lending(repo, old_tree)
        names = sorted(set(d.specs_below(old_tree, rel_paths)) |
                       set(d.specs_below(new_tree, rel_paths)))
        inputs = d.recorded_inputs(repo, project.out_dir, names)
        same = d.unchanged_inputs(repo, inputs, old_tree, new_tree)
        session = Session(allow_outside=allow_outside)
        with _Images(folder, 3 * (len(names) - len(same))) as images:
            figures = []
            for n in names:  # each figure's images are drawn while the next is checked
                for tree in (old_tree, new_tree):  # what it read last time, fetched at once
                    for r in inputs.get(n, []) if n not in same else []:
                        tree.fetch(r)
                figures.append(d.FigureDiff(n, "unchanged", d.Side(), d.Side()) if n in same
                               else d.compare(
                                   d.prepare_side(old_tree.folder / n, session, old_tree),
                                   d.prepare_side(new_tree.folder / n, session,
                                                  None if new_commit is None else new_tree), n))
                images.submit(figures[-1])
        new_label = revs[1] if len(revs) > 1 else "working tree"
        if any(f.kind != "unchanged" for f in figures):
            _page(figures, folder, old_rev, new_label)
        if format == "markdown":
            text = _markdown(figures, old_rev, new_label, _linker(repo, folder, image_url))
        else:
            text = {"text": _text, "json": _json}[format](figures, old_rev, new_label, folder)
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
        from ..workers import Drawer

        self.folder = folder
        self.files: dict[Path, bytes] = {}
        self.figures: list[Any] = []
        self.drawer: Drawer[_Image] = Drawer(None if most >= POOL_FROM else 1, most)

    def __enter__(self) -> _Images:
        self.drawing = False  # the workers start with the first image to draw
        return self

    def submit(self, f: Any) -> None:
        from ..pipeline import render_job

        if f.kind == "unchanged":
            return
        self.figures.append(f)
        for side, name in ((f.old, "before"), (f.new, "after")):
            if side.prepared is not None:
                self._draw(f, name, render_job(side.prepared))
            elif side.committed_image is not None and f.kind == "changed":
                self._keep(f, name, side.committed_image.read_bytes())
        if f.kind == "changed" and f.old.prepared and f.new.prepared:
            try:
                difference = _difference(f.old.prepared, f.new.prepared)
            except FigspecError as e:  # its own layout: the colorbar's, the longer title
                f.notes.append("the difference image could not be drawn: "
                               + "; ".join(d.message for d in e.diagnostics))
                return
            self._draw(f, "difference", render_job(difference))

    def _draw(self, f: Any, name: str, job: Any) -> None:
        if not self.drawing:
            self.drawer.__enter__()
            self.drawing = True
        self.drawer.submit(_Image(f, name), dataclasses.replace(job, formats=("png",)))

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
        for image, drawing in self.drawer.results():
            f = image.figure
            if drawing.files is None:
                f.notes.append(f"the {image.name} image could not be drawn: {drawing.error}")
            else:
                self._keep(f, image.name, drawing.files["png"])
        for f in self.figures:  # in one order, however the drawing finished
            f.images = {k: f.images[k] for k in ("before", "after", "difference")
                        if k in f.images}

    def _keep(self, f: Any, name: str, png: bytes) -> None:
        self.files[self.folder / _image_name(f, name)] = png
        f.images[name] = _image_name(f, name)
        width = css_width(png)
        if width is not None:
            f.widths[name] = width

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


def css_width(png: bytes) -> float | None:
    """The width a PNG is meant to be seen at, in CSS px (1/96 in): its pixels
    over the resolution its pHYs chunk records. A 300-dpi figure is then shown
    at its printed size, not three times as large."""
    import struct

    at = png.find(b"pHYs")
    if png[12:16] != b"IHDR" or at < 0:
        return None
    width = struct.unpack(">I", png[16:20])[0]
    per_metre, _, unit = struct.unpack(">IIB", png[at + 4:at + 13])
    if unit != 1 or not per_metre:
        return None
    return round(width * 96 / (per_metre * 0.0254), 1)


def _image_name(f: Any, name: str) -> str:
    return f"{f.spec}.{name}.png"


def _difference(old: Any, new: Any) -> Any:
    """The after figure coloured by after minus before, laid out again through
    the pipeline; FigspecError where that layout fails."""
    from ..cells import Table
    from ..models import Color, Legend
    from ..pipeline import relayout

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
    return relayout(new, spec, tables)


def _page(figures: list[Any], folder: Path, old: str, new: str) -> None:
    """index.html: every figure that changed, before and after side by side, a
    swipe and an onion-skin view, its changed cells; added and removed ones alone."""
    from ..files import write_atomic

    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<title>figspec diff: {e(old)} .. {e(new)}</title>\n<style>{_CSS}</style>\n"
             f"</head>\n<body>\n<h1>figspec diff: {e(old)} &rarr; {e(new)}</h1>\n"]
    lent = _lent_note(figures)
    if lent:
        parts.append(f'<p class="note">Note: {e(lent)}</p>\n')
    for f in figures:
        if f.kind == "unchanged":
            continue
        parts.append(f'<section class="figure {f.kind}"><h2>{e(f.kind)}: {e(f.spec)}</h2>\n')
        src = {k: e(_url(v)) for k, v in f.images.items()}
        size = {k: f' style="width:{w:g}px"' for k, w in f.widths.items()}
        if f.kind == "changed" and {"before", "after"} <= f.images.keys():
            before = f'src="{src["before"]}"{size.get("before", "")}'
            after = f'src="{src["after"]}"{size.get("after", "")}'
            parts.append(
                f'<div class="pair"><figure><img class="before" {before} alt="before">'
                f'<figcaption>{e(old)}</figcaption></figure><figure><img class="after" '
                f'{after} alt="after"><figcaption>{e(new)}</figcaption></figure></div>\n'
                f'<div class="swipe"><img {before} alt="before"><img class="top" '
                f'{after} alt="after"><input class="swipe-control" type="range" min="0" '
                f'max="100" value="50" aria-label="swipe"></div>\n'
                f'<div class="onion"><img {before} alt="before"><img class="top" '
                f'{after} alt="after"><input class="onion-control" type="range" min="0" '
                f'max="100" value="50" aria-label="onion skin"></div>\n'
                + (f'<img class="difference" src="{src["difference"]}"'
                   f'{size.get("difference", "")} alt="after minus before">\n'
                   if "difference" in f.images else "")
                + _cell_table(f))
        else:
            for name in ("before", "after"):
                if name in f.images:
                    parts.append(f'<img class="{name}" src="{src[name]}"{size.get(name, "")} '
                                 f'alt="{name}">\n')
            for d in f.old.diagnostics + f.new.diagnostics:
                parts.append(f"<pre>{e(d.format())}</pre>\n")
        parts += [f'<p class="note">Note: {e(n)}</p>\n' for n in f.notes]
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
    heads = _heads(f)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>"
                                    for v in _fields(c, len(heads) > len(_HEADS))) + "</tr>"
                   for c in f.cells[:50])
    head = "".join(f"<th>{h}</th>" for h in heads)
    return f"<table><tr>{head}</tr>{rows}</table>\n"


_CSS = ("body{font-family:sans-serif;margin:16px}.pair{display:flex;gap:16px}"
        ".swipe,.onion{position:relative;display:inline-block;margin:8px 0}"
        ".swipe img.top,.onion img.top{position:absolute;left:0;top:0}"
        ".swipe img.top{clip-path:inset(0 0 0 50%)}.onion img.top{opacity:.5}"
        "input[type=range]{display:block;width:100%}img{max-width:100%;height:auto}"
        ".pair figure{margin:0;min-width:0}.swipe,.onion{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}")
_JS = ("document.querySelectorAll('.swipe-control').forEach(function(c){c.addEventListener("
       "'input',function(){c.parentNode.querySelector('img.top').style.clipPath="
       "'inset(0 0 0 '+c.value+'%)';});});"
       "document.querySelectorAll('.onion-control').forEach(function(c){c.addEventListener("
       "'input',function(){c.parentNode.querySelector('img.top').style.opacity="
       "String(c.value/100);});});")


# -- text ---------------------------------------------------------------------------

#: Specs named after each file read from the working tree, at most.
SHOW_SPECS = 5


def _lent_note(figures: list[Any]) -> str | None:
    """What was read from the working tree for both sides (git tracks it at
    neither revision), and for which specs: files with the same specs together."""
    specs: dict[str, list[str]] = {}
    for f in figures:
        for path in f.borrowed:
            specs.setdefault(path, []).append(f.spec)
    if not specs:
        return None
    groups: dict[tuple[str, ...], list[str]] = {}
    for path, readers in sorted(specs.items()):
        groups.setdefault(tuple(sorted(readers)), []).append(path)
    said = []
    for names, paths in groups.items():
        shown = ", ".join(names[:SHOW_SPECS]) + (
            f" and {len(names) - SHOW_SPECS} more" if len(names) > SHOW_SPECS else "")
        said.append(f"{', '.join(paths)} ({shown})")
    return ("tracked at neither revision, so read from the working tree on both sides: "
            + "; ".join(said))


_HEADS = ("layer", "module", "before", "after", "change")


def _heads(f: Any) -> tuple[str, ...]:
    """The columns of a figure's changed cells: its panel first when it has several."""
    return (("panel",) if any(c.panel for c in f.cells) else ()) + _HEADS


def _fields(c: Any, panels: bool = False) -> tuple[str, ...]:
    """A changed cell as written in every output: (panel,) layer, module,
    before, after, change."""
    return ((c.panel or "",) if panels else ()) + (
        str(c.layer), c.module, f"{c.before:.6g}", f"{c.after:.6g}",
        f"{c.after - c.before:+.3g}")


def _change(c: Any) -> str:
    layer, module, a, b, delta = _fields(c)
    where = f"{c.panel}, " if c.panel else ""
    return f"{where}layer {layer}, {module}: {a} -> {b} ({delta})"


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
    lent = _lent_note(figures)
    if lent:
        lines.append(f"note: {lent}")
    unchanged = sum(f.kind == "unchanged" for f in figures)
    lines.append(f"{len(figures) - unchanged} of {len(figures)} figures differ"
                 + (f"; images in {display_path(folder)}/index.html"
                    if unchanged < len(figures) else ""))
    return "\n".join(lines) + "\n"


def _linker(repo: Path, folder: Path, prefix: str | None) -> Callable[[str], str]:
    """How markdown links an image: under ``--image-url`` (where the review
    folder is published: a pull request comment shows it), else by its path
    from the repository's root (a report committed at the root shows it)."""
    if prefix is not None:
        return lambda name: prefix.rstrip("/") + "/" + _url(name)
    try:
        base = folder.resolve().relative_to(repo.resolve()).as_posix() + "/"
    except ValueError:  # the folder is outside the repository: as it opens from here
        base = Path(display_path(folder)).as_posix() + "/"
    return lambda name: _url(base + name)


def _markdown(figures: list[Any], old: str, new: str, link: Callable[[str], str]) -> str:
    out = [f"## figspec diff `{old}` .. `{new}`\n"]
    for f in figures:
        if f.kind == "unchanged":
            continue
        out.append(f"### {f.kind}: `{f.spec}`\n")
        for name in ("before", "after", "difference"):
            if name in f.images:
                out.append(f"![{name}]({link(f.images[name])}) ")
        out.append("\n")
        if f.cells:
            heads = _heads(f)
            out.append("| " + " | ".join(heads) + " |\n" + "|---" * len(heads) + "|")
            out += ["| " + " | ".join(_md_cell(v) for v in _fields(c, len(heads) > len(_HEADS)))
                    + " |" for c in f.cells[:SHOW_CELLS]]
            out.append("")
        if f.other:
            out.append(f"Also changed: {'; '.join(f.other)}\n")
        out += [f"Note: {n}\n" for n in f.notes]
        for d in f.old.diagnostics + f.new.diagnostics:
            out.append(f"    {d.format()}")
    lent = _lent_note(figures)
    if lent:
        out.append(f"Note: {_md_text(lent)}\n")
    out.append(f"{sum(f.kind != 'unchanged' for f in figures)} of {len(figures)} figures "
               "differ.\n")
    return "\n".join(out)


def _md_text(text: str) -> str:
    """Text in a Markdown paragraph, shown as written (paths hold `_`, `*`)."""
    return "".join("\\" + ch if ch in "\\`*_[]<>" else ch for ch in text)


def _md_cell(text: str) -> str:
    """Text in a Markdown table cell, shown as written."""
    return "".join("\\" + ch if ch in "\\|`*_[]<>" else ch for ch in text)


def _json(figures: list[Any], old: str, new: str, folder: Path) -> str:
    lent = _lent_note(figures)
    data = {"old": old, "new": new, "notes": [lent] if lent else [], "figures": [{
        "spec": f.spec, "kind": f.kind, "total_cells": f.total_cells,
        "added_cells": f.added_cells, "removed_cells": f.removed_cells,
        "cells": [{"panel": c.panel, "layer": c.layer, "module": c.module, "before": c.before,
                   "after": c.after} for c in f.cells],
        "other": f.other, "notes": f.notes, "images": f.images,
        "from_working_tree": f.borrowed,
        "diagnostics": [d.to_json() for d in f.old.diagnostics + f.new.diagnostics]}
        for f in figures]}
    return json.dumps(data, indent=2) + "\n"
