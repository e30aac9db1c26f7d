"""What goes into cells: annotations, the colour scale's midpoint and
direction, module presets, parameter names, `where:` lists and Parquet."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

import support
from figspec.builder import check, compile_spec
from support import LABELS, MODULES, value_of


def compiled(project: Path, extra: str = "", data: str = "path: ../data/cells.csv",
             modules: list[str] | str = MODULES) -> tuple[dict, dict]:
    body = support.spec_text(data, modules, extra) if isinstance(modules, list) else \
        support.spec_text(data, [], extra).replace("modules:\n", f"modules: {modules}\n")
    vl = compile_spec(support.write(project / "specs" / "fig.yaml", body))
    return vl, support.scenegraph(vl)


def test_annotations_write_each_value_readably(project: Path):
    _, sg = compiled(project, "annotate: {format: .4f, size: 5}\n")
    cells = support.marks(sg, "mark", "rect")
    texts = support.marks(sg, "mark", "text")
    assert len(texts) == len(cells) == 42
    fills = {(c["x"] + c["width"] / 2, c["y"] + c["height"] / 2): c["fill"] for c in cells}
    colours = set()
    for t in texts:
        layer, col = 5 - round((t["y"] - 6) / 12), round((t["x"] - 12) / 24)
        assert t["text"] == f"{value_of(layer, col):.4f}"
        cell = support.parse_rgb(fills[(t["x"], t["y"])])
        colours.add(t["fill"])
        assert support.contrast(support.parse_rgb(t["fill"].replace("white", "#ffffff")
                                                  .replace("black", "#000000")), cell) >= 4.5
    assert colours == {"white", "black"}  # both ends of the scale are used


def test_mid_puts_the_middle_colour_at_that_value(project: Path):
    _, sg = compiled(project, "domain: [0.1, 0.11]\ncolor: {scheme: redblue, mid: 0.102}\n")
    stops = support.scheme_stops("redBlue")
    middle = support.piecewise_rgb(stops, 0.5)
    (cell,) = [c for c in support.marks(sg, "mark", "rect")
               if c["x"] == 0 and c["y"] == (5 - 2) * 12]  # layer 2, q_proj: 0.102
    assert support.close_colors(support.parse_rgb(cell["fill"]), middle, tol=2)


def test_mid_outside_the_domain_is_an_error(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="domain: [0.1, 0.2]\ncolor: {mid: 0.3}\n"))
    code, _, err = run("check")
    assert code == 1 and "`color.mid` (0.3) must lie inside the domain [0.1, 0.2]" in err


def test_custom_colours_with_a_mid(project: Path):
    vl, _ = compiled(project, 'domain: [0, 1]\ncolor: {colors: ["#000000", "#ffffff", "#ff0000"],'
                              ' mid: 0.2}\n')
    assert support.encoding(vl)["color"]["scale"]["domain"] == [0, 0.2, 1]


def test_reverse_flips_the_scheme(project: Path):
    _, sg = compiled(project, "domain: [0.1, 0.106]\ncolor: {reverse: true}\n")
    stops = support.scheme_stops("blueOrange")
    low = [c for c in support.marks(sg, "mark", "rect") if c["x"] == 0 and c["y"] == 5 * 12][0]
    assert support.close_colors(support.parse_rgb(low["fill"]), stops[-1], tol=2)


def test_module_preset(project: Path):
    _, sg = compiled(project, modules="llama")
    assert support.axis_texts(sg)[0] == LABELS
    assert len(support.marks(sg, "mark", "rect")) == 42


def test_where_accepts_a_list(project: Path):
    rows = [r for seed in (1, 2, 3) for r in support.long_rows(seed=seed)]
    for r in rows:
        r["value"] += r["seed"] / 10
    support.write_csv(project / "data" / "seeds.csv", rows)
    vl, _ = compiled(project, data="path: ../data/seeds.csv\nwhere: {seed: [1, 3]}\n"
                                   "aggregate: mean")
    first = vl["data"]["values"][0]
    assert first["value"] == pytest.approx(value_of(0, 0) + 0.2)


def params_json(project: Path, names: dict[str, float]) -> None:
    (project / "data" / "params.json").write_text(json.dumps(names, indent=1))


def llama_params(layers: int = 6) -> dict[str, float]:
    names = {"model.embed_tokens.weight": 9.0, "lm_head.weight": 9.0, "model.norm.weight": 9.0}
    for layer in range(layers):
        for i, m in enumerate(MODULES):
            part = "self_attn" if i < 4 else "mlp"
            names[f"model.layers.{layer}.{part}.{m}.weight"] = value_of(layer, i)
        names[f"model.layers.{layer}.input_layernorm.weight"] = 9.0
    return names


def test_params_layout_reads_full_parameter_names(project: Path):
    params_json(project, llama_params())
    vl, sg = compiled(project, data="path: ../data/params.json\nlayout: params", modules="llama")
    assert {(r["layer"], r["module"]): r["value"] for r in vl["data"]["values"]} == {
        (layer, label): value_of(layer, i) for layer in range(6) for i, label in enumerate(LABELS)}


def test_params_layout_from_a_table_and_gpt2_names(project: Path):
    rows = [{"param": f"transformer.h.{layer}.{m}.weight", "value": value_of(layer, i)}
            for layer in range(4) for i, m in enumerate(["attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                         "mlp.c_proj"])]
    rows.append({"param": "transformer.wte.weight", "value": 1})
    support.write_csv(project / "data" / "gpt2.csv", rows)
    vl, _ = compiled(project, data="path: ../data/gpt2.csv\nlayout: params", modules="gpt2")
    assert len(vl["data"]["values"]) == 16
    assert vl["data"]["values"][1] == {"layer": 0, "module": "attn. o", "value": value_of(0, 1)}


def test_params_custom_pattern_and_a_bad_one(project: Path, run):
    params_json(project, {f"blk.{layer}.{m}": value_of(layer, i) for layer in range(2)
                          for i, m in enumerate(MODULES)})
    vl, _ = compiled(project, data="path: ../data/params.json\nlayout: params\n"
                                   r"pattern: 'blk\.(?P<layer>\d+)\.(?P<module>\w+)'")
    assert len(vl["data"]["values"]) == 14
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        "path: ../data/params.json\nlayout: params\npattern: 'blk(?P<layer>x'"))
    code, _, err = run("check")
    assert code == 1 and "data.pattern: not a regular expression" in err


def test_parquet(project: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = support.long_rows()
    pq.write_table(pa.Table.from_pylist(rows), project / "data" / "cells.parquet")
    vl, _ = compiled(project, data="path: ../data/cells.parquet")
    assert [r["value"] for r in vl["data"]["values"]] == [r["value"] for r in rows]


def test_parquet_without_pyarrow_says_how_to_install_it(project: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    (project / "data" / "cells.parquet").write_bytes(b"PAR1")
    real = builtins.__import__

    def no_pyarrow(name, *a, **kw):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    support.write(project / "specs" / "fig.yaml", support.spec_text("path: ../data/cells.parquet"))
    (r,) = check([project / "specs"])
    (d,) = r.diagnostics
    assert (d.line, d.message, d.hint) == (
        2, "reading .parquet files needs pyarrow, which is not installed",
        "pip install 'figspec[parquet]'")
