"""The HTML output in a real browser: Debian's Chromium, headless, driven by
Playwright, with every request but the page itself blocked.

Needs /usr/bin/chromium (`apt-get install chromium`) and the `playwright`
package (in the test extra). Without them these tests are skipped, with the
reason shown in pytest's summary; with FIGSPEC_REQUIRE_BROWSER=1 (set by CI)
they fail instead, so CI can never pass them by skipping.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

import support
from figspec.builder import Options, build

CHROMIUM = os.environ.get("FIGSPEC_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("FIGSPEC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    # The browser gets the machine's fontconfig settings, as a reader's would:
    # figspec points FONTCONFIG_FILE at its own fonts once it has drawn in this
    # process, and Chromium's text hinting (so its text widths) follows that file.
    env = {k: v for k, v in os.environ.items() if k != "FONTCONFIG_FILE"}
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=FLAGS, headless=True, env=env,
            device_scale_factor=2)  # as the PNGs' default output.scale
        yield context
        context.close()


class Visit:
    """A page opened with the network cut off, and what happened on it."""

    def __init__(self, context, html: Path):
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = page = context.new_page()
        page.set_viewport_size({"width": 1600, "height": 1200})
        url = html.resolve().as_uri()

        def route(r):
            if r.request.url == url:
                r.continue_()
            else:
                self.blocked.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_selector("#figure svg .role-mark", timeout=15000)

    def count(self, selector: str) -> int:
        return self.page.eval_on_selector_all(selector, "els => els.length")

    def texts(self) -> list[str]:
        return self.page.eval_on_selector_all("#figure svg text", "els => els.map(e => e.textContent)")


def built_html(project: Path, body: str, name: str = "fig") -> Path:
    support.write(project / "specs" / f"{name}.yaml", body)
    (r,) = build([project / "specs" / f"{name}.yaml"], Options(out_dir=project / "out"))
    assert r.status == "built", r.diagnostics
    return project / "out" / f"{name}.html"


def test_a_seed_figure_renders_offline_with_every_cell_and_label(browser, project: Path):
    html = built_html(project, support.spec_text(extra='title: "Update ratio"\nlegend: {title: ratio}\n'
                                                 "output: {formats: [html, png]}\n"))
    visit = Visit(browser, html)
    assert visit.blocked == [] and visit.console_errors == []
    assert visit.count("#figure svg .mark-rect.role-mark path") == 6 * 7
    texts = visit.texts()
    for label in ["Update ratio", "ratio", "layer", *support.MODULES, "0", "5"]:
        assert label in texts, label
    visit.page.close()


def test_a_multi_panel_figure_renders(browser, project: Path):
    rows = support.long_rows(layers=28, model="a") + support.long_rows(layers=36, model="b")
    support.write_csv(project / "data" / "models.csv", rows)
    html = built_html(project, """
        data: {path: ../data/models.csv}
        modules: llama
        font: {family: serif}
        panels:
          - {title: small, data: {where: {model: a}}}
          - {title: big, data: {where: {model: b}}}
        output: {formats: [html]}
        """)
    visit = Visit(browser, html)
    assert visit.blocked == [] and visit.console_errors == []
    assert visit.count("#figure svg .mark-rect.role-mark path") == (28 + 36) * 7
    assert {"small", "big", "attn. q", "mlp. gate"} <= set(visit.texts())
    visit.page.close()


HOSTILE = '</script><script>alert("title")</script><img src=x onerror=alert(1)>'


def test_hostile_strings_are_inert(browser, project: Path):
    html = built_html(project, f"""
        title: {_yaml(HOSTILE)}
        data:
          values:
            - {{layer: 0, module: "<img src=x onerror=alert(2)>", value: 0.1}}
            - {{layer: 1, module: "<img src=x onerror=alert(2)>", value: 0.2}}
        modules:
          - {{name: "<img src=x onerror=alert(2)>", label: "<svg onload=alert(3)>"}}
        legend: {{title: "<script>alert(4)</script>"}}
        layers: {{title: "javascript:alert(5)"}}
        output: {{formats: [html]}}
        """)
    visit = Visit(browser, html)
    assert visit.dialogs == [] and visit.blocked == [] and visit.console_errors == []
    assert visit.page.evaluate("document.title") == HOSTILE
    # Only the elements the page itself made: no <img>, no extra <script>, no
    # element from a string outside the figure's SVG text nodes.
    assert visit.count("img") == 0
    assert visit.count("script") == 3
    assert visit.count("#figure svg svg") == 0
    assert HOSTILE in visit.texts() and "<svg onload=alert(3)>" in visit.texts()
    visit.page.close()


def _yaml(text: str) -> str:
    import json

    return json.dumps(text)


def test_the_page_matches_the_png(browser, project: Path):
    """Screenshot of the drawn chart against the PNG figspec wrote: same size,
    and every cell's colour within a small tolerance."""
    from PIL import Image

    html = built_html(project, support.spec_text(extra="title: T\nlegend: {title: L}\n"
                                                 "output: {formats: [html, png], scale: 2}\n"))
    png = Image.open(project / "out" / "fig.png").convert("RGB")
    visit = Visit(browser, html)
    svg = visit.page.query_selector("#figure svg")
    shot = Image.open(io.BytesIO(svg.screenshot())).convert("RGB")
    assert shot.size == png.size
    from figspec.builder import compile_spec

    sg = support.scenegraph(compile_spec(project / "specs" / "fig.yaml"))
    origin = sg["origin"]
    for cell in support.marks(sg, "mark", "rect"):
        x = round((origin[0] + cell["x"] + cell["width"] / 2) * 2)
        y = round((origin[1] + cell["y"] + cell["height"] / 2) * 2)
        assert support.close_colors(shot.getpixel((x, y)), png.getpixel((x, y)), tol=3), (x, y)
    visit.page.close()


