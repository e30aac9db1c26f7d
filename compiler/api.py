"""figspec from Python: ``figspec.load`` for a notebook, ``figspec.build``
for a script. Both apply the spec's project's figspec.yaml, as the command
line does.

    fig = figspec.load("specs/update_ratio_1p5b.yaml")
    fig                       # a cell's last line: shows the SVG figspec build writes,
                              # its fonts embedded
    fig.png()                 # the PNG instead (at its printed size), fig.html() the page
    fig.chart                 # the Altair chart, shown offline (Vega inlined)
    fig.save("fig.pdf")       # any of .svg .png .pdf .html

Nothing here loads anything from the network: a notebook shows the figures
on a cluster with no internet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diagnostics import Diagnostic, FigspecError, UsageError

__all__ = ["load", "build", "Loaded", "Drawn", "FigspecError"]

if TYPE_CHECKING:
    import altair as alt

    from .events import Result
    from .layout import Figure
    from .pipeline import Prepared


#: CSS pixels per point: a browser draws 96 px to the inch, a point is 1/72 inch.
CSS_PX_PER_PT = 96 / 72


@dataclass(frozen=True, repr=False)
class Drawn:
    """A figure drawn in one format: the bytes ``figspec build`` writes to that
    file. Jupyter shows it as what it is (a PNG at its printed size, however
    many pixels it has per point; an SVG with the shipped fonts its text uses
    embedded, subset to its characters, so it draws alike on any machine)."""

    #: "svg", "png" or "html"
    format: str
    data: bytes
    #: its width at its printed size, in CSS pixels (96 to the inch)
    width_px: float | None = None

    def __repr__(self) -> str:
        return f"<figspec {self.format}: {len(self.data):,} bytes>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        import base64

        if self.format == "svg":  # the fonts go in: a viewer's machine may lack them
            from .html import svg_with_fonts

            return {"image/svg+xml": svg_with_fonts(self.data.decode("utf-8"))}, {}
        if self.format == "png":
            meta = {"image/png": {"width": round(self.width_px, 2)}} if self.width_px else {}
            return {"image/png": base64.b64encode(self.data).decode("ascii")}, meta
        from .html import framed

        return {"text/html": framed(self.data.decode("utf-8"))}, {}

    def save(self, path: str | Path) -> Path:
        """Write the bytes to ``path`` (whatever its suffix says)."""
        from .files import write_atomic

        write_atomic(Path(path), self.data)
        return Path(path)


@dataclass(frozen=True, repr=False)
class Loaded:
    """A checked spec with its data, ready to show or save. The last line of a
    notebook cell shows it: its SVG (``display(fig, include=["image/png"])``
    or ``fig.png()`` for the PNG)."""

    path: Path
    prepared: Prepared
    #: what its sources said without failing (a checkpoint figure drawn from
    #: its committed numbers, the checkpoints not being here), once each
    notes: tuple[Diagnostic, ...] = ()

    @property
    def figure(self) -> Figure:
        return self.prepared.figure

    @property
    def vegalite(self) -> dict[str, Any]:
        """The self-contained Vega-Lite."""
        return self.figure.vegalite

    @property
    def chart(self) -> alt.TopLevelMixin:
        """The Altair chart of the figure drawn (its Vega-Lite, as fitted to
        its size), validated against the Vega-Lite schema."""
        return _altair(self.vegalite, self.title)

    @property
    def title(self) -> str:
        """The figure's title, else its spec's name (the HTML page's title)."""
        return self.prepared.loaded.spec.title or self.prepared.loaded.name

    def __repr__(self) -> str:
        return f"<figspec figure {self.prepared.loaded.name!r} from {self.path}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        """What Jupyter shows: the SVG as built with its fonts embedded (see
        ``Drawn``), or the PNG where asked for (``include=["image/png"]``);
        text/plain is IPython's, from repr."""
        want = [m for m in ("image/svg+xml", "image/png")
                if (m in include if include else m == "image/svg+xml")
                and not (exclude and m in exclude)]
        data: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for mime in want:
            drawn = self.svg() if mime == "image/svg+xml" else self.png()
            more, more_meta = drawn._repr_mimebundle_()
            data.update(more)
            meta.update(more_meta)
        return data, meta

    def svg(self) -> Drawn:
        """The SVG, byte for byte what ``figspec build`` writes (``.data``,
        ``.save``); shown in a notebook, it carries the fonts it is drawn in."""
        svg = self._render("svg")
        return Drawn("svg", svg, _svg_width(svg))

    def png(self, scale: float | None = None) -> Drawn:
        """The PNG: as built, or with ``scale`` pixels per point. Jupyter shows
        it at its printed size, sharp on a high-density screen."""
        png = self._render("png", scale)
        per_pt = scale or self.figure.png_scale
        return Drawn("png", png, _png_width(png) / per_pt * CSS_PX_PER_PT)

    def html(self) -> Drawn:
        """The interactive page ``figspec build`` writes (Vega inlined, fonts
        embedded: no network); Jupyter shows it in a frame that takes its size."""
        return Drawn("html", self._render("html"))

    def _render(self, fmt: str, scale: float | None = None) -> bytes:
        from dataclasses import replace

        from .pipeline import failure, render_job
        from .render import render_task

        job = replace(render_job(self.prepared), formats=(fmt,))
        drawing = render_task(replace(job, scale=scale) if scale else job)
        if drawing.files is None:
            raise FigspecError([failure(self.path, drawing.error, drawing.bug)])
        return drawing.files[fmt]

    def save(self, path: str | Path) -> Path:
        """Write the figure; the format is the file's suffix."""
        from .files import FORMATS, write_atomic
        from .pipeline import render

        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"{path}: unknown format {fmt!r}; use one of "
                             f"{', '.join('.' + f for f in FORMATS)}")
        write_atomic(path, render(self.prepared, (fmt,))[fmt])
        return path


