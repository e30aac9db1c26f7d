"""figspec against its peers, in one run, on the same SYNTHETIC checkpoint
pairs (issue 32, point 4).

Two pairs are made in a temp dir, one BF16 and one F32, shaped like
Qwen2.5-0.5B's layers (hidden 896, intermediate 4864, 2 key/value heads of
64), as many layers as --gb asks for (bytes of the pair, both checkpoints;
0.3 by default, 1.43 for the issue's size), one ``model.safetensors`` per
checkpoint; the tuned checkpoint differs from the base in about 12% of its
entries by a few units in the last place. Random bits in the range of real
weights: SYNTHETIC, never a real model.

For each pair, the commands are run interleaved (one of each, then again),
files hot in the page cache, and each one's median of --runs is kept:

* ``cat`` of the four files to /dev/null: the floor;
* ``figspec table`` of a ``relative_change`` spec, the whole command (its
  one pass takes every cheap metric's sums), figspec's metrics cache cold;
* a researcher's script: safetensors' ``safe_open``, each tensor to numpy,
  relative change, cosine and largest difference per tensor, in float32 and
  in float64;
* weightwatcher's ``WeightWatcher().distances(base, tuned)`` on the two
  models loaded into torch;
* modeldelta's command line (``modeldelta BASE TUNED -o report.json``);
* diffai-python's ``diffai.diff_paths(base, tuned)``.

Wall time, GB/s (bytes of the pair / time), peak resident memory of the
command (GNU ``/usr/bin/time``'s %M where present), what each computes, and whether its
numbers agree with figspec's where they compute the same thing (largest
relative difference over the tensors). A peer that cannot be installed or
run is a row that says why.

The peers live in a venv of their own, never figspec's (torch: the CPU
build from a file on this machine, pinned)::

    python3 -m venv /tmp/peersenv
    /tmp/peersenv/bin/pip install torch==2.13.0
    /tmp/peersenv/bin/pip install safetensors numpy weightwatcher modeldelta diffai-python

    python benchmarks/bench_peers.py --peers-python /tmp/peersenv/bin/python \\
        [--gb 0.3] [--runs 3] [--modeldelta-runs 1] [--dtypes BF16,F32] [--folder DIR]

(``--gb 1.43`` for the issue's size: modeldelta then takes minutes a run.)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import machine, tool

HIDDEN, INTER, KV = 896, 4864, 128
MODULES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN),
           "self_attn.v_proj": (KV, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
           "mlp.up_proj": (INTER, HIDDEN), "mlp.gate_proj": (INTER, HIDDEN),
           "mlp.down_proj": (HIDDEN, INTER)}
ENTRIES_PER_LAYER = sum(r * c for r, c in MODULES.values())
WIDTH = {"BF16": 2, "F32": 4}


def tensors(layers: int) -> list[tuple[str, tuple[int, int]]]:
    return [(f"model.layers.{layer}.{m}.weight", shape)
            for layer in range(layers) for m, shape in MODULES.items()]


def header(part: list[tuple[str, tuple[int, int]]], dtype: str) -> bytes:
    """The JSON header of a safetensors file, padded to 8 bytes."""
    out: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in part:
        nbytes = shape[0] * shape[1] * WIDTH[dtype]
        out[name] = {"dtype": dtype, "shape": list(shape),
                     "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(out).encode()
    return text + b" " * (-len(text) % 8)


def bits(rng: Any, n: int, dtype: str) -> tuple[Any, Any]:
    """Base and tuned values of n entries around +-0.01..0.03; about 12% of
    the tuned ones moved by 1-7 units in the last place."""
    import numpy as np
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    exponent = rng.integers(120, 123, n, dtype=np.uint32) << 23
    mantissa = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    base = sign | exponent | mantissa
    if dtype == "BF16":
        base = (base >> 16).astype(np.uint16)
    tuned = base.copy()
    mask = rng.random(n) < 0.12
    tuned[mask] ^= rng.integers(1, 8, int(mask.sum())).astype(base.dtype)
    return base, tuned


def make(folder: Path, dtype: str, layers: int) -> None:
    """Both checkpoints of one dtype, tensor by tensor (memory stays small).
    Run in a child process (--make), so that this process stays small: a
    child's peak memory, as wait4 reports it, starts from its parent's."""
    import numpy as np
    rng = np.random.default_rng(0)
    part = tensors(layers)
    text = header(part, dtype)
    files = {}
    for side in ("base", "tuned"):
        (folder / side).mkdir(parents=True, exist_ok=True)
        (folder / side / "config.json").write_text(json.dumps(
            {"model_type": "qwen2", "hidden_size": HIDDEN, "intermediate_size": INTER,
             "num_hidden_layers": layers}))
        files[side] = (folder / side / "model.safetensors").open("wb")
        files[side].write(len(text).to_bytes(8, "little") + text)
    for _, shape in part:
        total = shape[0] * shape[1]
        for start in range(0, total, 1 << 23):
            base, tuned = bits(rng, min(1 << 23, total - start), dtype)
            files["base"].write(base.tobytes())
            files["tuned"].write(tuned.tobytes())
    for f in files.values():
        f.close()


# --- the peers' scripts, run by --peers-python ------------------------------

RESEARCHER = '''
import json, sys
import numpy as np
from safetensors import safe_open

tuned_path, base_path, precision = sys.argv[1], sys.argv[2], sys.argv[3]
dt = np.float32 if precision == "float32" else np.float64
out = {}
# numpy has no bfloat16: safetensors hands the tensor to torch, which widens it
with safe_open(tuned_path, framework="pt") as ft, safe_open(base_path, framework="pt") as fb:
    for name in ft.keys():
        t = ft.get_tensor(name).float().numpy().astype(dt)
        b = fb.get_tensor(name).float().numpy().astype(dt)
        d = t - b
        out[name] = {
            "relative_change": float(np.linalg.norm(d) / np.linalg.norm(b)),
            "cosine": float(np.dot(t.ravel(), b.ravel())
                            / (np.linalg.norm(t) * np.linalg.norm(b))),
            "max_abs_diff": float(np.abs(d).max()),
            "changed_fraction": float(np.count_nonzero(d) / d.size),
        }
json.dump(out, sys.stdout)
'''

WEIGHTWATCHER = '''
import sys, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import weightwatcher as ww

# weightwatcher reads a folder of safetensors files itself
avg, _, details = ww.WeightWatcher().distances(sys.argv[2], sys.argv[1])
print(details.to_json(orient="records"))
'''

DIFFAI = '''
import json, sys
import diffai
res = diffai.diff_paths(sys.argv[2], sys.argv[1])
json.dump(res, sys.stdout, default=str)
'''


@dataclass
class Row:
    what: str
    computes: str
    cmd: list[str]
    kind: str  # which output parser: cat, figspec, researcher, ww, modeldelta, diffai
    runs: int = 1_000_000  # at most this many timed runs (modeldelta is slow)
    times: list[float] = field(default_factory=list)
    peak: float = 0.0
    stdout: str = ""
    error: str = ""
    agrees: str = ""


def launch(cmd: list[str], cwd: Path, env: dict[str, str], keep: bool = True
           ) -> tuple[float, float, str]:
    """Wall time, peak resident MB and stdout of a command (``keep``: else its
    output goes to /dev/null, as `cat`'s must: written to a file, the 1.43 GB
    pair took `cat` 0.6 s, not 0.2). The peak is GNU time's (%M), which forks
    from a small process: wait4's own rusage here would start from this
    process's peak (Python spawns with vfork)."""
    gnu_time = Path("/usr/bin/time")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak_file:
        wrapped = [str(gnu_time), "-f", "%M", "-o", peak_file.name, *cmd] \
            if gnu_time.exists() else cmd
        start = time.perf_counter()
        child = subprocess.Popen(wrapped, cwd=cwd, env=env, stderr=err,
                                 stdout=out if keep else subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        kb = peak_file.read().strip().splitlines()[-1:] if gnu_time.exists() else []
    if code:
        last = errors.strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"exit {code}: {last[0][:150]}")
    peak = float(kb[0]) if kb and kb[0].isdigit() else usage.ru_maxrss
    return seconds, peak / 1024, text


