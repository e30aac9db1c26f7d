"""The sources seam: a kind of data source is a module of figspec.sources,
found through a registry that imports it only when a spec uses it."""

from __future__ import annotations

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
