"""Vega-Lite -> file bytes through vl-convert. Knows nothing of specs.

Each figure's Vega is run once, to SVG; PNG and PDF are drawn from that SVG
(measured on a 28 x 7 heatmap: svg_to_png ~25 ms and svg_to_pdf ~10 ms
against ~55 ms for each of vegalite_to_png / vegalite_to_pdf).

Every output is byte-for-byte reproducible:

* vl-convert numbers SVG ``gradient_N`` and ``clipN`` ids with a counter that
  runs for the life of the process; they are renumbered by first appearance.
* ``svg_to_pdf`` orders font objects from a randomly seeded hash map; the PDF
  is rewritten by qpdf (pikepdf) in traversal order with a content-derived /ID.
* The HTML page is written by :mod:`figspec.html`, not ``vegalite_to_html``.

vl-convert is always called with ``allowed_base_urls=[]``: nothing a spec says
can make rendering read a file or the network.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .vega import LOCALE, engine

#: Largest PNG drawn, in pixels: 60 megapixels is ~240 MB of pixmap.
MAX_PNG_PIXELS = 60_000_000


class NotDrawable(ValueError):
    """The figure cannot be drawn as asked (the message says why): not a bug."""


class TooLargeToDraw(NotDrawable):
    """The drawing, as Vega laid it out, would make too large a PNG."""
#: SVG width and height attributes, and the same in points: ("3.25in", "2.4in", 234.0, 172.8)
Size = tuple[str, str, float, float]
_ID_REF = re.compile(r'(id="|url\(#|href="#)((?:gradient_|clip)\d+)(?=[")])')


def to_svg(vl: dict[str, Any]) -> str:
    svg = engine().vegalite_to_svg(vl, allowed_base_urls=[], format_locale=LOCALE,
                                 time_format_locale=LOCALE)
    return normalize_svg(svg)


def normalize_svg(svg: str) -> str:
    """Renumber vl-convert's per-process ``gradient_N``/``clipN`` ids by first appearance."""
    mapping: dict[str, str] = {}

    def rename(m: re.Match[str]) -> str:
        old = m.group(2)
        if old not in mapping:
            prefix = "gradient_" if old.startswith("gradient_") else "clip"
            mapping[old] = f"{prefix}{sum(k.startswith(prefix) for k in mapping) + 1}"
        return m.group(1) + mapping[old]

    return _ID_REF.sub(rename, svg)


_ROOT_SIZE = re.compile(r'^(<svg[^>]*?) width="([\d.]+)" height="([\d.]+)" viewBox="[^"]*"')


def drawn_size(svg: str) -> tuple[float, float]:
    """Width and height Vega drew at, in drawing units (points)."""
    m = _ROOT_SIZE.match(svg)
    if m is None:
        raise ValueError("unexpected SVG root element from vl-convert")
    return float(m.group(2)), float(m.group(3))


def sized(svg: str, width: str, height: str, box: tuple[float, float]) -> str:
    """The SVG shown at ``width`` x ``height`` (``3.25in``, ``308pt``, or plain
    numbers: points in a PDF), showing the drawing's ``box`` (points) from its
    top left corner. ``box`` has the proportions of width x height, so nothing
    is stretched; Vega rounds its drawing up to whole points, and what lies
    past ``box`` is the drawing's padding, never cut into by more than a point."""
    m = _ROOT_SIZE.match(svg)
    if m is None:
        raise ValueError("unexpected SVG root element from vl-convert")
    rest = svg[m.end():]
    # Vega's white background covers what it drew: make it cover the box.
    rest = _BACKGROUND.sub(f'\\1<rect width="{box[0]:g}" height="{box[1]:g}"', rest, count=1)
    return (f'{m.group(1)} width="{width}" height="{height}" '
            f'viewBox="0 0 {box[0]:g} {box[1]:g}"' + rest)


_BACKGROUND = re.compile(r'^(>)<rect width="[\d.]+" height="[\d.]+"(?= fill=)')


def svg_to_png(svg: str, scale: float) -> bytes:
    """The PNG at ``scale`` pixels per point, its pHYs chunk saying so
    (``scale * 72`` pixels per inch), so LaTeX and Word place it at its size.
    resvg rounds the pixel size down, in single precision: the nudge makes 5.5in at 300 dpi
    1650 pixels, not the 1649 that 396 * 300/72 gives in floating point."""
    return engine().svg_to_png(svg, ppi=scale * 72 * (1 + 1e-6))


def svg_to_pdf(svg: str) -> bytes:
    import pikepdf

    raw = engine().svg_to_pdf(svg)
    with pikepdf.open(io.BytesIO(raw)) as pdf:
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True, compress_streams=True,
                 object_stream_mode=pikepdf.ObjectStreamMode.preserve)
    return out.getvalue()


