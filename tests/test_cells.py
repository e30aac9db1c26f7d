"""Reading data sources into the cell table: every file type, both layouts,
inline records, `where:` filters, and the layer range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import figspec
import support
from figspec.diagnostics import FigspecError
from support import MODULES, value_of


def table_for(project: Path, spec_body: str, allow_outside: bool = False):
    path = support.write(project / "specs" / "fig.yaml", spec_body)
    (table,) = figspec.load(path, allow_outside=allow_outside).prepared.tables
    return table


def expected_values(layers=range(6), modules=MODULES):
    return {(layer, m): value_of(layer, MODULES.index(m)) for layer in layers for m in modules}


@pytest.mark.parametrize("suffix", ["csv", "tsv", "json", "jsonl"])
def test_every_file_type_gives_the_same_table(project: Path, suffix: str):
    rows = support.long_rows()
    target = project / "data" / f"cells.{suffix}"
    if suffix == "csv":
        support.write_csv(target, rows)
    elif suffix == "tsv":
        support.write_csv(target, rows, "\t")
    elif suffix == "json":
        target.write_text(json.dumps(rows, indent=2))
    else:
        target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = table_for(project, support.spec_text(f"path: ../data/cells.{suffix}"))
    assert table.values == expected_values()
    assert table.layers == tuple(range(6))
    assert table.sources == (target.resolve(),)


def test_wide_layout(project: Path):
    wide = [{"step": layer, **{m: value_of(layer, i) for i, m in enumerate(MODULES)}}
            for layer in range(6)]
    support.write_csv(project / "data" / "wide.csv", wide)
    table = table_for(project, support.spec_text("path: ../data/wide.csv\nlayout: wide\nlayer: step"))
    assert table.values == expected_values()


def test_inline_values(project: Path):
    body = support.spec_text("values:\n  - {layer: 0, module: a, value: 1}\n"
                             "  - {layer: 0, module: b, value: 2.5}", ["b", "a"])
    table = table_for(project, body)
    assert table.values == {(0, "a"): 1.0, (0, "b"): 2.5}
    assert [r["module"] for r in table.records()] == ["b", "a"]


def test_custom_column_names(project: Path):
    rows = [{"L": r["layer"], "M": r["module"], "V": r["value"]} for r in support.long_rows()]
    support.write_csv(project / "data" / "cells.csv", rows)
    table = table_for(project, support.spec_text("path: ../data/cells.csv\nlayer: L\nmodule: M\nvalue: V"))
    assert table.values == expected_values()


def test_where_keeps_only_matching_rows(project: Path):
    rows = support.long_rows(run="grpo", seed=1) + [
        {**r, "value": 9.0} for r in support.long_rows(run="sft", seed=1)]
    support.write_csv(project / "data" / "cells.csv", rows)
    table = table_for(project, support.spec_text("path: ../data/cells.csv\nwhere: {run: grpo, seed: 1}"))
    assert table.values == expected_values()
    with pytest.raises(FigspecError, match="a second row"):
        table_for(project, support.spec_text("path: ../data/cells.csv"))


def test_only_listed_modules_and_layers_in_range(project: Path):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=10))
    table = table_for(project, support.spec_text(modules=["v_proj", "q_proj"],
                                                 extra="layers: {first: 2, last: 4}\n"))
    assert table.values == expected_values(range(2, 5), ["v_proj", "q_proj"])
    assert [m.name for m in table.modules] == ["v_proj", "q_proj"]


def test_last_defaults_to_the_largest_layer_in_the_data(project: Path):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=9))
    table = table_for(project, support.spec_text())
    assert table.layers == tuple(range(9))


def test_rows_outside_the_range_are_not_checked(project: Path):
    rows = support.long_rows(layers=3) + [{"layer": 7, "module": "q_proj", "value": "n/a"},
                                           {"layer": 1, "module": "other", "value": "x"}]
    support.write_csv(project / "data" / "cells.csv", rows)
    table = table_for(project, support.spec_text(extra="layers: {last: 2}\n"))
    assert len(table.values) == 3 * 7


def test_several_problems_in_one_file_are_all_reported(project: Path):
    rows = support.long_rows(layers=3)
    rows[2]["value"] = "n/a"
    rows[9]["value"] = "inf"
    rows[12]["layer"] = "x"
    support.write_csv(project / "data" / "cells.csv", rows)
    with pytest.raises(FigspecError) as e:
        table_for(project, support.spec_text())
    lines = [d.format() for d in e.value.diagnostics]
    assert lines[0].startswith("data/cells.csv:4: error: value \"n/a\"")
    assert lines[1].startswith("data/cells.csv:11: error: value \"inf\"")
    assert lines[2].startswith("data/cells.csv:14: error: layer \"x\"")


def test_allow_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = support.make_project(tmp_path / "proj")
    support.write_csv(tmp_path / "shared" / "cells.csv", support.long_rows())
    monkeypatch.chdir(project)
    body = support.spec_text("path: ../../shared/cells.csv")
    with pytest.raises(FigspecError, match="outside the project"):
        table_for(project, body)
    assert table_for(project, body, allow_outside=True).values == expected_values()


def test_a_symlink_out_of_the_project_is_outside(project: Path, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    support.write_csv(elsewhere / "cells.csv", support.long_rows())
    (project / "data" / "link.csv").symlink_to(elsewhere / "cells.csv")
    with pytest.raises(FigspecError, match="outside the project"):
        table_for(project, support.spec_text("path: ../data/link.csv"))


@pytest.mark.parametrize("how,expected", [("mean", 2.0), ("median", 1.75), ("min", 1.0),
                                          ("max", 3.5)])
def test_aggregate_combines_rows_of_one_cell(project: Path, how: str, expected: float):
    rows = [{"seed": s, "layer": 0, "module": "a", "value": v}
            for s, v in enumerate([1.0, 3.5, 1.0, 2.5])]
    support.write_csv(project / "data" / "cells.csv", rows)
    table = table_for(project, support.spec_text(f"path: ../data/cells.csv\naggregate: {how}",
                                                 ["a"]))
    assert table.values == {(0, "a"): expected}


def test_aggregate_still_refuses_bad_values(project: Path):
    rows = [{"layer": 0, "module": "a", "value": v} for v in ["1.0", "nan"]]
    support.write_csv(project / "data" / "cells.csv", rows)
    with pytest.raises(FigspecError, match="not a finite number"):
        table_for(project, support.spec_text("path: ../data/cells.csv\naggregate: mean", ["a"]))


def test_repeated_problems_of_one_kind_are_summed_up(project: Path, run):
    """Three seeds and no `aggregate:`: five lines, then one, with the one hint."""
    rows = [r for seed in (1, 2, 3) for r in support.long_rows(layers=28, seed=seed)]
    support.write_csv(project / "data" / "cells.csv", rows)
    support.write(project / "specs" / "fig.yaml", support.spec_text())
    code, _, err = run("check")
    lines = err.splitlines()
    assert code == 1
    assert len(lines) == 6
    assert all("a second row for layer" in line for line in lines[:5])
    hidden = 2 * 28 * 7 - 5
    assert lines[5] == (f"data/cells.csv:203: error: ... and {hidden} more second rows for a "
                        "cell from here on; combine them with `aggregate: mean` (or median, min, "
                        "max), or narrow the rows with `where:`")


def test_data_starting_above_layer_0_says_so(project: Path, run):
    rows = [{**r, "layer": r["layer"] + 1} for r in support.long_rows(layers=32)]
    support.write_csv(project / "data" / "cells.csv", rows)
    support.write(project / "specs" / "fig.yaml", support.spec_text())
    code, _, err = run("check")
    assert code == 1
    assert err == ("specs/fig.yaml:2:9: error: the data starts at layer 1, the figure at layer 0: "
                   "7 cells in range have no row in data/cells.csv; add `layers: {first: 1}`\n")
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="layers: {first: 1}\n"))
    assert run("check")[0] == 0


def test_a_wide_file_read_as_long_suggests_layout_wide(project: Path, run):
    wide = [{"layer": layer, **{m: value_of(layer, i) for i, m in enumerate(MODULES)}}
            for layer in range(6)]
    support.write_csv(project / "data" / "cells.csv", wide)
    support.write(project / "specs" / "fig.yaml", support.spec_text())
    code, _, err = run("check")
    assert code == 1
    assert "column `module` is not in data/cells.csv; the columns are module names, one row " \
           "per layer: add `layout: wide`" in err
    assert "column `value` is not in data/cells.csv" in err


def test_domain_nice_rounds_outward(project: Path):
    from figspec.builder import compile_spec

    rows = [{**r, "value": 0.096 + r["layer"] * 0.0152} for r in support.long_rows()]
    support.write_csv(project / "data" / "cells.csv", rows)
    for domain, want in (("", [0.096, 0.172]), ("domain: nice\n", [0.09, 0.18])):
        spec = support.write(project / "specs" / "fig.yaml", support.spec_text(extra=domain))
        scale = support.encoding(compile_spec(spec))["color"]["scale"]
        assert scale["domain"] == pytest.approx(want)
        assert scale["domain"] == want or not domain  # round numbers, not 0.18000000000000002
