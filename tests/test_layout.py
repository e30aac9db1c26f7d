"""Exact sizes (in, cm, pt, px, venue widths; PNG dpi) and the shipped fonts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest

import support
from compiler.builder import Options, build, check
from compiler.units import VENUES, to_points


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
    """Fitting changes the cells, not the fonts: a wider figure has wider cells."""
    from compiler.builder import compile_spec

    def cell_width(width: str) -> float:
        spec = support.write(project / "specs" / "fig.yaml",
                             support.spec_text(extra=f"size: {{width: {width}}}\n"))
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
    from compiler.builder import compile_spec

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
    from compiler import fonts

    monkeypatch.setattr(fonts, "font_dir", lambda: project / "nofonts")
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="font: {family: serif}\n"))
    (r,) = check([project / "specs"])
    assert r.status == "failed"
    assert "font family 'STIXGeneral' is not installed: STIXGeneral.ttf" in r.diagnostics[0].message


def test_a_system_font_of_the_same_name_does_not_take_over(project: Path, tmp_path_factory):
    """A user font named "DejaVu Sans" (really STIX, renamed) in ~/.fonts,
    where fontconfig looks: figures must still embed figspec's DejaVu Sans."""
    from fontTools.ttLib import TTFont

    from compiler.fonts import font_dir

    home = tmp_path_factory.mktemp("home")
    impostor = TTFont(font_dir() / "STIXGeneral.ttf")
    for record in impostor["name"].names:
        if record.nameID in (1, 16):
            record.string = "DejaVu Sans"
    (home / ".fonts").mkdir()
    impostor.save(home / ".fonts" / "impostor.ttf")
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="title: T\noutput: {formats: [pdf]}\n"))
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(home / ".cache")}
    subprocess.run([sys.executable, "-m", "compiler", "build"], cwd=project, env=env, check=True,
                   capture_output=True)
    fonts = support.pdf_fonts(project / "out" / "fig.pdf")
    assert fonts and all(f.startswith("DejaVuSans") for f in fonts), fonts