def figspec_values(text: str) -> dict[str, float]:
    """figspec table's CSV as {tensor name: value}."""
    full = {m.split(".")[-1]: m for m in MODULES}
    rows = csv.DictReader(io.StringIO(text))
    return {f"model.layers.{r['layer']}.{full[r['module']]}.weight": float(r["value"])
            for r in rows if r["module"] in full}


def worst(ours: dict[str, float], theirs: dict[str, float]) -> str:
    """The largest relative difference over the tensors figspec tables."""
    missing = [k for k in ours if k not in theirs]
    if missing:
        return f"{len(missing)} of {len(ours)} tensors missing"
    gap = max(abs(theirs[k] - ours[k]) / max(abs(ours[k]), 1e-300) for k in ours)
    return f"to {gap:.0e} ({len(ours)} tensors)"


def agrees(row: Row, ours: dict[str, dict[str, float]], report: Path) -> str:
    """Whether a peer's numbers are figspec's, where both compute them."""
    if row.kind == "figspec":
        return "(the reference)"
    if row.kind == "researcher":
        theirs = {k: v["relative_change"] for k, v in json.loads(row.stdout).items()}
        return "relative_change " + worst(ours["relative_change"], theirs)
    if row.kind == "ww":
        theirs = {r["name"] + ".weight": float(r["delta_W"]) for r in json.loads(row.stdout)}
        return "update_norm " + worst(ours["update_norm"], theirs)
    if row.kind == "modeldelta":
        modules = json.loads(report.read_text())["modules"]
        theirs = {m["name"]: float(m["frob_norm_relative"]) for m in modules}
        return "relative_change " + worst(ours["relative_change"], theirs)
    if row.kind == "diffai":
        changed = {c["path"].split(".data_summary")[0].removeprefix("tensors.")
                   for c in json.loads(row.stdout)}
        moved = sum(v > 0 for v in ours["relative_change"].values())
        if not changed and moved:
            return f"no: reports no change at all, where {moved} tensors changed"
        return (f"reports a change in {len(changed)} of the {moved} tensors that changed "
                "(their mean or std)")
    return ""


