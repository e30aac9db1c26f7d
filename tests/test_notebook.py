"""A figure in a real notebook: one executed by nbclient in an ipykernel (as
`jupyter nbconvert --execute` would), its outputs read back. The last line of
a cell shows the figure as `figspec build` writes it, and nothing it shows
loads a script from the network."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import pytest

import support

#: A script element that loads its code from elsewhere: what fails offline.
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)
REPO = Path(__file__).resolve().parent.parent
#: The style a shown SVG carries, right after its opening tag.
STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def execute(project: Path, cells: list[str]) -> list[list[dict]]:
    """The outputs of each code cell, run in order in a fresh kernel whose
    working directory is the project."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(project)}}).execute()
    return [cell.outputs for cell in nb.cells]


def shown(outputs: list[dict]) -> dict:
    """The one rich output of a cell (its last line's value, or a display())."""
    (out,) = [o for o in outputs if o["output_type"] in ("execute_result", "display_data")]
    return out


def test_a_figure_shows_itself_in_a_notebook_offline(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="title: Update ratio\nsize: {width: icml.column}\n"
              "output: {formats: [svg, png, html]}\n"))
    code, _, err = run("build")
    assert code == 0, err
    built = project / "out"
    cells = execute(project, [
        "import figspec\nfig = figspec.load('specs/fig.yaml')\nfig",
        "fig.png()",
        "from IPython.display import display\ndisplay(fig, include=['image/png'])",
        "fig.html()",
        "fig.chart",
        "repr(fig)",
    ])
    for outputs in cells:
        assert [o for o in outputs if o["output_type"] == "error"] == [], outputs
    svg, png, png_asked, page, chart, text = (shown(c) for c in cells)
    # The last line of a cell: the SVG, byte for byte the built file but for
    # the fonts it is drawn in, embedded, each with every character it draws.
    built_svg = (built / "fig.svg").read_text("utf-8")
    shown_svg = svg["data"]["image/svg+xml"]
    assert STYLE.sub("", shown_svg, count=1) == built_svg
    faces = embedded_faces(shown_svg)
    assert set(faces) == set(drawn_in(built_svg)) == {("DejaVu Sans", "normal"),
                                                      ("DejaVu Sans", "bold")}
    for face, chars in drawn_in(built_svg).items():
        assert chars <= faces[face], face
    assert "image/png" not in svg["data"]
    # The PNG as built, shown at its printed size: 234 pt = 312 CSS px.
    for out in (png, png_asked):
        assert base64.b64decode(out["data"]["image/png"]) == (built / "fig.png").read_bytes()
        assert out["metadata"]["image/png"]["width"] == 312
    assert "image/svg+xml" not in png_asked["data"]
    # The page build writes, framed; the chart's page inlines Vega as well.
    framed = page["data"]["text/html"]
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', framed).group(1))
    assert srcdoc.encode("utf-8") == (built / "fig.html").read_bytes()
    for out in (page, chart):
        body = html.unescape(out["data"]["text/html"])
        assert "vegaEmbed(" in body and REMOTE_SCRIPT.search(body) is None
    # A short text, not the dataclass's thousands of characters.
    assert len(svg["data"]["text/plain"]) < 120 and "fig" in svg["data"]["text/plain"]
    assert text["data"]["text/plain"] == repr(svg["data"]["text/plain"])
    # No output anywhere loads a script from the network.
    for outputs in cells:
        for out in outputs:
            for value in (out.get("data") or {}).values():
                assert not isinstance(value, str) or REMOTE_SCRIPT.search(html.unescape(value)) \
                    is None


def embedded_faces(svg: str) -> dict[tuple[str, str], set[str]]:
    """The @font-face rules of the SVG's style: (family, weight) -> the
    characters its font (read by fontTools) draws."""
    from fontTools.ttLib import TTFont

    faces = {}
    for rule in re.findall(r"@font-face\{([^}]*)\}", STYLE.search(svg).group(1)):
        src = r"src:url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\) format\('woff'\)"
        data = re.search(src, rule).group(1)
        fields = dict(f.split(":", 1) for f in re.sub(src, "", rule).split(";") if f)
        font = TTFont(io.BytesIO(base64.b64decode(data)))
        assert font.flavor == "woff"
        cmap = font.getBestCmap()
        faces[(json.loads(fields["font-family"]), fields["font-weight"])] = {
            chr(c) for c in cmap if cmap[c] in font["glyf"] and font["glyf"][cmap[c]].numberOfContours
            or chr(c) == " "}
    return faces


def drawn_in(svg: str) -> dict[tuple[str, str], set[str]]:
    """The characters the SVG's text elements draw, by (family, weight)."""
    import xml.etree.ElementTree as ET

    drawn: dict[tuple[str, str], set[str]] = {}
    for text in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"):
        face = (text.get("font-family"), text.get("font-weight", "normal"))
        drawn.setdefault(face, set()).update("".join(text.itertext()))
    return drawn


def test_a_gallery_figure_shows_with_its_fonts_small_and_alike_every_time(tmp_path: Path):
    """The shown SVG of gallery figures (DejaVu Sans, STIX): their fonts
    embedded, a few KB each, the same bytes in the kernel as in this process."""
    from IPython.core.formatters import DisplayFormatter

    import figspec

    names = ["checkpoint_relative_change", "update_ratio_models"]
    cells = execute(tmp_path, ["import figspec"] + [
        f"figspec.load({str(REPO / 'specs' / f'{name}.yaml')!r})" for name in names])
    for name, outputs in zip(names, cells[1:]):
        shown_svg = shown(outputs)["data"]["image/svg+xml"]
        built_svg = (REPO / "out" / f"{name}.svg").read_text("utf-8")
        assert STYLE.sub("", shown_svg, count=1) == built_svg
        for face, chars in drawn_in(built_svg).items():
            assert chars <= embedded_faces(shown_svg)[face], (name, face)
        assert len(shown_svg) - len(built_svg) < 30_000, name
        here, _ = DisplayFormatter().format(figspec.load(REPO / "specs" / f"{name}.yaml"))
        assert here["image/svg+xml"] == shown_svg
    assert len(shown(cells[1])["data"]["image/svg+xml"]) < 60_000


def test_a_computer_modern_figure_shows_in_its_own_face(project: Path, capfd):
    """figspec's own family (CMU Serif, in compiler/fontfiles/) is embedded in
    the shown SVG and in the HTML page, as matplotlib's families are, and
    cutting it down prints nothing (its TeX table is dropped, not warned about)."""
    import figspec

    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="font: {family: cm, size: 8}\n"))
    fig = figspec.load(project / "specs" / "fig.yaml")
    svg = fig._repr_mimebundle_()[0]["image/svg+xml"]
    faces = embedded_faces(svg)
    assert {family for family, _ in faces} == {"CMU Serif"}
    for face, chars in drawn_in(svg).items():
        assert set(chars) - {" "} <= faces[face], face
    page = fig.html().data
    page = page.decode() if isinstance(page, bytes) else page
    assert re.search(r"@font-face\{font-family:\"CMU Serif\";font-weight:normal", page)
    assert "TeX" not in capfd.readouterr().err