def render(vl: dict[str, Any], formats: Iterable[str], *, scale: float = 2.0,
           title: str = "figure", size: Size | None = None,
           cells: int | None = None, html: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The requested formats' bytes, drawing the Vega once. Every format has
    one physical size: a drawing unit is a point (1/72 in). The SVG says its
    size in points, or with ``size`` in the unit written there (``3.25in``);
    the PDF page is that many points; the PNG has ``scale`` pixels per point.
    ``html``: the HTML page's own Vega-Lite (an interactive one), if not ``vl``."""
    formats = list(formats)
    out: dict[str, bytes] = {}
    svg = to_svg(vl) if {"svg", "png", "pdf"} & set(formats) else ""
    if svg and cells is not None:
        _check_cells(svg, cells)
    in_points = svg
    if svg:
        if size is None:
            w, h = drawn_size(svg)
            size = (f"{w:g}pt", f"{h:g}pt", w, h)
        box = (size[2], size[3])
        # The real drawn size, not an estimate: long text can make a drawing
        # far wider than its cells.
        pixels = box[0] * box[1] * scale ** 2
        if "png" in formats and pixels > MAX_PNG_PIXELS:
            raise TooLargeToDraw(f"the PNG would have {pixels / 1e6:.0f} million pixels "
                                 f"({box[0]:g} x {box[1]:g} pt), more than "
                                 f"{MAX_PNG_PIXELS / 1e6:.0f} million")
        in_points = sized(svg, f"{box[0]:g}", f"{box[1]:g}", box)
        svg = sized(svg, size[0], size[1], box)
    for fmt in formats:
        if fmt == "svg":
            out[fmt] = svg.encode("utf-8")
        elif fmt == "png":
            out[fmt] = svg_to_png(in_points, scale)
        elif fmt == "pdf":
            out[fmt] = svg_to_pdf(in_points)
        elif fmt == "html":
            from .html import html_page

            out[fmt] = html_page(html or vl, title).encode("utf-8")
        else:
            raise ValueError(f"unknown format {fmt!r}")
    return out


@dataclass(frozen=True)
class RenderJob:
    """One figure to draw: plain data, cheap to send to a worker process."""

    vegalite: dict[str, Any]
    formats: tuple[str, ...]
    scale: float
    title: str
    size: Size | None = None
    #: the cells Vega must draw (None: not checked)
    cells: int | None = None
    #: the HTML page's own Vega-Lite (a slider over a run's steps), if not ``vegalite``
    html: dict[str, Any] | None = None


@dataclass(frozen=True)
class Drawing:
    """What a worker returns: the files, or why there are none and whether
    that is figspec's fault (a bug) rather than the figure's (too large)."""

    files: dict[str, bytes] | None
    error: str | None = None
    bug: bool = False
    #: how long drawing took, where it was drawn
    seconds: float = 0.0


#: How Vega's SVG marks each drawn cell (the container says "rect mark container").
_CELL = 'aria-roledescription="rect mark"'


def _check_cells(svg: str, cells: int) -> None:
    """Vega drops a cell it cannot scale (and logs, at most): a figure missing
    cells is never written."""
    drawn = svg.count(_CELL)
    if drawn < cells:
        raise NotDrawable(f"Vega drew {drawn} of the {cells} cells; a value its colour scale "
                          "cannot compute with?")


def render_task(job: RenderJob) -> Drawing:
    """Runs in a worker: the figure's files, or the error that stopped them
    (reported for that figure; the build goes on)."""
    start = time.perf_counter()
    try:
        files = render(job.vegalite, job.formats, scale=job.scale, title=job.title,
                       size=job.size, cells=job.cells, html=job.html)
        return Drawing(files, seconds=time.perf_counter() - start)
    except NotDrawable as e:
        return Drawing(None, str(e))
    except Exception as e:
        return Drawing(None, f"{type(e).__name__}: {e}", bug=True)


def warm_up(parent: int | None = None) -> None:
    """Run one tiny conversion: vl-convert's first one in a process costs ~1 s.
    In a worker, also watch the process that started the build: a worker
    outlives it never (killed with -9, it cannot tell its workers)."""
    if parent is not None:
        import threading

        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    vl = {"data": {"values": [{"v": 1}]}, "mark": "rect",
          "encoding": {"color": {"field": "v", "type": "quantitative"}}}
    svg = to_svg(vl)
    svg_to_png(svg, 1)
    svg_to_pdf(svg)


def _exit_with(pid: int, every: float = 0.5) -> None:
    """End this process as soon as process ``pid`` is gone (or a zombie: dead,
    but not yet waited for by its own parent)."""
    while True:
        time.sleep(every)
        if not _alive(pid):
            os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: kill(0) is all we know
    return state not in (b"Z", b"X")
