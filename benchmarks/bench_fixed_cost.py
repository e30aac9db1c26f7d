"""The fixed cost of a checkpoint command: `figspec table` of a small
SYNTHETIC BF16 pair (5 layers shaped like Qwen2.5-0.5B's, 0.30 GB in all,
made by bench_checkpoint.make in a temp folder), whole command, beside `cat`
of the same files; files hot in the page cache, the compiled kernel cached,
figspec's metrics cache cold, the two commands interleaved, medians of
--runs. Then the first use of another dtype (a small F32 pair) after the
BF16 one: whether the kernel is compiled again.

    python benchmarks/bench_fixed_cost.py [--runs 5] [--layers 5]
"""

from __future__ import annotations

import argparse
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


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def f32_pair(folder: Path) -> None:
    """A tiny F32 pair of two q_proj matrices (safetensors written by hand)."""
    import json

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--layers", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="figspec-bench-fixed-"))
    bench_checkpoint.LAYERS = args.layers
    folder = work / "ckpt"
    bench_checkpoint.make(folder)
    f32_pair(work / "f32")
    files = sorted((folder / "base").glob("*.safetensors")) + \
        sorted((folder / "tuned").glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    project = work / "project"
    (project / "specs").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "figspec.yaml").write_text(f"roots: {{ckpt: {folder}, f32: {work / 'f32'}}}\n")
    spec = project / "specs" / "fig.yaml"
    spec.write_text("data: {checkpoint: $ckpt/tuned, base: $ckpt/base, metric: relative_change}"
                    "\nmodules: qwen2\n")
    f32 = project / "specs" / "f32.yaml"
    f32.write_text("data: {checkpoint: $f32/tuned, base: $f32/base, metric: relative_change}\n"
                   "modules: [q_proj]\nlayers: {last: 1}\n")
    figspec, cache = tool("figspec"), work / "cache"
    env = {**os.environ, "FIGSPEC_CACHE": str(cache)}
    env.pop("FIGSPEC_KERNEL", None)

    def table(which: Path, cmd: list[str] | None = None) -> float:
        shutil.rmtree(cache / "metrics", ignore_errors=True)
        return timed([*(cmd or [figspec]), "table", str(which)], project, env)

    # main() with the interpreter's usual exit (numba's teardown), as before
    usual = [sys.executable, "-c", "import sys; from figspec.cli import main; "
             "sys.exit(main(sys.argv[1:]))"]

    first = table(spec)  # compiles the kernel into the cache: once per machine
    f32_first = table(f32)  # another dtype, first time on this machine
    cats, tables, usuals = [], [], []
    for _ in range(args.runs):
        cats.append(timed(["cat", *map(str, files)], project, env))
        tables.append(table(spec))
        usuals.append(table(spec, usual))
    cat, ours = statistics.median(cats), statistics.median(tables)
    slow = statistics.median(usuals)
    print(f"machine: {machine()}; {total / 1e9:.2f} GB BF16 pair, median of {args.runs}, "
          "files hot, commands interleaved\n")
    print("| what | wall time | against `cat` |\n|---|---|---|")
    print(f"| `cat` of the pair | {cat:.2f} s | 1x |")
    print(f"| `figspec table`, metrics cache cold, kernel cached | {ours:.2f} s | "
          f"{ours / cat:.1f}x |")
    print(f"| the same through main() and the interpreter's usual exit | {slow:.2f} s | "
          f"{slow / cat:.1f}x |")
    print(f"| the same, first run on the machine (compiles the kernel) | {first:.2f} s | |")
    print(f"| then the first F32 pair (a tiny one) | {f32_first:.2f} s | |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
