"""Exact sizes (in, cm, pt, px, venue widths; PNG dpi) and the shipped fonts."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest

import support
from figspec.builder import Options, build, check
from figspec.units import VENUES, to_points


def built(project: Path, extra: str, name: str = "fig") -> Path:
    support.write(project / "specs" / f"{name}.yaml", support.spec_text(extra=extra))
    results = build([project / "specs" / f"{name}.yaml"], Options(out_dir=project / "out"))
    assert [r.status for r in results] == ["built"], results[0].diagnostics
    return project / "out"


def page_size(pdf: Path) -> tuple[float, float]:
    with pikepdf.open(pdf) as doc:
        box = [float(v) for v in doc.pages[0].MediaBox]
    return box[2] - box[0], box[3] - box[1]


def svg_root(svg: Path) -> str:
    text = svg.read_text()
    return text[:text.index(">")]


@pytest.mark.parametrize("width,height,points", [
    ("3.25in", "2.4in", (234, 172.8)),
    ("8cm", "60mm", (226.77, 170.08)),
    ("300pt", "200px", (300, 150)),
    ("icml.column", "2in", (234, 144)),
])
def test_the_whole_figure_is_the_size_asked_for(project: Path, width: str, height: str,
                                                points: tuple[float, float]):
    out = built(project, f"size: {{width: {width}, height: {height}}}\n"
                         "title: A title\noutput: {formats: [svg, png, pdf], dpi: 200}\n")
    w, h = page_size(out / "fig.pdf")
    assert abs(w - points[0]) <= 1 and abs(h - points[1]) <= 1
    shown_w = VENUES.get(width, width)
    assert f'width="{shown_w}"' in svg_root(out / "fig.svg")
    assert f'height="{height}"' in svg_root(out / "fig.svg")
    pw, ph = support.png_size(out / "fig.png")
    assert abs(pw - points[0] / 72 * 200) <= 1 and abs(ph - points[1] / 72 * 200) <= 1


def test_cells_fill_what_labels_and_colorbar_leave(project: Path):
    """Fitting changes the cells, not the fonts: a wider figure has wider cells
    (the colorbar in one place: a 3in figure would have it under the plot)."""
    from figspec.builder import compile_spec

    def cell_width(width: str) -> float:
        spec = support.write(project / "specs" / "fig.yaml", support.spec_text(
            extra=f"size: {{width: {width}}}\nlegend: {{orient: right}}\n"))
        vl = compile_spec(spec)
        return vl["width"] / 7

    narrow, wide = cell_width("3in"), cell_width("6in")
    assert wide - narrow == pytest.approx(3 * 72 / 7, abs=0.5)


def test_one_side_keeps_the_cells_shape_and_png_defaults_to_300_dpi(project: Path):
    out = built(project, "size: {width: neurips.text}\ncell: {width: 24, height: 12}\n"
                         "output: {formats: [svg, png, pdf]}\n")
    w, h = page_size(out / "fig.pdf")
    assert abs(w - 5.5 * 72) <= 1
    sg = support.scenegraph(_compiled(project))
    cell = support.marks(sg, "mark", "rect")[0]
    assert cell["width"] / cell["height"] == pytest.approx(2, rel=0.01)
    assert support.png_size(out / "fig.png")[0] == pytest.approx(5.5 * 300, abs=1)
    root = svg_root(out / "fig.svg")
    assert 'width="5.5in"' in root and 'height="' in root and 'in"' in root.split("height=")[1]


def _compiled(project: Path) -> dict:
    from figspec.builder import compile_spec

    return compile_spec(project / "specs" / "fig.yaml")


def test_a_size_too_small_for_the_labels_is_an_error(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="size: {width: 0.6in, height: 3in}\n"))
    code, _, err = run("build")
    assert code == 1
    assert "specs/fig.yaml:11:7: error: 0.6in leaves no room for the cells" in err


@pytest.mark.parametrize("text,message", [("3.25", "is not a length"), ("3furlong", "unknown unit"),
                                          ("neurips.txt", "did you mean `neurips.text`?"),
                                          ("100in", "outside")])
def test_bad_lengths(text: str, message: str):
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        to_points(text)


def test_venue_widths():
    assert to_points("icml.column") == 234
    assert to_points("neurips.text") == 396
    assert to_points("acl.column") == pytest.approx(7.7 / 2.54 * 72)


# -- fonts ------------------------------------------------------------------------

@pytest.mark.parametrize("family,embedded", [("serif", "STIXGeneral"), (None, "DejaVuSans"),
                                             ("DejaVu Serif", "DejaVuSerif")])
def test_the_pdf_embeds_the_requested_font(project: Path, family: str | None, embedded: str):
    font = f"font: {{family: {family}, size: 8}}\n" if family else ""
    out = built(project, f"title: T\n{font}output: {{formats: [pdf]}}\n")
    fonts = support.pdf_fonts(out / "fig.pdf")
    assert fonts and all(f.startswith(embedded) for f in fonts), fonts


def test_font_size_reaches_every_text(project: Path):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="title: T\nfont: {size: 7}\nlegend: {title: L}\n"))
    sg = support.scenegraph(_compiled(project))
    sizes = {i["fontSize"] for role in ("axis-label", "axis-title", "legend-label", "legend-title")
             for i in support.marks(sg, role)}
    assert sizes == {7}
    assert {i["fontSize"] for i in support.marks(sg, "title-text")} == {9}


def test_an_unknown_family_is_refused_with_a_suggestion(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="font: {family: sérif}\n"))
    code, _, err = run("check")
    assert code == 1 and "font family 'sérif' does not ship with figspec; did you mean `serif`?" in err


def test_missing_font_files_are_an_error_not_blank_text(project: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    from figspec import fonts

    monkeypatch.setattr(fonts, "font_dir", lambda: project / "nofonts")
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="font: {family: serif}\n"))
    (r,) = check([project / "specs"])
    assert r.status == "failed"
    assert "font family 'STIXGeneral' is not installed: STIXGeneral.ttf" in r.diagnostics[0].message


def test_a_system_font_of_the_same_name_does_not_take_over(project: Path, tmp_path_factory):
    """A user font named "DejaVu Sans" (really STIX, renamed) in ~/.fonts,
    where fontconfig looks: figures must still embed figspec's DejaVu Sans,
    byte for byte the same when figspec's cache cannot be written (a file
    where its folder goes), where the machine's DejaVu could take over."""
    from fontTools.ttLib import TTFont

    from figspec.fonts import font_dir

    home = tmp_path_factory.mktemp("home")
    impostor = TTFont(font_dir() / "STIXGeneral.ttf")
    for record in impostor["name"].names:
        if record.nameID in (1, 16):
            record.string = "DejaVu Sans"
    (home / ".fonts").mkdir()
    impostor.save(home / ".fonts" / "impostor.ttf")
    (home / "blocked").write_text("a file, not a folder")
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="title: T\noutput: {formats: [pdf]}\n"))
    pdfs = []
    for cache in (".cache", "blocked"):
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(home / cache)}
        subprocess.run([sys.executable, "-m", "figspec", "build", "--force"], cwd=project,
                       env=env, check=True, capture_output=True)
        fonts = support.pdf_fonts(project / "out" / "fig.pdf")
        assert fonts and all(f.startswith("DejaVuSans") for f in fonts), fonts
        pdfs.append((project / "out" / "fig.pdf").read_bytes())
    assert pdfs[0] == pdfs[1]


