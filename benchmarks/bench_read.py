"""How a reduction's chunks get from the page cache to the kernel: the same
SYNTHETIC 1.43 GB BF16 pair as bench_checkpoint.py (made here, or --folder),
files hot in the page cache, every tensor reduced a chunk (262,144 entries)
at a time by the real numba kernel (``kernel.pair``), tensors shared among 1
and 2 threads as ``reduce_all`` shares them. Measured in one run, medians of
--runs, each read path in a child process of its own (its peak RSS is its
own, from wait4):

* ``cat`` of the files to /dev/null: the floor;
* the kernel alone, on the same two buffers every chunk: no read at all;
* preadv into a thread's reused buffers (figspec before its maps);
* one memory map per shard, views handed to the kernel: pages left mapped,
  or dropped behind the reader (MADV_DONTNEED per chunk, or per 8 MB), with
  MADV_SEQUENTIAL, or each chunk populated first (MADV_POPULATE_READ);
* a map per window of the file (a chunk, 8 MB, 64 MB), unmapped when the
  reader passes it, populated first or faulted in (64 MB: also each chunk's
  pages let go behind the reader);
* figspec's own reduction (``reduce_all``): as this checkout reads, and
  with every chunk read by preadv into a buffer (as before its maps); these
  two rows pay reduce's own Python per chunk too.

CPU time is the process's (every thread's): what the read costs on a
machine shared with others; the read's own cost is a row's CPU less the
kernel-alone row's.

    python benchmarks/bench_read.py [--folder DIR] [--runs 5] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_checkpoint import make
from common import machine, median_time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = 1 << 18
#: MADV_POPULATE_READ (Linux 5.14): page tables filled for a range, or EFAULT
#: where the file holds no page (never SIGBUS). Python 3.11 has no name for it.
POPULATE_READ = 22
PATHS = ["kernel-alone", "preadv", "map", "map+dontneed", "map+dontneed-8MB",
         "map+sequential+dontneed", "map+populate+dontneed", "window-chunk",
         "window-8MB", "window-8MB+populate", "window-64MB+populate",
         "window-64MB+populate+dontneed", "figspec-preadv", "figspec"]

CHILD = r'''
import json, mmap, os, resource, statistics, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
from figspec.sources import kernel
from figspec.sources.reduce import reduce_all
from figspec.sources.safetensors import open_checkpoint

folder, how, threads, runs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
CHUNK, POPULATE = {chunk}, {populate}
tuned, base = open_checkpoint(folder / "tuned"), open_checkpoint(folder / "base")
order = sorted(tuned, key=lambda n: (str(tuned[n].file), tuned[n].start))
OPTIONS = (("exact", 0.0),)
GRAIN = mmap.ALLOCATIONGRANULARITY


class Reader:
    """One read path; ``get`` gives a chunk's bytes, ``done`` is told a
    tensor's chunk is finished with. State is per thread."""

    def __init__(self):
        self.fds, self.maps, self.local = {{}}, {{}}, threading.local()
        for t in list(tuned.values()) + list(base.values()):
            if t.file not in self.fds:
                self.fds[t.file] = os.open(t.file, os.O_RDONLY)
                if how.startswith("map"):
                    # private and writable: numba sees the arrays it is
                    # compiled for (never written: no page is copied)
                    m = mmap.mmap(self.fds[t.file], 0, flags=mmap.MAP_PRIVATE,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
                    if "sequential" in how:
                        m.madvise(mmap.MADV_SEQUENTIAL)
                    self.maps[t.file] = (m, memoryview(m))

    def buffers(self):
        if not hasattr(self.local, "t"):
            self.local.t, self.local.b = bytearray(CHUNK * 8), bytearray(CHUNK * 8)
            self.local.windows, self.local.dropped = {{}}, {{}}
        return self.local

    def get(self, t, i, n, side):
        local, at, length = self.buffers(), t.start + i * 2, n * 2
        if how == "kernel-alone":
            return memoryview(getattr(local, side))[:length]
        if how == "preadv":
            view = memoryview(getattr(local, side))[:length]
            done = 0
            while done < length:
                done += os.preadv(self.fds[t.file], [view[done:]], at + done)
            return view
        if how.startswith("map"):
            m, view = self.maps[t.file]
            if "populate" in how:
                lo = at - at % mmap.PAGESIZE
                m.madvise(POPULATE, lo, at + length - lo)
            return view[at:at + length]
        sizes = {{"chunk": CHUNK * 2, "8MB": 8 << 20, "64MB": 64 << 20}}
        size = sizes[how.split("-")[1].split("+")[0]]
        key = (side,)
        held = local.windows.get(key)
        if held is None or not (held[0] <= at and at + length <= held[0] + held[1]):
            start = at - at % GRAIN
            span = min(max(size, at + length - start), os.fstat(self.fds[t.file]).st_size - start)
            if held is not None:
                held[3].release()
                held[2].close()
            m = mmap.mmap(self.fds[t.file], span, flags=mmap.MAP_PRIVATE,
                          prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=start)
            held = local.windows[key] = (start, span, m, memoryview(m))
            local.dropped[key] = None
        lo = at - held[0]
        lo -= lo % mmap.PAGESIZE
        hi = min(held[1], at + length - held[0] + (-(at + length)) % mmap.PAGESIZE)
        before = local.dropped.get(key)
        if "dontneed" in how and before is not None and before[0] < lo:
            held[2].madvise(mmap.MADV_DONTNEED, before[0], min(before[1], lo) - before[0])
        local.dropped[key] = (lo, hi)
        if "populate" in how:
            held[2].madvise(POPULATE, lo, hi - lo)
        return held[3][at - held[0]:at - held[0] + length]

    def done(self, t, i, n, last):
        if "dontneed" not in how or not how.startswith("map"):
            return
        m, _ = self.maps[t.file]
        local = self.buffers()
        end = t.start + (i + n) * 2
        since = local.dropped.get(t.file, t.start)
        if not last and "8MB" in how and end - since < (8 << 20):
            return
        lo = since - since % mmap.PAGESIZE
        hi = min(len(m), end + (-end) % mmap.PAGESIZE) if last else end - end % mmap.PAGESIZE
        if hi > lo:
            m.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        local.dropped[t.file] = hi if not last else end

    def close(self):
        for m, view in self.maps.values():
            view.release()
            m.close()
        for fd in self.fds.values():
            os.close(fd)


def pass_once(reader):
    def one(name):
        t, b = tuned[name], base[name]
        for i in range(0, t.count, CHUNK):
            n = min(CHUNK, t.count - i)
            t_raw, b_raw = reader.get(t, i, n, "t"), reader.get(b, i, n, "b")
            kernel.pair(t_raw, "BF16", b_raw, "BF16", OPTIONS, "numba")
            del t_raw, b_raw
            last = i + n >= t.count
            reader.done(t, i, n, last)
            reader.done(b, i, n, last)
        if how.startswith("map"):
            reader.local.dropped = {{}}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, order))


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


