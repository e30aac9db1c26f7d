"""A build's memory stays bounded as its spec count grows: each figure's
heavy state (its parsed spec, tables, Vega-Lite, drawn files) is let go once
its files are written, so the build's process keeps only what each spec's
Result says. Measured with tracemalloc's peak in this process (deterministic,
unlike RSS): the workers' memory is theirs."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import figspec
from support import write


def _specs(folder: Path, n: int) -> Path:
    for i in range(n):
        write(folder / f"fig{i:03d}.yaml", f"""
            title: "Figure {i}"
            data: {{path: ../data/cells.csv}}
            modules: [q_proj, k_proj, v_proj, o_proj, up_proj, down_proj, gate_proj]
            output: {{name: {folder.name}{i:03d}, formats: [svg]}}
            """)
    return folder


def _peak(project: Path, n: int) -> int:
    """tracemalloc's peak over a cold build of n specs, in bytes."""
    specs = _specs(project / f"specs{n}", n)
    tracemalloc.start()
    try:
        results = figspec.build([specs], out_dir=project / f"out{n}", jobs=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.status for r in results] == ["built"] * n
    return peak


def test_a_cold_builds_memory_does_not_grow_with_its_specs(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("FIGSPEC_CACHE", str(project / "cache"))
    _peak(project, 2)  # the imports, the fonts: paid once, not per spec
    few, many = _peak(project, 5), _peak(project, 25)
    # Keeping every figure's state until the end grew ~40 KB a spec here (5 to
    # 25 specs); letting it go, ~6 KB (each spec's Result, its manifest entry).
    assert (many - few) / 20 < 15_000, f"{(many - few) / 20 / 1000:.1f} KB per spec"
