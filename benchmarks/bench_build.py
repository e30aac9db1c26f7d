"""`figspec build` of 100 figures (28 x 7 cells; SVG, PNG and PDF), measured in
one run against what a user would otherwise write: one Python process per
figure, calling Altair's `chart.save` for each format, or drawing the same
heatmap with seaborn/matplotlib. Also: the render floor (vl-convert alone on
prebuilt Vega-Lite, warmed, in one process), a no-op build, and the peak
memory of the whole build (parent and workers, sampled).

    pip install -e '.[bench]'
    python benchmarks/bench_build.py [--figures 100] [--runs 3]

Goals: cold build >= 20x faster than the Altair scripts and faster than the
matplotlib ones; no-op build < 0.5 s; peak memory < 500 MB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import LABELS, MODULES, machine, make_project, median_time, run, tool

ALTAIR_SCRIPT = '''
import csv, sys
import altair as alt
name = sys.argv[1]
with open(f"data/{name}.csv") as f:
    rows = [{"layer": int(r["layer"]), "module": r["module"], "value": float(r["value"])}
            for r in csv.DictReader(f)]
names = %(modules)r
labels = %(labels)r
for r in rows:
    r["module"] = labels[names.index(r["module"])]
chart = alt.Chart(alt.Data(values=rows), title=f"Figure {name}").mark_rect().encode(
    x=alt.X("module:N", sort=labels, axis=alt.Axis(title=None, labelAngle=-45)),
    y=alt.Y("layer:O", sort="descending", axis=alt.Axis(values=[0, 4, 8, 12, 16, 20, 24, 27])),
    color=alt.Color("value:Q", scale=alt.Scale(scheme="blueorange", domain=[0.12, 0.18],
                                               clamp=True),
                    legend=alt.Legend(title="update ratio", format=".2f")),
).properties(width=168, height=336)
chart.save(f"out/{name}.svg")
chart.save(f"out/{name}.png", scale_factor=2)
chart.save(f"out/{name}.pdf")
''' % {"modules": MODULES, "labels": LABELS}

MPL_SCRIPT = '''
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
name = sys.argv[1]
df = pd.read_csv(f"data/{name}.csv")
grid = df.pivot(index="layer", columns="module", values="value")[%(modules)r]
grid.columns = %(labels)r
fig, ax = plt.subplots(figsize=(3.2, 5))
sns.heatmap(grid.iloc[::-1], cmap="RdBu_r", vmin=0.12, vmax=0.18, ax=ax,
            cbar_kws={"label": "update ratio"})
ax.set_title(f"Figure {name}")
fig.tight_layout()
for fmt in ("svg", "png", "pdf"):
    fig.savefig(f"out/{name}.{fmt}", dpi=200 if fmt == "png" else None)
''' % {"modules": MODULES, "labels": LABELS}


def per_figure_scripts(root: Path, script: str, n: int, parallel: int) -> None:
    """One Python process per figure, `parallel` at a time (like `make -jN`)."""
    (root / "script.py").write_text(script)
    shutil.rmtree(root / "out", ignore_errors=True)
    (root / "out").mkdir()
    names = [f"fig{i:03d}" for i in range(n)]
    running: list[subprocess.Popen] = []
    for name in names:
        while len(running) >= parallel:
            running.pop(0).wait()
        running.append(subprocess.Popen([sys.executable, "script.py", name], cwd=root))
    for p in running:
        if p.wait() != 0:
            raise SystemExit("a baseline script failed")


class PeakMemory:
    """Sums the RSS of a process and its descendants every 20 ms; keeps the peak."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()

    def _tree(self, root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def _rss(self, pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self, cmd: list[str], cwd: Path) -> float:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL)
        while proc.poll() is None:
            self.peak_kb = max(self.peak_kb, sum(self._rss(p) for p in self._tree(proc.pid)))
            time.sleep(0.02)
        if proc.returncode != 0:
            raise SystemExit(f"{cmd} failed")
        return time.perf_counter() - start


def render_floor(root: Path, n: int) -> float:
    """vl-convert alone, warmed, on prebuilt Vega-Lite: SVG, then PNG and PDF from it."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from pathlib import Path
import vl_convert as vlc
from figspec.builder import Options, compile_spec
specs = [compile_spec(p, Options()) for p in sorted(Path("specs").glob("*.yaml"))[:{n}]]
vlc.svg_to_pdf(vlc.vegalite_to_svg(specs[0]))  # warm
start = time.perf_counter()
for vl in specs:
    svg = vlc.vegalite_to_svg(vl, allowed_base_urls=[])
    vlc.svg_to_png(svg, scale=2)
    vlc.svg_to_pdf(svg)
print(time.perf_counter() - start)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--figures", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-baselines", action="store_true")
    args = ap.parse_args()
    n = args.figures
    figspec = tool("figspec")
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), n)

        def cold() -> None:
            shutil.rmtree(root / "out", ignore_errors=True)
            run([figspec, "build"], root)

        ours, ours_all = median_time(cold, args.runs)
        rows.append((f"`figspec build`, cold, {n} figures", ours, _runs(ours_all)))
        noop, noop_all = median_time(lambda: run([figspec, "build"], root), 5)
        rows.append(("`figspec build`, nothing changed", noop, _runs(noop_all)))
        shutil.rmtree(root / "out")
        memory = PeakMemory()
        memory.run([figspec, "build"], root)
        floor = render_floor(root, n)
        rows.append(("render floor: vl-convert alone, warmed, 1 process", floor, ""))
        rows.append(("render floor / 2 cores (ideal)", floor / 2, ""))
        baselines = {}
        if not args.skip_baselines:
            for label, script in (("Altair `chart.save` script per figure", ALTAIR_SCRIPT),
                                  ("seaborn/matplotlib script per figure", MPL_SCRIPT)):
                for parallel in (1, 2):
                    t, _ = median_time(lambda: per_figure_scripts(root, script, n, parallel), 1)
                    key = f"{label}, {parallel} at a time"
                    baselines[key] = t
                    rows.append((key, t, "1 run"))
    print(f"machine: {machine()}\n")
    print("| what | wall time (median) | runs |")
    print("|---|---|---|")
    for what, t, runs in rows:
        print(f"| {what} | {t:.2f} s | {runs} |")
    print(f"\npeak memory of the cold build (parent + workers): {memory.peak_kb / 1024:.0f} MB")
    print(f"cold build / ideal render floor: {ours / (floor / 2):.2f}x")
    for key, t in baselines.items():
        print(f"speed-up over {key}: {t / ours:.1f}x")


def _runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