def test_the_diff_review_page_offline(browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Both sides and the difference load with no network; swipe and onion skin
    change what is shown; a hostile title stays text."""
    import subprocess

    from figspec.cli import main

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True, capture_output=True)

    repo = tmp_path / "paper"
    support.write_csv(repo / "data" / "cells.csv", support.long_rows())
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    support.write(repo / "specs" / "fig.yaml", support.spec_text(extra=f"title: '{hostile}'\n"))
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    rows = support.long_rows()
    rows[5]["value"] = 0.2
    support.write_csv(repo / "data" / "cells.csv", rows)
    monkeypatch.chdir(repo)
    assert main(["diff", "--out", "review"]) == 0
    page_file = (repo / "review" / "index.html").resolve()
    folder = page_file.parent.as_uri()
    blocked, dialogs = [], []
    page = browser.new_page()
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(folder)
               else (blocked.append(r.request.url), r.abort()))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.className, e.naturalWidth])")
    assert {c for c, _ in sizes} >= {"before", "after", "difference", "top"}
    assert all(w > 0 for _, w in sizes), sizes
    page.eval_on_selector(".swipe-control", "c => { c.value = 20; "
                          "c.dispatchEvent(new Event('input')); }")
    assert page.eval_on_selector(".swipe img.top", "i => i.style.clipPath") == "inset(0px 0px 0px 20%)"
    page.eval_on_selector(".onion-control", "c => { c.value = 30; "
                          "c.dispatchEvent(new Event('input')); }")
    assert page.eval_on_selector(".onion img.top", "i => i.style.opacity") == "0.3"
    assert blocked == [] and dialogs == []
    assert page.eval_on_selector_all("script", "els => els.length") == 1
    page.close()


# -- figspec serve ------------------------------------------------------------------

class Served:
    """`figspec serve --port 0` in a scratch project, as a child process."""

    def __init__(self, project: Path):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "figspec", "serve", "--port", "0"],
                                     cwd=project, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.proc.stderr.read()

    def raw(self, method: str, path: str, host: str | None = None) -> int:
        import http.client
        from urllib.parse import urlparse

        u = urlparse(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host or u.netloc)
        conn.endheaders()
        status = conn.getresponse().status
        conn.close()
        return status

    def stop(self) -> int:
        import signal

        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


def wait_until(page, script: str, timeout: float = 20) -> None:
    page.wait_for_function(script, timeout=timeout * 1000)


def test_serve_redraws_as_specs_and_data_change(browser, project: Path):
    support.write(project / "specs" / "a.yaml", support.spec_text(extra="title: A\n"))
    support.write(project / "specs" / "b.yaml", support.spec_text(extra="title: B\n"))
    served = Served(project)
    try:
        page = browser.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(served.url)
                   else r.abort())
        page.goto(served.url)
        wait_until(page, "document.querySelectorAll('section[data-state=drawn]').length == 2")
        cells = "s => s.querySelectorAll('.role-mark path').length"
        assert page.eval_on_selector("#fig-specs\\/a\\.yaml", cells) >= 42
        # Drawn in the shipped font, served by figspec itself.
        assert page.evaluate("Array.from(document.fonts).some(f => f.status === 'loaded' && "
                             "f.family.replace(/\"/g, '') === 'DejaVu Sans')") is True
        assert served.raw("GET", "/fonts/DejaVuSans.ttf") == 200
        assert served.raw("GET", "/fonts/../../etc/passwd") == 404
        page.evaluate("window.notReloaded = true")
        first = "document.querySelector('#fig-specs\\\\/a\\\\.yaml .role-mark path')"
        before = page.evaluate(f"{first}.getAttribute('fill')")
        rows = support.long_rows()
        rows[0]["value"] = 0.9  # layer 0, q_proj: the largest value now
        support.write_csv(project / "data" / "cells.csv", rows)
        wait_until(page, f"{first} && {first}.getAttribute('fill') !== {json.dumps(before)}")
        assert page.evaluate("window.notReloaded") is True
        # A typo shows its diagnostic, with the line; the fix brings the figure back.
        support.write(project / "specs" / "b.yaml", support.spec_text(extra="title: B\ncolour: x\n"))
        wait_until(page, "document.querySelector('#fig-specs\\\\/b\\\\.yaml[data-state=failed]')")
        problem = page.eval_on_selector("#fig-specs\\/b\\.yaml .problem", "e => e.textContent")
        assert problem.startswith("specs/b.yaml:12:1: error: unknown key `colour`")
        assert page.eval_on_selector("#fig-specs\\/b\\.yaml .source",
                                     "e => e.textContent") == "colour: x"
        support.write(project / "specs" / "b.yaml", support.spec_text(extra="title: B\n"))
        wait_until(page, "document.querySelector('#fig-specs\\\\/b\\\\.yaml[data-state=drawn]')")
        support.write(project / "specs" / "c.yaml", support.spec_text(
            extra="title: '<img src=x onerror=alert(1)>'\n"))
        wait_until(page, "document.querySelectorAll('section[data-state=drawn]').length == 3")
        assert page.evaluate("document.querySelectorAll('main img').length") == 0
        (project / "specs" / "a.yaml").unlink()
        wait_until(page, "document.querySelectorAll('section').length == 2")
        assert page.evaluate("window.notReloaded") is True
        page.close()
        # Only its own pages; no foreign Host; nothing that writes.
        assert served.raw("GET", "/../../etc/passwd") == 404
        assert served.raw("GET", "/%2e%2e/%2e%2e/etc/passwd") == 404
        assert served.raw("GET", "//etc/passwd") == 404
        assert served.raw("GET", "/", host="evil.example:80") == 421
        assert served.raw("POST", "/state.json") == 405
        assert served.raw("PUT", "/x") == 405
        assert served.raw("GET", "/fig/b") == 200
    finally:
        assert served.stop() == 0
    assert "Traceback" not in served.proc.stderr.read()
    assert not (project / "out").exists()  # serving writes no figure and no manifest


def test_serving_on_another_interface_warns(project: Path):
    """127.0.0.2 is this machine too, but not the default: the warning shows."""
    import signal
    import subprocess
    import sys

    support.write(project / "specs" / "a.yaml", support.spec_text())
    proc = subprocess.Popen([sys.executable, "-m", "figspec", "serve", "--port", "0",
                             "--host", "127.0.0.2"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("http://127.0.0.2:")
        assert "anyone who can reach this machine sees the figures" in proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


# -- in a notebook, on the preview page: sizes and controls ---------------------------

def test_a_notebook_html_output_draws_offline_and_takes_its_size(browser, project: Path):
    """What Jupyter puts in a cell's output for ``fig.html()`` and ``fig.chart``
    (IPython's own display formatter), in a page with the network cut off: the
    figure draws inside its frame, and the frame takes the figure's size."""
    from IPython.core.formatters import DisplayFormatter

    import figspec

    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="title: T\n"))
    fig = figspec.load(project / "specs" / "fig.yaml")
    for shown in (fig.html(), fig.chart):
        data, _ = DisplayFormatter().format(shown)
        cell_output_offline(browser, project / "cell.html", data["text/html"])


