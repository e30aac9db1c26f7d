"""Text in the figure: its measurement (the font's advance widths, see
:mod:`figspec.fonts`), the choices that depend on it, and every readability
check. Choosing functions never raise; the ``check_*`` functions raise
:class:`LayoutError` for text that would run into other text or out of its
cell, and are run once, on the figure's final cell size."""

from __future__ import annotations

import math

from ..cells import Table
from ..fonts import family_of, text_width
from ..models import Spec
from .errors import LabelError, LayoutError

#: Vega's default sizes (pt), used where the spec gives no font size.
LABEL_SIZE, FIGURE_TITLE_SIZE = 10, 13
#: Vega's gap (pt) between a title and what it stands above.
TITLE_OFFSET = 4


def label_size(spec: Spec) -> float:
    """The axis and colorbar labels' font size (pt)."""
    return spec.font.size or LABEL_SIZE


def widest_label(spec: Spec, tables: list[Table]) -> str:
    """The module label that is widest in the figure's font."""
    family = family_of(spec.font.family) or ""
    return max((m.shown for t in tables for m in t.modules), key=lambda s: text_width(family, s))


def d3_number(fmt: str, value: float) -> str:
    """``value`` written roughly as d3-format writes it with ``fmt``: near enough
    to measure its width (Python's format mini-language is d3's origin)."""
    spec = fmt.replace("~", "").replace("r", "g").replace("s", "g").replace("p", "%")
    try:
        text = format(value, spec)
    except ValueError:
        text = format(value, ".6g")
    if "~" in fmt and "." in text and "e" not in text and not text.endswith("%"):
        text = text.rstrip("0").rstrip(".")  # d3's `~` trims insignificant zeros
    return text.replace("-", "\u2212")


# -- layer labels -----------------------------------------------------------------

def check_tick_labels(given: int | None, cell_height: float, size: float) -> None:
    """LayoutError when layer labels every ``given`` (``tick_every``) layers overlap."""
    if given is not None and given * cell_height < size:
        fits = math.ceil(size / cell_height)
        raise LayoutError(
            ("layers", "tick_every"), f"layer labels every {given} overlap: the cells are "
            f"{cell_height:.3g} pt high and the labels {size:g} pt",
            f"use `tick_every: {fits}` or more, or leave it out to have one chosen")


# -- module labels ----------------------------------------------------------------

#: Angles module labels may be turned to; the room (em) kept between level
#: ones, and the pitch (em) of turned ones across their slant (about
#: matplotlib's line spacing: labels one em apart touch).
ANGLES = (0, 45, 90)
_LABEL_GAP, _TURNED_PITCH = 0.3, 1.15


def label_need(spec: Spec, tables: list[Table], angle: int) -> float:
    """The cell width (pt) at which module labels turned ``angle`` degrees do
    not run into each other: level ones side by side, measured with the
    font's advance widths; turned ones _TURNED_PITCH em apart across their slant."""
    size = label_size(spec)
    if angle:
        return _TURNED_PITCH * size / math.sin(math.radians(angle))
    family = family_of(spec.font.family) or ""
    need = 0.0
    for table in tables:
        widths = [text_width(family, m.shown) * size for m in table.modules]
        for a, b in zip(widths, widths[1:]):
            need = max(need, (a + b) / 2 + _LABEL_GAP * size)
    return need


def _allowed(spec: Spec) -> tuple[int, ...]:
    given = spec.module_labels.angle
    return ANGLES if given == "auto" else (given,)


def _fitting(spec: Spec, tables: list[Table], cell_width: float) -> list[int]:
    return [a for a in _allowed(spec) if label_need(spec, tables, a) <= cell_width + 1e-9]


def label_angle(spec: Spec, tables: list[Table], cell_width: float) -> int:
    """The angle module labels are drawn at: as given, or the smallest that
    fits; where none fits, the last allowed (:func:`check_module_labels` says so)."""
    fits = _fitting(spec, tables, cell_width)
    return fits[0] if fits else _allowed(spec)[-1]


