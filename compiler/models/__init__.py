"""The spec language: pydantic models, one per YAML mapping.

Every field carries a description, a default and an example, so that the
JSON Schema generated from these models (``figspec schema``) documents the
language for editors. Unknown keys are errors (``extra="forbid"``).
Checks that need the data (modules present, cells complete) live in
:mod:`figspec.cells`; everything here needs the spec alone. The `data`
mapping's model is :mod:`figspec.models.data`; what every model shares,
:mod:`figspec.models.base`. All are imported from here.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..diagnostics import did_you_mean
from ..files import FORMATS
from ..fonts import FAMILY_NAMES, family_of
from ..presets import MODULE_PRESETS, SCHEMES
from ..units import UNITS, to_points
from .base import MAX_LABEL, MAX_LAYER_INDEX, MAX_MODULES, MAX_TITLE, Model, partial
from .data import Data

#: The files a figure can be written as.
Format = Literal[FORMATS]  # type: ignore[valid-type]
# d3-format's own specifier grammar (d3-format/src/formatSpecifier.js).
_D3_FORMAT = re.compile(
    r"^(?:(.)?([<>=^]))?([+\-( ])?([$#])?(0)?(\d+)?(,)?(\.\d+)?(~)?([a-z%])?$", re.I)
_D3_TYPES = set("eEfgGrsdoxXcbnp%")
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Module(Model):
    """One column of the heatmap."""

    name: str = Field(..., min_length=1, max_length=MAX_TITLE,
                      description="The module's name as it appears in the data.",
                      examples=["q_proj"])
    label: str | None = Field(None, max_length=MAX_LABEL, description="The label drawn under "
                              "the column; defaults to the name.", examples=["attn. q"])

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        # A bare string is shorthand for {name: s}; numbers too (`- 1`).
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            return {"name": str(v)}
        return v

    @property
    def shown(self) -> str:
        return self.label if self.label is not None else self.name


def _preset(v: Any) -> Any:
    """``modules: llama`` -> the preset's seven modules, labelled."""
    if not isinstance(v, str):
        return v
    if v.lower() in MODULE_PRESETS:
        return [{"name": n, "label": label} for n, label in MODULE_PRESETS[v.lower()]]
    hint = did_you_mean(v, MODULE_PRESETS)
    raise ValueError(f"unknown module preset {v!r}; " + (hint or "presets are "
                     + ", ".join(MODULE_PRESETS) + f"; for modules of your own, write a list: "
                     f"`[{v}]`"))


Modules = Annotated[list[Module], BeforeValidator(_preset), Field(max_length=MAX_MODULES)]
_MODULES_DOC = ("The x axis, left to right: module names as in the data, each a string or "
                "{name, label}; or a preset naming an architecture's modules: "
                + ", ".join(f"`{k}`" for k in MODULE_PRESETS) + ".")


class Layers(Model):
    """The y axis: which layers are drawn, and how."""

    first: int = Field(0, ge=0, le=MAX_LAYER_INDEX, description="First layer drawn.",
                       examples=[0])
    last: int | None = Field(None, ge=0, le=MAX_LAYER_INDEX, description="Last layer drawn; "
                             "defaults to the largest layer in the data. At most 10,000 layers "
                             "are drawn.", examples=[27])
    tick_every: int | None = Field(
        None, gt=0, description="A tick every this many layers from `first`, plus one at "
        "`last` (the tick before `last` is left out when it stands less than 1.3 label "
        "heights from it). Default: the smallest of 1, 2, 3, 4, 5, 10, 15, 20, 25, 50, ... "
        "that leaves 1.5 label heights between ticks and cuts the axis into at most 20 steps. "
        "Labels that would overlap are an error.",
        examples=[4])
    zero_at: Literal["bottom", "top"] = Field("bottom", description="Where layer `first` is drawn.",
                                              examples=["top"])
    title: str | None = Field("layer", max_length=MAX_LABEL,
                              description="Title of the layer axis; null for none.",
                              examples=["layer", None])

    @model_validator(mode="after")
    def _ordered(self) -> Layers:
        if self.last is not None and self.last < self.first:
            raise ValueError(f"`last` ({self.last}) is below `first` ({self.first})")
        return self