def main() -> None:
    if sys.argv[1:2] == ["--make"]:
        make(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers-python", default="/tmp/peersenv/bin/python",
                    help="the Python of the peers' venv (see the docstring)")
    ap.add_argument("--gb", type=float, default=0.3, help="bytes of each pair, GB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modeldelta-runs", type=int, default=1,
                    help="timed runs of modeldelta, which takes an SVD of every delta")
    ap.add_argument("--dtypes", default="BF16,F32")
    ap.add_argument("--folder", type=Path, default=None, help="keep the pairs here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="figspec-bench-peers-"))
    root = args.folder or work / "ckpt"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; median of {args.runs} "
          f"(modeldelta: {args.modeldelta_runs}), commands interleaved, files hot in the "
          "page cache\n")
    for dtype in args.dtypes.split(","):
        layers = max(1, round(args.gb * 1e9 / (2 * ENTRIES_PER_LAYER * WIDTH[dtype])))
        folder = root / f"{dtype}-{layers}"
        if not (folder / "tuned" / "model.safetensors").exists():
            subprocess.run([sys.executable, __file__, "--make", str(folder), dtype,
                            str(layers)], check=True)
        bench(folder, dtype, layers, args, work)
    if args.folder is None:
        shutil.rmtree(work, ignore_errors=True)


def peers(py: str, tuned: Path, base: Path, work: Path, report: Path, args: argparse.Namespace
          ) -> list[Row]:
    scripts = {}
    for name, text in (("researcher", RESEARCHER), ("ww", WEIGHTWATCHER), ("diffai", DIFFAI)):
        scripts[name] = work / f"peer_{name}.py"  # never a peer's own module name
        scripts[name].write_text(text)
    return [
        Row("safe_open + numpy, float32", "relative change, cosine, max abs difference, "
            "changed fraction, per tensor", [py, str(scripts["researcher"]), str(tuned),
                                             str(base), "float32"], "researcher"),
        Row("safe_open + numpy, float64", "the same in float64",
            [py, str(scripts["researcher"]), str(tuned), str(base), "float64"], "researcher"),
        Row("weightwatcher `distances`", "‖T − B‖_F per tensor, float32",
            [py, str(scripts["ww"]), str(tuned.parent), str(base.parent)], "ww"),
        Row("modeldelta (CLI, JSON report)", "‖T − B‖, relative change, cosine, "
            "sparsity in float32, and an SVD of every delta",
            [str(Path(py).parent / "modeldelta"), str(base.parent), str(tuned.parent),
             "-o", str(report)], "modeldelta", args.modeldelta_runs),
        Row("diffai-python `diff_paths`", "mean and std per tensor, and which differ",
            [py, str(scripts["diffai"]), str(tuned), str(base)], "diffai"),
    ]