def check_module_labels(spec: Spec, tables: list[Table], cell_width: float) -> None:
    """LabelError where module labels run into each other at every angle allowed."""
    if not _fitting(spec, tables, cell_width):
        raise _label_error(spec, tables, cell_width)


def _label_error(spec: Spec, tables: list[Table], cell_width: float) -> LabelError:
    size = label_size(spec)
    given = spec.module_labels.angle
    # At 90°, the cells' width is the labels' pitch.
    largest = math.floor(cell_width / _TURNED_PITCH * 2) / 2
    if given == "auto":
        loc = _label_loc(spec)
        need = label_need(spec, tables, 90)
        options = [f"`cell: {{width: {math.ceil(need)}}}` or more"] if not spec.size else []
        if largest >= 4:
            options.append(f"`font.size: {largest:g}` or less")
        return LabelError(loc, f"module labels run into each other at every angle: the cells "
                          f"are {cell_width:.3g} pt wide and the labels {size:g} pt high",
                          options + ["fewer modules"], need)
    need = label_need(spec, tables, given)
    detail = ""
    if given == 0:
        family = family_of(spec.font.family) or ""
        widest = widest_label(spec, tables)
        detail = f" (\"{widest}\" is {text_width(family, widest) * size:.3g} pt wide)"
    fits = [a for a in ANGLES if label_need(spec, tables, a) <= cell_width]
    options = [f"`angle: {fits[0]}` (it fits)"] if fits else []
    if given == 0:
        options.append("shorter labels (`label:` in `modules`)")
    if not spec.size:
        options.append(f"`cell: {{width: {math.ceil(need)}}}` or more")
    return LabelError(("module_labels", "angle"), f"module labels at {given}° run into each "
                      f"other: the cells are {cell_width:.3g} pt wide{detail}", options, need)


def _label_loc(spec: Spec) -> tuple[str | int, ...]:
    """Where labels that collide at every angle are reported: the size that
    squeezes the cells, else the cell width or font size written, else the
    modules."""
    if spec.size:
        return ("size",)
    if "cell" in spec.model_fields_set:
        return ("cell", "width")
    return ("font", "size") if spec.font.size is not None else ("modules",)


# -- colorbar labels --------------------------------------------------------------

#: Room between colorbar labels: level ones (em), and one above the other (label heights).
_TICK_GAP, _TICK_ROOM = 0.5, 1.2
#: Without `legend.format`, a colorbar label stands within this share of the
#: colour domain's span of the value it labels: 1.4 pt on a 144 pt colorbar,
#: so the ends of a narrow domain read as they are (0.9998786, not 0.99988).
LABEL_TOLERANCE = 0.01
#: Labels at most this long are written in fixed point; longer ones (1e-9,
#: 3e12) to as few significant digits as the tolerance allows, if shorter.
_FIXED_LENGTH = 10


def colorbar_format(spec: Spec, values: list[float], domain: tuple[float, float]) -> str:
    """The d3-format of the colorbar's labels: ``legend.format``, else the
    fewest decimals (zeros trimmed) at which every labelled value is written
    within LABEL_TOLERANCE of the domain's span and no two labels are alike;
    in significant digits where that is shorter (very large or small values)."""
    if spec.legend.format:
        return spec.legend.format
    tolerance = LABEL_TOLERANCE * (domain[1] - domain[0])
    fixed = next((f",.{d}~f" for d in range(16) if _faithful(f",.{d}~f", values, tolerance)),
                 ".15~g")
    if max(len(d3_number(fixed, v)) for v in values) <= _FIXED_LENGTH:
        return fixed
    general = next((f".{p}~g" for p in range(1, 16) if _faithful(f".{p}~g", values, tolerance)),
                   ".15~g")
    longest = {f: max(len(d3_number(f, v)) for v in values) for f in (fixed, general)}
    return min((fixed, general), key=lambda f: longest[f])


