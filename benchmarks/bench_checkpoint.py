"""Metrics from a checkpoint pair shaped like Qwen2.5-0.5B's layers: 24
layers, hidden 896, intermediate 4864, 2 key/value heads of 64 (128 wide);
BF16, in shards of about 1 GB with an index; the tuned checkpoint differs
from the base in about 12% of its entries. Synthetic: random bits in the
range of real weights, made here (1.43 GB in all, in --folder). No
embeddings: every byte of the files is a layer weight, so the read floor
reads what figspec reads.

Measured in one run, files hot in the page cache (read once first), medians
of --runs:

* the floor: reading the same bytes (`cat` to /dev/null);
* `figspec table` of a relative_change spec, whole command (start-up
  included), figspec's metrics cache cold (the compiled kernel cached, as
  after a first run on the machine; that first run is shown apart), and the
  peak memory of its process;
* the reduction alone, in a child process, on 1 and 2 threads (and on
  every core, when there are more), with the C kernel (figspec's first
  choice), the numba kernel and the numpy path;
* update_rank on its own, over --rank-layers layers (one SVD per matrix);
* a straightforward script that loads both state dicts whole, float64, for
  one metric (peak memory too);
* a rebuild after changing only a colour (cache warm), against a no-op build.

    python benchmarks/bench_checkpoint.py [--folder DIR] [--runs 5] [--rank-layers 2]

Goals: `figspec table` within 4x of `cat`; the reduction at least 4 GB/s of
pair bytes on 2 cores, 1.7x faster on 2 threads than on 1; peak memory
under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, median_time, tool

LAYERS, HIDDEN, INTER, KV = 24, 896, 4864, 128
MODULES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN),
           "self_attn.v_proj": (KV, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
           "mlp.up_proj": (INTER, HIDDEN), "mlp.gate_proj": (INTER, HIDDEN),
           "mlp.down_proj": (HIDDEN, INTER)}
SHARD_BYTES = 1 << 30


def tensors() -> list[tuple[str, tuple[int, int]]]:
    return [(f"model.layers.{layer}.{m}.weight", shape)
            for layer in range(LAYERS) for m, shape in MODULES.items()]


def header(part: list[tuple[str, tuple[int, int]]]) -> bytes:
    """The JSON header of a BF16 file holding these tensors, in this order."""
    out, offset = {}, 0
    for name, shape in part:
        nbytes = shape[0] * shape[1] * 2
        out[name] = {"dtype": "BF16", "shape": list(shape),
                     "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return json.dumps(out).encode()


def make(folder: Path) -> None:
    """Both checkpoints, tensor by tensor (memory stays small)."""
    rng = np.random.default_rng(0)
    for side in ("base", "tuned"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    plan, shard, size = [], 1, 0
    for name, shape in tensors():
        n = shape[0] * shape[1] * 2
        if size and size + n > SHARD_BYTES:
            shard, size = shard + 1, 0
        plan.append((name, shape, shard))
        size += n
    count = shard
    fname = {i: f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)}
    for i in range(1, count + 1):
        part = [(n, s) for n, s, sh in plan if sh == i]
        text = header(part)
        files = {side: (folder / side / fname[i]).open("wb") for side in ("base", "tuned")}
        for f in files.values():
            f.write(len(text).to_bytes(8, "little") + text)
        for name, shape in part:
            for start in range(0, shape[0] * shape[1], 1 << 24):
                n = min(1 << 24, shape[0] * shape[1] - start)
                # bf16 bits of numbers around +-0.01..0.03: exponent 120-122
                base = (rng.integers(0, 2, n, dtype=np.uint16) << 15) | \
                    (rng.integers(120, 123, n, dtype=np.uint16) << 7) | \
                    rng.integers(0, 128, n, dtype=np.uint16)
                tuned = base.copy()
                mask = rng.random(n) < 0.12
                tuned[mask] ^= rng.integers(1, 8, int(mask.sum()), dtype=np.uint16)
                files["base"].write(base.astype("<u2").tobytes())
                files["tuned"].write(tuned.astype("<u2").tobytes())
        for f in files.values():
            f.close()
    weight_map = {name: fname[sh] for name, _, sh in plan}
    for side in ("base", "tuned"):
        (folder / side / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": weight_map}))


def peak_of(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and peak resident memory (MB) of a command, as a child
    (its own rusage, from wait4: not the largest child so far)."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{cmd} failed ({child.returncode})")
    return seconds, usage.ru_maxrss / 1024


def reduction(folder: Path, threads: int, path: str, runs: int, cache: Path
              ) -> tuple[float, float]:
    """Median wall and CPU seconds of the reduction alone (every cheap metric
    of every layer), in a child process so that the kernel path is chosen
    afresh. CPU time says what the work costs on a machine shared with others."""
    code = f"""
