"""figspec from Python: compiler.load(...).chart and .save(...), compiler.build(...)."""

from __future__ import annotations

from pathlib import Path

import pytest

import compiler
import support
from compiler.diagnostics import FigspecError, UsageError


def test_load_gives_the_altair_chart_and_saves_any_format(project: Path):
    import altair as alt

    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="title: T\n"))
    fig = compiler.load("specs/fig.yaml")
    assert isinstance(fig.chart, alt.Chart)
    assert fig.chart.to_dict()["title"] == "T"
    for suffix in ("svg", "png", "pdf", "html"):
        path = fig.save(project / f"x.{suffix}")
        assert path.read_bytes()[:4] in (b"<svg", b"\x89PNG", b"%PDF", b"<!DO")
    # The same bytes as the command line writes.
    compiler.build(["specs"])
    assert (project / "x.svg").read_bytes() == (project / "out" / "fig.svg").read_bytes()
    with pytest.raises(UsageError, match="unknown format"):
        fig.save(project / "x.gif")


def test_load_reports_problems_as_diagnostics(project: Path):
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="colour: {}\n"))
    with pytest.raises(FigspecError) as e:
        compiler.load("specs/fig.yaml")
    assert "unknown key `colour`" in e.value.diagnostics[0].message


def test_build_returns_one_result_per_spec(project: Path):
    support.write(project / "specs" / "a.yaml", support.spec_text())
    support.write(project / "specs" / "b.yaml", "nope: 1\n")
    results = compiler.build(["specs"], out_dir="figs")
    assert [(r.spec.name, r.status) for r in results] == [("a.yaml", "built"), ("b.yaml", "failed")]
    assert support.figures(project / "figs") == ["a.png", "a.svg"]