def _svg_width(svg: bytes) -> float | None:
    """The SVG's width in CSS pixels, from its ``width="234pt"``."""
    import re

    found = re.search(rb'<svg[^>]*? width="([0-9.]+)(pt|px|in|cm|mm)?"', svg[:2000])
    if not found:
        return None
    per = {b"pt": CSS_PX_PER_PT, b"px": 1.0, b"in": 96.0, b"cm": 96 / 2.54, b"mm": 9.6 / 2.54}
    return float(found.group(1)) * per[found.group(2) or b"px"]


def _png_width(png: bytes) -> int:
    """A PNG's width in pixels, from its IHDR chunk."""
    return int.from_bytes(png[16:20], "big")


def _altair(vl: dict[str, Any], title: str) -> alt.TopLevelMixin:
    """Vega-Lite as an Altair chart, validated (Altair is imported only here),
    which a notebook shows offline."""
    import altair as alt

    vl = _schema_only(vl)
    kind = (alt.ConcatChart if "concat" in vl else alt.LayerChart if "layer" in vl
            else alt.Chart)
    chart: Any = _offline(kind, title)
    return chart.from_dict(vl, validate=True)


#: Altair's renderers that show a chart with Vega loaded from a public CDN.
_CDN_RENDERERS = ("default", "html")


def _offline(kind: type, title: str) -> type:
    """``kind`` (an Altair chart class) shown, under Altair's default
    renderers, as figspec's own HTML page: Vega inlined, no CDN. Any other
    renderer the user enabled (``png``, ``jupyter``, ...) is theirs."""
    import altair as alt

    def _repr_mimebundle_(self: Any, *args: Any, **kwds: Any) -> Any:
        if alt.renderers.active not in _CDN_RENDERERS:
            return kind._repr_mimebundle_(self, *args, **kwds)  # type: ignore[attr-defined]
        from .html import framed, html_page

        vl = self.to_dict()
        return {"text/html": framed(html_page(vl, title))}

    return type(kind.__name__, (kind,), {"_repr_mimebundle_": _repr_mimebundle_,
                                         "__module__": __name__,
                                         "__doc__": kind.__doc__})