class Color(Model):
    """The colour scale: a Vega scheme, or your own colours."""

    scheme: str | None = Field(
        None, description="A Vega colour scheme (https://vega.github.io/vega/docs/schemes/); "
        "default `blueorange` when `colors` is not given.",
        examples=["blueorange", "redblue"], json_schema_extra={"enum": [*SCHEMES, None]},
    )
    colors: list[str] | None = Field(
        None, min_length=2, description="Colours from low to high, as #rgb or #rrggbb, "
        "interpolated evenly over the domain.", examples=[["#2166ac", "#f7f7f7", "#b35806"]],
    )
    mid: float | None = Field(
        None, description="The value drawn in the scale's middle colour (a diverging scheme's "
        "white); it must lie inside the domain. Default: the middle of the domain.",
        examples=[0.12],
    )
    reverse: bool = Field(False, description="Flip the colours: high values get the low end.",
                          examples=[True])

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.lower() in SCHEMES:
            return v.lower()
        hint = did_you_mean(v, SCHEMES)
        raise ValueError(f"unknown colour scheme {v!r}" + (f"; {hint}" if hint else
                         "; see https://vega.github.io/vega/docs/schemes/"))

    @field_validator("colors")
    @classmethod
    def _hex(cls, v: list[str] | None) -> list[str] | None:
        for c in v or []:
            if not _HEX_COLOR.match(c):
                raise ValueError(f"colour {c!r} is not #rgb or #rrggbb")
        return v

    @field_validator("mid")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _one(self) -> Color:
        if self.scheme is not None and self.colors is not None:
            raise ValueError("give either `scheme` or `colors`, not both")
        return self

    @property
    def effective_scheme(self) -> str | None:
        return None if self.colors else (self.scheme or "blueorange")


def _check_d3_format(v: str | None) -> str | None:
    if v is None:
        return v
    m = _D3_FORMAT.match(v)
    if not m or (m.group(10) and m.group(10) not in _D3_TYPES):
        raise ValueError(f"{v!r} is not a d3-format specifier (such as `.2f`, `.3~g` or `.0%`)")
    return v


class Legend(Model):
    """The colorbar: beside the plot, or under it."""

    title: str | None = Field(None, max_length=MAX_LABEL, description="Title of the colorbar.",
                              examples=["update ratio"])
    format: str | None = Field(None, description="d3-format specifier for the colorbar's labels "
                               "(https://d3js.org/d3-format). Default: the fewest decimals at "
                               "which each label is within 1% of the domain's span of its value, "
                               "so a narrow domain's ends show as they are (0.9998786).",
                               examples=[".2f"])
    orient: Literal["right", "bottom"] | None = Field(
        None, description="`right`: a vertical colorbar beside the plot, as tall as the cells. "
        "`bottom`: a horizontal one under the plot, as wide as the cells. Default: `bottom` for "
        "a figure whose `size.width` is at most 4in (a column), where width is scarce and "
        "height is not; else `right`.", examples=["bottom"])
    ticks: int | list[float] | None = Field(
        None, description="The colorbar's labelled values: a count (at least 2), spread evenly "
        "from the low to the high end of the domain, or a list of values inside the domain. "
        "Default: the ends and the middle, as many as fit.", examples=[5, [0.12, 0.15, 0.18]])

    @field_validator("format")
    @classmethod
    def _d3(cls, v: str | None) -> str | None:
        return _check_d3_format(v)

    @field_validator("ticks")
    @classmethod
    def _ticks(cls, v: int | list[float] | None) -> int | list[float] | None:
        if isinstance(v, int) and not 2 <= v <= 50:
            raise ValueError("a count of ticks is 2 to 50")
        if isinstance(v, list):
            if not 1 <= len(v) <= 50 or not all(math.isfinite(x) for x in v):
                raise ValueError("give 1 to 50 finite numbers")
            if sorted(set(v)) != v:
                raise ValueError("list the values once each, increasing")
        return v


