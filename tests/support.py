"""Helpers shared by the tests: writing small projects, reading scenegraphs,
and an independent oracle for Vega's colour schemes."""

from __future__ import annotations

import functools
import json
import re
import textwrap
from pathlib import Path
from typing import Any

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]
LABELS = ["attn. q", "attn. k", "attn. v", "attn. o", "mlp. up", "mlp. down", "mlp. gate"]


def value_of(layer: int, module_index: int) -> float:
    """A distinct, known value per cell: 0.1 + layer/1000 + module/10000."""
    return round(0.1 + layer / 1000 + module_index / 10000, 6)


def long_rows(layers: int = 6, modules: list[str] = MODULES, **extra: Any) -> list[dict]:
    return [{**extra, "layer": layer, "module": m, "value": value_of(layer, i)}
            for layer in range(layers) for i, m in enumerate(modules)]


def write_csv(path: Path, rows: list[dict], delimiter: str = ",", *,
              atomic: bool = False) -> Path:
    """``atomic``: written beside it and renamed into place, as a watch running
    must see it: the old file or the new one, never one emptied and half
    written (a poll between the two would build from it, and fail)."""
    cols = list(rows[0])
    lines = [delimiter.join(cols)] + [delimiter.join(str(r[c]) for c in cols) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    target, path = path, path.with_name(path.name + ".new") if atomic else path
    path.write_text("\n".join(lines) + "\n")
    if atomic:
        path.replace(target)
    return target


def make_project(root: Path) -> Path:
    """A project (a folder with a .git marker) holding data/cells.csv, 6 layers
    x 7 modules of known values, and an empty specs/: what every test starts from."""
    (root / ".git").mkdir(parents=True, exist_ok=True)
    write_csv(root / "data" / "cells.csv", long_rows())
    (root / "specs").mkdir(exist_ok=True)
    return root


def figures(out: Path) -> list[str]:
    """The figure files in an out dir (not the manifest), sorted."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def spec_text(data: str = "path: ../data/cells.csv", modules: list[str] = MODULES,
              extra: str = "") -> str:
    mods = "\n".join(f"  - {m}" for m in modules)
    data = "\n".join("  " + line for line in data.splitlines())
    return f"data:\n{data}\nmodules:\n{mods}\n" + textwrap.dedent(extra).lstrip("\n")


def encoding(chart: dict) -> dict:
    """The encoding of a heatmap's cells (colour, tooltip) in its Vega-Lite:
    the first of its layers."""
    return chart["layer"][0]["encoding"]


# -- scenegraph ---------------------------------------------------------------

def marks(node: Any, role: str, marktype: str | None = None) -> list[dict]:
    """All items of every mark with this role (and type), depth first."""
    out: list[dict] = []

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            if n.get("role") == role and (marktype is None or n.get("marktype") == marktype):
                out.extend(n.get("items", []))
            for it in n.get("items", []):
                walk(it)

    walk(node.get("scenegraph", node))
    return out


def axis_texts(sg: dict) -> list[list[str]]:
    """The label texts of each axis, in scenegraph order (x first, then y)."""
    texts = []
    for axis in marks(sg, "axis"):
        labels = [i["text"] for group in axis.get("items", [])
                  if group.get("role") == "axis-label" for i in group["items"]]
        texts.append(labels)
    return texts


def scenegraph(vl: dict) -> dict:
    from figspec.vega import engine

    return engine().vegalite_to_scenegraph(vl, allowed_base_urls=[])


def parse_rgb(fill: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", fill)
    if m:
        return tuple(int(g) for g in m.groups())  # type: ignore[return-value]
    m = re.fullmatch(r"#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})", fill, re.I)
    assert m, f"unexpected colour {fill!r}"
    return tuple(int(g, 16) for g in m.groups())  # type: ignore[return-value]


# -- colour oracle ----------------------------------------------------------------

@functools.cache
def scheme_stops(name: str) -> list[tuple[int, int, int]]:
    """A continuous scheme's colour stops, read from the Vega source that
    vl-convert bundles (vega-scale's schemes table)."""
    from figspec.html import javascript_bundle

    bundle = javascript_bundle()
    m = re.search(rf'[{{,]{re.escape(name)}:"([0-9a-f]+)"', bundle, re.I)
    assert m, f"scheme {name} not found in the Vega bundle"
    hexes = m.group(1)
    return [tuple(int(hexes[i + j:i + j + 2], 16) for j in (0, 2, 4))  # type: ignore[misc]
            for i in range(0, len(hexes), 6)]


def piecewise_rgb(stops: list[tuple[int, int, int]], t: float) -> tuple[int, int, int]:
    """d3.piecewise(d3.interpolateRgb, stops)(t), as Vega's continuous schemes do."""
    t = min(max(t, 0.0), 1.0)
    n = len(stops) - 1
    i = min(int(t * n), n - 1)
    f = t * n - i
    return tuple(round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1]))  # type: ignore


def expected_color(value: float, lo: float, hi: float, stops: list[tuple[int, int, int]]
                   ) -> tuple[int, int, int]:
    return piecewise_rgb(stops, (value - lo) / (hi - lo))


def close_colors(a: tuple[int, ...], b: tuple[int, ...], tol: int = 1) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


def placed(sg: dict, role: str, marktype: str | None = None) -> list[dict]:
    """Items of marks with this role, with x and y made absolute (group
    offsets added): panels are groups inside groups."""
    out: list[dict] = []

    def walk(node: Any, dx: float, dy: float) -> None:
        if not isinstance(node, dict):
            return
        hit = node.get("role") == role and (marktype is None or node.get("marktype") == marktype)
        for item in node.get("items", []):
            if hit:
                out.append({**item, "x": item.get("x", 0) + dx, "y": item.get("y", 0) + dy})
            if node.get("marktype") == "group":
                walk(item, dx + item.get("x", 0), dy + item.get("y", 0))
            else:
                walk(item, dx, dy)

    walk(sg.get("scenegraph", sg), 0, 0)
    return out


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    def lum(c: tuple[int, int, int]) -> float:
        ch = [v / 255 for v in c]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def pdf_fonts(path: Path) -> set[str]:
    """The base names of the fonts a PDF embeds (subset prefixes removed)."""
    import pikepdf

    with pikepdf.open(path) as pdf:
        return {str(f.BaseFont).split("+", 1)[-1] for page in pdf.pages
                for f in (page.Resources.get("/Font") or {}).values()}


def png_size(path: Path) -> tuple[int, int]:
    import struct

    return struct.unpack(">II", path.read_bytes()[16:24])


def watched(project: Path, rounds: int = 2) -> tuple[list[list[str]], Any]:
    """Start watching the project's specs in a thread that stops after
    ``rounds`` builds; the statuses of each build, filled in as they finish
    (this returns once the first is in)."""
    import threading
    import time

    from figspec.builder import Options
    from figspec.events import Finished
    from figspec.watch import watch

    builds: list[list[str]] = []

    def consume() -> None:
        for event in watch([project / "specs"], Options(out_dir=project / "out", jobs=1),
                           poll=0.05):
            if isinstance(event, Finished):
                builds.append([r.status for r in event.results])
                if len(builds) == rounds:
                    return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not builds and time.time() < deadline:
        time.sleep(0.05)
    return builds, thread
