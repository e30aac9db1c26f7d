"""A figure in a real notebook: one executed by nbclient in an ipykernel (as
`jupyter nbconvert --execute` would), its outputs read back. The last line of
a cell shows the figure as `figspec build` writes it, and nothing it shows
loads a script from the network."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pytest

import support

#: A script element that loads its code from elsewhere: what fails offline.
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


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
    # The last line of a cell: the SVG, byte for byte the built file.
    assert svg["data"]["image/svg+xml"].encode("utf-8") == (built / "fig.svg").read_bytes()
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