def cell_output_offline(browser, page_file: Path, output: str) -> None:
    page_file.write_text(f"<!DOCTYPE html><html><body><p>a cell</p>{output}</body></html>")
    blocked, errors = [], []
    page = browser.new_page()
    url = page_file.resolve().as_uri()
    page.route("**/*", lambda r: r.continue_() if r.request.url == url
               else (blocked.append(r.request.url), r.abort()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    inner = "document.querySelector('iframe').contentDocument"
    wait_until(page, f"{inner} && {inner}.querySelectorAll('#figure svg .role-mark path')"
               ".length == 42")
    drawn = page.evaluate(f"{inner}.querySelector('#figure svg').getBoundingClientRect().width")
    wait_until(page, "document.querySelector('iframe').style.width !== '100%'")
    frame = page.eval_on_selector("iframe", "f => f.getBoundingClientRect().width")
    assert drawn < frame <= drawn + 40  # the page's margins, not the cell's width
    assert blocked == [] and errors == []
    page.close()


def test_the_step_slider_is_labelled_in_the_figures_font(browser, project: Path,
                                                         compiled_kernel):
    import checkpoints as ck

    ck.make_run(project / "ckpt", [100, 200, 300])
    html = built_html(project, """
        data: {checkpoints: ../ckpt/run/checkpoint-*, base: ../ckpt/base, metric: changed_fraction}
        modules: [q_proj, k_proj, up_proj]
        font: {family: serif, size: 8}
        output: {formats: [html]}
        """, name="traj")
    visit = Visit(browser, html)
    assert visit.blocked == [] and visit.console_errors == []
    axis = visit.page.evaluate("getComputedStyle(document.querySelector("
                               "'#figure svg .role-axis-label text')).fontFamily")
    for part in (".vega-bind-name", ".vega-bind input"):
        style = visit.page.eval_on_selector(
            part, "e => [getComputedStyle(e).fontFamily, getComputedStyle(e).fontSize]")
        assert style[1] == "8px", style  # the figure's size, as its labels
        assert style[0].split(",")[0].strip('"') == axis.split(",")[0].strip('"'), (style, axis)
    visit.page.close()


def test_serve_shows_figures_at_their_printed_size_with_a_zoom(browser, project: Path):
    """96 CSS px to the inch: a figure 234 pt wide is 312 px wide at 100 %."""
    support.write(project / "specs" / "a.yaml", support.spec_text(
        extra="size: {width: icml.column}\n"))
    served = Served(project)
    try:
        page = browser.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(served.url)
                   else r.abort())
        page.goto(served.url)
        wait_until(page, "document.querySelector('.view[data-zoom] svg')")
        svg = ".view svg"
        drawn = page.eval_on_selector(svg, "s => parseFloat(s.getAttribute('width'))")
        assert drawn == pytest.approx(234, abs=2)  # Vega's pt, as the file's viewBox

        def width() -> float:
            return page.eval_on_selector(svg, "s => s.getBoundingClientRect().width")

        assert width() == pytest.approx(drawn * 96 / 72, abs=0.01)
        page.select_option("#zoom", "2")
        assert width() == pytest.approx(drawn * 96 / 72 * 2, abs=0.01)
        page.select_option("#zoom", "fit")
        assert width() == pytest.approx(page.eval_on_selector("main", "m => m.clientWidth"),
                                        abs=0.01)
        # A redrawn figure keeps the size chosen.
        before = page.eval_on_selector("section", "s => s.getAttribute('data-version')")
        rows = support.long_rows()
        rows[0]["value"] = 0.9
        support.write_csv(project / "data" / "cells.csv", rows)
        wait_until(page, f"document.querySelector('section').getAttribute('data-version') "
                   f"!== {json.dumps(before)} && document.querySelector('.view[data-zoom=fit]')")
        assert width() == pytest.approx(page.eval_on_selector("main", "m => m.clientWidth"),
                                        abs=0.01)
        page.close()
    finally:
        assert served.stop() == 0


def test_a_notebook_svg_output_draws_in_its_embedded_fonts(browser, project: Path):
    """What Jupyter gets for a figure's SVG, drawn as JupyterLab draws it (an
    <img> of the SVG) and as the classic notebook does (inlined), with the
    network cut off: its text is in the shipped STIX it embeds (which this
    machine need not have), as the same SVG with the face renamed to a name
    no machine has draws it; the built file alone draws in another face."""
    import base64

    from IPython.core.formatters import DisplayFormatter

    import figspec

    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="title: Update ratio\nfont: {family: serif}\n"))
    fig = figspec.load(project / "specs" / "fig.yaml")
    shown = DisplayFormatter().format(fig)[0]["image/svg+xml"]
    built = fig.svg().data.decode("utf-8")
    renamed = shown.replace('"STIXGeneral"', '"figspec embedded"')
    assert renamed.count("figspec embedded") == shown.count("STIXGeneral") > 2
    absent = built.replace('"STIXGeneral"', '"figspec absent"')

    def img(svg: str) -> str:  # one to a line, each at a whole pixel (whatever its height)
        return (f'<div style="height:1000px"><img src="data:image/svg+xml;base64,'
                f'{base64.b64encode(svg.encode()).decode()}"></div>')

    page_file = project / "cell.html"
    page_file.write_text(f"<!DOCTYPE html><html><body>{img(shown)}{img(renamed)}{img(absent)}"
                         f"<div id=inline>{shown}</div>"
                         f"<div id=renamed>{renamed}</div><div id=absent>{absent}</div></body></html>")
    blocked, errors = [], []
    page = browser.new_page()
    url = page_file.resolve().as_uri()
    page.route("**/*", lambda r: r.continue_() if r.request.url == url
               else (blocked.append(r.request.url), r.abort()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    wait_until(page, "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.evaluate("document.fonts.ready")
    # Inlined: the faces the text uses, loaded from the SVG's own @font-face rules.
    loaded = page.evaluate("Array.from(document.fonts).filter(f => f.status === 'loaded')"
                           ".map(f => [f.family.replace(/\"/g, ''), f.weight])")
    assert sorted(f for f in loaded if f[0] == "STIXGeneral") == [["STIXGeneral", "bold"],
                                                                 ["STIXGeneral", "normal"]]
    # As an image: the same pixels as the face under a name no machine has.
    shots = [el.screenshot() for el in page.query_selector_all("img")]
    assert pixels_apart(shots[0], shots[1]) == 0
    assert pixels_apart(shots[0], shots[2]) > 200  # the built file alone: a fallback face
    # Inlined, the same text widths as the renamed face, not those of the fallback.
    widths = [page.eval_on_selector_all(f"#{div} svg text", "els => els.map(e => "
                                        "Math.round(e.getComputedTextLength() * 100))")
              for div in ("inline", "renamed", "absent")]
    assert widths[0] == widths[1] != widths[2]
    assert blocked == [] and errors == []
    page.close()


def pixels_apart(a: bytes, b: bytes) -> int:
    """How many pixels of two same-sized screenshots differ by more than a
    rounding (Chromium's gradients differ by 1 from one draw to the next)."""
    from PIL import Image, ImageChops

    one, two = (Image.open(io.BytesIO(x)).convert("L") for x in (a, b))
    assert one.size == two.size
    return sum(ImageChops.difference(one, two).point(lambda v: 255 if v > 8 else 0)
               .histogram()[255:])
