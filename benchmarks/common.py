"""Shared helpers for the benchmarks: machine description, timing, and a
generated project of N heatmap specs (28 layers x 7 modules each)."""

from __future__ import annotations

import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]
LABELS = ["attn. q", "attn. k", "attn. v", "attn. o", "mlp. up", "mlp. down", "mlp. gate"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def tool(name: str) -> str:
    """A console script installed beside this Python (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name) or name


def median_time(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def run(cmd: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")


def make_project(root: Path, n: int, layers: int = 28) -> Path:
    """root/specs/fig000.yaml ... with one CSV each under root/data."""
    (root / ".git").mkdir(parents=True, exist_ok=True)
    (root / "specs").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    rng = random.Random(0)
    mods = "\n".join(f'  - {{name: {m}, label: "{lab}"}}' for m, lab in zip(MODULES, LABELS))
    for i in range(n):
        rows = [f"{layer},{m},{0.12 + rng.random() * 0.06:.5f}"
                for layer in range(layers) for m in MODULES]
        text = "layer,module,value\n" + "\n".join(rows) + "\n"
        (root / "data" / f"fig{i:03d}.csv").write_text(text)
        (root / "specs" / f"fig{i:03d}.yaml").write_text(
            f'title: "Figure {i}"\ndata:\n  path: ../data/fig{i:03d}.csv\nmodules:\n{mods}\n'
            f"layers: {{first: 0, last: {layers - 1}, tick_every: 4}}\n"
            "domain: [0.12, 0.18]\ncolor: {scheme: blueorange}\n"
            "legend: {title: update ratio, format: .2f}\n"
            "output: {formats: [svg, png, pdf]}\n")
    return root