# -- the drawing fits its size exactly, in every format -----------------------

def png_dpi(path: Path) -> float:
    """Pixels per inch in the PNG's pHYs chunk (pixels per metre, unit 1)."""
    png = path.read_bytes()
    at = png.index(b"pHYs")
    x, y, unit = struct.unpack(">IIB", png[at + 4:at + 13])
    assert unit == 1 and x == y
    return x * 0.0254


@pytest.mark.parametrize("size,dpi,pixels", [
    ("{width: 5.5in, height: 2.6in}", 300, (1650, 780)),
    ("{width: icml.column, height: 2in}", 300, (975, 600)),
    ("{width: 8cm, height: 5cm}", 600, (1889, 1181)),  # 1889.76: whole pixels, down
])
def test_png_has_the_size_and_resolution_asked_for(project: Path, size: str, dpi: int,
                                                   pixels: tuple[int, int]):
    out = built(project, f"size: {size}\noutput: {{formats: [png], dpi: {dpi}}}\n")
    assert support.png_size(out / "fig.png") == pixels
    assert png_dpi(out / "fig.png") == pytest.approx(dpi, abs=0.01)


def test_a_sized_svg_is_never_stretched(project: Path):
    """The viewBox has the proportions of the size asked for: text is not squashed."""
    two_models = support.long_rows(layers=28, model="a") + support.long_rows(layers=36, model="b")
    support.write_csv(project / "data" / "cells.csv", two_models)
    out = built(project, "size: {width: 5.5in, height: 2.6in}\ntitle: T\n"
                         "panels: [{data: {where: {model: a}}}, {data: {where: {model: b}}}]\n"
                         "output: {formats: [svg]}\n")
    root = svg_root(out / "fig.svg")
    assert 'preserveAspectRatio="none"' not in root
    box = [float(v) for v in root.split('viewBox="')[1].split('"')[0].split()]
    assert box[:2] == [0, 0]
    assert box[2] / box[3] == pytest.approx(5.5 / 2.6, rel=1e-6)
    assert box[2:] == pytest.approx([396, 187.2])


