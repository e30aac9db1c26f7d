"""Hostile sizes and odd input: every case a clear diagnostic (exit 1), no
traceback, no hang, bounded time and memory, never a wrong figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from figspec.builder import Options, status

REPO = Path(__file__).resolve().parent.parent


def check(run, *args: str) -> tuple[int, str]:
    code, out, err = run("check", *args)
    assert "Traceback" not in out + err
    return code, err


def long_csv(project: Path, rows: list[dict]) -> None:
    support.write_csv(project / "data" / "cells.csv", rows)


def fig(project: Path, extra: str = "", data: str = "path: ../data/cells.csv") -> Path:
    return support.write(project / "specs" / "fig.yaml", support.spec_text(data, extra=extra))


# -- 6. the grid is bounded before anything proportional to it is built ----------

@pytest.mark.parametrize("extra,where", [
    ("layers: {last: 100000000}\n", "specs/fig.yaml:11:16: error: layers 0 to 100000000 are "),
    ("layers: {last: 1e20}\n", "specs/fig.yaml:11:16: error: layers.last: "),
])
def test_a_huge_layer_range_is_refused_at_once(project: Path, run, extra: str, where: str):
    long_csv(project, support.long_rows(layers=3))
    fig(project, extra)
    start = time.perf_counter()
    code, err = check(run)
    assert code == 1 and err.startswith(where), err
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("layer", [10_000_000, 10 ** 30])
def test_one_far_away_row_does_not_build_a_huge_grid(project: Path, run, layer: int):
    rows = support.long_rows(layers=3)
    (project / "data" / "cells.json").write_text(json.dumps(
        rows + [{"layer": layer, "module": "q_proj", "value": 0.1}]))
    fig(project, data="path: ../data/cells.json")
    start = time.perf_counter()
    code, err = check(run)
    assert code == 1
    assert ("more than the 10,000 a heatmap may have" in err
            or "is larger than 1,000,000,000" in err), err
    assert time.perf_counter() - start < 5


def test_missing_cells_are_counted_not_listed(project: Path, run):
    long_csv(project, support.long_rows(layers=3))
    fig(project, "layers: {last: 9999}\n")
    code, err = check(run)
    assert code == 1
    assert "69,979 cells in range have no row in data/cells.csv: layer 3 `q_proj`" in err
    assert "and 69,974 more" in err


# -- 7. text lengths, and the real drawn size before rasterising -----------------

def test_a_very_long_title_is_refused_at_validation(project: Path, run):
    fig(project, f"title: {'x' * 10_000}\n")
    code, err = check(run)
    assert code == 1 and "title: string should have at most 300 characters" in err


def test_the_drawn_size_is_checked_before_rasterising():
    from figspec.render import TooLargeToDraw, render

    vl = {"data": {"values": [{"v": 1}]}, "mark": "rect", "width": 6000, "height": 6000,
          "encoding": {"color": {"field": "v", "type": "quantitative"}}}
    start = time.perf_counter()
    with pytest.raises(TooLargeToDraw, match="more than 60 million"):
        render(vl, ["svg", "png"], scale=2)
    assert time.perf_counter() - start < 10


# -- 8. the memory a data file may cost -----------------------------------------

def test_reading_a_data_file_costs_at_most_30_times_its_size(tmp_path: Path):
    """Measured in a fresh process: peak memory over the imports' baseline."""
    rows = [{"layer": i % 10_000, "module": f"m{i // 10_000}", "value": 0.1 + i / 1e7}
            for i in range(200_000)]  # every row a cell: 10,000 layers x 20 modules
    support.make_project(tmp_path)
    data = support.write_csv(tmp_path / "data" / "big.csv", rows)
    modules = ", ".join(f"m{i}" for i in range(20))
    spec = support.write(tmp_path / "specs" / "s.yaml", "data: {path: ../data/big.csv}\n"
                         f"modules: [{modules}]\noutput: {{formats: [svg]}}\n")
    code = f"""
import resource, sys
from pathlib import Path
from figspec.pipeline import prepare
from figspec.session import Session
from figspec.layout import figure  # everything imported before measuring
from figspec import cells, spec, models, fonts
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepare(Path({str(spec)!r}), Session())
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    grown = int(done.stdout)
    size = data.stat().st_size
    print(f"reading {size:,} bytes grew memory by {grown / size:.1f}x")
    assert grown < 30 * size, f"{grown / size:.1f}x the file's {size:,} bytes"


def test_a_data_file_over_the_limit_is_refused_unread(project: Path, run,
                                                     monkeypatch: pytest.MonkeyPatch):
    from figspec.sources import tabular

    monkeypatch.setattr(tabular, "MAX_DATA_BYTES", 100)
    fig(project)
    code, err = check(run)
    assert code == 1 and "data/cells.csv:1:1: error: file is larger than 100 bytes" in err


# -- 9. values Vega's scale cannot compute with; a figure with no cells ----------

@pytest.mark.parametrize("bad", ["5e-320", "1.7e308", "-1.7e308"])
def test_values_a_colour_scale_cannot_compute_with_are_refused(project: Path, run, bad: str):
    rows = support.long_rows()
    rows[3]["value"] = bad
    long_csv(project, rows)
    fig(project)
    code, err = check(run)
    assert code == 1
    assert f'data/cells.csv:5: error: value "{bad}" in column `value` is outside what a ' \
           "colour scale can compute with" in err


# -- 10. characters the font lacks -----------------------------------------------

@pytest.mark.parametrize("title,ok", [("Δ update, Ж", True), ("更新比率", False), ("✨ rate", False),
                                      ("अनुपात", False)])
def test_text_the_font_cannot_draw_is_refused_naming_the_characters(project: Path, run,
                                                                    title: str, ok: bool):
    fig(project, f"title: '{title}'\n")
    code, err = check(run)
    if ok:
        assert code == 0, err
    else:
        assert code == 1
        assert "the font (DejaVu Sans) has no " in err and f"'{title[0]}' (U+{ord(title[0]):04X})" in err


# -- 11. numbers as the file format writes them ----------------------------------

@pytest.mark.parametrize("raw", ["0_5", "٥", "５", "0x10", " 1e", "1,5"])
def test_only_plain_ascii_numbers_are_numbers(project: Path, run, raw: str):
    rows = support.long_rows()
    rows[3]["value"] = f'"{raw}"'
    long_csv(project, rows)
    fig(project)
    code, err = check(run)
    assert code == 1 and "data/cells.csv:5: error: value" in err and "is not a number" in err


@pytest.mark.parametrize("layer,ok", [("1_0", False), ("١", False), ("1.0", True), ("1.5", False)])
def test_one_rule_for_layers_in_every_format(project: Path, run, layer: str, ok: bool):
    rows = support.long_rows()
    csv_rows = [dict(r) for r in rows]
    json_rows = [dict(r) for r in rows]
    csv_rows[8]["layer"] = layer
    json_rows[8]["layer"] = float(layer) if ok or layer == "1.5" else layer
    long_csv(project, csv_rows)
    (project / "data" / "cells.json").write_text(json.dumps(json_rows))
    for data in ("path: ../data/cells.csv", "path: ../data/cells.json"):
        fig(project, data=data)
        code, err = check(run)
        assert (code == 0) == ok, (data, err)


# -- 12. a damaged manifest ------------------------------------------------------

@pytest.mark.parametrize("damage", [
    lambda m: {**m, "figures": {k: "a string" for k in m["figures"]}},
    lambda m: {**m, "figures": {k: {**v, "inputs": []} for k, v in m["figures"].items()}},
    lambda m: {**m, "figures": {k: {x: y for x, y in v.items() if x != "name"}
                                for k, v in m["figures"].items()}},
    lambda m: {**m, "figures": {k + "\x00": v for k, v in m["figures"].items()}},
    lambda m: {**m, "figures": {k: {**v, "outputs": {"svg": {"size": "big"}}}
                                for k, v in m["figures"].items()}},
    "[" * 100_000 + "]" * 100_000,
])
def test_a_damaged_manifest_means_a_rebuild_not_a_traceback(project: Path, run, damage):
    fig(project)
    assert run("build")[0] == 0
    path = project / "out" / ".figspec-manifest.json"
    text = damage if isinstance(damage, str) else json.dumps(damage(json.loads(path.read_text())))
    path.write_text(text)
    for command in (["status"], ["build", "--dry-run"], ["build"]):
        code, out, err = run(*command)
        assert "Traceback" not in out + err and code == 0, (command, err)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_manifest_naming_a_fifo_or_a_device_neither_hangs_nor_reads_it(project: Path, run,
                                                                         special: str):
    fig(project)
    assert run("build")[0] == 0
    path = project / "out" / ".figspec-manifest.json"
    manifest = json.loads(path.read_text())
    if special == "fifo":
        target = project / "data" / "pipe"
        os.mkfifo(target)
    else:
        target = Path(special)
    (entry,) = manifest["figures"].values()
    entry["inputs"][os.path.relpath(target, project / "out")] = {
        "size": 0, "mtime_ns": 0, "sha256": "0" * 64}
    path.write_text(json.dumps(manifest))
    start = time.perf_counter()
    results = status([project / "specs"], Options(out_dir=project / "out"))
    assert time.perf_counter() - start < 10
    assert results[0].status == "stale"


# -- 13. `where:` ----------------------------------------------------------------

def test_a_where_that_matches_nothing_says_what_the_column_holds(project: Path, run):
    long_csv(project, support.long_rows(run="grpo") + support.long_rows(run="sft"))
    fig(project, data="path: ../data/cells.csv\nwhere: {run: grpx}")
    code, err = check(run)
    assert err == ("specs/fig.yaml:3:16: error: no row of data/cells.csv has `run` equal to "
                   '"grpx"; the column holds: grpo, sft; did you mean `grpo`?\n')


@pytest.mark.parametrize("written,holds", [("NO", "NO"), ("012", "12"), ("1:30", "1:30"),
                                           ("yes", "yes")])
def test_where_values_are_read_as_yaml_1_2(project: Path, run, written: str, holds: str):
    """YAML 1.1 made NO false, 012 ten and 1:30 ninety."""
    long_csv(project, support.long_rows(key=holds) + support.long_rows(key="other"))
    fig(project, data=f"path: ../data/cells.csv\nwhere: {{key: {written}}}")
    assert check(run)[0] == 0


# -- 14. partial specs and odd file names in the pre-commit hook -----------------

def test_a_partial_spec_is_checked_as_a_partial(project: Path, run):
    support.write(project / "specs" / "_base.yaml", "font: {family: serif}\nlegend: {format: .2f}\n")
    assert check(run, "specs/_base.yaml") == (0, "")
    support.write(project / "specs" / "_base.yaml", "font: {family: serif}\ncolour: x\n")
    code, err = check(run, "specs/_base.yaml")
    assert code == 1 and "unknown key `colour`" in err and "missing" not in err


def test_a_file_named_like_an_option_is_a_file(project: Path, run):
    support.write(project / "specs" / "-x.yaml", support.spec_text())
    assert check(run, "--", "specs/-x.yaml") == (0, "")
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    assert "entry: figspec check --\n" in hooks


# -- 15. uncaught while reading data ---------------------------------------------

def test_a_400_digit_integer(project: Path, run):
    rows = support.long_rows()
    text = json.dumps(rows).replace(f'"value": {rows[0]["value"]}', '"value": ' + "9" * 400, 1)
    (project / "data" / "cells.json").write_text(text)
    fig(project, data="path: ../data/cells.json")
    code, err = check(run)
    assert code == 1 and "is not a finite number" in err
    fig(project, data="values: [{layer: 0, module: q_proj, value: " + "9" * 400 + "}]")
    code, err = check(run)
    assert code == 1 and "is not a finite number" in err


def test_a_json_lines_record_nested_too_deeply(project: Path, run):
    (project / "data" / "cells.jsonl").write_text("[" * 500_000 + "]" * 500_000 + "\n")
    fig(project, data="path: ../data/cells.jsonl")
    code, err = check(run)
    assert code == 1 and "data/cells.jsonl:1: error: JSON nested too deeply" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: nothing is unreadable")
def test_an_unreadable_parquet_file(project: Path, run):
    pytest.importorskip("pyarrow")
    target = project / "data" / "cells.parquet"
    target.write_bytes(b"PAR1")
    target.chmod(0)
    fig(project, data="path: ../data/cells.parquet")
    code, err = check(run)
    assert code == 1 and "cannot read" in err


# -- 16. an unreadable folder ----------------------------------------------------

def test_an_unreadable_folder_is_reported_not_skipped(project: Path, run,
                                                      monkeypatch: pytest.MonkeyPatch):
    fig(project)
    (project / "specs" / "locked").mkdir()
    real = os.walk

    def walk(top, onerror=None, **kw):  # as os.walk reports a folder it cannot list
        for entry in real(top, onerror=onerror, **kw):
            if entry[0].endswith("locked"):
                onerror(PermissionError(13, "Permission denied", entry[0]))
                continue
            yield entry

    monkeypatch.setattr(os, "walk", walk)
    code, err = check(run)
    assert code == 1
    assert err == ("specs/locked: error: cannot read this folder: Permission denied; make it "
                   "readable, or move it out of the specs folder\n")


# -- 17. tabs with libyaml, duplicate JSON keys, a one-cell colorbar -------------

def test_tab_indentation_gets_its_hint_with_libyaml_too(project: Path, run):
    support.write(project / "specs" / "fig.yaml", "data:\n\tpath: x.csv\n")
    code, err = check(run)
    assert code == 1 and err.rstrip().endswith("indent with spaces, not tabs")


@pytest.mark.parametrize("suffix", ["json", "jsonl"])
def test_duplicate_keys_in_json_data_are_refused(project: Path, run, suffix: str):
    record = '{"layer": 0, "module": "q_proj", "value": 0.1, "value": 0.2}'
    text = f"[{record}]" if suffix == "json" else record + "\n"
    (project / "data" / f"cells.{suffix}").write_text(text)
    fig(project, data=f"path: ../data/cells.{suffix}")
    code, err = check(run)
    assert code == 1 and f"data/cells.{suffix}:1: error: key `value` appears twice" in err


def test_a_one_cell_colorbar_has_no_overlapping_labels(project: Path):
    from figspec.builder import compile_spec

    long_csv(project, support.long_rows(layers=1, modules=["q_proj"]))
    spec = support.write(project / "specs" / "fig.yaml",
                         support.spec_text(modules=["q_proj"]))
    sg = support.scenegraph(compile_spec(spec))
    ys = sorted(label["y"] for label in support.placed(sg, "legend-label"))
    assert all(b - a >= 10 for a, b in zip(ys, ys[1:])), ys


def test_a_figure_vega_draws_without_its_cells_is_never_written(project: Path):
    """Should a value slip past the checks, the drawing is counted: Vega drops
    cells it cannot scale, and such a figure must not be written."""
    from figspec.render import RenderJob, render_task

    vl = {"data": {"values": [{"m": "a", "v": 0.0}, {"m": "b", "v": 5e-320}]},
          "mark": "rect", "encoding": {"x": {"field": "m", "type": "nominal"},
                                       "color": {"field": "v", "type": "quantitative"}}}
    drawing = render_task(RenderJob(vl, ("svg",), 1, "t", cells=2))
    assert drawing.files is None and not drawing.bug
    assert drawing.error.startswith("Vega drew 0 of the 2 cells")
    drawing = render_task(RenderJob({**vl, "data": {"values": [{"m": "a", "v": 1}]}},
                                    ("svg",), 1, "t", cells=1))
    assert drawing.error is None and drawing.files is not None


def test_an_output_name_too_long_for_a_file_system(project: Path, run):
    fig(project, f"output: {{name: {'n' * 250}}}\n")
    code, err = check(run)
    assert code == 1 and "output.name: string should have at most 200 characters" in err
