"""Rendering: formats, sizes, reproducible bytes, and an HTML page that stays
inert whatever the strings in the spec."""

from __future__ import annotations

import hashlib
import html.parser
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import support
from figspec.builder import Options, build, compile_spec
from figspec.html import html_page, script_json
from figspec.render import normalize_svg, render, to_svg

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def vl(project: Path) -> dict:
    spec = support.write(project / "specs" / "fig.yaml", support.spec_text())
    return compile_spec(spec, Options())


def test_svg_ids_are_renumbered_by_first_appearance():
    svg = ('<defs><linearGradient id="gradient_7"/><clipPath id="clip12"/></defs>'
           '<rect fill="url(#gradient_7)" clip-path="url(#clip12)"/><use href="#clip12"/>'
           '<text>gradient_7 clip12</text>')
    assert normalize_svg(svg) == (
        '<defs><linearGradient id="gradient_1"/><clipPath id="clip1"/></defs>'
        '<rect fill="url(#gradient_1)" clip-path="url(#clip1)"/><use href="#clip1"/>'
        '<text>gradient_7 clip12</text>')


def test_svg_is_identical_on_every_render_in_one_process(vl: dict):
    first = to_svg(vl)
    assert "gradient_1" in first
    for _ in range(3):
        assert to_svg(vl) == first


def test_png_is_scaled_and_pdf_page_matches_the_svg(vl: dict):
    files = render(vl, ["svg", "png", "pdf"], scale=2)
    svg = files["svg"].decode()
    # Every format has one physical size: the SVG says it in points.
    width = int(svg.split('width="', 1)[1].split('pt"', 1)[0])
    height = int(svg.split('height="', 1)[1].split('pt"', 1)[0])
    assert files["png"][:8] == b"\x89PNG\r\n\x1a\n"
    png_w, png_h = struct.unpack(">II", files["png"][16:24])
    assert (png_w, png_h) == (2 * width, 2 * height)
    import io

    import pikepdf
    with pikepdf.open(io.BytesIO(files["pdf"])) as pdf:
        box = [float(x) for x in pdf.pages[0].MediaBox]
    assert box[2] - box[0] == pytest.approx(width, abs=1)
    assert box[3] - box[1] == pytest.approx(height, abs=1)


class _Elements(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[dict] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in = tag
        if tag == "script":
            self.scripts.append({"attrs": dict(attrs), "text": ""})

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1]["text"] += data
        elif self._in == "title":
            self.title += data


HOSTILE = '</script><script>alert(1)</script><img src=x onerror=alert(2)> & \u2028\u2029 <!--'


def test_html_is_inert_whatever_the_strings(project: Path):
    # A drawn text cannot hold a line separator (check refuses it): the
    # figure's texts are the rest, and its description holds them all.
    drawn = HOSTILE.replace("\u2028\u2029", "")
    rows = support.long_rows(layers=2, modules=["q_proj", drawn])
    (project / "data" / "cells.json").write_text(json.dumps(rows))
    title = json.dumps(drawn)
    spec = support.write(project / "specs" / "fig.yaml", support.spec_text(
        "path: ../data/cells.json", ["q_proj", json.dumps({"name": drawn, "label": drawn})],
        f"title: {title}\nlegend: {{title: {title}}}\n"))
    vl = {**compile_spec(spec, Options()), "description": HOSTILE}
    page = html_page(vl, HOSTILE)
    parsed = _Elements()
    parsed.feed(page)
    assert [s["attrs"].get("type") for s in parsed.scripts] == [None, "application/json", None]
    assert parsed.tags.count("img") == 0
    assert parsed.title == HOSTILE
    embedded = json.loads(parsed.scripts[1]["text"])
    assert embedded == vl  # the spec survives the escaping unchanged
    for ch in "<>&\u2028\u2029":
        assert ch not in parsed.scripts[1]["text"]


def test_html_works_offline(vl: dict):
    page = html_page(vl, "t")
    assert "http://" not in page.split("<script>", 1)[0]
    parsed = _Elements()
    parsed.feed(page)
    assert all("src" not in s["attrs"] for s in parsed.scripts)  # nothing fetched
    assert "vegaEmbed" in parsed.scripts[0]["text"]


def test_script_json_escapes():
    assert script_json({"a": "</script>&\u2028"}) == '{"a":"\\u003c/script\\u003e\\u0026\\u2028"}'


def _digests(folder: Path) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest()
            for n in support.figures(folder)}


@pytest.mark.slow
def test_builds_are_byte_identical_across_processes_and_alone(tmp_path: Path):
    """Two builds of every example in separate processes, and a build of one spec alone,
    agree byte for byte, in every format."""
    # The two processes at once (each on a core, when there are two): separate
    # processes all the same, in half the time.
    procs = [subprocess.Popen([sys.executable, "-m", "figspec", "build", "specs", "--out",
                               str(tmp_path / f"out{i}")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    outs = [_digests(tmp_path / f"out{i}") for i in range(2)]
    assert outs[0] == outs[1]
    assert {n.rsplit(".", 1)[1] for n in outs[0]} == {"svg", "png", "pdf", "html"}
    alone = tmp_path / "alone"
    results = build([REPO / "specs" / "weight_change_36l.yaml"], Options(out_dir=alone))
    assert results[0].status == "built"
    for name, digest in _digests(alone).items():
        assert outs[0][name] == digest, name


def test_the_javascript_bundle_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from figspec import html as render

    monkeypatch.delenv("FIGSPEC_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    render.javascript_bundle.cache_clear()
    try:
        bundle = render.javascript_bundle()
        (cached,) = (tmp_path / "figspec").glob("vega-bundle-*.js")
        assert cached.read_text() == bundle and "vegaEmbed" in bundle
        for damage in ("window.vegaEmbed = 1;", bundle[:len(bundle) // 2], ""):
            cached.write_text(damage)  # damaged or truncated: made again, never used
            render.javascript_bundle.cache_clear()
            assert render.javascript_bundle() == bundle
            assert cached.read_text() == bundle
    finally:
        render.javascript_bundle.cache_clear()