def test_without_size_every_format_has_one_physical_size(project: Path):
    """SVG in points, PDF page in points, PNG at `scale` pixels per point (144 dpi)."""
    out = built(project, "output: {formats: [svg, png, pdf], scale: 2}\n")
    root = svg_root(out / "fig.svg")
    w = float(root.split(' width="')[1].split('pt"')[0])
    h = float(root.split(' height="')[1].split('pt"')[0])
    assert page_size(out / "fig.pdf") == pytest.approx((w, h), abs=0.01)
    assert support.png_size(out / "fig.png") == (round(2 * w), round(2 * h))
    assert png_dpi(out / "fig.png") == pytest.approx(144, abs=0.01)


# -- the colorbar and the panels line up with the cells -----------------------

def extent(items: list[dict]) -> tuple[float, float]:
    return (round(min(i["y"] for i in items), 3),
            round(max(i["y"] + i.get("height", 0) for i in items), 3))


@pytest.mark.parametrize("legend", ["", "legend: {title: update ratio}\n"])
def test_the_colorbar_spans_the_cells_exactly(project: Path, legend: str):
    from figspec.builder import compile_spec

    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(extra=legend))
    sg = support.scenegraph(compile_spec(spec))
    assert extent(support.placed(sg, "legend-gradient")) == \
        extent(support.placed(sg, "mark", "rect"))


def test_panels_share_one_plot_height_and_the_colorbar_spans_it(project: Path):
    from figspec.builder import compile_spec

    rows = support.long_rows(layers=28, model="a") + support.long_rows(layers=36, model="b")
    support.write_csv(project / "data" / "cells.csv", rows)
    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(extra=(
        "title: Two models\nsize: {width: 5.5in, height: 2.6in}\n"
        "legend: {title: update ratio}\n"
        "panels: [{title: A, data: {where: {model: a}}}, {title: B, data: {where: {model: b}}}]\n")))
    vl = compile_spec(spec)
    sg = support.scenegraph(vl)
    cells = support.placed(sg, "mark", "rect")
    a, b = cells[:28 * 7], cells[28 * 7:]
    assert extent(a) == extent(b)  # tops and bottoms line up
    assert extent(support.placed(sg, "legend-gradient")) == extent(a)
    labels = support.placed(sg, "axis-label")
    x_labels = [lab for lab in labels if lab["text"] in support.MODULES]
    assert len({round(lab["y"], 3) for lab in x_labels}) == 1  # one baseline for the x labels
    assert vl["config"]["title"]["anchor"] == "middle"  # as the panel titles are


# -- text that cannot be read is an error -------------------------------------

def layer_label_ys(sg: dict) -> list[float]:
    return sorted(lab["y"] for lab in support.placed(sg, "axis-label") if lab["text"].isdigit())


def test_default_ticks_leave_room_between_labels(project: Path):
    from figspec.builder import compile_spec

    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=32))
    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="size: {width: icml.column, height: 2in}\nfont: {size: 8}\n"))
    ys = layer_label_ys(support.scenegraph(compile_spec(spec)))
    assert len(ys) > 2
    assert min(b - a for a, b in zip(ys, ys[1:])) >= 8  # no two labels overlap


def test_overlapping_layer_labels_are_an_error_with_the_step_that_fits(project: Path, run):
    support.write_csv(project / "data" / "cells.csv", support.long_rows(layers=32))
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="size: {width: icml.column, height: 2in}\nfont: {size: 8}\n"
              "layers: {tick_every: 1}\nlegend: {orient: right}\n"))
    code, _, err = run("check", "specs")
    assert code == 1
    assert err.startswith("specs/fig.yaml:13:22: error: layer labels every 1 overlap: the cells "
                          "are ")
    assert "use `tick_every: 3` or more" in err


def test_annotations_that_run_into_each_other_are_an_error(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="cell: {width: 19}\nannotate: {format: .3f, size: 7}\n"))
    code, _, err = run("check", "specs")
    assert code == 1
    assert err == ("specs/fig.yaml:12:31: error: values written in 7 pt do not fit cells 19 x 12 "
                   "pt: they would run into each other; use `annotate: {size: 5.5}` or less, a "
                   "shorter `format`, or larger cells\n")
    # The size it suggests fits.
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="cell: {width: 19}\nannotate: {format: .3f, size: 5.5}\n"))
    assert run("check", "specs")[0] == 0


def test_check_refuses_a_size_build_would_refuse(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="size: {width: 0.6in}\n"))
    code, _, err = run("check", "specs")
    assert code == 1
    assert "specs/fig.yaml:11:7: error: 0.6in leaves no room for the cells" in err
