"""A training run of N checkpoints against one base: reading the base once
for every checkpoint (how `data.checkpoints` reduces a run) against N
separate pairs (how N `data.checkpoint` figures, or a loop of somebody's
own, read it: the base once per checkpoint).

The checkpoints are shaped like Qwen2.5-0.5B's layers (bench_checkpoint.py's
shapes), --layers of them, BF16, one file each; each step is the base with
about 12% of its entries changed. Synthetic: random bits in the range of
real weights, made here (in --folder). Files hot in the page cache, the
metrics cache cold, medians of --runs:

* the reduction alone, in this process, on every core this process may use:
  `reduce_run` (each base chunk read once) against `reduce_all` per pair;
* `figspec table` of a trajectory spec (whole command), against
  `figspec table` of one pair spec per checkpoint, one after the other.

    python benchmarks/bench_trajectory.py [--folder DIR] [--steps 4] [--layers 6] [--runs 5]

Goal: a run of N checkpoints costs about N + 1 checkpoint reads, not 2N,
whether each step is compared with the base or with the step before it
(`compare: previous`, each checkpoint read once: within 1.05x of `compare:
base`, the reductions interleaved run by run); and the numpy path's
reduction on 1 and 2 threads.
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

import numpy as np
from bench_checkpoint import MODULES, header
from common import machine, median_time, tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make(folder: Path, steps: int, layers: int) -> None:
    """The base and each step, tensor by tensor, one file each."""
    rng = np.random.default_rng(0)
    names = [(f"model.layers.{layer}.{m}.weight", shape)
             for layer in range(layers) for m, shape in MODULES.items()]
    text = header(names)
    sides = ["base"] + [f"run/checkpoint-{100 * (k + 1)}" for k in range(steps)]
    files = {}
    for side in sides:
        (folder / side).mkdir(parents=True, exist_ok=True)
        files[side] = (folder / side / "model.safetensors").open("wb")
        files[side].write(len(text).to_bytes(8, "little") + text)
    for _, shape in names:
        n = shape[0] * shape[1]
        base = (rng.integers(0, 2, n, dtype=np.uint16) << 15) | \
            (rng.integers(120, 123, n, dtype=np.uint16) << 7) | \
            rng.integers(0, 128, n, dtype=np.uint16)
        files["base"].write(base.astype("<u2").tobytes())
        for side in sides[1:]:
            tuned = base.copy()
            mask = rng.random(n) < 0.12
            tuned[mask] ^= rng.integers(1, 8, int(mask.sum()), dtype=np.uint16)
            files[side].write(tuned.astype("<u2").tobytes())
    for f in files.values():
        f.close()
    past = time.time() - 60  # written, not being written
    for side in sides:
        os.utime(folder / side / "model.safetensors", (past, past))


def reductions(folder: Path, runs: int) -> tuple[float, float]:
    """Median seconds of the fused reduction and of the pairs one by one."""
    from figspec.sources.reduce import reduce_all, reduce_run
    from figspec.sources.safetensors import open_checkpoint

    base = open_checkpoint(folder / "base")
    steps = [open_checkpoint(p) for p in sorted((folder / "run").iterdir())]
    options = frozenset({("exact", 0.0)})
    reduce_all(steps[0], base, options, set())  # the kernel loaded, not timed
    fused, _ = median_time(lambda: reduce_run(steps, base, options, [set() for _ in steps]),
                           runs)
    apart, _ = median_time(lambda: [reduce_all(s, base, options, set()) for s in steps], runs)
    return fused, apart


def step_by_step(folder: Path, runs: int) -> dict[str, float]:
    """Median seconds of the reduction of the run against the base, against
    the previous step in one pass (each checkpoint read once), against the
    previous step pair by pair (each read twice), and the numpy path's
    reduction against the base on 1 and 2 threads."""
    from figspec.sources.reduce import reduce_all, reduce_chain, reduce_run
    from figspec.sources.safetensors import open_checkpoint

    base = open_checkpoint(folder / "base")
    steps = [open_checkpoint(p) for p in sorted((folder / "run").iterdir())]
    sides = [base, *steps]
    option = frozenset({("exact", 0.0)})
    links = [{n: (t, b[n]) for n, t in tuned.items()} for b, tuned in zip(sides, sides[1:])]
    none: list[set[str]] = [set() for _ in steps]
    reduce_all(steps[0], base, option, set())  # the kernel loaded, not timed
    out = {}
    # interleaved, so that the machine's load moves each alike
    times: dict[str, list[float]] = {"base": [], "previous": [], "previous, pair by pair": []}
    for _ in range(runs):
        for what, fn in (("base", lambda: reduce_run(steps, base, option, none)),
                         ("previous", lambda: reduce_chain(links, [option] * len(steps), none)),
                         ("previous, pair by pair",
                          lambda: [reduce_all(t, b, option, set())
                                   for b, t in zip(sides, sides[1:])])):
            times[what].append(median_time(fn, 1)[0])
    out.update({k: statistics.median(v) for k, v in times.items()})
    os.environ["FIGSPEC_KERNEL"] = "numpy"
    try:
        for threads in (1, 2):
            out[f"numpy, {threads} thread"], _ = median_time(
                lambda: reduce_run(steps, base, option, none, threads), runs)
    finally:
        os.environ.pop("FIGSPEC_KERNEL")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="figspec-bench-traj-"))
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
    traj = project / "specs" / "traj.yaml"
    traj.write_text("data: {checkpoints: $ckpt/run/checkpoint-*, base: $ckpt/base, "
                    "metric: changed_fraction}\nmodules: qwen2\n")
    pairs = []
    for ckpt in sorted((folder / "run").iterdir()):
        pair = project / "specs" / f"{ckpt.name}.yaml"
        pair.write_text(f"data: {{checkpoint: $ckpt/run/{ckpt.name}, base: $ckpt/base, "
                        "metric: changed_fraction}\nmodules: qwen2\n")
        pairs.append(pair)
    figspec = tool("figspec")
    cache = work / "cache"
    env = {**os.environ, "FIGSPEC_CACHE": str(cache)}
    env.pop("FIGSPEC_KERNEL", None)

    def table(*specs: Path) -> None:
        shutil.rmtree(cache / "metrics", ignore_errors=True)
        for spec in specs:
            subprocess.run([figspec, "table", str(spec)], cwd=project, env=env, check=True,
                           stdout=subprocess.DEVNULL)

    previous = project / "specs" / "previous.yaml"
    previous.write_text("data: {checkpoints: $ckpt/run/checkpoint-*, base: $ckpt/base, "
                        "compare: previous, metric: changed_fraction}\nmodules: qwen2\n")
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)  # hot
    table(traj)  # the kernel compiled into the cache, once
    ours, _ = median_time(lambda: table(traj), args.runs)
    apart, _ = median_time(lambda: table(*pairs), args.runs)
    prev_table, _ = median_time(lambda: table(previous), args.runs)
    fused_alone, apart_alone = reductions(folder, args.runs)
    chain = step_by_step(folder, args.runs)
    gb = size / 1e9
    print(f"machine: {machine()}; {steps} checkpoints and a base of {gb:.3f} GB each; "
          f"median of {args.runs}, files hot in the page cache, metrics cache cold\n")
    print("| what | bytes reduced | wall time |")
    print("|---|---|---|")
    print(f"| reduction, the base read once for all (`reduce_run`) | {(steps + 1) * gb:.2f} GB "
          f"| {fused_alone:.2f} s |")
    print(f"| reduction, one pair at a time (`reduce_all` x {steps}) | {2 * steps * gb:.2f} GB "
          f"| {apart_alone:.2f} s ({apart_alone / fused_alone:.2f}x) |")
    print(f"| `figspec table` of the trajectory spec | | {ours:.2f} s |")
    print(f"| `figspec table` of {steps} pair specs, one after the other | | {apart:.2f} s "
          f"({apart / ours:.2f}x) |")
    print(f"| `figspec table` of the `compare: previous` spec | | {prev_table:.2f} s "
          f"({prev_table / ours:.2f}x the trajectory spec's) |")
    print("\n| reduction, interleaved | bytes read | wall time |")
    print("|---|---|---|")
    against = chain["base"]
    for what, read in (("base", steps + 1), ("previous", steps + 1),
                       ("previous, pair by pair", 2 * steps)):
        print(f"| `compare: {what}` | {read * gb:.2f} GB | {chain[what]:.3f} s "
              f"({chain[what] / against:.2f}x `compare: base`) |")
    one, two = chain["numpy, 1 thread"], chain["numpy, 2 thread"]
    print(f"| numpy path, `compare: base`, 1 / 2 threads | {(steps + 1) * gb:.2f} GB | "
          f"{one:.2f} s / {two:.2f} s ({one / two:.2f}x) |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
