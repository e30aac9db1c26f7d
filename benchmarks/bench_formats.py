"""Why figspec draws each figure's Vega once, to SVG, and converts that SVG to
PNG and PDF: per-format times on a 28 x 7 heatmap, warmed, median of N.

    python benchmarks/bench_formats.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, make_project

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    import vl_convert as vlc

    from figspec.builder import Options, compile_spec

    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), 1)
        vl = compile_spec(root / "specs" / "fig000.yaml", Options())
    svg = vlc.vegalite_to_svg(vl)  # warm
    steps = {
        "vegalite_to_svg": lambda: vlc.vegalite_to_svg(vl),
        "svg_to_png (scale 2)": lambda: vlc.svg_to_png(svg, scale=2),
        "svg_to_pdf": lambda: vlc.svg_to_pdf(svg),
        "vegalite_to_png (scale 2)": lambda: vlc.vegalite_to_png(vl, scale=2),
        "vegalite_to_pdf": lambda: vlc.vegalite_to_pdf(vl),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.runs):  # interleaved, so drift affects all alike
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    print(f"machine: {machine()}; median of {args.runs} interleaved runs\n")
    print("| step | median |\n|---|---|")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"| `{k}` | {v * 1000:.0f} ms |")
    via_svg = med["vegalite_to_svg"] + med["svg_to_png (scale 2)"] + med["svg_to_pdf"]
    direct = med["vegalite_to_svg"] + med["vegalite_to_png (scale 2)"] + med["vegalite_to_pdf"]
    print(f"\nSVG + PNG + PDF: {via_svg * 1000:.0f} ms through one SVG, "
          f"{direct * 1000:.0f} ms drawing each from Vega-Lite")


if __name__ == "__main__":
    main()
