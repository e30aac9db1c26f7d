"""The sources seam: a kind of data source is a module of figspec.sources,
found through a registry that imports it only when a spec uses it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import support
from figspec import sources
from figspec.builder import Options, build, compile_spec
from figspec.files import read_stamped
from support import MODULES


class Memory:
    """A tiny source: the file names a table held in memory."""

    tables = {"run-a": {(layer, m): 0.1 + layer / 100 + i / 1000
                        for layer in range(4) for i, m in enumerate(MODULES)}}

    def read(self, ctx: sources.Context) -> sources.Rows:
        path = ctx.path(ctx.data.path or "")
        raw, ctx.stamps[path] = read_stamped(path)
        table = self.tables[raw.decode().strip()]
        where = sources.Where(str(path.name), what="in memory")
        rows = [(where, {"layer": layer, "module": m, "value": v})
                for (layer, m), v in table.items()]
        return sources.Rows(rows, ["layer", "module", "value"], path.name)


@pytest.fixture
def memory_source(monkeypatch: pytest.MonkeyPatch) -> type[Memory]:
    monkeypatch.setitem(sources.BY_SUFFIX, ".mem", Memory())
    return Memory


def test_a_source_registered_outside_the_package_drives_a_whole_build(project: Path,
                                                                       memory_source):
    (project / "data" / "x.mem").write_text("run-a\n")
    spec = support.write(project / "specs" / "fig.yaml",
                         support.spec_text("path: ../data/x.mem"))
    results = build([project / "specs"], Options(out_dir=project / "out", jobs=1))
    assert [r.status for r in results] == ["built"], results[0].diagnostics
    values = {(r["layer"], r["module"]): r["value"]
              for r in compile_spec(spec)["data"]["values"]}
    assert values == memory_source.tables["run-a"]
    # Its file is an input like any data file: a change rebuilds the figure.
    assert build([project / "specs"], Options(out_dir=project / "out"))[0].status == "up to date"
    (project / "data" / "x.mem").write_text("run-a \n")
    assert build([project / "specs"], Options(out_dir=project / "out"))[0].status == "built"


def test_a_source_s_origins_reach_the_diagnostics(project: Path, memory_source, run,
                                                   monkeypatch: pytest.MonkeyPatch):
    table = dict(memory_source.tables["run-a"])
    table[(2, "q_proj")] = float("nan")
    monkeypatch.setitem(memory_source.tables, "bad", table)
    (project / "data" / "x.mem").write_text("bad")
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        "path: ../data/x.mem", extra="layers: {last: 5}\n"))
    code, _, err = run("check")
    assert code == 1
    assert "x.mem: error: in memory: value NaN in column `value` is not a finite number" in err
    assert "14 cells in range have no row in x.mem" in err


def test_sources_are_imported_only_when_a_spec_uses_them(project: Path):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        "values: [{layer: 0, module: q_proj, value: 1}]", modules=["q_proj"]))
    code = ("import sys; from figspec.cli import main; rc = main(['check']); "
            "print(rc, [m for m in ('figspec.sources.tabular', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "0 []"


def test_the_suffixes_a_spec_may_name_are_the_registry_s(project: Path, run,
                                                        monkeypatch: pytest.MonkeyPatch):
    support.write(project / "specs" / "fig.yaml", support.spec_text("path: ../data/x.mem"))
    code, _, err = run("check")
    assert code == 1 and "unknown data file type '.mem'" in err
    monkeypatch.setitem(sources.BY_SUFFIX, ".mem", Memory())
    (project / "data" / "x.mem").write_text("run-a")
    assert run("check")[0] == 0


# -- a new kind of source, in parts, through the interface alone ------------------------

class Sweep(sources.Source):
    """A kind of source figspec does not have, registered in a test: a `.sweep`
    file names a pattern of folders, one run of a sweep each (`lr-3/cells.csv`).
    Each run is a part: its key the number in its folder's name and the folder,
    its panel titled `lr 3`. Nothing outside this class and its registry line
    knows of it."""

    columns = ("lr", "folder")
    at = ("data", "path")

    def read(self, ctx: sources.Context) -> sources.Rows:
        path = ctx.path(ctx.data.path or "")
        raw, ctx.stamps[path] = read_stamped(path)
        rows: list[sources.Row] = []
        for name in ctx.glob(path.parent, raw.decode().strip()) or []:
            cells = path.parent / name / "cells.csv"
            text, ctx.stamps[cells] = read_stamped(cells)
            for line, record in enumerate(text.decode().splitlines()[1:], 2):
                layer, module, value = record.split(",")
                rows.append((sources.Where(f"{name}/cells.csv", line),
                             {"layer": layer, "module": module, "value": value,
                              "lr": int(name.split("-")[1]), "folder": name}))
        return sources.Rows(rows, ["layer", "module", "value", "lr", "folder"], path.name)

    def parts(self, ctx: sources.Context, rows: sources.Rows) -> list[sources.Part]:
        by_run: dict[tuple[int, str], list[sources.Row]] = {}
        for origin, row in rows.rows:
            by_run.setdefault((row["lr"], row["folder"]), []).append((origin, row))
        return [sources.Part(sources.Rows(some, rows.columns, rows.shown), key, f"lr {key[0]}")
                for key, some in sorted(by_run.items())]

    def arrange(self, doc: object, x: str) -> str:
        return sources.COLUMNS if x == "step" else sources.PANELS


SWEPT = ["q_proj", "k_proj"]


def _sweep_run(project: Path, lr: int) -> None:
    support.write_csv(project / "data" / f"lr-{lr}" / "cells.csv",
                      [{**r, "value": r["value"] + lr} for r in support.long_rows(4, SWEPT)])


def _table(run, path: Path) -> list[dict[str, str]]:
    import csv
    import io

    code, out, err = run("table", str(path))
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def test_a_new_source_in_parts_is_one_class_and_one_registry_line(
        project: Path, run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sources.BY_SUFFIX, ".sweep", Sweep())
    for lr in (1, 3):
        _sweep_run(project, lr)
    (project / "data" / "lr.sweep").write_text("lr-*\n")
    spec = support.write(project / "specs" / "fig.yaml",
                         support.spec_text("path: ../data/lr.sweep", modules=SWEPT))
    # Its parts are drawn as the source says: a panel per run ...
    sg = support.scenegraph(compile_spec(spec))
    assert [t["text"] for t in support.marks(sg, "title-text")] == ["lr 1", "lr 3"]
    # ... and `figspec table` heads them with the source's columns.
    rows = _table(run, spec)
    assert list(rows[0]) == ["lr", "folder", "layer", "module", "label", "value"]
    assert [(r["lr"], r["folder"]) for r in rows[::len(SWEPT) * 4]] == [("1", "lr-1"),
                                                                        ("3", "lr-3")]
    assert float(rows[-1]["value"]) == support.value_of(3, 1) + 3
    # `x: step` draws the parts as the columns of a panel per module; same numbers.
    spec.write_text(spec.read_text() + "x: step\n")
    sg = support.scenegraph(compile_spec(spec))
    assert [t["text"] for t in support.marks(sg, "title-text")] == SWEPT
    assert ["1", "3"] in support.axis_texts(sg)
    assert _table(run, spec) == rows
    # Its inputs are stamped through the context: a new run makes the figure stale.
    out = project / "out"
    assert build([project / "specs"], Options(out_dir=out))[0].status == "built"
    assert build([project / "specs"], Options(out_dir=out))[0].status == "up to date"
    _sweep_run(project, 5)
    assert "stale" in run("status")[1]
    assert build([project / "specs"], Options(out_dir=out))[0].status == "built"
    assert {r["lr"] for r in _table(run, spec)} == {"1", "3", "5"}


def test_a_source_that_cannot_draw_x_step_says_so_before_reading(project: Path, run):
    support.write(project / "specs" / "fig.yaml",
                  support.spec_text("path: ../data/missing.csv") + "x: step\n")
    code, _, err = run("check")
    assert code == 1 and "`x: step` draws a run's checkpoints" in err, err
    assert "missing.csv" not in err, err


# -- what names a source: its module and its registry line, nothing else ---------------

PACKAGE = Path(sources.__file__).resolve().parent.parent


def _phase_files() -> list[Path]:
    """The phases around the sources: cells, views, the manifest, the
    pipeline, `figspec table` and the layout package (each must exist: a
    file renamed away would pass unread)."""
    named = ["cells.py", "views.py", "manifest.py", "pipeline.py", "commands/table.py"]
    layout = sorted((PACKAGE / "layout").rglob("*.py"))
    assert layout and all((PACKAGE / n).is_file() for n in named)
    return [PACKAGE / n for n in named] + layout


def test_the_phases_around_the_sources_name_no_source():
    files = _phase_files()
    named = [f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}"
             for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
             if re.search(r"checkpoint|trajector", line, re.IGNORECASE)]
    assert named == []


def test_a_session_is_made_only_where_an_invocation_starts():
    """A Session made up below would drop what the invocation allows
    (--allow-outside) and what it computed: it is always passed down."""
    starts = {"builder.py", "api.py", "serve.py"}
    made = [f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}"
            for f in sorted(PACKAGE.rglob("*.py"))
            if f.name not in starts and f.parent.name != "commands"
            for i, line in enumerate(f.read_text().splitlines(), 1)
            if re.search(r"\bSession\(|default_factory=Session\b|session or ", line)]
    assert made == []
