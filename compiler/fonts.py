"""The fonts figures are drawn with. They ship with figspec, never the machine's.

Most font files come from matplotlib's wheel, the one well-kept PyPI package
that ships freely licensed fonts: DejaVu (Bitstream Vera licence) and STIX
(SIL OFL), a Times design with Times' advance widths (within 0.01/1000 em of
LaTeX's `times`, ptmr), the body text of the NeurIPS, ICML, ICLR, ACL and
CVPR templates. matplotlib itself is never imported. Computer Modern (TMLR,
JMLR, arXiv preprints in LaTeX's default face) ships in figspec's own
``fontfiles/``: CMU Serif 0.7.0 (Computer Modern Unicode, SIL OFL 1.1, the
files of Debian's fonts-cmu, unmodified), drawn from Knuth's METAFONT
sources: cmr10's widths within 0.9/1000 em, and the minus and en dash that
matplotlib's cmr10.ttf lacks.

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
#: figspec's own families, in compiler/fontfiles/ (see the module's docstring).
OWN_FAMILIES: dict[str, tuple[str, ...]] = {
    "CMU Serif": ("cmunrm.ttf", "cmunbx.ttf", "cmunti.ttf", "cmunbi.ttf"),
}
#: The face of a venue's LaTeX template: its body text.
VENUE_FACES = {"neurips": "STIXGeneral", "iclr": "STIXGeneral", "icml": "STIXGeneral",
               "cvpr": "STIXGeneral", "aaai": "STIXGeneral", "acl": "STIXGeneral",
               "tmlr": "CMU Serif", "jmlr": "CMU Serif", "arxiv": "CMU Serif"}
#: What a spec may write -> the family drawn.
ALIASES = {"sans-serif": "DejaVu Sans", "sans": "DejaVu Sans", "serif": "STIXGeneral",
           "stix": "STIXGeneral", "times": "STIXGeneral", "computer modern": "CMU Serif",
           "cm": "CMU Serif", "cmu": "CMU Serif", **VENUE_FACES}
FAMILY_NAMES = ("serif", "sans-serif", "DejaVu Sans", "DejaVu Serif", "STIX", "times",
                "Computer Modern", "CMU Serif", *VENUE_FACES)
DEFAULT = "DejaVu Sans"
_OWN_DIR = Path(__file__).parent / "fontfiles"


def family_of(name: str) -> str | None:
    """The family drawn for a spec's ``font.family`` (case-insensitive), or None."""
    key = name.strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    return next((f for f in (*FAMILIES, *OWN_FAMILIES) if f.lower() == key), None)


def files_of(family: str) -> tuple[str, ...]:
    """A family's files: regular, bold, italic, bold italic."""
    return OWN_FAMILIES.get(family) or FAMILIES[family]


def folder_of(family: str) -> Path | None:
    """The folder holding a family's files (None: matplotlib is not installed)."""
    return _OWN_DIR if family in OWN_FAMILIES else font_dir()


def font_dirs() -> list[Path]:
    """Every folder of shipped fonts: matplotlib's, where installed, and figspec's own."""
    return [d for d in (font_dir(), _OWN_DIR) if d is not None]


def font_dir() -> Path | None:
    """matplotlib's folder of TrueType fonts, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"


def missing(family: str) -> list[str]:
    """The files of a family that are not installed (empty when all are)."""
    folder = folder_of(family)
    return [f for f in files_of(family) if folder is None or not (folder / f).is_file()]


def fontconfig_file(folders: list[Path]) -> Path:
    """A fontconfig file listing ``folders`` alone (in figspec's cache, else a
    file of this process's own): named in ``FONTCONFIG_FILE`` while
    vl-convert loads its fonts, fontdb sees our fonts only."""
    from . import cache

    dirs = "".join(f"<dir>{html.escape(str(folder))}</dir>" for folder in folders)
    text = ('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
            f"<fontconfig>{dirs}</fontconfig>\n")
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

    folder = folder_of(family)
    if folder is None:
        return frozenset(range(32, 127))
    return frozenset(TTFont(str(folder / files_of(family)[0]), lazy=True).getBestCmap())


@memo("fonts.face")
def _face(family: str, face: int = 0
          ) -> tuple[Mapping[int, str], Mapping[str, tuple[int, int]], int] | None:
    """A face's character map, advance widths (with left side bearings, by
    glyph name) and units per em; read-only, as they are kept."""
    from fontTools.ttLib import TTFont  # ships with matplotlib; ~50 ms, only when needed

    folder = folder_of(family)
    if folder is None:
        return None
    font = TTFont(str(folder / files_of(family)[face]), lazy=True)
    return (MappingProxyType(dict(font.getBestCmap())),
            MappingProxyType(dict(font["hmtx"].metrics)), font["head"].unitsPerEm)
