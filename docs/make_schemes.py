"""Draws docs/schemes.png: Vega's diverging schemes side by side, low to high,
through figspec's renderer (the same fonts and Vega as the figures).

    python docs/make_schemes.py
"""

from __future__ import annotations

from pathlib import Path

from figspec.files import write_atomic
from figspec.presets import DIVERGING_SCHEMES
from figspec.render import render

SAFE = {"redgrey": False, "redyellowgreen": False, "spectral": False}


def strip(scheme: str) -> dict:
    label = f"{scheme}{'' if SAFE.get(scheme, True) else ' (not colour-blind safe)'}"
    return {
        "data": {"sequence": {"start": 0, "stop": 1.0001, "step": 0.02, "as": "t"}},
        "mark": "rect", "width": 300, "height": 16, "title": {"text": label, "anchor": "start",
                                                               "fontSize": 11},
        "encoding": {"x": {"field": "t", "type": "ordinal", "axis": None},
                     "color": {"field": "t", "type": "quantitative", "legend": None,
                               "scale": {"scheme": scheme, "domain": [0, 1]}}},
    }


def main() -> None:
    vl = {"vconcat": [strip(s) for s in DIVERGING_SCHEMES], "spacing": 6,
          "resolve": {"scale": {"color": "independent"}},
          "config": {"font": "DejaVu Sans", "view": {"stroke": None}}}
    png = render(vl, ["png"], scale=2)["png"]
    write_atomic(Path(__file__).parent / "schemes.png", png)


if __name__ == "__main__":
    main()
