"""The HTML page of a figure: self-contained (Vega, Vega-Lite and vega-embed
inlined, the figure's font embedded), written by figspec rather than by
``vegalite_to_html``, which embeds the spec raw, so that a title such as
``</script>`` would end the script element. Here the spec goes into a
``<script type="application/json">`` with ``<``, ``>``, ``&``, U+2028 and
U+2029 escaped: no title, label or data value can end it or inject markup.
"""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path
from typing import Any

from .caches import memo
from .vega import engine


@memo("html.javascript_bundle")
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script, so the page works offline.

    vl-convert takes ~2 s to bundle it, so it is kept in figspec's cache, one
    file per vl-convert version (the bundle depends on nothing else)."""
    from importlib import metadata

    from . import cache

    name = f"vega-bundle-{metadata.version('vl-convert-python')}.js"
    raw = cache.entry(name, lambda: engine().javascript_bundle().encode("utf-8"))
    try:
        bundle = raw.decode("utf-8")
    except UnicodeDecodeError:  # a damaged entry: make it again, in memory
        bundle = engine().javascript_bundle()
    if "</script" in bundle.lower():  # would end our script element early
        raise RuntimeError("vl-convert's JavaScript bundle contains '</script'")
    return bundle


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element whatever its strings hold."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    for ch in ("<", ">", "&", "\u2028", "\u2029"):
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def html_page(vl: dict[str, Any], title: str) -> str:
    """A self-contained page that draws the chart with no network access, in
    the figure's own font (embedded, cut down to the characters it can need),
    so that the page lays the chart out as the static files do. Shown in a
    frame (a notebook's, see :func:`framed`), it sizes the frame to itself."""
    family = (vl.get("config") or {}).get("font")
    faces = font_faces(family, vl) if isinstance(family, str) else ""
    wait = (f"document.fonts.load('10px {script_json(family)}')"
            f".then(function () {{ return document.fonts.load("
            f"'bold 10px {script_json(family)}'); }})" if faces else "Promise.resolve()")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>body{{margin:0;padding:16px;font-family:sans-serif}}{faces}"
        f"{controls_css(vl)}</style>\n"
        f"<script>{javascript_bundle()}</script>\n"
        "</head>\n<body>\n"
        '<div id="figure"></div>\n'
        f'<script type="application/json" id="figure-spec">{script_json(vl)}</script>\n'
        "<script>\n"
        f"{wait}.then(function () {{\n"
        '  return vegaEmbed("#figure", JSON.parse(document.getElementById("figure-spec")'
        '.textContent), {renderer: "svg", actions: false});\n'
        "}).then(function () {\n"
        "  var frame = window.frameElement;  // null unless in a frame of the same origin\n"
        '  var box = document.getElementById("figure").getBoundingClientRect();\n'
        "  if (frame) { frame.style.width = Math.ceil(box.right + 16) + \"px\";\n"
        "               frame.style.height = Math.ceil(box.bottom + 16) + \"px\"; }\n"
        '}).catch(function (e) { document.getElementById("figure").textContent = String(e); });\n'
        "</script>\n</body>\n</html>\n"
    )


#: Vega's own label size (px, one per pt on the page) where a spec sets none.
VEGA_LABEL_SIZE = 10


def controls_css(vl: dict[str, Any]) -> str:
    """CSS that sets the page's controls (a run's step slider and its label)
    in the figure's font and label size, as its axis labels are."""
    config = vl.get("config") or {}
    family = config.get("font")
    size = (config.get("axis") or {}).get("labelFontSize", VEGA_LABEL_SIZE)
    faces = f"{script_json(family)},sans-serif" if isinstance(family, str) else "sans-serif"
    return (f".vega-bindings{{font-family:{faces};font-size:{float(size):g}px}}"
            ".vega-bindings input,.vega-bindings select{font:inherit}")


def framed(page: str) -> str:
    """A page as a notebook's HTML output: in a frame of its own (its element
    ids, styles and scripts cannot meet another output's), its ``srcdoc``
    escaped; the page sizes the frame once drawn."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" title="figure" '
            'style="border:0;width:100%;height:480px"></iframe>')


def font_faces(family: str, vl: dict[str, Any]) -> str:
    """CSS @font-face rules embedding a shipped family's regular and bold faces,
    subset to printable ASCII, a few symbols d3-format writes, and every
    character of the chart's strings."""
    import base64

    from .fonts import FAMILIES, OWN_FAMILIES, files_of, folder_of

    folder = folder_of(family) if family in FAMILIES or family in OWN_FAMILIES else None
    if folder is None:
        return ""
    text = "".join(chr(c) for c in range(32, 127)) + "\u2212\u00b5\u2026\u00b0" + \
        json.dumps(vl, ensure_ascii=False)
    rules = []
    for weight, name in (("normal", files_of(family)[0]), ("bold", files_of(family)[1])):
        data = base64.b64encode(_subset(folder / name, text)).decode("ascii")
        rules.append(f"@font-face{{font-family:{script_json(family)};font-weight:{weight};"
                     f"src:url(data:font/ttf;base64,{data}) format('truetype')}}")
    return "".join(rules)


