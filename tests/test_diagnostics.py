"""Every output format of diagnostics, through `figspec check --format`."""

from __future__ import annotations

import re
from pathlib import Path

import support


def broken(project: Path, name: str = "fig.yaml") -> Path:
    return support.write(project / "specs" / name,
                         support.spec_text(extra="colour: {scheme: blueorange}\n"))


def test_text_is_one_line_per_problem(project: Path, run):
    broken(project)
    assert run("check") == (1, "", "specs/fig.yaml:11:1: error: unknown key `colour`; did you "
                                   "mean `color`?\n")


def test_full_shows_the_source_line_and_a_caret(project: Path, run):
    broken(project)
    support.write(project / "specs" / "nested.yaml", support.spec_text(
        extra="legend:\n  titel: x\n"))
    code, out, err = run("check", "--format", "full")
    assert code == 1 and out == ""
    assert ("specs/fig.yaml:11:1: error: unknown key `colour`; did you mean `color`?\n"
            "11 | colour: {scheme: blueorange}\n"
            "   | ^\n") in err
    assert "12 |   titel: x\n   |   ^\n" in err


def test_github_annotations_are_escaped(project: Path, run):
    broken(project, "a,b:c.yaml")
    code, out, err = run("check", "--format", "github")
    assert code == 1 and err == ""
    assert out == ("::error file=specs/a%2Cb%3Ac.yaml,line=11,col=1,title=figspec::unknown key "
                   "`colour`; did you mean `color`?\n")


def test_markdown_shows_hostile_text_as_written(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=["q_proj", "<img src=x onerror=alert(1)>"]))
    code, out, _ = run("check", "--format", "markdown")
    assert code == 1 and out.startswith("- `specs/fig.yaml:")
    assert " `<img src=x onerror=alert(1)>` " in out  # in a code span: shown, not run
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=["q_proj", "x` <img src=x> `y", "x``<b>``"]))
    code, out, _ = run("check", "--format", "markdown")
    # a backtick in the name cannot end the code span: the text is escaped instead
    assert not re.search(r"(?<!\\)<(img|b)", out) and "\\<img src=x\\>" in out


def test_json_and_a_clean_project(project: Path, run):
    import json

    broken(project)
    code, out, _ = run("check", "--format", "json")
    (problem,) = json.loads(out)
    assert code == 1 and problem["line"] == 11 and problem["yaml_path"] == "colour"
    (project / "specs" / "fig.yaml").unlink()
    support.write(project / "specs" / "ok.yaml", support.spec_text())
    for fmt in ("text", "full", "json", "markdown", "github"):
        code, out, err = run("check", "--format", fmt)
        assert code == 0 and out in ("", "[]\n") and err == "", fmt
