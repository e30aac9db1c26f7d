"""The build's own process (the parent; its drawing workers are theirs) as
the spec count grows: its peak RSS and the wall time per spec of a cold
build (empty FIGSPEC_CACHE, empty out dir) of N generated specs (28 x 7
cells over small CSVs; SVG, PNG and PDF), each N in a fresh process.

    python benchmarks/bench_memory.py [--specs 100 300 1000]

Goal: the peak stays bounded (it grew 0.28 MB a spec, 323 MB for 1,000).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine, make_project

#: Run in a fresh process per N: the build in process, then its peak RSS
#: (VmHWM: the parent only, never its workers) and its wall time.
CHILD = """
import sys, time
from pathlib import Path
import figspec
def main():
    start = time.perf_counter()
    results = figspec.build(["specs"])
    seconds = time.perf_counter() - start
    assert all(r.status == "built" for r in results), [r for r in results if not r.ok]
    hwm = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    print(len(results), int(hwm), seconds)
if __name__ == "__main__":
    main()
"""


def measure(n: int) -> tuple[float, float]:
    """(peak RSS of the parent in MB, ms per spec) of a cold build of n specs."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), n)
        (root / "child.py").write_text(CHILD)
        env = {**os.environ, "FIGSPEC_CACHE": str(root / "cache")}
        out = subprocess.run([sys.executable, "child.py"], cwd=root, env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        count, kb, seconds = int(out[0]), int(out[1]), float(out[2])
        return kb / 1024, seconds / count * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", type=int, nargs="+", default=[100, 300, 1000])
    args = ap.parse_args()
    print(f"machine: {machine()}\n")
    print("| specs | parent's peak RSS | per spec |")
    print("|---|---|---|")
    for n in args.specs:
        mb, ms = measure(n)
        print(f"| {n} | {mb:.0f} MB | {ms:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
