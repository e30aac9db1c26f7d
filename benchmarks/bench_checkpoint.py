"""Metrics from a checkpoint pair shaped like Qwen2.5-1.5B: 28 layers, hidden
1536, intermediate 8960, 2 key/value heads of 128, a 151,936-token embedding;
BF16, sharded in files of about 1 GB with an index; the tuned checkpoint
differs from the base in about 12% of its entries. Synthetic: random bits in
the range of real weights, made here (about 6 GB in all, in --folder).

Measured in one run, files hot in the page cache (read once first):

* the floor: reading the same bytes (`cat` to /dev/null);
* `figspec table` of a relative_change spec, cache cold: every cheap metric
  of the pair in one pass (whole command, peak memory of its process);
* update_rank on its own, over --rank-layers layers (one SVD per matrix);
* a straightforward script that loads both state dicts whole and loops over
  them for one metric (peak memory too);
* a rebuild after changing only a colour (cache warm), against a no-op build.

    python benchmarks/bench_checkpoint.py [--folder DIR] [--runs 3] [--rank-layers 2]

Goals: at least 1.5 GB/s of checkpoint bytes for all cheap metrics at once,
peak memory under 600 MB whatever the model's size, and a rebuild after a
colour change under 0.5 s plus that figure's drawing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, median_time, tool

LAYERS, HIDDEN, INTER, KV, VOCAB = 28, 1536, 8960, 256, 151_936
MODULES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN),
           "self_attn.v_proj": (KV, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
           "mlp.up_proj": (INTER, HIDDEN), "mlp.gate_proj": (INTER, HIDDEN),
           "mlp.down_proj": (HIDDEN, INTER)}
SHARD_BYTES = 1 << 30


def tensors() -> list[tuple[str, tuple[int, int]]]:
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for layer in range(LAYERS):
        out += [(f"model.layers.{layer}.{m}.weight", shape) for m, shape in MODULES.items()]
    return out + [("model.norm.weight", (1, HIDDEN))]


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
        header, offset = {}, 0
        for name, shape in part:
            nbytes = shape[0] * shape[1] * 2
            header[name] = {"dtype": "BF16", "shape": list(shape),
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        text = json.dumps(header).encode()
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
    """Wall time and peak resident memory (MB) of a command, as a child."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


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
    if ".layers." in name:
        b = base[name].astype(np.float64)
        print(name, np.linalg.norm(t.astype(np.float64) - b) / np.linalg.norm(b))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
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
    layer_bytes = 2 * 2 * LAYERS * sum(a * b for a, b in MODULES.values())
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
    env = {**os.environ}

    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)  # hot
    floor, _ = median_time(lambda: subprocess.run(["cat", *map(str, files)],
                                                  stdout=subprocess.DEVNULL, check=True),
                           args.runs)

    def cold_cache() -> dict[str, str]:
        cache = work / f"cache-{time.perf_counter_ns()}"
        return {**env, "FIGSPEC_CACHE": str(cache)}

    metrics = [peak_of([figspec, "table", str(spec)], project, cold_cache())
               for _ in range(args.runs)]
    ours = sorted(m[0] for m in metrics)[len(metrics) // 2]
    ours_peak = max(m[1] for m in metrics)
    rank_time, rank_peak = peak_of([figspec, "table", str(rank)], project, cold_cache())
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
    print(f"machine: {machine()}; {total / 1e9:.2f} GB of checkpoints ({layer_bytes / 1e9:.2f} "
          "GB of layer weights, the rest embeddings, which no metric reads); median of "
          f"{args.runs}, files hot in the page cache\n")
    print("| what | wall time | throughput | peak memory |")
    print("|---|---|---|---|")
    print(f"| read the files (`cat` to /dev/null): the floor | {floor:.2f} s | "
          f"{total / floor / 1e9:.2f} GB/s | |")
    print(f"| `figspec table`, every cheap metric at once, cache cold | {ours:.2f} s | "
          f"{layer_bytes / ours / 1e9:.2f} GB/s of layer weights | {ours_peak:.0f} MB |")
    print(f"| `update_rank`, {args.rank_layers} layers ({7 * args.rank_layers} SVDs) | "
          f"{rank_time:.2f} s | {rank_time / (7 * args.rank_layers):.2f} s per matrix | "
          f"{rank_peak:.0f} MB |")
    print(f"| a script loading both state dicts whole, one metric | {naive:.2f} s | "
          f"{layer_bytes / naive / 1e9:.2f} GB/s | {naive_peak:.0f} MB |")
    print(f"| `figspec build`, nothing changed | {noop:.2f} s | | |")
    print(f"| `figspec build` after a colour change (cache warm) | {recoloured:.2f} s | | |")
    print(f"\nfigspec against the whole-load script: {naive / ours:.1f}x faster, "
          f"{naive_peak / max(ours_peak, 1):.1f}x less memory")
    if args.folder is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
