"""Building: files written, failures reported without stopping the others,
and a good figure never destroyed by a bad build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import support
from figspec.builder import Options, build, check
from figspec.diagnostics import UsageError
from figspec.files import write_atomic
from figspec.finding import find_specs

REPO = Path(__file__).resolve().parent.parent


def spec(project: Path, name: str, extra: str = "", data: str = "path: ../data/cells.csv") -> Path:
    return support.write(project / "specs" / f"{name}.yaml", support.spec_text(data, extra=extra))


def test_writes_the_requested_formats(project: Path):
    spec(project, "a")
    spec(project, "b", "output: {name: fig2, formats: [pdf, html]}\n")
    results = build([project / "specs"], Options(out_dir=project / "out"))
    assert [r.status for r in results] == ["built", "built"]
    assert support.figures(project / "out") == [
        "a.png", "a.svg", "fig2.html", "fig2.pdf"]


def test_a_broken_spec_does_not_stop_the_others(project: Path):
    spec(project, "a")
    spec(project, "b", "domain: [2, 1]\n")
    spec(project, "c")
    results = build([project / "specs"], Options(out_dir=project / "out"))
    assert [r.status for r in results] == ["built", "failed", "built"]
    assert "domain: must be increasing" in results[1].diagnostics[0].message
    assert support.figures(project / "out") == ["a.png", "a.svg", "c.png", "c.svg"]


def test_a_failed_build_keeps_the_last_good_figure(project: Path):
    spec(project, "a")
    out = project / "out"
    build([project / "specs"], Options(out_dir=out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rows = support.long_rows()
    rows[5]["value"] = "oops"
    support.write_csv(project / "data" / "cells.csv", rows)
    (result,) = build([project / "specs"], Options(out_dir=out))
    assert result.status == "failed"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_render_failure_writes_nothing_and_the_build_goes_on(project: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    spec(project, "a", "output: {formats: [svg, png, pdf]}\n")
    out = project / "out"
    from figspec import render

    def broken(svg: str) -> bytes:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(render, "svg_to_pdf", broken)
    (result,) = build([project / "specs"], Options(out_dir=out, jobs=1))
    assert result.status == "failed"
    assert result.diagnostics[0].message == "rendering failed: RuntimeError: renderer crashed"
    assert support.figures(out) == []


def test_write_atomic_leaves_the_old_file_when_interrupted(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old figure")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new figure, half written")
    assert target.read_bytes() == b"old figure"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]  # no temporary file left


def test_write_atomic_skips_identical_content(tmp_path: Path):
    target = tmp_path / "fig.svg"
    assert write_atomic(target, b"<svg/>") is True
    os.utime(target, (1, 1))
    assert write_atomic(target, b"<svg/>") is False
    assert target.stat().st_mtime == 1
    assert write_atomic(target, b"<svg></svg>") is True
    assert target.read_bytes() == b"<svg></svg>"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


def test_output_names_must_be_unique(project: Path):
    spec(project, "a", "output: {name: fig}\n")
    spec(project, "b", "output: {name: fig}\n")
    results = check([project / "specs"])
    assert [r.status for r in results] == ["checked", "failed"]
    assert results[1].diagnostics[0].format() == (
        "specs/b.yaml:11:16: error: output name `fig` is also used by specs/a.yaml; "
        "give each spec its own `output.name`")


def test_find_specs(project: Path):
    a = spec(project, "a")
    support.write(project / "specs" / "sub" / "b.yml", "x: 1\n")
    support.write(project / "specs" / ".hidden" / "c.yaml", "x: 1\n")
    (project / "specs" / "notes.txt").write_text("not a spec")
    assert find_specs([project / "specs"]) == [a, project / "specs" / "sub" / "b.yml"]
    assert find_specs([a, a]) == [a]
    with pytest.raises(UsageError, match="no such file"):
        find_specs([project / "nope"])


@pytest.mark.parametrize("specs,loaded", [
    # Figures without `size`: nothing heavy.
    (["specs/" + p.name for p in sorted((REPO / "specs").glob("*.yaml"))
      if "size:" not in p.read_text()], []),
    # A figure with `size` is measured on Vega's scenegraph: vl-convert, never Altair.
    (["specs"], ["vl_convert"]),
])
def test_check_does_not_import_altair_or_vl_convert(specs: list[str], loaded: list[str]):
    import subprocess
    import sys

    code = (f"import sys; from figspec.cli import main; rc = main(['check', *{specs!r}]); "
            "heavy = [m for m in ('altair', 'vl_convert', 'pikepdf', 'numba') if m in sys.modules]; "
            "print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"0 {loaded}"


def test_a_build_with_nothing_to_do_imports_nothing_heavy(tmp_path: Path):
    """A no-op build (the pre-commit hook's usual case) reads the manifest and
    stats files: a checkpoint figure's kernel (numba) and a sized figure's
    measuring (vl-convert) are not loaded again."""
    import subprocess
    import sys

    specs = ["specs/checkpoint_relative_change.yaml", "specs/update_ratio_column.yaml"]
    out = str(tmp_path / "out")
    code = (f"import sys; from figspec.cli import main; rc = main(['build', *{specs!r}, "
            f"'--out', {out!r}]); "
            "heavy = [m for m in ('altair', 'vl_convert', 'pikepdf', 'numba') if m in sys.modules]; "
            "print(rc, heavy)")
    first, again = (subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                                   text=True, check=True).stdout.splitlines()[-1]
                    for _ in range(2))
    # the check below can fail; numba is not loaded even the first time: the
    # committed numbers of these very checkpoints are used as they are
    assert "vl_convert" in first and "numba" not in first
    assert again == "0 []"


def test_a_png_too_large_to_draw_is_refused_before_drawing(project: Path):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=60))
    path = spec(project, "a", "cell: {width: 200, height: 200}\noutput: {scale: 8}\n")
    (result,) = build([path], Options(out_dir=project / "out"))
    assert result.status == "failed"
    assert "the PNG would have about" in result.diagnostics[0].message
    assert result.diagnostics[0].yaml_path == "output.scale"
    svg_only = spec(project, "a", "cell: {width: 200, height: 200}\n"
                    "output: {scale: 8, formats: [svg]}\n")
    assert check([svg_only])[0].status == "checked"


def test_a_chart_failure_fails_that_figure_only(project: Path, monkeypatch: pytest.MonkeyPatch):
    spec(project, "a")
    spec(project, "b", "title: boom\n")
    from figspec import layout

    real = layout.figure

    def flaky(s, tables):
        if s.title == "boom":
            raise ValueError("chart bug")
        return real(s, tables)

    monkeypatch.setattr(layout, "figure", flaky)
    results = build([project / "specs"], Options(out_dir=project / "out", jobs=1))
    assert [r.status for r in results] == ["built", "failed"]
    assert results[1].diagnostics[0].message == "rendering failed: ValueError: chart bug"


@pytest.mark.parametrize("base,at", [
    ("title: 'Update ratio \U0001F642'\n", ["1:8"]),
    # a module's label, without the data it labels
    ("modules: [{name: q_proj, label: 'q \U0001F642'}]\n", ["1:11"]),
    # a panel's title, without its modules
    ("modules: [q_proj]\npanels: [{title: 'x \U0001F642'}]\n", ["2:18"]),
])
def test_a_partial_spec_s_text_is_refused_as_the_specs_extending_it_would_be(
        project: Path, run, base: str, at: list[str]):
    """`check specs/_base.yaml` refuses characters its font lacks where they
    are written, as checking a spec that extends it does."""
    support.write(project / "specs" / "_base.yaml", base)
    partial = run("check", "specs/_base.yaml")
    support.write(project / "specs" / "a.yaml", "extends: _base.yaml\n"
                  "data: {path: ../data/cells.csv}\n"
                  + ("" if "modules" in base else "modules: [q_proj]\n"))
    assert partial == run("check", "specs/a.yaml")
    code, _, err = partial
    assert code == 1 and [ln.split(": error: ")[0] for ln in err.splitlines()] == \
        [f"specs/_base.yaml:{where}" for where in at]
    assert "the font (DejaVu Sans) has no '\U0001F642' (U+1F642)" in err


def test_a_partial_spec_whose_font_files_are_missing_is_refused(project: Path, run,
                                                                monkeypatch: pytest.MonkeyPatch):
    from figspec import fonts

    support.write(project / "specs" / "_base.yaml", "font: {family: serif}\n")
    assert run("check", "specs/_base.yaml")[0] == 0
    monkeypatch.setattr(fonts, "font_dir", lambda: project / "nofonts")
    code, _, err = run("check", "specs/_base.yaml")
    assert code == 1 and "specs/_base.yaml:1:16: error: font family 'STIXGeneral' is not " \
        "installed" in err


def test_a_partial_spec_is_checked_with_its_project_s_defaults(project: Path, run):
    """The font it is drawn in may come from figspec.yaml, as for a full spec."""
    support.write(project / "specs" / "_base.yaml", "title: 'Update ratio \u2603'\n")
    assert run("check", "specs/_base.yaml")[0] == 0  # DejaVu Sans has the snowman
    support.write(project / "figspec.yaml", "defaults: {font: {family: serif}}\n")
    code, _, err = run("check", "specs/_base.yaml")
    assert code == 1 and "the font (STIXGeneral) has no '\u2603'" in err


def test_a_spec_checked_alone_is_refused_where_another_spec_writes_its_name(project: Path,
                                                                            run):
    """What the pre-commit hook checks when a spec is renamed (`git mv`) onto
    the name another spec's `output.name` writes: the staged file alone."""
    spec(project, "a", "output: {name: fig2}\n")
    spec(project, "fig2")
    code, _, err = run("check", "specs/fig2.yaml")
    assert code == 1
    assert "output name `fig2` is also used by specs/a.yaml" in err and err.startswith(
        "specs/fig2.yaml:"), err
    assert run("check", "specs/a.yaml")[0] == 1
    code, _, err = run("build", "specs/fig2.yaml")
    assert code == 1 and "is also used by specs/a.yaml" in err
    assert not (project / "out" / "fig2.svg").exists()
    (project / "specs" / "fig2.yaml").rename(project / "specs" / "fig3.yaml")
    assert run("check", "specs/fig3.yaml")[0] == 0