class ModuleLabels(Model):
    """The labels under the columns."""

    angle: Literal["auto", 0, 45, 90] = Field(
        "auto", description="How far the labels are turned, in degrees: 0 (level), 45, or 90 "
        "(reading bottom to top). `auto`: the smallest at which neighbouring labels, measured "
        "in the figure's font, do not run into each other.", examples=[45, "auto"])


class Font(Model):
    """The typeface of every text in the figure. Fonts ship with figspec, so a
    figure looks the same on every machine."""

    family: str = Field(
        "sans-serif", description="`serif` or `times` (STIX, a Times design with Times' widths: "
        "the body text of the NeurIPS, ICML, ICLR, ACL and CVPR templates), `Computer Modern` "
        "(CMU Serif, cmr10's widths: LaTeX's default, of TMLR, JMLR and most arXiv preprints), "
        "a venue's name for its template's face (`icml`, `tmlr`...), `sans-serif` (DejaVu "
        "Sans), or a family by name.",
        examples=["serif"], json_schema_extra={"enum": list(FAMILY_NAMES)},
    )
    size: float | None = Field(None, ge=4, le=72, description="Size of labels and axis titles "
                               "in pt; the figure's title is 2 pt larger. Default: Vega's "
                               "(10 pt labels, 11 pt titles).", examples=[8])
    title_weight: Literal["normal", "bold"] = Field(
        "bold", description="Weight of the titles: the figure's, the panels', the layer axis' "
        "and the colorbar's.", examples=["normal"])

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        if family_of(v) is not None:
            return v
        hint = did_you_mean(v, FAMILY_NAMES)
        raise ValueError(f"font family {v!r} does not ship with figspec; "
                         + (hint or "use one of: " + ", ".join(FAMILY_NAMES)))


_LENGTH_DOC = (f"A length with a unit ({', '.join(UNITS)}: `3.25in`, `8.2cm`, `234pt`) or a "
               "venue's width (`neurips.text`, `icml.column`; listed in the README).")


class Size(Model):
    """The size of the whole figure: axes, labels, title and colorbar included.
    The cells grow or shrink to fit; with only one side given they keep their
    shape, except that a width alone gives a figure at most as high as wide."""

    width: str | None = Field(None, description=_LENGTH_DOC, examples=["3.25in", "icml.column"])
    height: str | None = Field(None, description=_LENGTH_DOC.replace(" or a venue's width "
                               "(`neurips.text`, `icml.column`; listed in the README)", ""),
                               examples=["2.4in"])

    @field_validator("width", "height")
    @classmethod
    def _length(cls, v: str | None) -> str | None:
        if v is not None:
            to_points(v)  # raises ValueError with the reason
        return v

    @model_validator(mode="after")
    def _some(self) -> Size:
        if self.width is None and self.height is None:
            raise ValueError("give `width`, `height` or both")
        return self


class Annotate(Model):
    """Each cell's value written in it, in black or white, whichever is more
    readable on the cell's colour."""

    format: str = Field(".2f", description="d3-format specifier of the values.",
                        examples=[".3f", ".2~e"])
    size: float | None = Field(None, ge=2, le=72, description="Font size in pt; default: "
                               "2 pt below the label size.", examples=[6])

    @field_validator("format")
    @classmethod
    def _d3(cls, v: str) -> str:
        _check_d3_format(v)
        return v