def _faithful(fmt: str, values: list[float], tolerance: float) -> bool:
    """Whether each value written in ``fmt`` reads back within ``tolerance``,
    and the labels differ."""
    texts = [d3_number(fmt, v) for v in values]
    read = [float(t.replace("\u2212", "-").replace(",", "")) for t in texts]
    return len(set(texts)) == len(texts) and all(abs(r - v) <= tolerance
                                                 for r, v in zip(read, values))


def colorbar_overlap(spec: Spec, values: list[float], domain: tuple[float, float],
                     length: float, bottom: bool) -> str | None:
    """Why these colorbar labels would overlap, or None when they fit."""
    if len(values) < 2:
        return None
    size = label_size(spec)
    span = domain[1] - domain[0]
    gaps = [(b - a) / span * length for a, b in zip(values, values[1:])]
    if not bottom:
        room = _TICK_ROOM * size
        tight = min(gaps)
        return None if tight >= room else (f"{len(values)} labels on a colorbar {length:.3g} pt "
                                           f"long, {tight:.3g} pt apart, are {size:g} pt high")
    family = family_of(spec.font.family) or ""
    fmt = colorbar_format(spec, values, domain)
    widths = [text_width(family, d3_number(fmt, v)) * size for v in values]
    for (a, b), gap, wa, wb in zip(zip(values, values[1:]), gaps, widths, widths[1:]):
        if gap < (wa + wb) / 2 + _TICK_GAP * size:
            return (f"{d3_number(fmt, a)} and {d3_number(fmt, b)} are {gap:.3g} pt apart on a "
                    f"colorbar {length:.3g} pt long")
    return None


def check_colorbar_labels(spec: Spec, values: list[float], domain: tuple[float, float],
                          length: float, bottom: bool) -> None:
    """LayoutError where the ``legend.ticks`` given lie outside the domain or
    their labels (``values``) run into each other; the values chosen fit."""
    given = spec.legend.ticks
    if given is None:
        return
    lo, hi = domain
    outside = [v for v in values if not lo <= v <= hi] if not isinstance(given, int) else []
    if outside:
        raise LayoutError(("legend", "ticks"), f"{outside[0]:g} lies outside the colour "
                          f"domain {lo:g}..{hi:g}", "give values inside the domain, or "
                          "set `domain`")
    problem = colorbar_overlap(spec, values, domain, length, bottom)
    if problem is not None:
        raise LayoutError(("legend", "ticks"), f"the colorbar's labels run into each other: "
                          f"{problem}", "give fewer ticks, a shorter `legend.format`, or a "
                          "larger figure")


# -- values written in the cells --------------------------------------------------

#: Room (pt) an annotation leaves to its cell's sides, and above and below.
_ANNOTATION_MARGIN = (2.0, 1.0)


def annotation_size(spec: Spec) -> float:
    """The font size of the values written in the cells (``annotate``)."""
    assert spec.annotate is not None
    return spec.annotate.size or label_size(spec) - 2


def check_annotations(spec: Spec, table: Table, cell_width: float, cell_height: float) -> None:
    """LayoutError when the widest value, measured in the figure's font, would
    not fit its cell."""
    assert spec.annotate is not None
    size = annotation_size(spec)
    family = family_of(spec.font.family) or ""
    widest = max(text_width(family, d3_number(spec.annotate.format, v))
                 for v in table.values.values())
    fits = min((cell_width - _ANNOTATION_MARGIN[0]) / widest if widest else math.inf,
               cell_height - _ANNOTATION_MARGIN[1])
    if size <= fits:
        return
    given = spec.annotate.size is not None
    largest = math.floor(fits * 2) / 2
    hint = (f"use `annotate: {{size: {largest:g}}}` or less, a shorter `format`, or larger cells"
            if largest >= 2 else "use a shorter `format`, larger cells, or fewer layers")
    raise LayoutError(("annotate", "size") if given else ("annotate",),
                      f"values written in {size:g} pt do not fit cells {cell_width:.3g} x "
                      f"{cell_height:.3g} pt: they would run into each other", hint)
