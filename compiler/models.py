"""The spec language: pydantic models, one per YAML mapping.

Every field carries a description, a default and an example, so that the
JSON Schema generated from these models (``figspec schema``) documents the
language for editors. Unknown keys are errors (``extra="forbid"``).
Checks that need the data (modules present, cells complete) live in
:mod:`compiler.data`; everything here needs the spec alone.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .diagnostics import did_you_mean

#: Vega's continuous colour schemes (vega-scale), the ones that make sense for
#: a quantitative scale. A test checks each against the bundled Vega.
DIVERGING_SCHEMES = (
    "blueorange", "brownbluegreen", "purplegreen", "pinkyellowgreen", "purpleorange",
    "redblue", "redgrey", "redyellowblue", "redyellowgreen", "spectral",
)
SEQUENTIAL_SCHEMES = (
    "blues", "tealblues", "teals", "greens", "browns", "greys", "purples", "warmgreys",
    "reds", "oranges", "turbo", "viridis", "inferno", "magma", "plasma", "cividis",
    "bluegreen", "bluepurple", "goldgreen", "goldorange", "goldred", "greenblue",
    "orangered", "purplebluegreen", "purpleblue", "purplered", "redpurple",
    "yellowgreenblue", "yellowgreen", "yelloworangebrown", "yelloworangered",
    "darkblue", "darkgold", "darkgreen", "darkmulti", "darkred",
    "lightgreyred", "lightgreyteal", "lightmulti", "lightorange", "lighttealblue",
    "rainbow", "sinebow",
)
SCHEMES = DIVERGING_SCHEMES + SEQUENTIAL_SCHEMES

FORMATS = ("svg", "png", "pdf", "html")
DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")

# d3-format's own specifier grammar (d3-format/src/formatSpecifier.js).
_D3_FORMAT = re.compile(r"^(?:(.)?([<>=^]))?([+\-( ])?([$#])?(0)?(\d+)?(,)?(\.\d+)?(~)?([a-z%])?$", re.I)
_D3_TYPES = set("eEfgGrsdoxXcbnp%")
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^data:", re.I)

Scalar = str | int | float | bool


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Data(Model):
    """Where the numbers come from: a file, or records written in the spec."""

    path: str | None = Field(
        None,
        description="Data file, relative to the spec file: .csv, .tsv, .json (a list of records) "
        "or .jsonl. It must lie inside the project. Give either `path` or `values`.",
        examples=["../data/update_ratio_1p5b.csv"],
    )
    values: list[dict[str, Any]] | None = Field(
        None,
        description="Records written inline, instead of `path`.",
        examples=[[{"layer": 0, "module": "q_proj", "value": 0.12}]],
    )
    layout: Literal["long", "wide"] = Field(
        "long",
        description="`long`: one row per cell, with layer, module and value columns. "
        "`wide`: one row per layer, with a layer column and one column per module.",
        examples=["wide"],
    )
    layer: str = Field("layer", description="Column holding the layer index.", min_length=1,
                       examples=["layer_idx"])
    module: str = Field("module", description="Column holding the module name (long layout).",
                        min_length=1, examples=["param"])
    value: str = Field("value", description="Column holding the number (long layout).",
                       min_length=1, examples=["update_ratio"])
    where: dict[str, Scalar] = Field(
        {},
        description="Keep only rows whose columns equal these values.",
        examples=[{"run": "grpo"}],
    )
    aggregate: Literal["mean", "median", "min", "max"] | None = Field(
        None,
        description="Combine several rows for one cell (several seeds, say) into one value. "
        "Without it, two rows for one cell are an error.",
        examples=["mean"],
    )

    @field_validator("path")
    @classmethod
    def _local_file(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if _URL.match(v):
            raise ValueError("network data sources are not supported; download the file into "
                             "the project and give its path")
        if not v.strip():
            raise ValueError("must not be empty")
        suffix = "." + v.rsplit(".", 1)[-1].lower() if "." in v else ""
        if suffix not in DATA_SUFFIXES:
            raise ValueError(f"unknown data file type {suffix or '(no suffix)'!r}; "
                             f"use one of {', '.join(DATA_SUFFIXES)}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Data:
        if (self.path is None) == (self.values is None):
            raise ValueError("give exactly one of `path` (a data file) or `values` (inline records)")
        return self


class Module(Model):
    """One column of the heatmap."""

    name: str = Field(..., min_length=1, description="The module's name as it appears in the data.",
                      examples=["q_proj"])
    label: str | None = Field(None, description="The label drawn under the column; "
                              "defaults to the name.", examples=["attn. q"])

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


class Layers(Model):
    """The y axis: which layers are drawn, and how."""

    first: int = Field(0, ge=0, description="First layer drawn.", examples=[0])
    last: int | None = Field(None, ge=0, description="Last layer drawn; "
                             "defaults to the largest layer in the data.", examples=[27])
    tick_every: int = Field(1, gt=0, description="A tick every this many layers from `first`, "
                            "plus one at `last`.", examples=[4])
    zero_at: Literal["bottom", "top"] = Field("bottom", description="Where layer `first` is drawn.",
                                              examples=["top"])
    title: str | None = Field("layer", description="Title of the layer axis; null for none.",
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
    """The colorbar on the right."""

    title: str | None = Field(None, description="Title above the colorbar.",
                              examples=["update ratio"])
    format: str | None = Field(None, description="d3-format specifier for the colorbar's labels "
                               "(https://d3js.org/d3-format); default: Vega's choice.",
                               examples=[".2f"])

    @field_validator("format")
    @classmethod
    def _d3(cls, v: str | None) -> str | None:
        return _check_d3_format(v)


class Output(Model):
    """Which files are written."""

    name: str | None = Field(None, description="Base name of the files written into the out dir; "
                             "defaults to the spec's file name. A plain file name, no folders.",
                             examples=["fig3a"])
    formats: list[Literal["svg", "png", "pdf", "html"]] = Field(
        ["svg", "png"], min_length=1, description="Files to write.",
        examples=[["svg", "png", "pdf", "html"]],
    )
    scale: float = Field(2.0, ge=0.25, le=8, description="PNG pixels per SVG pixel (2: crisp on "
                         "high-resolution screens and in print).", examples=[2, 4])

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


class Spec(Model):
    """One figure: a layer-by-module heatmap."""

    model_config = ConfigDict(title="figspec", json_schema_extra={
        "$comment": "Generated by `figspec schema` from compiler/models.py; do not edit."})

    title: str | None = Field(None, description="Chart title.",
                              examples=["Qwen2.5-1.5B: update ratio"])
    data: Data = Field(..., title="Data", description="Where the numbers come from.",
                       examples=[{"path": "../data/update_ratio.csv", "where": {"run": "grpo"}}])
    modules: list[Module] = Field(
        ..., min_length=1, description="The x axis, left to right: module names as in the data, "
        "each a string or {name, label}.",
        examples=[[{"name": "q_proj", "label": "attn. q"}, "gate_proj"]],
    )
    # Defaults are instances, not factories, so that the JSON Schema shows them.
    layers: Layers = Field(Layers(), title="Layers", description="The y axis.",
                           examples=[{"first": 0, "last": 27, "tick_every": 4}])
    domain: tuple[float, float] | None = Field(
        None, description="Colour scale domain [low, high]; values outside are drawn in the end "
        "colours. Default: min..max of the drawn cells.", examples=[[0.12, 0.18]],
    )
    color: Color = Field(Color(), title="Color", description="The colour scale.",
                         examples=[{"scheme": "blueorange"}])
    legend: Legend = Field(Legend(), title="Legend", description="The colorbar.",
                           examples=[{"title": "update ratio", "format": ".2f"}])
    cell: Cell = Field(Cell(), title="Cell", description="Size of one cell.",
                       examples=[{"width": 24, "height": 12}])
    output: Output = Field(Output(), title="Output", description="Files to write.",
                           examples=[{"name": "fig3a", "formats": ["svg", "png", "pdf"]}])

    @field_validator("domain")
    @classmethod
    def _increasing(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None:
            if not all(math.isfinite(x) for x in v):
                raise ValueError("must be two finite numbers")
            if not v[0] < v[1]:
                raise ValueError(f"must be increasing (low, high), got [{v[0]}, {v[1]}]")
        return v


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec, as committed in ``schemas/figspec.schema.json``."""
    schema = Spec.model_json_schema(mode="validation")
    # A module may also be written as a bare string (see Module._from_string).
    modules = schema["properties"]["modules"]
    modules["items"] = {"anyOf": [{"type": "string", "minLength": 1}, modules["items"]]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://figspec.dev/schemas/figspec.schema.json"
    return schema
