"""The command line: exit statuses, output streams, defaults."""

from __future__ import annotations

import json
from pathlib import Path

import support


def test_check_valid_and_invalid(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text())
    assert run("check") == (0, "", "")
    support.write(project / "specs" / "b.yaml", support.spec_text(extra="colour: x\n"))
    code, out, err = run("check")
    assert code == 1
    assert err == "specs/b.yaml:11:1: error: unknown key `colour`; did you mean `color`?\n"


def test_check_reports_every_problem_of_every_file(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="domain: [2, 1]\nlegend: {fromat: x}\n"))
    support.write(project / "specs" / "b.yaml", support.spec_text(modules=["q_prj"]))
    code, _, err = run("check", "specs")
    assert code == 1
    assert [line.split(": error: ")[0] for line in err.splitlines()] == [
        "specs/a.yaml:11:9", "specs/a.yaml:12:10", "specs/b.yaml:4:5"]


def test_check_json_format(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="layers: {zero_at: up}\n"))
    code, out, err = run("check", "--format", "json")
    assert code == 1 and err == ""
    (problem,) = json.loads(out)
    assert problem["file"] == "specs/a.yaml"
    assert (problem["line"], problem["column"]) == (11, 19)
    assert problem["yaml_path"] == "layers.zero_at"
    assert problem["message"].startswith("layers.zero_at: input should be 'bottom' or 'top'")


def test_misused_command_line_exits_2(project: Path, run):
    assert run()[0] == 2
    assert run("frobnicate")[0] == 2
    assert run("build", "--no-such-flag")[0] == 2
    code, _, err = run("check", "missing.yaml")
    assert code == 2 and "missing.yaml: no such file or folder" in err
    assert run("compile")[0] == 2


def test_build_defaults_to_specs_and_out(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text())
    code, out, err = run("build")
    assert code == 0, err
    assert support.figures(project / "out") == ["a.png", "a.svg"]
    assert "[1/1] built      specs/a.yaml" in out
    assert out.splitlines()[-1].startswith("1 built, 0 up to date, 0 failed in ")


def test_build_reports_failures_at_the_end_and_exits_1(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="domain: [2, 1]\n"))
    support.write(project / "specs" / "b.yaml", support.spec_text())
    code, out, err = run("build", "--out", "figures")
    assert code == 1
    assert "FAILED     specs/a.yaml" in out and "1 built, 0 up to date, 1 failed" in out
    assert err.startswith("specs/a.yaml:11:9: error: domain: must be increasing")
    assert (project / "figures" / "b.svg").exists()


def test_compile_prints_self_contained_vega_lite(project: Path, run):
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="title: T\n"))
    code, out, err = run("compile", "specs/a.yaml")
    assert code == 0, err
    vl = json.loads(out)
    assert vl["title"] == "T" and len(vl["data"]["values"]) == 42
    assert run("compile", "specs/none.yaml")[0] == 2
    support.write(project / "specs" / "bad.yaml", "data: {path: x.csv}\n")
    code, out, err = run("compile", "specs/bad.yaml")
    assert code == 1 and out == "" and "missing required key `modules`" in err


def test_version(run):
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("figspec ")


