"""The fonts figures are drawn with. They ship with figspec, never the machine's.

The font files come from matplotlib's wheel, the one well-kept PyPI package
that ships freely licensed fonts: DejaVu (Bitstream Vera licence) and STIX
(SIL OFL), a Times design that matches the body text of the NeurIPS, ICML,
ICLR, ACL and CVPR templates. matplotlib itself is never imported.

vl-convert finds fonts through fontdb, which reads the fontconfig file named
by ``FONTCONFIG_FILE``; pointing that at a file listing only our folder keeps
a system font with the same family name from taking over, so a figure is
drawn alike on every machine (vl-convert's built-in Liberation Sans stays).
"""

from __future__ import annotations

import html
import importlib.util
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from .caches import memo

#: Family name as Vega writes it -> its files (regular, bold, italic, bold italic).
FAMILIES: dict[str, tuple[str, ...]] = {
    "DejaVu Sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
                    "DejaVuSans-BoldOblique.ttf"),
    "DejaVu Serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
                     "DejaVuSerif-BoldItalic.ttf"),
    "STIXGeneral": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
                    "STIXGeneralBolIta.ttf"),
}
#: What a spec may write -> the family drawn.
ALIASES = {"sans-serif": "DejaVu Sans", "sans": "DejaVu Sans", "serif": "STIXGeneral",
           "stix": "STIXGeneral", "times": "STIXGeneral"}
FAMILY_NAMES = ("serif", "sans-serif", "DejaVu Sans", "DejaVu Serif", "STIX")
DEFAULT = "DejaVu Sans"


def family_of(name: str) -> str | None:
    """The family drawn for a spec's ``font.family`` (case-insensitive), or None."""
    key = name.strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    return next((f for f in FAMILIES if f.lower() == key), None)


def font_dir() -> Path | None:
    """matplotlib's folder of TrueType fonts, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"


def missing(family: str) -> list[str]:
    """The files of a family that are not installed (empty when all are)."""
    folder = font_dir()
    return [f for f in FAMILIES[family] if folder is None or not (folder / f).is_file()]


def fontconfig_file(folder: Path) -> Path:
    """A fontconfig file listing ``folder`` alone (in figspec's cache, else a
    file of this process's own): named in ``FONTCONFIG_FILE`` while
    vl-convert loads its fonts, fontdb sees our fonts only."""
    from . import cache

    text = ('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
            f"<fontconfig><dir>{html.escape(str(folder))}</dir></fontconfig>\n")
    return cache.put("fonts.conf", text.encode()) or _private("fonts.conf", text.encode())


def _private(name: str, content: bytes) -> Path:
    """A file of this process's own, for when figspec's cache cannot be
    written: without the fontconfig file the machine's fonts could take over a
    family name, and a figure must be drawn in the shipped fonts or not at
    all (an OSError here fails the figure, saying why)."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="figspec-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / name).write_bytes(content)
    return folder / name


def text_width(family: str, text: str, bold: bool = False) -> float:
    """Width of ``text`` in ``family``'s regular (or bold) face, in em
    (multiply by the size in pt), from the font's own advance widths: what
    Vega will measure, without running Vega. A character the font lacks
    counts as 1 em."""
    face = _face(family, 1 if bold else 0)
    if face is None:
        return float(len(text))
    cmap, metrics, per_em = face
    return sum(metrics[cmap[ord(ch)]][0] / per_em if ord(ch) in cmap else 1.0 for ch in text)


def missing_characters(family: str, text: str) -> list[str]:
    """The characters of ``text`` that ``family``'s regular face cannot draw
    (vl-convert would draw each as an empty box in PNG and PDF)."""
    if text.isascii():
        return []  # every shipped family covers ASCII; no font file read
    covered = _coverage(family)
    return sorted({ch for ch in text if ch.isprintable() and ord(ch) not in covered})


#: Characters that break a line, which a figure's one-line texts cannot hold.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def undrawable(text: str) -> list[tuple[str, str]]:
    """The characters of ``text`` that no font draws, each with what it is:
    controls (C0, DEL, C1), line breaks, tabs, private-use characters, lone
    surrogates and noncharacters (U+FFFE, U+FDD0...). vl-convert's renderer
    crashes on some (U+000B) and draws the others as boxes or nothing."""
    if text.isascii() and text.isprintable():
        return []  # the common case, in one pass
    return sorted({(ch, kind) for ch in text if (kind := _undrawable_kind(ch))})


def _undrawable_kind(ch: str) -> str | None:
    if ch in _LINE_BREAKS:
        return "a line break"
    if ch == "\t":
        return "a tab"
    code = ord(ch)
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return "a noncharacter"
    return {"Cc": "a control character", "Co": "a private-use character",
            "Cs": "a lone surrogate"}.get(unicodedata.category(ch))


@memo("fonts.coverage")
def _coverage(family: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    folder = font_dir()
    if folder is None:
        return frozenset(range(32, 127))
    return frozenset(TTFont(str(folder / FAMILIES[family][0]), lazy=True).getBestCmap())


@memo("fonts.face")
def _face(family: str, face: int = 0
          ) -> tuple[Mapping[int, str], Mapping[str, tuple[int, int]], int] | None:
    """A face's character map, advance widths (with left side bearings, by
    glyph name) and units per em; read-only, as they are kept."""
    from fontTools.ttLib import TTFont  # ships with matplotlib; ~50 ms, only when needed

    folder = font_dir()
    if folder is None:
        return None
    font = TTFont(str(folder / FAMILIES[family][face]), lazy=True)
    return (MappingProxyType(dict(font.getBestCmap())),
            MappingProxyType(dict(font["hmtx"].metrics)), font["head"].unitsPerEm)
