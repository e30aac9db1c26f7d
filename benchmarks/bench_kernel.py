"""The fused kernel's speed beside its floors, in one run: GB/s per thread of
stored bytes read by pair (two tensors), single (one) and triple (three),
BF16 and F32, on 1 and 2 threads, medians of --runs; beside them, for the
same bytes in memory, np.copyto (memcpy) and numpy summing them (the raw
viewed as uint64). SYNTHETIC data made here: normal values, the tuned side
a few units in the last place away from the base; the arrays are in memory
(larger than the caches), cut into reduce's chunks as reduce cuts a tensor,
with the "changed as stored" count a pair's metrics always ask for. A
chunk per call, as reduce calls the kernel on read (not mapped) bytes;
then, for the C path, the pair as a command reduces mapped files: half a
mapped window's chunks per call (kernel.pair_chunks, 8 of BF16, 4 of F32).

    python benchmarks/bench_kernel.py [--chunks 64] [--runs 5] [--path c|numba|numpy]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from array import array
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import machine, median_time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figspec.sources import kernel, reduce  # noqa: E402
from figspec.sources.shard_data import WINDOW  # noqa: E402

OPTIONS = (("exact", 0.0),)


def sides(dtype: str, n: int) -> list[np.ndarray]:
    """Three tensors' stored bytes: a base and two near it."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
    if dtype == "BF16":
        b = (base.view(np.uint32) >> 16).astype(np.uint16)
        moved = [(b.astype(np.int32) + rng.integers(-2, 3, n)).astype(np.uint16)
                 for _ in range(2)]
    else:
        b = base
        moved = [base + rng.standard_normal(n, dtype=np.float32) * np.float32(1e-5)
                 for _ in range(2)]
    return [x.view(np.uint8) for x in (*moved, b)]


def chunked(raws: list[np.ndarray], dtype: str, call: Callable[..., object]
            ) -> Callable[[int, int], None]:
    """What reduces chunks lo..hi (of reduce.CHUNK entries) of ``raws``."""
    width = {"BF16": 2, "F32": 4}[dtype]
    step = reduce.CHUNK * width

    def work(lo: int, hi: int) -> None:
        for c in range(lo, hi):
            call(*(r[c * step:(c + 1) * step] for r in raws))
    return work


def windowed(raws: list[np.ndarray], dtype: str) -> Callable[[int, int], None]:
    """What reduces chunks lo..hi of a pair as reduce does where both files
    are mapped: half a window's chunks per call of the C kernel."""
    width = {"BF16": 2, "F32": 4}[dtype]
    step, span = reduce.CHUNK * width, max(1, WINDOW // 2 // (reduce.CHUNK * width))
    t, b = raws

    def work(lo: int, hi: int) -> None:
        acc = array("d", [0.0] * (7 + len(OPTIONS)))
        for c in range(lo, hi, span):
            end = min(hi, c + span) * step
            kernel.pair_chunks(t[c * step:end], dtype, b[c * step:end], dtype, OPTIONS, 1.0,
                               reduce.CHUNK, acc)
    return work


def on_threads(work: Callable[[int, int], None], chunks: int, threads: int) -> None:
    share = -(-chunks // threads)
    workers = [threading.Thread(target=work, args=(k * share, min(chunks, (k + 1) * share)))
               for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def floors(raws: list[np.ndarray], threads: int) -> tuple[Callable[[], None], ...]:
    """memcpy and numpy's sum of the same bytes, each thread its share."""
    dst = [np.empty_like(r) for r in raws]

    def copy(lo: int, hi: int) -> None:
        for r, d in zip(raws, dst):
            n = r.size // threads
            np.copyto(d[lo * n:hi * n], r[lo * n:hi * n])

    def add(lo: int, hi: int) -> None:
        for r in raws:
            n = r.size // threads // 8 * 8
            np.add.reduce(r[lo * n:hi * n].view(np.uint64))

    return (lambda: on_threads(copy, threads, threads),
            lambda: on_threads(add, threads, threads))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--path", default="c", choices=["c", "numba", "numpy"])
    a = ap.parse_args()
    n = a.chunks * reduce.CHUNK
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; {a.path} path; "
          f"{a.chunks} chunks of {reduce.CHUNK:,} entries per tensor, in memory; "
          f"GB/s per thread of stored bytes read, median of {a.runs}")
    print("| dtype | what | 1 thread | 2 threads (per thread) |")
    print("|---|---|---|---|")
    for dtype in ("BF16", "F32"):
        t, o, b = sides(dtype, n)
        calls: dict[str, tuple[list[np.ndarray], Callable[..., object]]] = {
            "pair": ([t, b], lambda x, y: kernel.pair(x, dtype, y, dtype, OPTIONS, a.path)),
            "single": ([t], lambda x: kernel.single(x, dtype, a.path)),
            "triple": ([t, o, b], lambda x, y, z: kernel.triple(x, dtype, y, dtype, z, dtype,
                                                                 a.path)),
        }
        works = {name: (raws, chunked(raws, dtype, call)) for name, (raws, call) in calls.items()}
        if a.path == "c":
            works["pair, half a window per call"] = ([t, b], windowed([t, b], dtype))
        for name, (raws, work) in works.items():
            work(0, 1)  # compiled or loaded, not timed
            size = sum(r.nbytes for r in raws) / 1e9
            cells = []
            for threads in (1, 2):
                took, _ = median_time(lambda: on_threads(work, a.chunks, threads), a.runs)
                cells.append(f"{size / took / threads:.2f}")
            print(f"| {dtype} | {name} ({len(raws)} tensor{'s' * (len(raws) > 1)}) | "
                  + " | ".join(cells) + " |")
        raws = [t, b]
        size = sum(r.nbytes for r in raws) / 1e9
        for label, k in (("np.copyto of a pair's bytes (memcpy)", 0),
                         ("numpy summing a pair's bytes (as uint64)", 1)):
            cells = [f"{size / median_time(floors(raws, th)[k], a.runs)[0] / th:.2f}"
                     for th in (1, 2)]
            print(f"| {dtype} | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