def _schema_only(node: Any) -> Any:
    """A copy without the colorbar title's ``encode`` (the one key outside
    Vega-Lite's published schema, which Altair enforces): in a notebook that
    title reads top to bottom, as Vega turns it."""
    if isinstance(node, dict):
        return {k: _schema_only(v) for k, v in node.items()
                if not (k == "encode" and "titleOrient" in node)}
    if isinstance(node, list):
        return [_schema_only(v) for v in node]
    return node


def load(spec: str | Path | Mapping[str, Any], *, data: Any = None,
         allow_outside: bool = False) -> Loaded:
    """Check one spec and read its data; FigspecError says what is wrong.

    ``spec`` is a spec file, or the spec as a mapping (a notebook's dict; a
    relative ``data.path`` is then relative to the working directory).
    ``data`` gives the data instead of ``data.path``/``data.values``, with a
    file or a mapping: records (a list of mappings) or a pandas DataFrame
    (anything with ``to_dict("records")``; pandas itself is never imported
    here). A pivoted DataFrame (``df.pivot(index="layer", columns="module",
    values="value")``: layers as its index, modules as its columns) is read as
    ``layout: wide``. A problem in ``data`` names the DataFrame's row."""
    import os

    from .pipeline import prepare
    from .session import Session
    from .yaml_reader import Document, load_yaml

    if isinstance(spec, Mapping):
        path = Path.cwd() / "<spec>"
        doc = Document(path, _plain(spec, ()), positions={(): (1, 1)}, in_memory=True)
    elif not isinstance(spec, (str, os.PathLike)):
        raise UsageError(f"figspec.load takes a spec file's path or the spec as a mapping, "
                         f"not {_kind(spec)}")
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        if data is None:
            session = Session(allow_outside=allow_outside)
            return _loaded(path, prepare(path, session), session)
        doc = load_yaml(path)
    if data is not None:
        _with_data(doc, data)
    session = Session(allow_outside=allow_outside)
    return _loaded(path, prepare(path, session, doc), session)


def _loaded(path: Path, prepared: Prepared, session: Any) -> Loaded:
    notes = dict.fromkeys(n for some in session.notes.values() for n in some)
    return Loaded(path, prepared, tuple(notes))


def _with_data(doc: Any, data: Any) -> None:
    """Put ``data`` (records or a DataFrame) into the spec as its inline values,
    each row named for diagnostics."""
    records, layer = _records(data)
    index = _index(data)
    names = [f"DataFrame row {i}" if index is not None else f"record {i}"
             for i in range(len(records))]
    if index is not None:
        names = [n + (f" (index {index[i]!r})" if index[i] != i else "")
                 for i, n in enumerate(names)]
    records = [_record(r, names[i]) for i, r in enumerate(records)]
    if not isinstance(doc.data, dict):
        return  # validation says what is wrong with the spec
    written = doc.data.get("data")
    given: Mapping[str, Any] = written if isinstance(written, Mapping) else {}
    settings = {k: v for k, v in given.items() if k not in ("path", "values")}
    if layer is not None:  # pivoted: one row per layer, one column per module
        settings.update(layout="wide", layer=layer)
    doc.data = {**doc.data, "data": {**settings, "values": records}}
    for i, shown in enumerate(names):
        doc.labels[("data", "values", i)] = shown