#: An SVG's opening tag: up to the first ">" outside a quoted attribute.
_SVG_TAG = re.compile(r"""<svg\b(?:[^>"']|"[^"]*"|'[^']*')*>""")


def svg_with_fonts(svg: str) -> str:
    """``svg`` with the shipped faces its text is drawn in embedded, so a browser
    draws it alike on any machine (the file as built names its family, which a
    browser finds only where it is installed): after the opening tag, a
    ``<style>`` of @font-face rules, one per family, weight and style used,
    each font subset to the characters drawn in it, its ``unicode-range``
    those characters, so that two figures' subsets of one face inlined in one
    page add up rather than one hiding the other. Same input, same bytes."""
    import base64

    from .fonts import files_of, folder_of

    tag = _SVG_TAG.search(svg)
    used = _faces_used(svg) if tag else {}
    if tag is None or not used:
        return svg
    rules = []
    for (family, face), chars in sorted(used.items()):
        text = "".join(sorted(chars))
        # WOFF: zlib, so no new dependency (WOFF2 needs brotli), and half
        # the size of TTF; the font keeps its licence text (its name table).
        folder = folder_of(family)
        if folder is None:  # matplotlib's fonts, not installed
            continue
        font = _subset(folder / files_of(family)[face], text, flavor="woff")
        data = base64.b64encode(font).decode("ascii")
        ranges = ",".join(f"U+{ord(ch):X}" for ch in text)
        rules.append(f"@font-face{{font-family:{json.dumps(family)};"
                     f"font-weight:{('normal', 'bold')[face & 1]};"
                     f"font-style:{('normal', 'italic')[face >> 1]};unicode-range:{ranges};"
                     f"src:url(data:font/woff;base64,{data}) format('woff')}}")
    start = tag.end()
    return f"{svg[:start]}<style>{''.join(rules)}</style>{svg[start:]}"


def _faces_used(svg: str) -> dict[tuple[str, int], set[str]]:
    """The characters of each shipped face (family, index in its files) the
    SVG's text is drawn in; font attributes are inherited, as CSS does."""
    import xml.etree.ElementTree as ET

    from .fonts import FAMILIES, OWN_FAMILIES

    used: dict[tuple[str, int], set[str]] = {}
    names = {f.lower(): f for f in (*FAMILIES, *OWN_FAMILIES)}

    def walk(el: ET.Element, font: dict[str, str]) -> None:
        font = font | {k: v for k, v in el.attrib.items() if k.startswith("font-")}
        if el.tag.rpartition("}")[2] == "text":
            first = font.get("font-family", "").split(",")[0].strip().strip("'\"").lower()
            weight = font.get("font-weight", "normal")
            bold = weight in ("bold", "bolder") or weight.isdigit() and int(weight) >= 600
            italic = font.get("font-style", "normal") in ("italic", "oblique")
            chars = {ch for ch in "".join(el.itertext()) if ch.isprintable()}
            if first in names and chars:
                used.setdefault((names[first], int(bold) + 2 * int(italic)), set()).update(chars)
            return
        for child in el:
            walk(child, font)

    walk(ET.fromstring(svg), {})
    return used


def _subset(path: Path, text: str, flavor: str | None = None) -> bytes:
    from fontTools import subset

    options = subset.Options()
    options.name_IDs = ["*"]
    # FontForge's timestamps (not needed, and not reproducible); CMU Serif's
    # TeX metrics table, which fontTools cannot subset (and says so on stderr)
    options.drop_tables += ["FFTM", "TeX "]
    font = subset.load_font(str(path), options)
    font.recalcTimestamp = False  # else `head.modified` is the time of the build
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    out = io.BytesIO()
    font.flavor = flavor
    font.save(out)
    return out.getvalue()


def serve_page(only: str | None) -> str:
    """The preview page of `figspec serve`: every figure, or one (``/fig/NAME``).
    Its script is /app.js and Vega is /vega.js: no inline script, no CDN."""
    title = f"figspec: {only}" if only else "figspec: every figure"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;margin:16px}section{margin:0 0 32px}"
            "h2{font-size:15px;margin:0}.spec{color:#555;font-size:12px}"
            ".problem{font-family:monospace;white-space:pre-wrap;color:#a00;margin:4px 0}"
            ".source{font-family:monospace;white-space:pre;color:#333;margin:0 0 8px 2ch}"
            ".zoom{font-size:12px;color:#555;margin:0 0 16px}.view svg{display:block}"
            "</style>\n<link rel=\"stylesheet\" href=\"/fonts.css\">\n"
            "<script src=\"/vega.js\"></script>\n"
            "<script src=\"/app.js\"></script>\n</head>\n<body>\n"
            # Figures show at their printed size (96 CSS px to the inch), or
            # fitted to the page's width, or twice that size to see details.
            "<label class=\"zoom\">size <select id=\"zoom\">"
            "<option value=\"fit\">fit</option>"
            "<option value=\"1\" selected>100 % (printed)</option>"
            "<option value=\"2\">200 %</option></select></label>\n"
            f"<main id=\"figures\" data-only=\"{html.escape(only or '', quote=True)}\"></main>\n"
            "</body>\n</html>\n")


