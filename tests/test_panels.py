"""Several heatmaps in one figure: their own data, layers and modules; a
shared or independent colour scale; wrapping into rows."""

from __future__ import annotations

from pathlib import Path

import support
from figspec.builder import compile_spec
from support import value_of


def two_models(project: Path) -> None:
    rows = support.long_rows(layers=28, model="small") + support.long_rows(layers=36, model="big")
    support.write_csv(project / "data" / "models.csv", rows)


def compiled(project: Path, body: str) -> tuple[dict, dict]:
    spec = support.write(project / "specs" / "fig.yaml", body)
    vl = compile_spec(spec)
    return vl, support.scenegraph(vl)


PANELS = """
data: {path: ../data/models.csv}
modules: [q_proj, k_proj, v_proj, o_proj, up_proj, down_proj, gate_proj]
%s
panels:
  - title: small
    data: {where: {model: small}}
  - title: big
    data: {where: {model: [big]}}
    layers: {tick_every: 5}
"""


def test_panels_with_their_own_layers_and_one_shared_scale(project: Path):
    two_models(project)
    vl, sg = compiled(project, PANELS % "")
    cells = support.placed(sg, "mark", "rect")
    assert len(cells) == 28 * 7 + 36 * 7
    assert [i["text"] for i in support.marks(sg, "title-text")] == ["small", "big"]
    assert len(support.marks(sg, "legend")) == 1  # one colorbar
    # Equal values get equal colours across panels: layer 5 of each has the same values.
    small, big = cells[:28 * 7], cells[28 * 7:]
    lo, hi = value_of(0, 0), value_of(35, 6)  # one domain over both panels
    stops = support.scheme_stops("blueOrange")
    for group, layers in ((small, 28), (big, 36)):
        assert max(c["x"] for c in group) - min(c["x"] for c in group) == 6 * 24
        height = 36 * 12 / layers  # one plot height: the 28 layers' cells are taller
        for c in group:
            layer = layers - 1 - round((c["y"] - min(g["y"] for g in group)) / height)
            col = round((c["x"] - min(g["x"] for g in group)) / 24)
            want = support.expected_color(value_of(layer, col), lo, hi, stops)
            assert support.close_colors(support.parse_rgb(c["fill"]), want), (layer, col)
    assert min(c["x"] for c in big) > max(c["x"] for c in small)  # side by side
    y_axes = support.axis_texts(sg)
    assert "27" in y_axes[1] and sorted(map(int, y_axes[3])) == list(range(0, 36, 5))


def test_independent_scales_give_each_panel_its_own_domain_and_colorbar(project: Path):
    two_models(project)
    vl, sg = compiled(project, PANELS % "scale: independent")
    assert len(support.marks(sg, "legend")) == 2
    cells = support.placed(sg, "mark", "rect")
    small = cells[:28 * 7]
    stops = support.scheme_stops("blueOrange")
    top_right = max(small, key=lambda c: (-c["y"], c["x"]))  # layer 27, gate_proj
    want = support.expected_color(value_of(27, 6), value_of(0, 0), value_of(27, 6), stops)
    assert support.close_colors(support.parse_rgb(top_right["fill"]), want)


def test_columns_wrap_panels_into_rows(project: Path):
    two_models(project)
    body = PANELS % "columns: 2" + "  - title: third\n    data: {where: {model: small}}\n"
    vl, sg = compiled(project, body)
    cells = support.placed(sg, "mark", "rect")
    first, third = cells[:28 * 7], cells[28 * 7 + 36 * 7:]
    assert min(c["y"] for c in third) > max(c["y"] for c in first)
    assert min(c["x"] for c in third) == min(c["x"] for c in first)


def check_panels(project: Path, run, data: str) -> tuple[int, str]:
    """`check` on two panels over models.csv, the second's `where` misspelt."""
    two_models(project)
    support.write(project / "specs" / "fig.yaml", f"""
        data: {{{data}}}
        modules: llama
        panels:
          - data: {{where: {{model: small}}}}
          - data: {{where: {{modle: big}}}}
        """)
    code, _, err = run("check")
    return code, err


def test_a_panel_mistake_points_at_the_panel_and_an_inherited_one_is_reported_once(project, run):
    code, err = check_panels(project, run, "path: ../data/models.csv, layot: long")
    assert code == 1
    lines = err.splitlines()
    assert sum("unknown key `layot`" in ln for ln in lines) == 1
    assert any(ln.startswith("specs/fig.yaml:1:34: error:") and "layot" in ln for ln in lines)


def test_a_panel_data_problem_points_at_the_panel(project: Path, run):
    code, err = check_panels(project, run, "path: ../data/models.csv")
    assert code == 1
    assert "specs/fig.yaml:5:20: error: column `modle` is not in data/models.csv; did you mean " \
        "`module`?" in err
