"""Column-width figures that lay themselves out: module labels turned to the
smallest angle that fits, the colorbar under a narrow figure, shared layer
axes, panel letters, title weight, the height chosen from a width; text that
cannot fit is an error saying what would. Checked on the drawn marks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import support
from figspec.builder import Options, compile_spec
from figspec.fonts import text_width
from support import LABELS, MODULES, marks, placed, scenegraph

LABELLED = [f"{{name: {m}, label: \"{label}\"}}" for m, label in zip(MODULES, LABELS)]


def compiled(project: Path, extra: str) -> tuple[dict, dict]:
    spec = support.write(project / "specs" / "fig.yaml",
                         support.spec_text(modules=LABELLED, extra=extra))
    vl = compile_spec(spec, Options())
    return vl, scenegraph(vl)


def module_labels(sg: dict) -> list[dict]:
    return [i for i in placed(sg, "axis-label") if i["text"] in LABELS]


def turned(sg: dict) -> set[float]:
    """The angles the module labels are drawn at, in degrees counter-clockwise."""
    return {round(-i.get("angle", 0)) % 360 for i in module_labels(sg)}


def cells(sg: dict) -> list[dict]:
    return placed(sg, "mark", "rect")


def x_extent(items: list[dict]) -> tuple[float, float]:
    return (round(min(i["x"] for i in items), 3),
            round(max(i["x"] + i.get("width", 0) for i in items), 3))


# -- module labels ------------------------------------------------------------------

@pytest.mark.parametrize("cell_width,font,angle", [(70, 10, 0), (24, 10, 45), (10, 8, 90)])
def test_module_labels_turn_to_the_smallest_angle_at_which_they_fit(
        project: Path, cell_width: int, font: int, angle: int):
    _, sg = compiled(project, f"cell: {{width: {cell_width}}}\nfont: {{size: {font}}}\n")
    assert turned(sg) == {angle}
    labels = sorted(module_labels(sg), key=lambda i: i["x"])
    if angle == 0:
        # Level labels, measured with the font's advance widths, leave room between them.
        widths = [text_width("DejaVu Sans", i["text"]) * font for i in labels]
        for a, b, wa, wb in zip(labels, labels[1:], widths, widths[1:]):
            assert b["x"] - a["x"] >= (wa + wb) / 2


def test_a_given_angle_is_drawn(project: Path):
    _, sg = compiled(project, "cell: {width: 70}\nmodule_labels: {angle: 90}\n")
    assert turned(sg) == {90}


def test_level_labels_that_collide_are_an_error_saying_what_fits(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra="module_labels: {angle: 0}\n"))
    code, _, err = run("check")
    assert code == 1
    assert err.startswith("specs/fig.yaml:11:24: error: module labels at 0° run into each other: "
                          "the cells are 24 pt wide (\"mlp. down\" is ")
    assert "use `angle: 45` (it fits), shorter labels" in err
    need = int(re.search(r"`cell: \{width: (\d+)\}` or more", err).group(1))
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra=f"module_labels: {{angle: 0}}\ncell: {{width: {need}}}\n"))
    assert run("check")[0] == 0  # the width it suggests fits


def test_labels_colliding_at_every_angle_are_an_error_in_check_as_in_build(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra="cell: {width: 6}\nfont: {size: 8}\n"))
    for command in ("check", "build"):
        code, _, err = run(command)
        assert code == 1
        assert "specs/fig.yaml:11:15: error: module labels run into each other at every angle: " \
               "the cells are 6 pt wide and the labels 8 pt high; use `cell: {width: 10}` or " \
               "more, `font.size: 5` or less or fewer modules" in err


def two_models(project: Path, small: int = 24, big: int = 32) -> None:
    rows = support.long_rows(layers=small, model="a") + support.long_rows(layers=big, model="b")
    support.write_csv(project / "data" / "cells.csv", rows)


TWO_PANELS = """
size: {{width: {width}}}
font: {{family: serif, size: 8}}
panels:
  - title: {a}
    data: {{where: {{model: a}}}}
  - title: {b}
    data: {{where: {{model: b}}}}
