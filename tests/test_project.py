"""figspec.yaml defaults and `extends:`: what is inherited, what wins, where a
mistake in an inherited value is reported, and what a change rebuilds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import support
from figspec.builder import Options, build, check, compile_spec


def options(project: Path) -> Options:
    return Options(out_dir=project / "out")


def test_defaults_apply_under_every_spec_and_the_spec_wins(project: Path):
    support.write(project / "figspec.yaml", """
        defaults:
          font: {family: serif, size: 8}
          color: {scheme: redblue}
          output: {formats: [svg, pdf]}
        """)
    a = support.write(project / "specs" / "a.yaml", support.spec_text())
    b = support.write(project / "specs" / "b.yaml", support.spec_text(
        extra="color: {reverse: true}\noutput: {formats: [png]}\n"))
    opts = options(project)
    va, vb = compile_spec(a, opts), compile_spec(b, opts)
    assert va["config"]["font"] == vb["config"]["font"] == "STIXGeneral"
    assert va["config"]["axis"]["labelFontSize"] == 8
    assert support.encoding(va)["color"]["scale"]["scheme"] == "redblue"
    # Mappings merge key by key: b keeps the default scheme and adds `reverse`.
    assert support.encoding(vb)["color"]["scale"]["scheme"] == "redblue"
    assert support.encoding(vb)["color"]["scale"]["reverse"] is True
    build([project / "specs"], opts)
    # Lists are replaced, not merged.
    assert support.figures(project / "out") == ["a.pdf", "a.svg", "b.png"]


def test_extends_merges_and_chains(project: Path):
    support.write(project / "specs" / "_root.yaml", "domain: [0.1, 0.2]\ntitle: root\n")
    support.write(project / "specs" / "_base.yaml",
                  "extends: _root.yaml\ncolor: {scheme: viridis}\ntitle: base\n")
    spec = support.write(project / "specs" / "fig.yaml",
                         support.spec_text(extra="extends: _base.yaml\ntitle: mine\n"))
    vl = compile_spec(spec, Options())
    assert vl["title"] == "mine"
    assert support.encoding(vl)["color"]["scale"]["scheme"] == "viridis"
    assert support.encoding(vl)["color"]["scale"]["domain"] == [0.1, 0.2]
    # Partial specs (`_name.yaml`) are not figures of their own.
    assert [r.spec.name for r in check([project / "specs"])] == ["fig.yaml"]


def test_a_mistake_in_an_inherited_value_is_reported_where_it_was_written(project: Path, run):
    support.write(project / "figspec.yaml", "defaults:\n  color:\n    scheme: blueorang\n")
    support.write(project / "specs" / "_base.yaml", "legend:\n  format: nope\n")
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="extends: _base.yaml\n"))
    support.write(project / "specs" / "b.yaml", support.spec_text())
    code, _, err = run("check")
    assert code == 1
    lines = err.splitlines()
    # Reported once although both specs inherit it, at the file and line.
    assert [ln for ln in lines if ln.startswith("figspec.yaml:3:13: error:")] == [
        "figspec.yaml:3:13: error: color.scheme: unknown colour scheme 'blueorang'; "
        "did you mean `blueorange`?"]
    assert any(ln.startswith("specs/_base.yaml:2:11: error: legend.format:") for ln in lines)


def test_extends_problems(project: Path, run):
    support.write(project / "specs" / "_a.yaml", "extends: _b.yaml\n")
    support.write(project / "specs" / "_b.yaml", "extends: _a.yaml\n")
    support.write(project / "specs" / "cycle.yaml", support.spec_text(extra="extends: _a.yaml\n"))
    support.write(project / "specs" / "gone.yaml", support.spec_text(extra="extends: nope.yaml\n"))
    code, _, err = run("check")
    assert code == 1
    assert "specs/_b.yaml:1:10: error: `extends` cycle: specs/cycle.yaml -> specs/_a.yaml -> " \
        "specs/_b.yaml -> specs/_a.yaml" in err
    assert "specs/gone.yaml:" in err and "specs/nope.yaml does not exist" in err


def test_figspec_yaml_names_the_specs_and_out_folders(project: Path, run):
    support.write(project / "figspec.yaml", "specs: figures\nout: build/figs\n")
    support.write(project / "figures" / "a.yaml", support.spec_text())
    (project / "sub").mkdir()
    os.chdir(project / "sub")  # found from the working directory upward
    code, out, err = run("build")
    assert code == 0, err
    assert support.figures(project / "build" / "figs") == ["a.png", "a.svg"]


def test_figspec_yaml_mistakes(project: Path, run):
    support.write(project / "figspec.yaml", "defults: {}\ndefaults: {panels: []}\n")
    code, _, err = run("check")
    assert code == 1
    assert "figspec.yaml:1:1: error: unknown key `defults` in figspec.yaml; did you mean " \
        "`defaults`?" in err
    assert "figspec.yaml:2:12: error: `panels` cannot be a default" in err


def test_a_change_rebuilds_exactly_the_figures_it_affects(project: Path):
    support.write(project / "specs" / "_base.yaml", "title: base\n")
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="extends: _base.yaml\n"))
    support.write(project / "specs" / "b.yaml", support.spec_text())

    def rebuilt() -> list[str]:
        return [r.spec.name for r in build([project / "specs"], options(project))
                if r.status == "built"]

    assert rebuilt() == ["a.yaml", "b.yaml"]
    assert rebuilt() == []
    support.write(project / "specs" / "_base.yaml", "title: changed\n")
    assert rebuilt() == ["a.yaml"]
    support.write(project / "figspec.yaml", "defaults: {title: everyone}\n")  # added
    assert rebuilt() == ["a.yaml", "b.yaml"]
    assert rebuilt() == []
    support.write(project / "figspec.yaml", "defaults: {title: all}\n")  # changed
    assert rebuilt() == ["a.yaml", "b.yaml"]  # a's title is _base's, but it could change
    support.write(project / "specs" / "b.yaml", support.spec_text(extra="title: own\n"))
    assert rebuilt() == ["b.yaml"]


def _bare_project(folder: Path) -> Path:
    """A project with no .git, figspec.yaml or pyproject.toml anywhere above it
    (below /tmp, whose parents hold none)."""
    support.write_csv(folder / "data" / "cells.csv", support.long_rows())
    support.write(folder / "specs" / "fig.yaml", support.spec_text())
    return folder


def test_the_project_is_the_same_from_any_working_directory(tmp_path: Path, run,
                                                             monkeypatch: pytest.MonkeyPatch):
    """No root marker: the project is the folder holding the spec's folder, from
    wherever figspec is run (it was the working directory: check passed in
    the project and failed, "outside the project", from anywhere else)."""
    from figspec.project import ROOT_MARKERS

    assert not any((p / m).exists() for p in tmp_path.parents for m in ROOT_MARKERS)
    proj = _bare_project(tmp_path / "myproj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, args in ((proj, ["check"]), (elsewhere, ["check", str(proj / "specs")]),
                      (proj / "specs", ["check", "."]), (elsewhere, ["check", str(proj / "specs" / "fig.yaml")])):
        monkeypatch.chdir(cwd)
        assert run(*args)[0] == 0, (cwd, args)
    # A data file outside that project is still refused, from anywhere.
    support.write_csv(tmp_path / "outside.csv", support.long_rows())
    support.write(proj / "specs" / "fig.yaml", support.spec_text("path: ../../outside.csv"))
    for cwd in (proj, elsewhere, tmp_path):
        monkeypatch.chdir(cwd)
        code, _, err = run("check", str(proj / "specs"))
        assert code == 1 and "lies outside the project" in err


def test_settings_come_from_the_spec_s_own_project(tmp_path: Path, run,
                                                   monkeypatch: pytest.MonkeyPatch):
    """`figspec compile ../B/specs/s.yaml` run in project A applies B's figspec.yaml."""
    a, b = tmp_path / "A", tmp_path / "B"
    for proj, family in ((a, "serif"), (b, "DejaVu Serif")):
        _bare_project(proj)
        support.write(proj / "figspec.yaml", f"defaults: {{font: {{family: {family}}}}}\n")
    monkeypatch.chdir(a)
    code, out, _ = run("compile", "../B/specs/fig.yaml")
    assert code == 0
    assert json.loads(out)["config"]["font"] == "DejaVu Serif"


def test_the_python_api_writes_where_figspec_yaml_says(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    import figspec

    proj = _bare_project(tmp_path / "paper")
    support.write(proj / "figspec.yaml", "out: figures\n")
    monkeypatch.chdir(proj)
    results = figspec.build()
    assert [r.status for r in results] == ["built"]
    assert support.figures(proj / "figures") == ["fig.png", "fig.svg"]
    assert not (proj / "out").exists()
    monkeypatch.chdir(tmp_path)  # from elsewhere, naming the specs: the same project
    assert [r.status for r in figspec.build([proj / "specs"])] == ["up to date"]