import os, statistics, time
from pathlib import Path
from figspec.sources import reduce as c
from figspec.sources.safetensors import open_checkpoint
tuned, base = open_checkpoint(Path({str(folder / 'tuned')!r})), \\
    open_checkpoint(Path({str(folder / 'base')!r}))
c.reduce_all(dict(list(tuned.items())[:7]), base, frozenset([("exact", 0.0)]), set(), 1)
times, cpu = [], []
for _ in range({runs}):
    start, used = time.perf_counter(), time.process_time()
    c.reduce_all(tuned, base, frozenset([("exact", 0.0)]), set(), {threads})
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - used)
print(statistics.median(times), statistics.median(cpu))
"""
    env = {**os.environ, "FIGSPEC_KERNEL": path, "FIGSPEC_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    wall, cpu = out.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


NAIVE = '''
import json, sys, glob, os
import numpy as np
def load(folder):  # the whole state dict, as float32
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        raw = open(path, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        for name, info in json.loads(raw[8:8 + n]).items():
            b, e = info["data_offsets"]
            bits = np.frombuffer(raw[8 + n + b:8 + n + e], "<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(info["shape"])
    return out
tuned, base = load(sys.argv[1]), load(sys.argv[2])
for name, t in tuned.items():
    b = base[name].astype(np.float64)
    print(name, np.linalg.norm(t.astype(np.float64) - b) / np.linalg.norm(b))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rank-layers", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="figspec-bench-ckpt-"))
    folder = args.folder or work / "ckpt"
    if not (folder / "base" / "model.safetensors.index.json").exists():
        t = time.perf_counter()
        make(folder)
        print(f"made the pair in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    files = sorted((folder / "base").glob("*.safetensors")) + \
        sorted((folder / "tuned").glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    project = work / "project"
    (project / "specs").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "figspec.yaml").write_text(f"roots: {{ckpt: {folder}}}\n")
    spec = project / "specs" / "fig.yaml"
    spec.write_text("data: {checkpoint: $ckpt/tuned, base: $ckpt/base, metric: relative_change}\n"
                    "modules: qwen2\noutput: {formats: [svg, png]}\n")
    rank = project / "specs" / "_rank.yaml"
    rank.write_text("data: {checkpoint: $ckpt/tuned, base: $ckpt/base, metric: update_rank}\n"
                    f"modules: qwen2\nlayers: {{last: {args.rank_layers - 1}}}\n")
    figspec = tool("figspec")
    cache = work / "cache"  # the compiled kernel stays; metrics are removed each run
    env = {**os.environ, "FIGSPEC_CACHE": str(cache)}
    env.pop("FIGSPEC_KERNEL", None)

    def cat() -> None:
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)

    cat()  # hot
    floor, _ = median_time(cat, args.runs)

    def table(extra: dict[str, str] | None = None) -> tuple[float, float]:
        shutil.rmtree(cache / "metrics", ignore_errors=True)
        return peak_of([figspec, "table", str(spec)], project, {**env, **(extra or {})})

    first, _ = table()  # compiles the kernel into the cache, once per machine
    tables = [table() for _ in range(args.runs)]
    ours = sorted(m[0] for m in tables)[len(tables) // 2]
    ours_peak = max(m[1] for m in tables)
    numpy_table, numpy_peak = table({"FIGSPEC_KERNEL": "numpy"})
    threads = sorted({1, 2, len(os.sched_getaffinity(0))})
    # the numpy path once per thread count: it is slow, and only the fallback
    alone = {(n, path): reduction(folder, n, path, 1 if path == "numpy" else args.runs, cache)
             for path in ("c", "numba", "numpy") for n in threads}
    shutil.rmtree(cache / "metrics", ignore_errors=True)
    rank_time, rank_peak = peak_of([figspec, "table", str(rank)], project, env)
    script = work / "naive.py"
    script.write_text(NAIVE)
    naive, naive_peak = peak_of([sys.executable, str(script), str(folder / "tuned"),
                                 str(folder / "base")], project, env)
    warm = {**env, "FIGSPEC_CACHE": str(work / "warm")}
    subprocess.run([figspec, "build"], cwd=project, env=warm, check=True,
                   stdout=subprocess.DEVNULL)
    noop, _ = median_time(lambda: subprocess.run([figspec, "build"], cwd=project, env=warm,
                                                 check=True, stdout=subprocess.DEVNULL), args.runs)

    body = spec.read_text()
    schemes = iter(["redblue", "blueorange"] * args.runs)

    def recolour() -> None:
        spec.write_text(body + f"color: {{scheme: {next(schemes)}}}\n")
        subprocess.run([figspec, "build"], cwd=project, env=warm, check=True,
                       stdout=subprocess.DEVNULL)

    recoloured, _ = median_time(recolour, args.runs)
    gb = total / 1e9
    print(f"machine: {machine()}; {gb:.2f} GB of checkpoints (every byte a layer weight); "
          f"median of {args.runs}, files hot in the page cache\n")
    print("| what | wall time | throughput | peak memory |")
    print("|---|---|---|---|")
    print(f"| read the files (`cat` to /dev/null): the floor | {floor:.2f} s | "
          f"{gb / floor:.2f} GB/s | |")
    print(f"| `figspec table`, every cheap metric at once, metrics cache cold | {ours:.2f} s "
          f"({ours / floor:.1f}x `cat`) | {gb / ours:.2f} GB/s | {ours_peak:.0f} MB |")
    print(f"| the same, first run on the machine (compiles the kernel) | {first:.2f} s | | |")
    print(f"| the same, numpy path (`FIGSPEC_KERNEL=numpy`, one run) | {numpy_table:.2f} s | "
          f"{gb / numpy_table:.2f} GB/s | {numpy_peak:.0f} MB |")
    for (n, path), (seconds, cpu) in alone.items():
        speedup = alone[(1, path)][0] / seconds
        runs = ", one run" if path == "numpy" else ""
        print(f"| the reduction alone, {path}, {n} thread{'s' * (n > 1)}{runs} | {seconds:.2f} s | "
              f"{gb / seconds:.2f} GB/s ({speedup:.2f}x 1 thread; {gb / cpu:.2f} GB per "
              "CPU-second) | |")
    print(f"| `update_rank`, {args.rank_layers} layers ({7 * args.rank_layers} SVDs) | "
          f"{rank_time:.2f} s | {rank_time / (7 * args.rank_layers):.2f} s per matrix | "
          f"{rank_peak:.0f} MB |")
    print(f"| a script loading both state dicts whole, float64, one metric | {naive:.2f} s | "
          f"{gb / naive:.2f} GB/s | {naive_peak:.0f} MB |")
    print(f"| `figspec build`, nothing changed | {noop:.2f} s | | |")
    print(f"| `figspec build` after a colour change (cache warm) | {recoloured:.2f} s | | |")
    print(f"\nfigspec table: {ours / floor:.1f}x the read floor; {naive / ours:.1f}x faster than "
          f"the whole-load script, {naive_peak / max(ours_peak, 1):.0f}x less memory")
    if args.folder is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