class Output(Model):
    """Which files are written."""

    name: str | None = Field(None, max_length=200,
                             description="Base name of the files written into the out dir; "
                             "defaults to the spec's file name. A plain file name, no folders.",
                             examples=["fig3a"])
    formats: list[Format] = Field(
        ["svg", "png"], min_length=1, description="Files to write.",
        examples=[["svg", "png", "pdf", "html"]],
    )
    scale: float = Field(2.0, ge=0.25, le=8, description="PNG pixels per SVG pixel (2: crisp on "
                         "high-resolution screens and in print), for figures without `size`.",
                         examples=[2, 4])
    dpi: float | None = Field(None, ge=30, le=2400, description="PNG pixels per inch (an SVG "
                              "pixel is 1 pt, 1/72 in). Default: 300 when `size` is given, "
                              "else `scale` applies.", examples=[300, 600])

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and (not _PLAIN_NAME.match(v) or v in {".", ".."}):
            raise ValueError(f"{v!r} is not a plain file name: use letters, digits, `.`, `_` and "
                             "`-`, with no folders")
        return v

    @field_validator("formats")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a format is listed twice")
        return v


class Cell(Model):
    """The size of one heatmap cell, in pixels."""

    width: float = Field(24, ge=1, le=200, description="Width of one cell (px).", examples=[24])
    height: float = Field(12, ge=1, le=200, description="Height of one cell (px).", examples=[12])


class Panel(Model):
    """One heatmap of several drawn side by side. `data`, `modules` and `layers`
    written at the top level apply to every panel; a panel's own override
    them (its `data` merges key by key)."""

    title: str | None = Field(None, max_length=MAX_TITLE, description="Title above this panel.",
                              examples=["Qwen2.5-7B"])
    data: Data | None = Field(None, title="Data", description="Where this panel's numbers come "
                              "from, merged over the top-level `data`.",
                              examples=[{"where": {"model": "7b"}}])
    modules: Modules | None = Field(None, min_length=1, description=_MODULES_DOC + " Default: "
                                    "the top-level `modules`.", examples=["llama"])

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> Panel:
        if partial(info):
            return self
        missing = [k for k in ("data", "modules") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"missing `{missing[0]}`: give it in this panel or at the top level")
        return self
    layers: Layers = Field(Layers(), title="Layers", description="This panel's layer axis.",
                           examples=[{"last": 35, "tick_every": 5}])


