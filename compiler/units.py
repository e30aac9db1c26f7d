"""Lengths in the units papers use, and the widths venues' templates set.

A figure's drawing unit is the PostScript point (1/72 in): Vega's pixels
become PDF points one to one, so a `size: {width: 3.25in}` figure is drawn
234 units wide and its PDF page is 234 pt wide. CSS pixels are 1/96 in.
"""

from __future__ import annotations

import re

from .diagnostics import did_you_mean

#: Points per unit.
UNITS = {"in": 72.0, "cm": 72 / 2.54, "mm": 72 / 25.4, "pt": 1.0, "px": 0.75}

#: Text and column widths of common venues, as their LaTeX templates set them
#: (sources in the README). Single-column venues have only `.text`.
VENUES = {
    "neurips.text": "5.5in",      # neurips_2024.sty: \textwidth 5.5in
    "iclr.text": "5.5in",         # iclr2025_conference.sty: \textwidth 5.5in
    "icml.text": "6.75in",        # icml2024.sty: \textwidth 6.75in
    "icml.column": "3.25in",      # icml2024.sty: \columnsep 0.25in
    "cvpr.text": "6.875in",       # cvpr.sty: \textwidth 6.875in
    "cvpr.column": "3.28125in",   # cvpr.sty: \columnsep 0.3125in
    "aaai.text": "7in",           # aaai25.sty: \textwidth 7.0in
    "aaai.column": "3.3125in",    # aaai25.sty: \columnsep 0.375in
    "acl.text": "16cm",           # acl.sty: \textwidth 16.0cm
    "acl.column": "7.7cm",        # acl.sty: \columnsep 0.6cm
}

_LENGTH = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*$", re.I)


def resolve(text: str) -> str:
    """A venue's name -> its width (``icml.column`` -> ``3.25in``); other text as written."""
    return VENUES.get(text.strip().lower(), text)


def to_points(text: str) -> float:
    """``"3.25in"`` -> 234.0; ValueError saying what is wrong otherwise."""
    m = _LENGTH.match(resolve(text))
    if not m:
        hint = did_you_mean(text, VENUES) if "." in text else None
        raise ValueError(f"{text!r} is not a length: write a number and a unit "
                         f"({', '.join(UNITS)}), such as `3.25in`, or a venue's width such as "
                         "`neurips.text`" + (f"; {hint}" if hint else ""))
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit not in UNITS:
        raise ValueError(f"unknown unit `{unit}`; use one of {', '.join(UNITS)}")
    points = number * UNITS[unit]
    if not 36 <= points <= 72 * 40:
        raise ValueError(f"{text} is outside 0.5in..40in")
    return points


def _parts(text: str) -> tuple[float, str]:
    m = _LENGTH.match(resolve(text))
    assert m is not None, text  # checked by to_points when the spec was validated
    return float(m.group(1)), m.group(2).lower()


def svg_length(text: str) -> str:
    """The length as an SVG width or height attribute (``3.25in``)."""
    number, unit = _parts(text)
    return f"{number:g}{unit}"


def unit_of(text: str) -> str:
    """``"3.25in"`` -> ``"in"``; a venue's width is in its own unit."""
    return _parts(text)[1]
