"""The fixed cost of a checkpoint command: `figspec table` of SYNTHETIC BF16
pairs shaped like Qwen2.5-0.5B's layers (made by bench_checkpoint.make: 5
layers, 0.30 GB in all, and 24 layers, 1.43 GB), whole command, beside `cat`
of the same files; files hot in the page cache, the compiled kernel cached,
figspec's metrics cache cold, every command interleaved, medians of --runs.

Then where the small pair's time goes, from a timeline of the same command
(a driver that wraps figspec's stages and stamps when each starts and ends;
medians of --runs): interpreter start, figspec's imports, reading and
validating the spec, the headers and planning, then for the C kernel its
loading (the source and library hashed, dlopen) and the first chunk, or for
numba's its import, making the kernel's entry points and loading the
compiled kernel (the reducing threads' first call); the reduction, output,
exit. Then the goals of issue 32 (the
1.43 GB pair within 3x `cat`, the 0.30 GB pair within 12x), the same
command with the interpreter's usual exit, and the first use of another
dtype (a tiny F32 pair) after the BF16 one: whether the kernel is compiled
again.

    python benchmarks/bench_fixed_cost.py [--runs 5] [--folder DIR] [--kernel c|numba|numpy]

--folder keeps the generated pairs (small/ and big/) for the next run;
--kernel sets FIGSPEC_KERNEL for every command (default: figspec's choice).
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

import bench_checkpoint
import numpy as np
from common import machine, tool

#: The timeline's driver: argv = T0 (the parent's time.time() just before
#: starting it), then figspec's arguments. It stamps each stage it wraps and
#: ends as the `figspec` command does (figspec.cli.end); the stamps go to
#: stderr as JSON from an atexit handler, which end() runs before it exits.
DRIVER = r"""
import sys, time, threading
T0 = float(sys.argv[1])
marks = {}
def mark(what):
    marks.setdefault(what, time.time() - T0)
mark("up")
import atexit, json
atexit.register(lambda: print(json.dumps(marks), file=sys.stderr, flush=True))
import figspec.cli as cli
mark("cli")
from figspec import pipeline
from figspec.sources import checkpoint, kernel, reduce  # not the kernels: as the command
def wrap(obj, name, label):
    f = getattr(obj, name, None)
    if f is None:  # renamed: that stamp is left out
        return
    def w(*a, **k):
        mark(label + ">")
        try:
            return f(*a, **k)
        finally:
            mark(label + "<")  # the first call's: the kernel's are called per chunk
    setattr(obj, name, w)
wrap(pipeline, "read", "read")
wrap(checkpoint.Checkpoint, "plan", "plan")
wrap(checkpoint, "reduce_all", "reduce")
wrap(kernel, "_c_loaded", "c kernel")  # importing ctypes and the loader too
compiled = kernel._compiled
def numba_kernel(*a, **k):  # numba's import stamped apart from making the entry points
    mark("numba>")
    import numba
    mark("numba<")
    return compiled(*a, **k)
kernel._compiled = numba_kernel
wrap(kernel, "_compiled", "entry points")
def first_call(name):  # the first thread's first chunk(s): the kernel loaded
    f = getattr(kernel, name, None)
    if f is None:
        return
    def w(*a, **k):
        out = f(*a, **k)
        mark("first chunk<")
        return out
    setattr(kernel, name, w)
first_call("pair")
first_call("pair_chunks")  # the C kernel's call per window of chunks
cli.end(cli.main(sys.argv[2:]))
"""

#: (what, from stamp, to stamp) of the timeline; "end": the process ended.
STAGES = [
    ("interpreter start (and site)", "0", "up"),
    ("figspec.cli imported", "up", "cli"),
    ("the command's imports, reading and validating the spec", "cli", "plan>"),
    ("the pair's headers and planning", "plan>", "plan<"),
    ("cache look-up (a miss)", "plan<", "reduce>"),
    ("the C kernel loaded (ctypes imported, source and library hashed, dlopen, its table filled)",
     "c kernel>", "c kernel<"),
    ("the C kernel's first chunk", "c kernel<", "first chunk<"),
    ("numba's import", "numba>", "numba<"),
    ("the kernel's entry points made", "numba<", "entry points<"),
    ("the compiled kernel loaded (first chunk)", "entry points<", "first chunk<"),
    ("the reduction", "first chunk<", "reduce<"),
    ("the table written", "reduce<", "read<"),
    ("output and exit", "read<", "end"),
]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def timeline(spec: Path, cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """One run's stamps (seconds from its start) and its end."""
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", DRIVER, repr(t0), "table", str(spec)],
                       cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, check=True)
    end = time.time() - t0
    return {**json.loads(p.stderr.strip().splitlines()[-1]), "0": 0.0, "end": end}


def f32_pair(folder: Path) -> None:
    """A tiny F32 pair of two q_proj matrices (safetensors written by hand)."""
    rng = np.random.default_rng(1)
    for side in ("base", "tuned"):
        (folder / side).mkdir(parents=True, exist_ok=True)
        names = [f"model.layers.{i}.self_attn.q_proj.weight" for i in range(2)]
        head = {n: {"dtype": "F32", "shape": [64, 64], "data_offsets": [k * 16384,
                                                                        (k + 1) * 16384]}
                for k, n in enumerate(names)}
        text = json.dumps(head).encode()
        body = rng.standard_normal(2 * 4096).astype("<f4").tobytes()
        (folder / side / "model.safetensors").write_bytes(
            len(text).to_bytes(8, "little") + text + body)


