"""Whether a second worker helps a reduction path: the same chunks (SYNTHETIC
BF16 pairs, 262,144 entries a chunk, made here) reduced by the fused kernel
on 1 thread, on 2 threads, and on 2 processes, which share no GIL. Two
processes gaining where two threads do not is the GIL; neither gaining is
the machine (its cores taken by others).

    python benchmarks/bench_threads.py [--path numpy|numba] [--chunks 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from common import machine, median_time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = 1 << 18
_rng = np.random.default_rng(0)
T = _rng.integers(0x3C00, 0x3D00, CHUNK, dtype=np.uint16).view(np.uint8)
B = _rng.integers(0x3C00, 0x3D00, CHUNK, dtype=np.uint16).view(np.uint8)


def work(args: tuple[str, int]) -> int:
    from figspec.sources import kernel

    path, n = args
    for _ in range(n):
        kernel.pair(T, "BF16", B, "BF16", (("exact", 0.0),), path)
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", default="numpy", choices=["numpy", "numba"])
    ap.add_argument("--chunks", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    half = (a.path, a.chunks // 2)

    def threads() -> None:
        workers = [threading.Thread(target=work, args=(half,)) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    work((a.path, 2))  # loaded, not timed
    one, _ = median_time(lambda: work((a.path, a.chunks)), a.runs)
    two, _ = median_time(threads, a.runs)
    with Pool(2) as pool:
        pool.map(work, [(a.path, 1)] * 2)
        procs, _ = median_time(lambda: pool.map(work, [half, half]), a.runs)
    print(f"machine: {machine()}; {a.chunks} chunks of {CHUNK:,} BF16 pairs, {a.path} "
          f"path, median of {a.runs}: 1 thread {one:.2f} s, 2 threads {two:.2f} s "
          f"({one / two:.2f}x), 2 processes {procs:.2f} s ({one / procs:.2f}x)")


if __name__ == "__main__":
    main()