def _records(data: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Records, and the layer column when ``data`` is a pivoted DataFrame."""
    layer = None
    if hasattr(data, "to_frame") and not isinstance(data, Mapping):  # a pandas Series
        raise UsageError("`data=` takes records or a DataFrame, not a Series: give "
                         "`series.reset_index()` (its index and values as two columns)")
    if hasattr(data, "to_dict") and not isinstance(data, Mapping):  # a pandas DataFrame
        if _pivoted(data):
            layer = str(data.index.name)
            data = data.reset_index()
            data.columns = [str(c) for c in data.columns]
        data = data.to_dict("records")
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise UsageError("`data=` takes records (a list of mappings) or a pandas DataFrame")
    return [dict(r) for r in data], layer


#: What a spec's or a record's values may be: what YAML and JSON write.
_PLAIN = (str, int, float, bool, type(None))


def _scalar(value: Any) -> tuple[bool, Any]:
    """A record's or a spec's scalar as YAML would give it, and whether it is
    one: a numpy scalar (anything whose ``item()`` gives one; numpy is never
    imported) as its Python value, pandas' missing NaT and NA as None."""
    if type(value) in _PLAIN:
        return True, value
    for kind in (bool, int, float, str):  # a subclass: np.float64, np.str_
        if isinstance(value, kind):
            return True, kind(value)
    if type(value).__name__ in ("NaTType", "NAType"):
        return True, None
    item = getattr(value, "item", None)
    if callable(item):
        try:
            plain = item()
        except (TypeError, ValueError):  # an array of many values
            return False, value
        if type(plain) in _PLAIN:
            return True, plain
    return False, value


def _record(record: dict[Any, Any], shown: str) -> dict[str, Any]:
    """A record with plain values; UsageError naming it and the column where
    one is not a number, a text or empty (bytes, a date, a list, an object)."""
    out = {}
    for key, value in record.items():
        ok, plain = _scalar(value)
        if not ok:
            raise UsageError(f"`data=`: {shown}, column `{key}`: {_kind(value)} is not a "
                             "number or a text" + ("; decode it to text first"
                                                   if isinstance(value, bytes) else ""))
        out[str(key) if not isinstance(key, str) else key] = plain
    return out


def _plain(node: Any, loc: tuple[Any, ...]) -> Any:
    """The spec mapping as YAML would give it: mappings, lists and plain
    values; UsageError naming the key of anything else (a set has no order)."""
    where = ".".join(str(k) for k in loc) or "the spec"
    if isinstance(node, Mapping):
        return {k if isinstance(k, str) else _not_a_key(k, where): _plain(v, loc + (k,))
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v, loc + (i,)) for i, v in enumerate(node)]
    ok, plain = _scalar(node)
    if ok and isinstance(plain, int) and plain.bit_length() > 1000:
        raise UsageError(f"spec key `{where}`: an integer of about "
                         f"{int(plain.bit_length() * 0.30103) + 1:,} digits is too large")
    if ok:
        return plain
    hint = "; give a list (a set has no order)" if isinstance(node, (set, frozenset)) else ""
    raise UsageError(f"spec key `{where}`: {_kind(node)} is not a YAML value{hint}")


def _not_a_key(key: Any, where: str) -> str:
    raise UsageError(f"spec key `{where}`: the key {_kind(key)} is not a text")


def _kind(value: Any) -> str:
    """A value as named in a message: its type, and itself when short."""
    shown = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "..."
    name = type(value).__name__
    article = "an" if name[0].lower() in "aeiou" else "a"
    return f"{article} {name} ({shown[:40]}{'...' if len(shown) > 40 else ''})"


def _pivoted(frame: Any) -> bool:
    """Layers as a named index, modules as the columns: what
    ``df.pivot(index="layer", columns="module", ...)`` gives."""
    index = getattr(frame, "index", None)
    name = getattr(index, "name", None)
    return name is not None and name not in frame.columns


def _index(data: Any) -> list[Any] | None:
    index = getattr(data, "index", None)
    if index is None or isinstance(data, list):
        return None
    return list(index) if not _pivoted(data) else list(range(len(index)))


def build(paths: Sequence[str | Path] = (), *, out_dir: str | Path | None = None,
          force: bool = False, jobs: int | None = None, engine: str | None = None
          ) -> list[Result]:
    """What ``figspec build`` does: draw every figure not up to date; one Result
    per spec. As on the command line, the project (of the first path, else of
    the working directory) gives the default specs folder, out folder and
    engine (``engine``: a Dask scheduler's address, or "local"; see
    :mod:`figspec.engine`)."""
    from .builder import Options
    from .builder import build as run
    from .project import of_command

    found = [Path(p) for p in paths]
    project = of_command(found)
    return run(found or [project.specs_dir],
               Options(out_dir=Path(out_dir) if out_dir else project.out_dir,
                        force=force, jobs=jobs, engine=engine or project.engine))