kernel.pair(bytearray(64), "BF16", bytearray(64), "BF16", OPTIONS, "numba")  # loaded
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if how.startswith("figspec"):
    if how == "figspec-preadv":  # every chunk read into a buffer, as before the maps
        from figspec.sources.shard_data import Files
        Files._mapped = lambda self, *args: None
    def fn():
        reduce_all(tuned, base, frozenset(OPTIONS), set(), threads)
    close = None
else:
    reader = Reader()
    def fn():
        pass_once(reader)
    close = reader.close
fn()  # warm: the first pass's faults and the pool's start
times = [timed(fn) for _ in range(runs)]
if close is not None:
    close()
print(json.dumps({{"wall": statistics.median(w for w, _ in times),
                  "cpu": statistics.median(c for _, c in times), "base_rss": rss_before}}))
'''


def child(folder: Path, how: str, threads: int, runs: int, env: dict[str, str]
          ) -> tuple[float, float, float, float]:
    """Median wall and CPU seconds of one read path, the child's RSS before
    its passes and its peak (MB)."""
    code = CHILD.format(chunk=CHUNK, populate=POPULATE_READ)
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), how, str(threads),
                             str(runs)], env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{how} on {threads} threads failed")
    got = json.loads(out.strip().splitlines()[-1])
    return got["wall"], got["cpu"], got["base_rss"] / 1024, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--paths", default=",".join(PATHS))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="figspec-bench-read-"))
    folder = args.folder or work / "ckpt"
    if not (folder / "base" / "model.safetensors.index.json").exists():
        make(folder)
    files = sorted(folder.glob("*/*.safetensors"))
    gb = sum(f.stat().st_size for f in files) / 1e9
    env = {**os.environ, "FIGSPEC_CACHE": str(work / "cache")}
    subprocess.run([sys.executable, "-c", "from figspec.sources import kernel; "
                    "kernel.pair(bytearray(64), 'BF16', bytearray(64), 'BF16', "
                    "(('exact', 0.0),), 'numba')"], env=env, check=True)  # compiled once

    def cat() -> None:
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)

    cat()
    floor, _ = median_time(cat, args.runs)
    threads = [int(n) for n in args.threads.split(",")]
    rows = {(how, n): child(folder, how, n, args.runs, env)
            for how in args.paths.split(",") for n in threads}
    load = os.getloadavg()
    print(f"machine: {machine()}; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{gb:.2f} GB BF16 pair, hot; median of {args.runs}\n")
    print("| read path | threads | wall | CPU | CPU less the kernel's | GB/s | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    print(f"| `cat` to /dev/null | 1 | {floor:.3f} s | | | {gb / floor:.1f} | |")
    for (how, n), (wall, cpu, _, peak) in rows.items():
        alone = rows.get(("kernel-alone", n))
        extra = f"{cpu - alone[1]:+.3f} s" if alone and how != "kernel-alone" else ""
        print(f"| {how} | {n} | {wall:.3f} s | {cpu:.3f} s | {extra} | {gb / wall:.1f} | "
              f"{peak:.0f} MB |")
    if args.folder is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(work / "cache", ignore_errors=True)


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"\n({statistics.fmean([time.perf_counter() - t]):.0f} s)", file=sys.stderr)
