"""The drawn figure, checked on vl-convert's scenegraph: every cell where it
belongs and in the colour of Vega's scale for its value."""

from __future__ import annotations

from pathlib import Path

import pytest

import support
from figspec.builder import Options, compile_spec
from figspec.layout import ticks
from support import LABELS, MODULES, marks, scenegraph, value_of


def compiled(project: Path, extra: str = "", data: str = "path: ../data/cells.csv",
             modules: list[str] | None = None) -> tuple[dict, dict]:
    mods = modules or [f"{{name: {m}, label: \"{label}\"}}" for m, label in zip(MODULES, LABELS)]
    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(data, mods, extra))
    vl = compile_spec(spec, Options())
    return vl, scenegraph(vl)


def cells(sg: dict) -> list[dict]:
    return marks(sg, "mark", "rect")


def test_one_cell_per_layer_and_module_where_and_coloured_as_it_should_be(project: Path):
    vl, sg = compiled(project, "domain: [0.1, 0.106]\n")
    drawn = cells(sg)
    assert len(drawn) == 6 * 7
    stops = support.scheme_stops("blueOrange")
    width, height = 24, 12
    for item in drawn:
        col, row = round(item["x"] / width), round(item["y"] / height)
        layer = 5 - row  # layer 0 at the bottom
        assert item["width"] == width and item["height"] == height
        want = support.expected_color(value_of(layer, col), 0.1, 0.106, stops)
        assert support.close_colors(support.parse_rgb(item["fill"]), want), (layer, col, item)
    # The cell for layer 3 of attn. v: column 2, fourth row from the bottom.
    (v3,) = [c for c in drawn if c["x"] == 2 * width and c["y"] == (5 - 3) * height]
    want = support.expected_color(value_of(3, 2), 0.1, 0.106, stops)
    assert support.close_colors(support.parse_rgb(v3["fill"]), want)


def test_modules_are_drawn_in_the_listed_order_with_their_labels(project: Path):
    order = ["gate_proj", "q_proj", "{name: v_proj, label: V}"]
    vl, sg = compiled(project, modules=order)
    x_labels, y_labels = support.axis_texts(sg)
    assert x_labels == ["gate_proj", "q_proj", "V"]
    drawn = cells(sg)
    assert len(drawn) == 6 * 3
    stops = support.scheme_stops("blueOrange")
    lo, hi = value_of(0, 0), value_of(5, 6)  # default domain: min..max of drawn cells
    for item in drawn:
        col, layer = round(item["x"] / 24), 5 - round(item["y"] / 12)
        module_index = MODULES.index(["gate_proj", "q_proj", "v_proj"][col])
        want = support.expected_color(value_of(layer, module_index), lo, hi, stops)
        assert support.close_colors(support.parse_rgb(item["fill"]), want)


def test_layer_range_and_ticks(project: Path):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=40))
    vl, sg = compiled(project, "layers: {first: 0, last: 35, tick_every: 3}\n")
    assert len(cells(sg)) == 36 * 7  # layers 36..39 are in the data but not drawn
    _, y_labels = support.axis_texts(sg)
    assert sorted(y_labels, key=int) == ["0", "3", "6", "9", "12", "15", "18", "21", "24",
                                         "27", "30", "33", "35"]


def test_ticks_function():
    assert ticks(0, 27, 4, 12, 10) == [0, 4, 8, 12, 16, 20, 24, 27]
    assert ticks(0, 24, 4, 12, 10) == [0, 4, 8, 12, 16, 20, 24]
    assert ticks(2, 5, 1, 12, 10) == [2, 3, 4, 5]
    assert ticks(3, 3, 2, 12, 10) == [3]
    # The tick before the last kept where its label stands a label height and
    # some room from the last one (3 layers of 3.8 pt under 8 pt labels), else not.
    assert ticks(0, 27, 4, 3.8, 8)[-3:] == [20, 24, 27]
    assert ticks(0, 27, 4, 3.0, 8)[-3:] == [16, 20, 27]


@pytest.mark.parametrize("zero_at", ["bottom", "top"])
def test_zero_at_puts_the_first_layer_at_the_bottom_or_top(project: Path, zero_at: str):
    vl, sg = compiled(project, f"layers: {{first: 1, last: 4, tick_every: 1, "
                               f"zero_at: {zero_at}}}\n")
    ys = {}
    for axis in marks(sg, "axis")[1:]:
        for group in axis["items"]:
            if group.get("role") == "axis-label":
                ys = {i["text"]: i["y"] for i in group["items"]}
    assert set(ys) == {"1", "2", "3", "4"}
    if zero_at == "bottom":
        assert ys["1"] > ys["2"] > ys["4"]
    else:
        assert ys["1"] < ys["2"] < ys["4"]
    assert len(cells(sg)) == 4 * 7


def test_values_outside_the_domain_take_the_end_colours(project: Path):
    rows = support.long_rows(layers=2)
    rows[0]["value"] = -5.0  # layer 0, q_proj: far below
    rows[1]["value"] = 9.0  # layer 0, k_proj: far above
    support.write_csv(project / "data" / "cells.csv", rows)
    vl, sg = compiled(project, "domain: [0.1, 0.2]\n")
    stops = support.scheme_stops("blueOrange")
    by_col = {round(c["x"] / 24): c for c in cells(sg) if round(c["y"] / 12) == 1}
    assert support.parse_rgb(by_col[0]["fill"]) == stops[0]
    assert support.parse_rgb(by_col[1]["fill"]) == stops[-1]


