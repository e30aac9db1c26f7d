"""A sweep of a run's checkpoints on a Dask cluster against the local build:
`figspec build` of one trajectory spec (`compare: previous`: each step
against the one before it, a pair each) here, on this process's threads,
and with `--engine` on a LocalCluster of --workers worker processes of one
thread each (started here, on 127.0.0.1), each pair a task.

The run is SYNTHETIC, made here (in a temp dir, or --folder; never
committed): --steps checkpoints and a base shaped like Qwen2.5-0.5B's
layers (bench_checkpoint.py's shapes), --layers of them, BF16, one file
each, each step the base with about 12% of its entries changed (as
bench_trajectory.py makes them). Files hot in the page cache, the metrics
cache cold (and the numbers beside the spec removed) for every build; the
workers warmed by one build first (numba compiled into their cache), not
timed; medians of --runs. The figure of the two is checked to be the same
bytes.

    python benchmarks/bench_engine.py [--folder DIR] [--steps 16] [--layers 1] \
        [--workers 2] [--runs 3]

Prints bytes reduced, wall times, and seconds per GB per worker, the
figure a cluster's cost is estimated from (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_trajectory import make
from common import machine, median_time, tool


def one_thread(folder: Path, runs: int) -> float:
    """Median seconds of every pair reduced on one thread, in this process:
    what a worker does with its tasks (`reduce_all`, threads=1)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from figspec.sources.reduce import reduce_all
    from figspec.sources.safetensors import open_checkpoint

    sides = [open_checkpoint(folder / "base")] + \
        [open_checkpoint(p) for p in sorted((folder / "run").iterdir(),
                                            key=lambda p: int(p.name.rpartition("-")[2]))]
    options = frozenset({("exact", 0.0)})
    reduce_all(sides[1], sides[0], options, set(), threads=1)  # the kernel loaded, not timed
    seconds, _ = median_time(lambda: [reduce_all(t, b, options, set(), threads=1)
                                      for b, t in zip(sides, sides[1:])], runs)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from distributed import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="figspec-bench-engine-"))
    folder = args.folder or work / "ckpt"
    if not (folder / "base" / "model.safetensors").exists():
        make(folder, args.steps, args.layers)
    files = sorted(folder.rglob("*.safetensors"))
    size = (folder / "base" / "model.safetensors").stat().st_size
    steps = len(files) - 1
    project = work / "project"
    (project / "specs").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "figspec.yaml").write_text(f"roots: {{ckpt: {folder}}}\n")
    (project / "specs" / "sweep.yaml").write_text(
        "data: {checkpoints: $ckpt/run/checkpoint-*, base: $ckpt/base, "
        "metric: relative_change, compare: previous}\nmodules: qwen2\n"
        "output: {formats: [svg]}\n")
    figspec = tool("figspec")
    cache = work / "cache"
    env = {**os.environ, "FIGSPEC_CACHE": str(cache)}
    env.pop("FIGSPEC_KERNEL", None)

    def build(out: str, *more: str) -> None:
        shutil.rmtree(cache / "metrics", ignore_errors=True)
        for numbers in (project / "specs").glob("*.numbers.json"):
            numbers.unlink()
        subprocess.run([figspec, "build", "--force", "--out", out, *more], cwd=project,
                       env=env, check=True, stdout=subprocess.DEVNULL)

    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)  # hot
    build("here")  # the kernel compiled into the cache, once
    here, _ = median_time(lambda: build("here"), args.runs)
    workers_env = {"FIGSPEC_CACHE": str(work / "workers-cache")}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None, env=workers_env) as cluster:
        address = cluster.scheduler_address
        build("there", "--engine", address)  # the workers' kernels compiled, once
        there, _ = median_time(lambda: build("there", "--engine", address), args.runs)
    alone = one_thread(folder, args.runs)
    same = (project / "here" / "sweep.svg").read_bytes() == \
        (project / "there" / "sweep.svg").read_bytes()
    gb = 2 * steps * size / 1e9  # each pair reads both of its checkpoints
    print(f"machine: {machine()}; {steps} checkpoints and a base of {size / 1e9:.3f} GB "
          f"each; {steps} pairs, {gb:.2f} GB reduced per build; median of {args.runs}, files "
          f"hot in the page cache, metrics cache cold; load average "
          f"{os.getloadavg()[0]:.1f}; the figures the same bytes: {same}\n")
    print("| build | wall time | GB/s | s per GB per worker |")
    print("|---|---|---|---|")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    print(f"| local (this process, {cores} threads) | {here:.2f} s | {gb / here:.2f} | "
          f"{here * cores / gb:.2f} (per core) |")
    print(f"| `--engine`, LocalCluster of {args.workers} workers x 1 thread | {there:.2f} s | "
          f"{gb / there:.2f} | {there * args.workers / gb:.2f} |")
    print(f"| the {steps} pairs' reduction alone, one thread, no build | {alone:.2f} s | "
          f"{gb / alone:.2f} | {alone / gb:.2f} (per thread) |")
    shutil.rmtree(work, ignore_errors=True)
    if not same:
        sys.exit("the figures differ")


if __name__ == "__main__":
    main()
