"""A value as data files write it, and as messages quote it: one set of
rules for every source (a CSV's text, a JSON number, a DataFrame's numpy
scalar). Plain functions; nothing is imported but the standard library."""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: The number syntax data files define (JSON's, and CSV's in practice): ASCII
#: digits, a point, an exponent. Python's float() also takes `0_5`, `٥` and
#: `５`, which would turn typos into data.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity",
               "-infinity"}
#: The magnitudes a value may have: Vega's colour
#: scale divides by the domain's width, which overflows past 1e300 apart and
#: loses every digit among subnormal numbers (it then draws no cell at all).
SMALLEST, LARGEST = 1e-300, 1e300


def parse_number(raw: Any) -> float | None:
    """A number as the data file wrote it: a JSON number, or text in the number
    syntax above (``nan``/``inf`` too, refused later as not finite); else None.
    A numpy scalar (what Python data may hold) counts as its value."""
    item = getattr(raw, "item", None)
    if callable(item) and not isinstance(raw, (str, int, float)):
        try:
            raw = item()
        except (TypeError, ValueError):  # an array of several values: no number
            return None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        try:
            return float(raw)
        except OverflowError:  # a 400-digit integer
            return math.inf
    if isinstance(raw, str):
        text = raw.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
        if text.lower() in _NON_FINITE:
            return float(text)
    return None


def show(raw: Any) -> str:
    """A value as a message quotes it, whatever it is (never an error itself)."""
    if raw is None or (isinstance(raw, str) and raw == ""):
        return '""'
    if isinstance(raw, int) and raw.bit_length() > 64:
        return f"{'-' if raw < 0 else ''}(a {int(raw.bit_length() * 0.30103) + 1:,}-digit integer)"
    try:
        return json.dumps(raw, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(raw)[:60]


def text(raw: Any) -> str:
    if isinstance(raw, bool):
        return str(raw).lower()
    return "" if raw is None else str(raw)


def _norm(v: Any) -> str:
    """A value as compared by `where:`: "1", 1 and 1.0 are equal, so are true and "true"."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        f = parse_number(v)
        return repr(f) if f is not None and math.isfinite(f) else v.strip()
    if isinstance(v, (int, float)):
        f = parse_number(v)
        return repr(f) if f is not None and math.isfinite(f) else str(v)
    return json.dumps(v, sort_keys=True)


def matches(row: dict[str, Any], where: dict[str, Any]) -> bool:
    return all(_norm(row.get(col)) in ({_norm(w) for w in want} if isinstance(want, list)
                                       else {_norm(want)})
               for col, want in where.items())