def pair(folder: Path, layers: int) -> list[Path]:
    """The pair's files, made unless ``folder`` holds them."""
    if not (folder / "tuned" / "model.safetensors.index.json").exists():
        bench_checkpoint.LAYERS = layers
        bench_checkpoint.make(folder)
    return sorted((folder / "base").glob("*.safetensors")) + \
        sorted((folder / "tuned").glob("*.safetensors"))


def spec_of(project: Path, name: str, root: str) -> Path:
    spec = project / "specs" / f"{name}.yaml"
    spec.write_text(f"data: {{checkpoint: ${root}/tuned, base: ${root}/base, "
                    "metric: relative_change}\nmodules: qwen2\n")
    return spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--folder", type=Path, default=None,
                    help="where the pairs are kept (default: a temporary folder)")
    ap.add_argument("--kernel", choices=["c", "numba", "numpy"], default=None,
                    help="FIGSPEC_KERNEL for every command (default: figspec's choice)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="figspec-bench-fixed-"))
    pairs = args.folder or work
    files = {"small": pair(pairs / "small", 5), "big": pair(pairs / "big", 24)}
    size = {k: sum(f.stat().st_size for f in fs) for k, fs in files.items()}
    f32_pair(work / "f32")
    project = work / "project"
    (project / "specs").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "figspec.yaml").write_text(
        f"roots: {{small: {pairs / 'small'}, big: {pairs / 'big'}, f32: {work / 'f32'}}}\n")
    specs = {k: spec_of(project, k, k) for k in files}
    f32 = project / "specs" / "f32.yaml"
    f32.write_text("data: {checkpoint: $f32/tuned, base: $f32/base, metric: relative_change}\n"
                   "modules: [q_proj]\nlayers: {last: 1}\n")
    figspec, cache = tool("figspec"), work / "cache"
    env = {**os.environ, "FIGSPEC_CACHE": str(cache)}
    env.pop("FIGSPEC_KERNEL", None)
    # figspec's modules compiled once, as an installed package's are: with
    # PYTHONDONTWRITEBYTECODE (set on some machines) an editable install would
    # compile its source at every command, 0.08-0.1 s of each
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.kernel:
        env["FIGSPEC_KERNEL"] = args.kernel

    def cold() -> None:  # the metrics cache, and any committed numbers, gone
        shutil.rmtree(cache / "metrics", ignore_errors=True)
        for numbers in (project / "specs").glob("*.numbers.json"):
            numbers.unlink()

    def table(which: Path, cmd: list[str] | None = None) -> float:
        cold()
        return timed([*(cmd or [figspec]), "table", str(which)], project, env)

    def cat(which: str) -> float:
        return timed(["cat", *map(str, files[which])], project, env)

    # main() with the interpreter's usual exit (numba's teardown)
    usual = [sys.executable, "-c", "import sys; from figspec.cli import main; "
             "sys.exit(main(sys.argv[1:]))"]
    for which in files:
        cat(which)  # into the page cache
    first = table(specs["small"])  # compiles the kernel into the cache: once per machine
    f32_first = table(f32)  # another dtype, first time on this machine
    times: dict[str, list[float]] = {k: [] for k in ("cat small", "small", "cat big", "big",
                                                     "usual")}
    lines: list[dict[str, float]] = []
    for _ in range(args.runs):
        times["cat small"].append(cat("small"))
        times["small"].append(table(specs["small"]))
        times["cat big"].append(cat("big"))
        times["big"].append(table(specs["big"]))
        times["usual"].append(table(specs["small"], usual))
        cold()
        lines.append(timeline(specs["small"], project, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()
    print(f"machine: {machine()}; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"(1/5/15 min) at the end; medians of {args.runs}, files hot, commands interleaved; "
          f"FIGSPEC_KERNEL={args.kernel or '(unset)'}\n")
    print("| what | wall time | against `cat` |\n|---|---|---|")
    for which, shown in (("small", "0.30"), ("big", "1.43")):
        gb = size[which] / 1e9
        print(f"| `cat` of the {gb:.2f} GB pair | {med['cat ' + which]:.3f} s | 1x |")
        print(f"| `figspec table` of it, metrics cache cold, kernel cached | "
              f"{med[which]:.3f} s | {med[which] / med['cat ' + which]:.1f}x |")
    print(f"| the 0.30 GB pair through main() and the interpreter's usual exit | "
          f"{med['usual']:.3f} s | {med['usual'] / med['cat small']:.1f}x |")
    print(f"| the 0.30 GB pair, first run on the machine (compiles the kernel) | {first:.2f} s "
          "| |")
    print(f"| then the first F32 pair (a tiny one) | {f32_first:.2f} s | |")
    print("\nWhere the 0.30 GB pair's `figspec table` goes (its timeline, medians):\n")
    print("| stage | ms |\n|---|---|")
    for what, a, b in STAGES:
        spans = [line[b] - line[a] for line in lines if a in line and b in line]
        if spans:
            print(f"| {what} | {1000 * statistics.median(spans):.0f} |")
    whole = statistics.median(line["end"] for line in lines)
    print(f"| whole (the driver's run) | {1000 * whole:.0f} |")
    print("\nGoals (issue 32):")
    for which, goal in (("big", 3), ("small", 12)):
        ratio = med[which] / med["cat " + which]
        print(f"* the {size[which] / 1e9:.2f} GB pair within {goal}x `cat`: {ratio:.1f}x, "
              f"{'met' if ratio <= goal else 'not met'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
