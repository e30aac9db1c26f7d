"""The pipeline, phase by phase: one spec file to a drawn figure.

    load      YAML text -> values, each with its line and column  (yaml_reader)
    inherit   figspec.yaml's defaults and `extends:` files merged under it  (spec)
    validate  values -> the spec's models, every mistake at its node  (spec, models)
    read      each heatmap's data source -> rows with their origins  (sources/)
    cells     rows -> one checked number per (layer, module), per part  (cells)
    views     each view's tables -> the panels drawn: one, or one per part
              or per module where its source's rows come in parts  (views)
    layout    spec + cells -> Vega-Lite fitted to its size, text checked  (layout)
    render    Vega-Lite -> SVG, PNG, PDF, HTML  (render, in a worker process)

Every command goes through here, as Vega-Lite's ``compile()`` lists its
phases: ``check`` and ``status`` stop after the layout, ``table`` after
the views (:func:`read`), ``build`` and
``diff`` render in the worker pool (:func:`render_job`), the Python API and
``figspec serve`` in this process. Two entries start or end elsewhere: a
partial spec (``_base.yaml``) has no figure, and is checked up to the
validation and the checks of its text (:func:`check_partial`); diff's
difference image is a figure's spec changed in Python, laid out again
(:func:`relayout`). Nothing here keeps state between calls: what an
invocation knows travels in its :class:`~figspec.session.Session`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .diagnostics import Diagnostic, FigspecError, display_path
from .session import Session

if TYPE_CHECKING:
    from .cells import Table
    from .files import Stamp
    from .layout import Figure
    from .models import Spec
    from .project import Project
    from .render import RenderJob
    from .spec import LoadedSpec
    from .yaml_reader import Document

#: Room around the cells for axes, labels, title and colorbar (px), generously.
_MARGIN = 400


@dataclass(frozen=True)
class Prepared:
    """A spec through the layout: valid, its data read, ready to render."""

    loaded: LoadedSpec
    #: one table per heatmap (panel)
    tables: list[Table]
    #: the Vega-Lite, fitted to `size` and checked for overlapping text
    figure: Figure

    @property
    def inputs(self) -> dict[Path, Stamp]:
        """Every file read (the spec, what it inherits, its data), stamped as
        read. Of figspec.yaml, only the parts the figure depends on: its
        `defaults`, and the roots its data was read through."""
        from . import project

        out = dict(self.loaded.inputs)
        settings = project.of(self.loaded.path).settings
        if settings is not None:
            out.pop(settings.path.resolve(), None)
            out.update([project.part_input(settings, "defaults")])
        for t in self.tables:
            out.update(t.stamps)
        return out


def prepare(path: Path, session: Session, doc: Document | None = None) -> Prepared:
    """Every phase but rendering; FigspecError with every problem found.
    ``doc``: the spec as values already (given in Python), its file never read."""
    loaded, tables = read(path, session, doc, drawn=True)
    _check_size(loaded, tables)
    return Prepared(loaded, tables, _layout(loaded, tables))  # layout


def read(path: Path, session: Session, doc: Document | None = None, *, drawn: bool = False
         ) -> tuple[LoadedSpec, list[Table]]:
    """The phases up to the views: the valid spec (its views as drawn) and
    one table per heatmap, with no layout (what `figspec table` needs: its
    numbers have no labels to collide). ``drawn``: with the checks of the
    text the figure would draw (its font, its characters) too."""
    from . import project
    from .cells import read_tables
    from .spec import LoadedSpec, validate
    from .views import expand

    where = project.of(path)
    doc = load(path, doc, where)                            # load, inherit
    loaded = LoadedSpec(path, doc, validate(doc))           # validate
    if drawn:
        _check_font(loaded)
        _check_characters(loaded)
    rows = read_tables(loaded.doc, loaded.spec, root=where.root,  # read, cells
                       settings=where.settings, session=session)
    drawn_spec, tables = expand(loaded.doc, loaded.spec, rows)   # views
    return LoadedSpec(loaded.path, loaded.doc, drawn_spec), tables


def load(path: Path, doc: Document | None = None, where: Project | None = None) -> Document:
    """The spec's values with what it inherits merged under them (its
    project's ``defaults``, its ``extends:`` files), each where it was written;
    not validated. ``doc``: the spec as values already, its file never read;
    ``where``: its project, when the caller has it already."""
    from . import project
    from .spec import inherit
    from .yaml_reader import load_yaml

    where = where or project.of(path)
    return inherit(doc or load_yaml(path), where.settings, where.root)


def check_partial(path: Path) -> Document:
    """A partial spec (``_base.yaml``, fields that other specs `extends:`)
    checked as far as it goes without a figure: what is written must be
    valid (nothing is required), and its text drawable in its font, as the
    full specs extending it would be checked. FigspecError where it is not."""
    from .spec import LoadedSpec, validate

    doc = load(path)                                        # load, inherit
    if doc.data is None:
        return doc  # an empty partial gives nothing, wrongly or not
    loaded = LoadedSpec(path, doc, validate(doc, partial=True))  # validate
    _check_font(loaded)
    _check_characters(loaded)
    return doc


def relayout(prepared: Prepared, spec: Spec, tables: list[Table]) -> Prepared:
    """A prepared figure drawn again from its spec changed in Python and other
    tables (diff's difference image: the colours of after minus before): the
    checks after validation and the layout, each problem located in the
    spec the figure came from (FigspecError), never an internal error."""
    from .spec import LoadedSpec

    loaded = LoadedSpec(prepared.loaded.path, prepared.loaded.doc, spec)
    _check_characters(loaded)
    _check_size(loaded, tables)
    return Prepared(loaded, tables, _layout(loaded, tables))


def render_job(prepared: Prepared) -> RenderJob:
    """What rendering needs of a figure (its Vega-Lite and output settings):
    plain data, sent to a worker process or drawn here by :func:`render`."""
    from .render import RenderJob  # not at the top: `figspec table` never renders

    spec = prepared.loaded.spec
    fig = prepared.figure
    return RenderJob(fig.vegalite, tuple(spec.output.formats), fig.png_scale,
                     spec.title or prepared.loaded.name, fig.svg_size,
                     sum(len(t.layers) * len(t.modules) for t in prepared.tables),
                     fig.html_vegalite)


def render(prepared: Prepared, formats: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """The figure's files, drawn in this process (``formats``: instead of the
    spec's); FigspecError when it cannot be drawn."""
    from dataclasses import replace

    from .render import render_task

    job = render_job(prepared)
    drawing = render_task(replace(job, formats=formats) if formats else job)
    if drawing.files is None:
        raise FigspecError([failure(prepared.loaded.path, drawing.error, drawing.bug)])
    return drawing.files


def failure(spec: Path, error: str | None, bug: bool) -> Diagnostic:
    """Why a figure could not be drawn: too large (its fault) or a bug (ours)."""
    if bug:
        return Diagnostic(display_path(spec), message=f"rendering failed: {error}",
                          hint="this is a bug in figspec; please report it")
    return Diagnostic(display_path(spec), message=f"cannot draw the figure: {error}",
                      hint="lower `output.scale` or `output.dpi`, shorten long texts, or draw "
                      "fewer layers")


# -- checks between the phases ------------------------------------------------------

def _check_font(loaded: LoadedSpec) -> None:
    """A family whose files are missing would draw no text at all (vl-convert
    drops text it has no font for): refuse it."""
    from .fonts import family_of, folder_of, missing

    family = family_of(loaded.spec.font.family)
    assert family is not None  # the model checked the name
    lost = missing(family)
    if lost:
        raise FigspecError([loaded.doc.diagnostic(
            ("font", "family"), f"font family {family!r} is not installed: {', '.join(lost)} "
            f"missing from {folder_of(family) or 'matplotlib (not installed)'}",
            "reinstall figspec's fonts: pip install --force-reinstall matplotlib")])


def _check_characters(loaded: LoadedSpec) -> None:
    """Text in characters the figure's font lacks would be drawn as empty boxes
    in PNG and PDF (the SVG keeps the text, so nobody notices), and control
    characters crash the renderer or draw as boxes: refuse them, named."""
    from .fonts import family_of, missing_characters, undrawable

    spec = loaded.spec
    family = family_of(spec.font.family)
    assert family is not None
    problems = []
    for loc, text in _texts(spec):
        bad = undrawable(text or "")
        lost = missing_characters(family, text or "")
        if bad:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X}, {kind})" for ch, kind in bad[:5])
            problems.append(loaded.doc.diagnostic(
                loc, f"the text holds {shown}{' ...' if len(bad) > 5 else ''}, which cannot "
                "be drawn", f"remove {'it' if len(bad) == 1 else 'them'}: a figure's texts are "
                "each one line of printable characters"))
        elif lost:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in lost[:5])
            problems.append(loaded.doc.diagnostic(
                loc, f"the font ({family}) has no {shown}{' ...' if len(lost) > 5 else ''}: "
                "they would be drawn as empty boxes", "write the text in Latin, Greek or "
                "Cyrillic letters, or choose another `font.family`"))
    if problems:
        raise FigspecError(list(dict.fromkeys(problems)))