def test_custom_colors_are_interpolated_over_the_domain(project: Path):
    vl, sg = compiled(project, 'color: {colors: ["#2166ac", "#f7f7f7", "#b35806"]}\n'
                               "domain: [0.1, 0.106]\n")
    stops = [(0x21, 0x66, 0xAC), (0xF7, 0xF7, 0xF7), (0xB3, 0x58, 0x06)]
    for item in cells(sg):
        col, layer = round(item["x"] / 24), 5 - round(item["y"] / 12)
        want = support.expected_color(value_of(layer, col), 0.1, 0.106, stops)
        assert support.close_colors(support.parse_rgb(item["fill"]), want)


@pytest.mark.parametrize("scheme", ["redblue", "viridis", "purpleorange"])
def test_other_schemes(project: Path, scheme: str):
    vl, sg = compiled(project, f"color: {{scheme: {scheme}}}\ndomain: [0.1, 0.106]\n")
    stops = support.scheme_stops(scheme)
    for item in cells(sg):
        col, layer = round(item["x"] / 24), 5 - round(item["y"] / 12)
        want = support.expected_color(value_of(layer, col), 0.1, 0.106, stops)
        assert support.close_colors(support.parse_rgb(item["fill"]), want)


def test_legend_labels_the_domain_ends_and_middle_with_the_format(project: Path):
    vl, sg = compiled(project, "domain: [0.12, 0.18]\nlegend: {title: update ratio, format: .3f}\n")
    labels = [i["text"] for i in marks(sg, "legend-label")]
    assert labels == ["0.120", "0.150", "0.180"]
    titles = [i["text"] for i in marks(sg, "legend-title")]
    assert titles == ["update ratio"]


def test_title_and_cell_size(project: Path):
    vl, sg = compiled(project, 'title: "Qwen: update ratio"\ncell: {width: 30, height: 10}\n')
    assert [i["text"] for i in marks(sg, "title-text")] == ["Qwen: update ratio"]
    drawn = cells(sg)
    assert {c["width"] for c in drawn} == {30} and {c["height"] for c in drawn} == {10}
    assert vl["width"] == 7 * 30 and vl["height"] == 6 * 10


def test_compiled_vega_lite_is_self_contained_and_valid(project: Path):
    import altair as alt
    import jsonschema

    vl, _ = compiled(project)
    assert "url" not in vl["data"] and len(vl["data"]["values"]) == 42
    jsonschema.validate(vl, alt.vegalite.v6.schema.core.load_schema())


def test_the_altair_chart_is_the_compiled_vega_lite(project: Path):
    """The layout writes Vega-Lite as dicts; Altair must accept it as
    valid and give it back unchanged (the notebook's chart is the built figure)."""
    import figspec
    from figspec.render import to_svg

    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra='title: T\ncolor: {colors: ["#000000", "#ffffff"]}\nlegend: {format: .1%}\n'))
    fig = figspec.load(spec)
    # Altair adds its theme and moves the records into `datasets`: compare drawings.
    assert to_svg(fig.chart.to_dict(validate=True)) == to_svg(fig.vegalite)


@pytest.mark.parametrize("setting,expected", [("", ["layer"]), ("layers: {title: depth}\n", ["depth"]),
                                              ("layers: {title: null}\n", [])])
def test_layer_axis_title(project: Path, setting: str, expected: list[str]):
    vl, sg = compiled(project, setting)
    assert [i["text"] for i in marks(sg, "axis-title")] == expected


def test_the_tooltip_shows_the_value_in_full(project: Path):
    """Not in the colorbar's `.2f`: 0.14028 must not show as 0.14."""
    vl, _ = compiled(project, "legend: {format: .2f}\n")
    (value,) = [t for t in support.encoding(vl)["tooltip"] if t["field"] == "value"]
    assert value["format"] == ".15~g"  # d3: 15 significant digits, trailing zeros trimmed
    assert support.encoding(vl)["color"]["legend"]["format"] == ".2f"


def test_a_panel_keeps_the_tick_before_the_last_where_its_label_fits(project: Path):
    # update_ratio_models' layout: a 28-layer panel beside a 36-layer one on a
    # page-sized figure, cells under 4 pt high. 24 stands 3 layers (over 11
    # pt) below 27, more than an 8 pt label needs: kept, as in a single figure.
    support.write_csv(project / "data" / "l28.csv", support.long_rows(layers=28))
    support.write_csv(project / "data" / "l36.csv", support.long_rows(layers=36))
    vl, sg = compiled(project, "layers: {tick_every: 4}\nsize: {width: 5.5in, height: 2.6in}\n"
                      "font: {size: 8}\ntitle: Update ratio\nlegend: {title: update ratio}\n"
                      "panels:\n  - {title: 28 layers, data: {path: ../data/l28.csv}}\n"
                      "  - {title: 36 layers, data: {path: ../data/l36.csv}}\n")
    assert vl["concat"][0]["height"] / 28 < 4
    y28 = support.axis_texts(sg)[1]
    assert sorted(y28, key=int) == ["0", "4", "8", "12", "16", "20", "24", "27"]


def test_five_hundred_layers_get_a_readable_number_of_layer_labels(project: Path):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=500))
    vl, sg = compiled(project)
    y_labels = sorted(support.axis_texts(sg)[1], key=int)
    assert 10 <= len(y_labels) <= 21, y_labels
    assert y_labels[0] == "0" and y_labels[-1] == "499"
    assert y_labels[1] == "25"
