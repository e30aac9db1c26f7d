"""`figspec check` over 100 specs with their data, against check-jsonschema
over the same spec files and the committed schema (structure only: it cannot
read the data). Goal: figspec check under 1 s wall on a 2-core machine.

    python benchmarks/bench_check.py [--specs 100] [--runs 7]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine, make_project, median_time, run, tool

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", type=int, default=100)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), args.specs)
        specs = sorted(str(p) for p in (root / "specs").glob("*.yaml"))
        figspec = [tool("figspec"), "check", "specs"]
        cjs = [tool("check-jsonschema"), "--schemafile",
               str(REPO / "schemas" / "figspec.schema.json"), *specs]
        run(figspec, root)
        run(cjs, root)  # warm the file cache and both tools' imports
        ours, ours_all = median_time(lambda: run(figspec, root), args.runs)
        theirs, theirs_all = median_time(lambda: run(cjs, root), args.runs)
    print(f"machine: {machine()}")
    print(f"{args.specs} specs, median of {args.runs} runs (wall, whole command)\n")
    print("| command | checks | median | runs |")
    print("|---|---|---|---|")
    print(f"| `figspec check` | structure + data files | {ours:.2f} s | "
          f"{', '.join(f'{t:.2f}' for t in ours_all)} |")
    print(f"| `check-jsonschema` (committed schema) | structure only | {theirs:.2f} s | "
          f"{', '.join(f'{t:.2f}' for t in theirs_all)} |")
    print(f"\nratio figspec / check-jsonschema: {ours / theirs:.2f}; goal < 1 s: "
          f"{'met' if ours < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