class Spec(Model):
    """One figure: a layer-by-module heatmap, or several side by side."""

    model_config = ConfigDict(title="figspec", json_schema_extra={
        "$comment": "Generated by `figspec schema` from compiler/models/; do not edit."})

    title: str | None = Field(None, max_length=MAX_TITLE, description="Chart title.",
                              examples=["Qwen2.5-1.5B: update ratio"])
    extends: str | None = Field(
        None, description="Another spec file (relative to this one) whose fields this spec "
        "inherits: mappings merge key by key, this spec wins, lists are replaced.",
        examples=["_base.yaml"])
    data: Data | None = Field(None, title="Data", description="Where the numbers come from "
                              "(required unless every panel gives its own).",
                              examples=[{"path": "../data/update_ratio.csv",
                                         "where": {"run": "grpo"}}])
    modules: Modules | None = Field(
        None, min_length=1, description=_MODULES_DOC + " Required unless every panel gives them.",
        examples=[[{"name": "q_proj", "label": "attn. q"}, "gate_proj"], "llama"],
    )
    panels: list[Panel] | None = Field(
        None, min_length=1, description="Several heatmaps side by side, each with its own "
        "`title` and `data`, and optionally its own `layers` and `modules`.",
        examples=[[{"title": "1.5B", "data": {"where": {"model": "1.5b"}}},
                   {"title": "7B", "data": {"where": {"model": "7b"}}}]],
    )
    scale: Literal["shared", "independent"] = Field(
        "shared", description="With panels: `shared` gives all panels one colour domain and one "
        "colorbar, so equal values get equal colours; `independent` gives each its own.",
        examples=["independent"])
    columns: int | None = Field(None, ge=1, description="With panels: at most this many per "
                                "row; default: all in one row.", examples=[2])
    x: Literal["module", "step"] = Field(
        "module", description="With `data.checkpoints`: `module` draws one layer-by-module "
        "heatmap per step (side by side; `columns` wraps them); `step` draws the steps along "
        "the x axis, one heatmap per listed module.", examples=["step"])
    # Defaults are instances, not factories, so that the JSON Schema shows them.
    layers: Layers = Field(Layers(), title="Layers", description="The y axis.",
                           examples=[{"first": 0, "last": 27, "tick_every": 4}])
    domain: tuple[float, float] | Literal["nice"] | None = Field(
        None, description="Colour scale domain [low, high]; values outside are drawn in the end "
        "colours. Default: min..max of the drawn cells. `nice`: min..max rounded outward to a "
        "multiple of 1, 2 or 5 times a power of ten, so the colorbar's labels are round.",
        examples=[[0.12, 0.18], "nice"],
    )
    color: Color = Field(Color(), title="Color", description="The colour scale.",
                         examples=[{"scheme": "blueorange"}])
    legend: Legend = Field(Legend(), title="Legend", description="The colorbar.",
                           examples=[{"title": "update ratio", "format": ".2f"}])
    cell: Cell = Field(Cell(), title="Cell", description="Size of one cell.",
                       examples=[{"width": 24, "height": 12}])
    size: Size | None = Field(None, title="Size", description="Size of the whole figure; "
                              "default: the cells' size plus what surrounds them.",
                              examples=[{"width": "3.25in", "height": "2.4in"}])
    font: Font = Field(Font(), title="Font", description="Typeface and size of all text.",
                       examples=[{"family": "serif", "size": 8}])
    module_labels: ModuleLabels = Field(ModuleLabels(), title="Module labels",
                                        description="The labels under the columns.",
                                        examples=[{"angle": 90}])
    panel_labels: Literal["(a)", "a", "(A)", "A."] | None = Field(
        None, description="With panels: a letter before each panel's title, written in this "
        "style: `(a)`, `a`, `(A)` or `A.`. A figure of one heatmap has none (so a project's "
        "`defaults` may set it).", examples=["(a)"])
    annotate: Annotate | None = Field(None, title="Annotate", description="Write each cell's "
                                      "value in it.", examples=[{"format": ".3f"}])
    output: Output = Field(Output(), title="Output", description="Files to write.",
                           examples=[{"name": "fig3a", "formats": ["svg", "png", "pdf"]}])

    @field_validator("domain")
    @classmethod
    def _increasing(cls, v: tuple[float, float] | str | None) -> tuple[float, float] | str | None:
        if isinstance(v, tuple):
            if not all(math.isfinite(x) and (x == 0 or 1e-300 <= abs(x) <= 1e300) for x in v):
                raise ValueError("must be two finite numbers, each 0 or 1e-300 to 1e300 in size")
            if not v[0] < v[1]:
                raise ValueError(f"must be increasing (low, high), got [{v[0]}, {v[1]}]")
        return v

    @model_validator(mode="after")
    def _views(self, info: ValidationInfo) -> Spec:
        if self.panels is None and not partial(info):
            missing = [k for k in ("data", "modules") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"missing required key `{missing[0]}`")
        mid = self.color.mid
        if mid is not None and isinstance(self.domain, tuple) and \
                not self.domain[0] < mid < self.domain[1]:
            raise ValueError(f"`color.mid` ({mid}) must lie inside the domain "
                             f"[{self.domain[0]}, {self.domain[1]}]")
        return self

    @property
    def views(self) -> list[Panel]:
        """The heatmaps drawn: the panels, or the one the spec describes."""
        if self.panels is not None:
            return list(self.panels)
        assert self.data is not None and self.modules is not None
        return [Panel.model_construct(title=None, data=self.data, modules=self.modules,
                                      layers=self.layers)]

    def view_loc(self, i: int) -> tuple[str | int, ...]:
        """Where view ``i`` was written: ``("panels", i)``, or the top level."""
        return ("panels", i) if self.panels is not None else ()