def test_a_closed_pipe_ends_quietly(project: Path):
    """`figspec compile s.yaml | head -1`: no BrokenPipeError traceback. The
    reading end is closed before figspec starts, so every run sees the broken
    pipe, whatever the timing (a `| head -1` may read everything first)."""
    import os
    import subprocess
    import sys

    support.write(project / "specs" / "a.yaml", support.spec_text())
    read, write = os.pipe()
    os.close(read)
    try:
        closed = subprocess.run([sys.executable, "-m", "figspec", "compile", "specs/a.yaml"],
                                cwd=project, stdout=write, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert closed.returncode == 141 and closed.stderr == ""
    head = subprocess.run(f"{sys.executable} -m figspec compile specs/a.yaml | head -1",
                          shell=True, cwd=project, capture_output=True, text=True,
                          executable="/bin/bash")
    assert head.stdout == "{\n" and "Traceback" not in head.stderr


def test_table_prints_the_cells_as_csv(project: Path, run):
    import csv
    import io

    from support import MODULES, value_of

    support.write(project / "specs" / "a.yaml", support.spec_text())
    code, out, _ = run("table", "specs/a.yaml")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 * 7
    assert {(int(r["layer"]), r["module"]): float(r["value"]) for r in rows} == {
        (layer, m): value_of(layer, i) for layer in range(6) for i, m in enumerate(MODULES)}


def test_table_neutralises_spreadsheet_formulas_but_not_numbers(project: Path, run):
    """OWASP's advice for CSV: a text cell starting =, +, -, @, tab or CR gets a
    leading ' so a spreadsheet shows it rather than runs it; values stay numbers."""
    import csv
    import io

    hostile = ["=HYPERLINK(\"http://x\")", "+SUM(1,2)", "-cmd", "@SUM(A1)", "\tq", "\rk",
               "plain"]
    rows = [{"model": model, "layer": layer, "module": m, "value": -0.5 - i}
            for model in ("a", "b") for layer in range(2) for i, m in enumerate(hostile)]
    with open(project / "data" / "evil.csv", "w", newline="") as f:
        data = csv.DictWriter(f, list(rows[0]))
        data.writeheader()
        data.writerows({**r, "module": r["module"].replace("\t", "tab").replace("\r", "cr")}
                       for r in rows)
    labels = "\n".join(f"  - {{name: {json.dumps(m.replace(chr(9), 'tab').replace(chr(13), 'cr'))}, "
                       f"label: {json.dumps(m)}}}" for m in hostile)
    support.write(project / "specs" / "a.yaml",
                  "data: {path: ../data/evil.csv}\nmodules:\n" + labels + "\n"
                  "panels:\n  - title: '=1+1'\n    data: {where: {model: a}}\n"
                  "  - title: fine\n    data: {where: {model: b}}\n")
    code, out, err = run("table", "specs/a.yaml")
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert {r["panel"] for r in table} == {"'=1+1", "fine"}
    assert [r["label"] for r in table[:7]] == ["'" + m for m in hostile[:6]] + ["plain"]
    assert [r["module"] for r in table[:7]] == [
        "'=HYPERLINK(\"http://x\")", "'+SUM(1,2)", "'-cmd", "'@SUM(A1)", "tabq", "crk", "plain"]
    assert [float(r["value"]) for r in table[:7]] == [-0.5 - i for i in range(7)]
    assert table[0]["value"] == "-0.5" and table[0]["layer"] == "0"


def test_check_of_a_data_file_checks_the_specs_that_read_it(project: Path, run):
    """What the pre-commit hook passes when a data file is staged."""
    rows = support.long_rows()
    rows[4]["value"] = "n/a"
    support.write_csv(project / "data" / "bad.csv", rows)
    support.write(project / "specs" / "a.yaml", support.spec_text("path: ../data/bad.csv"))
    support.write(project / "specs" / "b.yaml", support.spec_text())
    support.write(project / "notes.json", "{}")
    code, _, err = run("check", "--", "data/bad.csv", "notes.json")
    assert code == 1
    assert err == ('data/bad.csv:6: error: value "n/a" in column `value` is not a number\n')
    assert run("check", "--", "notes.json") == (0, "", "")  # read by no spec
    assert run("check", "--", "data/cells.csv") == (0, "", "")
    support.write(project / "figspec.yaml", "defaults: {colour: x}\n")
    code, _, err = run("check", "--", "figspec.yaml")
    assert code == 1 and "figspec.yaml:1:" in err and "unknown key `colour`" in err


def test_table_gives_the_numbers_of_a_figure_whose_labels_would_collide(project: Path, run):
    """`figspec table` has no labels to collide: it stops before the layout
    that `check` refuses the figure in."""
    import csv
    import io

    support.write(project / "specs" / "a.yaml", support.spec_text(extra="cell: {width: 4}\n"))
    code, _, err = run("check", "specs/a.yaml")
    assert code == 1 and "module labels run into each other at every angle" in err
    code, out, err = run("table", "specs/a.yaml")
    assert code == 0, err
    assert len(list(csv.DictReader(io.StringIO(out)))) == 6 * 7


def test_the_command_line_called_in_a_program_leaves_its_sigterm_handler(project: Path, run):
    """main() stops a build on SIGTERM as on Ctrl-C for its own call; a
    program (a notebook, a test runner) calling it keeps its own handler."""
    import signal

    support.write(project / "specs" / "a.yaml", support.spec_text())

    def own(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, own)
    try:
        assert run("check")[0] == 0
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)