"""


def test_a_panel_title_that_squeezes_the_cells_is_named_with_the_width_that_fits(
        project: Path, run):
    two_models(project)
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra=TWO_PANELS.format(width="icml.column", a="Llama-1B (24 layers)",
                                                  b="Llama-3B (32 layers)")))
    code, _, err = run("check")
    assert code == 1
    assert err.startswith("specs/fig.yaml:11:7: error: module labels run into each other at "
                          "every angle: ")
    # Its width in the bold face at the title size (8 + 2 pt), rounded up.
    named = re.search(r'as the panel title "(Llama-\dB \(\d\d layers\))" needs ([\d.]+)in', err)
    title = text_width("STIXGeneral", named.group(1), bold=True) * 10 / 72
    assert float(named.group(2)) == pytest.approx(title, abs=0.01)
    width = re.search(r"a width of at least ([\d.]+in)", err).group(1)
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra=TWO_PANELS.format(width=width, a="Llama-1B (24 layers)",
                                                  b="Llama-3B (32 layers)")))
    code, _, err2 = run("check")
    assert code == 0, (err, err2)  # the width it names fits


def test_a_size_that_leaves_no_room_names_what_takes_it_and_the_smallest_that_fits(
        project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="title: A title long enough to need more than an inch\nsize: {width: 1in}\n"))
    code, _, err = run("check")
    assert code == 1
    assert 'error: 1in leaves no room for the cells: the title "A title long enough to need ' \
           'more than an inch" needs ' in err
    smallest = re.search(r"give a width of at least ([\d.]+in)", err).group(1)
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra=f"title: A title long enough to need more than an inch\n"
              f"size: {{width: {smallest}}}\n"))
    assert run("check")[0] == 0


# -- the colorbar -------------------------------------------------------------------

def test_a_column_figure_has_its_colorbar_under_the_plot_spanning_the_cells(project: Path):
    _, sg = compiled(project, "size: {width: icml.column}\nlegend: {title: update ratio}\n")
    (bar,) = placed(sg, "legend-gradient")
    drawn = cells(sg)
    assert x_extent([bar]) == x_extent(drawn)
    assert bar["width"] > bar["height"]  # horizontal
    assert bar["y"] > max(i["y"] for i in module_labels(sg))  # under the labels
    (title,) = placed(sg, "legend-title")
    assert title["y"] > bar["y"] + bar["height"] and title.get("angle", 0) == 0
    assert title["x"] == pytest.approx(bar["x"] + bar["width"] / 2, abs=0.5)  # centred under it


def test_a_wide_figure_has_it_beside_and_orient_overrides_the_default(project: Path):
    _, sg = compiled(project, "size: {width: neurips.text}\n")
    (bar,) = placed(sg, "legend-gradient")
    assert bar["height"] > bar["width"]
    _, sg = compiled(project, "size: {width: neurips.text}\nlegend: {orient: bottom}\n")
    (bar,) = placed(sg, "legend-gradient")
    assert bar["width"] > bar["height"] and x_extent([bar]) == x_extent(cells(sg))


def test_under_panels_the_colorbar_spans_from_the_first_cells_to_the_last(project: Path):
    two_models(project)
    _, sg = compiled(project, TWO_PANELS.format(width="icml.column", a="A", b="B")
                     + "legend: {title: r}\n")
    (bar,) = placed(sg, "legend-gradient")
    assert x_extent([bar]) == pytest.approx(x_extent(cells(sg)), abs=0.01)


def test_the_colorbar_title_reads_bottom_to_top_beside_its_labels(project: Path):
    _, sg = compiled(project, "legend: {title: update ratio}\n")
    (title,) = placed(sg, "legend-title")
    assert title["angle"] == 270  # as matplotlib's colorbar label, rotation=90
    # Turned about its anchor, its glyphs lie right of the labels, not over them.
    labels = placed(sg, "legend-label")
    right = max(i["x"] + text_width("DejaVu Sans", i["text"]) * i["fontSize"] for i in labels)
    assert title["baseline"] == "top" and title["x"] >= right


@pytest.mark.parametrize("ticks,expected", [(5, ["0.100", "0.105", "0.110", "0.115", "0.120"]),
                                            ("[0.101, 0.11]", ["0.101", "0.110"])])
def test_legend_ticks_as_a_count_or_values(project: Path, ticks, expected: list[str]):
    _, sg = compiled(project, f"domain: [0.1, 0.12]\nlegend: {{ticks: {ticks}, "
                              "format: .3f}\ncell: {height: 20}\n")
    assert [i["text"] for i in placed(sg, "legend-label")] == expected


@pytest.mark.parametrize("ticks,message", [
    ("[0.05, 0.11]", "specs/fig.yaml:12:17: error: 0.05 lies outside the colour domain "
                     "0.1..0.115"),
    ("20", "specs/fig.yaml:12:17: error: the colorbar's labels run into each other: 20 labels"),
])
def test_legend_ticks_that_cannot_be_drawn_are_errors(project: Path, run, ticks, message):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra=f"domain: [0.1, 0.115]\nlegend: {{ticks: {ticks}}}\n"))
    code, _, err = run("check")
    assert code == 1 and err.startswith(message), err


# -- panels, titles ---------------------------------------------------------------

def y_axes(sg: dict) -> list[list[str]]:
    return [labels for labels in support.axis_texts(sg) if labels and labels[0].isdigit()]


def test_panels_of_one_layer_axis_show_its_labels_and_title_once_per_row(project: Path):
    two_models(project, 24, 24)
    body = "columns: 2\n" + TWO_PANELS.format(width="neurips.text", a="A", b="B") + \
        "  - title: C\n    data: {where: {model: a}}\n"
    _, sg = compiled(project, body)
    assert [i["text"] for i in marks(sg, "axis-title")] == ["layer", "layer"]  # rows 1 and 2
    labelled = y_axes(sg)
    assert len(labelled) == 2  # the first panel of each row
    assert len(marks(sg, "axis-tick")) > 0
    # The first row's titles line up, though only the first panel has labels.
    a, b, _ = placed(sg, "title-text")
    assert a["y"] == pytest.approx(b["y"], abs=0.01)


def test_panels_of_different_layers_keep_their_own_labels(project: Path):
    two_models(project, 24, 32)
    _, sg = compiled(project, TWO_PANELS.format(width="neurips.text", a="A", b="B"))
    assert len(y_axes(sg)) == 2
    assert [i["text"] for i in marks(sg, "axis-title")] == ["layer", "layer"]


@pytest.mark.parametrize("style,titles", [("(a)", ["(a) A", "(b) B"]), ("a", ["a A", "b B"]),
                                          ("(A)", ["(A) A", "(B) B"]), ("A.", ["A. A", "B. B"])])
def test_panel_letters(project: Path, style: str, titles: list[str]):
    two_models(project)
    _, sg = compiled(project, TWO_PANELS.format(width="neurips.text", a="A", b="B")
                     + f'panel_labels: "{style}"\n')
    assert [i["text"] for i in marks(sg, "title-text")] == titles


@pytest.mark.parametrize("weight,drawn", [("", "bold"), ("title_weight: normal", "normal")])
def test_title_weight_reaches_every_title(project: Path, weight: str, drawn: str):
    _, sg = compiled(project, f"title: T\nlegend: {{title: L}}\nfont: {{{weight}}}\n")
    weights = {i.get("fontWeight") for role in ("title-text", "axis-title", "legend-title")
               for i in marks(sg, role)}
    assert weights == {drawn}


# -- the height from a width ------------------------------------------------------

def test_a_tall_model_in_a_column_is_not_taller_than_wide(project: Path):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=32))
    vl, sg = compiled(project, "size: {width: icml.column}\n")
    assert sg["height"] <= sg["width"] + 0.5
    assert sg["width"] == pytest.approx(234, abs=2)


def test_the_altair_chart_of_a_figure_with_a_colorbar_title_validates(project: Path):
    import figspec

    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="legend: {title: update ratio}\n"))
    chart = figspec.load(spec).chart
    assert support.encoding(chart.to_dict(validate=True))["color"]["legend"]["title"] == "update ratio"


def test_a_height_that_leaves_no_room_names_the_labels_and_the_smallest_height(
        project: Path, run):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=24))
    body = "size: {{width: 3in, height: {h}}}\nlegend: {{orient: right}}\n"
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra=body.format(h="0.9in")))
    code, _, err = run("check")
    assert code == 1
    assert "error: 0.9in leaves no room for the cells: the titles, module labels and colorbar " \
           "take " in err
    assert '(the module labels, "mlp. down" turned 45°: ' in err and "for 24 layers" in err
    smallest = re.search(r"give a height of at least ([\d.]+in)", err).group(1)
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        modules=LABELLED, extra=body.format(h=smallest)))
    assert run("check")[0] == 0