def bench(folder: Path, dtype: str, layers: int, args: argparse.Namespace, work: Path) -> None:
    tuned, base = folder / "tuned" / "model.safetensors", folder / "base" / "model.safetensors"
    files = [base, tuned]
    total = sum(f.stat().st_size for f in files)
    project = work / f"project-{dtype}"
    (project / "specs").mkdir(parents=True, exist_ok=True)
    (project / ".git").mkdir(exist_ok=True)
    (project / "figspec.yaml").write_text(f"roots: {{ckpt: {folder}}}\n")
    specs = {}
    for metric in ("relative_change", "update_norm"):
        specs[metric] = project / "specs" / f"{metric}.yaml"
        specs[metric].write_text("data: {checkpoint: $ckpt/tuned, base: $ckpt/base, "
                                 f"metric: {metric}}}\nmodules: qwen2\n")
    cache = work / f"cache-{dtype}"
    env = {**os.environ, "FIGSPEC_CACHE": str(cache)}
    env.pop("FIGSPEC_KERNEL", None)
    report = work / f"modeldelta-{dtype}.json"
    figspec = [tool("figspec"), "table"]
    rows = [Row("`cat` of the pair (the floor)", "reads the bytes",
                ["cat", *map(str, files)], "cat"),
            Row("`figspec table` (whole command, metrics cache cold)",
                "the sums of 9 cheap metrics in one float64 pass; prints one",
                [*figspec, str(specs["relative_change"])], "figspec"),
            *peers(args.peers_python, tuned, base, work, report, args)]
    subprocess.run(rows[0].cmd, stdout=subprocess.DEVNULL, check=True)  # hot
    # figspec's first run compiles this dtype's kernel into the cache: untimed
    subprocess.run(rows[1].cmd, cwd=project, env=env, check=True, capture_output=True)
    for _ in range(args.runs):
        for row in rows:
            if row.error or len(row.times) >= row.runs:
                continue
            shutil.rmtree(cache / "metrics", ignore_errors=True)
            try:
                seconds, peak, row.stdout = launch(row.cmd, project, env,
                                                   keep=row.kind != "cat")
            except (RuntimeError, OSError) as e:
                row.error = str(e)
                continue
            row.times.append(seconds)
            row.peak = max(row.peak, peak)
    ours = {m: figspec_values(subprocess.run([*figspec, str(s)], cwd=project, env=env,
                                             check=True, capture_output=True, text=True).stdout)
            for m, s in specs.items()}
    print_table(rows, ours, report, dtype, layers, total)


def print_table(rows: list[Row], ours: dict[str, dict[str, float]], report: Path, dtype: str,
                layers: int, total: int) -> None:
    gb = total / 1e9
    floor = statistics.median(rows[0].times) if rows[0].times else math.nan
    print(f"### {dtype}: {layers} layer{'s' * (layers > 1)} of Qwen2.5-0.5B's shapes, "
          f"{gb:.2f} GB the pair\n")
    print("| what | wall time | against `cat` | GB/s | peak memory | computes "
          "| agrees with figspec |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if not row.times:
            why = f"could not run here: {row.error}" if row.error else "not run (0 runs asked)"
            print(f"| {row.what} | {why} | | | | {row.computes} | |")
            continue
        try:
            agree = agrees(row, ours, report)
        except (ValueError, KeyError, TypeError) as e:
            agree = f"output not read ({type(e).__name__}: {e})"
        t = statistics.median(row.times)
        runs = f" ({len(row.times)} run{'s' * (len(row.times) > 1)})" \
            if len(row.times) < len(rows[0].times) else ""
        print(f"| {row.what} | {t:.2f} s{runs} | {t / floor:.1f}x | {gb / t:.2f} | "
              f"{row.peak:.0f} MB | {row.computes} | {agree} |")
    print()


if __name__ == "__main__":
    main()