def _texts(spec: Spec) -> list[tuple[tuple[str | int, ...], str | None]]:
    """Every text of the spec drawn, with where it was written. A partial
    spec may lack any of them (its panels their modules, itself its data)."""
    texts: list[tuple[tuple[str | int, ...], str | None]] = [
        (("title",), spec.title), (("legend", "title"), spec.legend.title)]
    views = spec.panels if spec.panels is not None else [None]
    for i, panel in enumerate(views):
        base = spec.view_loc(i)
        view = panel or spec  # one heatmap: the top level is its view, and has no own title
        texts += [(base + ("title",), panel.title if panel else None),
                  (base + ("layers", "title"), view.layers.title)]
        texts += [(base + ("modules", j), m.shown) for j, m in enumerate(view.modules or [])]
    return texts


def _check_size(loaded: LoadedSpec, tables: list[Table]) -> None:
    """Refuse a PNG so large that drawing it would exhaust memory."""
    from .layout import png_scale
    from .render import MAX_PNG_PIXELS
    from .units import to_points

    spec = loaded.spec
    if "png" not in spec.output.formats:
        return
    if spec.size is not None:
        width = to_points(spec.size.width) if spec.size.width else None
        height = to_points(spec.size.height) if spec.size.height else None
        # One side given: take the other as 4x as long, more than any heatmap's shape.
        width = width or 4 * height  # type: ignore[operator]
        height = height or 4 * width
        where: tuple[str, ...] = ("output", "dpi")
    else:
        width = sum(len(t.modules) * spec.cell.width + _MARGIN for t in tables)
        height = max(len(t.layers) * spec.cell.height for t in tables) + _MARGIN
        where = ("output", "dpi") if spec.output.dpi else ("output", "scale")
    pixels = width * height * png_scale(spec) ** 2
    if pixels > MAX_PNG_PIXELS:
        raise FigspecError([loaded.doc.diagnostic(
            where, f"the PNG would have about {pixels / 1e6:.0f} million pixels, "
            f"more than {MAX_PNG_PIXELS / 1e6:.0f} million",
            "lower `output.scale` or `output.dpi`, the size, or draw fewer layers")])


def _layout(loaded: LoadedSpec, tables: list[Table]) -> Figure:
    """The figure, or FigspecError where it cannot be drawn readably: a size
    too small for the labels, labels or values that would overlap. Part of
    checking, so `check` refuses what `build` would; a figure with a `size`
    is measured on Vega's scenegraph for it (vl-convert is imported)."""
    from .layout import LayoutError, figure

    try:
        return figure(loaded.spec, tables)
    except LayoutError as e:
        raise FigspecError([loaded.doc.diagnostic(e.loc, str(e), e.hint)]) from None
    except Exception as e:  # a bug building the chart: fail this figure only
        raise FigspecError([failure(loaded.path, f"{type(e).__name__}: {e}", True)]) from None