def serve_fonts_css() -> str:
    """@font-face rules for the shipped families (regular and bold), served
    from /fonts/: the preview draws in the fonts the files are drawn in."""
    from .fonts import FAMILIES

    rules = []
    for family, files in FAMILIES.items():
        for weight, name in (("normal", files[0]), ("bold", files[1])):
            rules.append(f"@font-face{{font-family:{json.dumps(family)};font-weight:{weight};"
                         f"src:url(/fonts/{name}) format('truetype')}}")
    return "\n".join(rules) + "\n"


def serve_font(name: str) -> bytes | None:
    """A shipped font file by name; None for any other name."""
    from .fonts import FAMILIES, font_dir

    allowed = {f for files in FAMILIES.values() for f in files[:2]}
    folder = font_dir()
    if name not in allowed or folder is None:
        return None
    try:
        return (folder / name).read_bytes()
    except OSError:
        return None


def serve_script() -> str:
    """Polls /state.json; draws a figure that changed, shows problems as text
    (textContent only: nothing a spec says becomes markup), keeps the scroll."""
    return r"""
(function () {
  var shown = {}, version = -1;
  function main() { return document.getElementById("figures"); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // A section's data-state: "drawing" until Vega has put this version's
  // figure in the page, then "drawn"; "failed" for problems (shown at once).
  function settle(section, fig, state) {
    if (shown[fig.spec] === fig.version) section.setAttribute("data-state", state);
  }
  function draw(section, fig) {
    var body = section.querySelector(".body");
    section.setAttribute("data-state", fig.vegalite ? "drawing" : "failed");
    if (fig.vegalite) {
      // Vega measures text as it lays out: the figure's own font first.
      var family = (fig.vegalite.config || {}).font || "sans-serif";
      var face = JSON.stringify(family);  // titles are bold: both faces
      Promise.all([document.fonts.load("10px " + face), document.fonts.load("bold 10px " + face)])
        .catch(function () {}).then(function () { drawFigure(section, body, fig); });
    } else {
      drawFigure(section, body, fig);
    }
  }
  function drawFigure(section, body, fig) {
    if (shown[fig.spec] !== fig.version) return;  // a newer version is on its way
    body.textContent = "";
    if (fig.vegalite) {
      var view = el("div", "view");
      body.appendChild(view);
      vegaEmbed(view, fig.vegalite, {renderer: "svg", actions: false,
        tooltip: {theme: "light"}})
      .then(function () { zoom(view); settle(section, fig, "drawn"); })
      .catch(function (e) {
        body.appendChild(el("div", "problem", e));
        settle(section, fig, "failed");
      });
    } else {
      fig.problems.forEach(function (p) {
        body.appendChild(el("div", "problem", p.text));
        if (p.source !== null) body.appendChild(el("div", "source", p.source));
      });
    }
  }
  // Vega draws one px per pt: 96/72 CSS px per pt is the printed size.
  var PX_PER_PT = 96 / 72;
  function zoom(view) {
    var svg = view.querySelector("svg");
    if (!svg) return;
    var w = parseFloat(svg.getAttribute("width")), h = parseFloat(svg.getAttribute("height"));
    var chosen = document.getElementById("zoom").value;
    var k = chosen === "fit" ? main().clientWidth / w : PX_PER_PT * parseFloat(chosen);
    svg.style.width = (w * k) + "px";
    svg.style.height = (h * k) + "px";
    view.setAttribute("data-zoom", chosen);
  }
  function zoomAll() {
    Array.prototype.forEach.call(main().querySelectorAll(".view"), zoom);
  }
  function update(state) {
    var seen = {};
    state.figures.forEach(function (fig, i) {
      seen[fig.spec] = true;
      var section = document.getElementById("fig-" + fig.spec);
      if (!section) {
        section = el("section", "figure");
        section.id = "fig-" + fig.spec;
        section.appendChild(el("h2", null, fig.name));
        section.appendChild(el("div", "spec", fig.spec));
        section.appendChild(el("div", "body"));
      }
      var at = main().children[i];
      if (at !== section) main().insertBefore(section, at || null);
      if (shown[fig.spec] !== fig.version) {
        shown[fig.spec] = fig.version;
        section.setAttribute("data-version", fig.version);
        draw(section, fig);
      }
    });
    Array.prototype.slice.call(main().children).forEach(function (s) {
      if (!seen[s.id.slice(4)]) { delete shown[s.id.slice(4)]; s.remove(); }
    });
    document.body.setAttribute("data-version", state.version);
  }
  function poll() {
    var only = main().getAttribute("data-only");
    fetch("/state.json?since=" + version + (only ? "&fig=" + encodeURIComponent(only) : ""),
          {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (state) {
        if (!state.unchanged && state.version !== version) {
          version = state.version;
          update(state);
        }
      })
      .catch(function () {})
      .then(function () { setTimeout(poll, 300); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("zoom").addEventListener("change", zoomAll);
    window.addEventListener("resize", function () {
      if (document.getElementById("zoom").value === "fit") zoomAll();
    });
    poll();
  });
})();
"""
