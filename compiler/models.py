"""The spec language: pydantic models, one per YAML mapping.

Every field carries a description, a default and an example, so that the
JSON Schema generated from these models (``figspec schema``) documents the
language for editors. Unknown keys are errors (``extra="forbid"``).
Checks that need the data (modules present, cells complete) live in
:mod:`figspec.cells`; everything here needs the spec alone.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .diagnostics import did_you_mean
from .files import FORMATS
from .fonts import FAMILY_NAMES, family_of
from .presets import MODULE_PRESETS, SCHEMES
from .sources import metrics
from .sources.params import param_pattern
from .sources.registry import BY_SUFFIX
from .units import UNITS, to_points

#: The files a figure can be written as.
Format = Literal[FORMATS]  # type: ignore[valid-type]
#: Bounds that keep a hostile spec from costing time or memory: the largest
#: layer index, the most modules, and the longest texts (a 10,000-character
#: title made a 229-megapixel PNG).
MAX_LAYER_INDEX = 1_000_000_000
MAX_MODULES = 1_000
MAX_TITLE = 300
MAX_LABEL = 100

# d3-format's own specifier grammar (d3-format/src/formatSpecifier.js).
_D3_FORMAT = re.compile(
    r"^(?:(.)?([<>=^]))?([+\-( ])?([$#])?(0)?(\d+)?(,)?(\.\d+)?(~)?([a-z%])?$", re.I)
_D3_TYPES = set("eEfgGrsdoxXcbnp%")
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^data:", re.I)

Scalar = str | int | float | bool


def _partial(info: ValidationInfo) -> bool:
    """Validating a partial spec (``_base.yaml``): what is there must be valid,
    nothing is required (the specs extending it give the rest)."""
    return bool(info.context and info.context.get("partial"))


def _missing_groups(pattern: str | None, groups: tuple[str, ...]) -> list[str]:
    """The named groups a regular expression lacks; ValueError if it is none."""
    if pattern is None:
        return []
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from None
    return [g for g in groups if g not in compiled.groupindex]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


#: What a checkpoint source computes from each weight matrix.
Metric = Literal[metrics.NAMES]  # type: ignore[valid-type]
NEEDS_BASE = metrics.NEEDS_BASE
_CHECKPOINT_ONLY = ("base", "metric", "tolerance", "relative_tolerance", "other", "heads")
#: What goes with `checkpoints` (a run's checkpoints) only.
_TRAJECTORY_ONLY = ("step", "compare", "steps", "others")
#: The metrics of two runs' updates from one base (`other`, `others`).
NEEDS_OTHER = metrics.NEEDS_OTHER


class Every(Model):
    """Every N-th step: the steps that are multiples of N."""

    every: int = Field(..., ge=1, description="Draw the steps that are multiples of this.",
                       examples=[200])


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
    layout: Literal["long", "wide", "params"] = Field(
        "long",
        description="`long`: one row per cell, with layer, module and value columns. "
        "`wide`: one row per layer, with a layer column and one column per module. "
        "`params`: keyed by full parameter names (`model.layers.12.self_attn.q_proj.weight`), "
        "either a JSON object of name to number or a table with `param` and `value` columns; "
        "the layer and module are found in the name by `pattern`, and parameters without a "
        "layer (embeddings, `lm_head`, final norms) are skipped.",
        examples=["wide", "params"],
    )
    param: str = Field("param", min_length=1, description="Column holding the full parameter "
                       "name (`layout: params`, tables only).", examples=["name"])
    pattern: str | None = Field(
        None, description="Regular expression finding the layer and module in a parameter name "
        "(`layout: params`), with named groups `layer` and `module`. The default handles "
        "Llama, Qwen, Mistral and GPT-2 style names. A module in the spec matches the "
        "`module` group exactly or as its last dotted parts (`q_proj` matches "
        "`self_attn.q_proj`); `experts.w1` matches every expert's `experts.N.w1`.",
        examples=[r"blk\.(?P<layer>\d+)\.(?P<module>\w+)"],
    )
    layer: str = Field("layer", description="Column holding the layer index.", min_length=1,
                       examples=["layer_idx"])
    module: str = Field("module", description="Column holding the module name (long layout).",
                        min_length=1, examples=["param"])
    value: str = Field("value", description="Column holding the number (long layout).",
                       min_length=1, examples=["update_ratio"])
    where: dict[str, Scalar | list[Scalar]] = Field(
        {},
        description="Keep only rows whose columns equal these values; a list allows any of "
        "its values.", examples=[{"run": "grpo"}, {"seed": [1, 2, 3]}],
    )
    aggregate: Literal["mean", "median", "min", "max"] | None = Field(
        None,
        description="Combine several rows for one cell (several seeds, say; a layer's "
        "experts) into one value. Without it, two rows for one cell are an error, and a module "
        "naming experts (`experts.w1`) is drawn as one column per expert.",
        examples=["mean"],
    )
    checkpoint: str | None = Field(
        None, description="A safetensors checkpoint to compute `metric` from: a folder (with "
        "model.safetensors.index.json, or *.safetensors files) or one .safetensors file; "
        "relative to the spec, or `$ROOT/...` for a root named in figspec.yaml's `roots:`. "
        "Instead of `path` or `values`.", examples=["../ckpt/qwen2.5-1.5b-grpo",
                                                   "$ckpt/qwen2.5-1.5b-grpo"])
    base: str | None = Field(
        None, description="The checkpoint `checkpoint` is compared against, for metrics that "
        "compare two (the same forms of path).", examples=["$ckpt/qwen2.5-1.5b"])
    metric: Metric | None = Field(
        None, description=metrics.schema_description(),
        examples=["relative_change"])
    tolerance: float | None = Field(
        None, ge=0, description="changed_fraction and sparsity: an entry changed when "
        "|T - B| > tolerance (absolute). Default: compared exactly as stored.",
        examples=[1e-5])
    relative_tolerance: float | None = Field(
        None, ge=0, description="changed_fraction and sparsity: an entry changed when "
        "|T - B| > relative_tolerance * max(|T|, |B|).", examples=[1e-3])
    tensor: Literal["weight", "bias"] = Field(
        "weight", description="With `checkpoint`: which tensors of each module are used.",
        examples=["bias"])
    heads: bool | Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="With `checkpoint` or `checkpoints`: draw each attention head in a "
        "column of its own (`q_proj 0`, `q_proj 1`, ...): `true` for every listed module "
        "(each must be an attention projection: q, k, v, o, Phi-3's fused `qkv_proj`, GPT-2's "
        "`c_attn` and `attn.c_proj`), or a list of the listed modules to split. The heads "
        "come from the checkpoint's config.json (`num_attention_heads`, "
        "`num_key_value_heads`, `head_dim`). One module listed makes a layer-by-head heatmap.",
        examples=[True, ["q_proj", "o_proj"]])
    checkpoints: str | None = Field(
        None, description="A run's checkpoints, one step each: a glob (`*`, `?`, `[...]` in "
        "its last part only) of checkpoint folders or .safetensors files, relative to the "
        "spec or `$ROOT/...`, each compared as `compare` says. Instead of `checkpoint`.",
        examples=["$runs/qwen2.5-1.5b-grpo/checkpoint-*"])
    step: str | None = Field(
        None, description="With `checkpoints`: a regular expression with a named group `step` "
        "finding the step in a checkpoint's name. Default: `global_step` of the folder's "
        "trainer_state.json, else the last whole number in its name.",
        examples=[r"checkpoint-(?P<step>\d+)"])
    compare: Literal["base", "previous"] | None = Field(
        None, description="With `checkpoints`: `base` compares each checkpoint with `base`; "
        "`previous` each with the step drawn before it (the first with `base`): what "
        "changed in each interval. Default: `base`.", examples=["previous"])
    steps: list[int] | Every | Literal["last"] | None = Field(
        None, description="With `checkpoints`: which steps to draw: a list of steps, "
        "`{every: N}` (the multiples of N), or `last` (the newest complete one). Default: all.",
        examples=[[100, 500, 1000], {"every": 200}, "last"])
    other: str | None = Field(
        None, description="With `checkpoint` and a metric of two runs' updates "
        "(`update_cosine`, `update_difference`): a second run's checkpoint from the same "
        "`base`, whose update is compared with `checkpoint`'s (the same forms of path).",
        examples=["$ckpt/qwen2.5-1.5b-rl"])
    others: str | None = Field(
        None, description="With `checkpoints` and a metric of two runs' updates: the second "
        "run's checkpoints (a glob, as `checkpoints`), matched to the first run's by step; "
        "each step compares the two runs' updates from `base`.",
        examples=["$runs/qwen2.5-1.5b-rl/checkpoint-*"])

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
        if suffix not in BY_SUFFIX:
            raise ValueError(f"unknown data file type {suffix or '(no suffix)'!r}; "
                             f"use one of {', '.join(BY_SUFFIX)}")
        return v

    @field_validator("pattern")
    @classmethod
    def _groups(cls, v: str | None) -> str | None:
        missing = _missing_groups(v, ("layer", "module"))
        if missing:
            raise ValueError("needs the named groups `(?P<layer>...)` and `(?P<module>...)`; "
                             f"missing: {', '.join(missing)}")
        return v

    @field_validator("step")
    @classmethod
    def _step_group(cls, v: str | None) -> str | None:
        if _missing_groups(v, ("step",)):
            raise ValueError("needs a named group `(?P<step>...)` around the step's digits")
        return v

    @field_validator("other", "others")
    @classmethod
    def _two_run_metric(cls, v: str | None, info: ValidationInfo) -> str | None:
        metric = info.data.get("metric")
        if v is not None and metric is not None and metric not in NEEDS_OTHER:
            raise PydanticCustomError("value_error", f"`{info.field_name}` names a second run, "
                                      f"whose update goes with a metric of two runs' updates, "
                                      f"not `{metric}`", {"hint": "use `metric: update_cosine` "
                                      "or `update_difference`, or leave out "
                                      f"`{info.field_name}`"})
        return v

    @property
    def param_pattern(self) -> re.Pattern[str]:
        """`pattern`, or the default that finds Llama-, Qwen- and GPT-2-style names."""
        return param_pattern(self.pattern)

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_rows_are_params(cls, v: Any) -> Any:
        """A checkpoint's rows are keyed by tensor names: `layout: params`."""
        if isinstance(v, dict) and "layout" not in v and (
                v.get("checkpoint") is not None or v.get("checkpoints") is not None):
            return {**v, "layout": "params"}
        return v

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> Data:
        given = [k for k in ("path", "values", "checkpoint", "checkpoints")
                 if getattr(self, k) is not None]
        if _partial(info) and not given:
            return self  # the spec extending it gives the source
        if len(given) != 1:
            raise ValueError("give exactly one of `path` (a data file), `values` (inline "
                             "records), `checkpoint` (a safetensors checkpoint) or "
                             "`checkpoints` (a run's checkpoints)")
        if self.checkpoints is None:
            extra = [k for k in _TRAJECTORY_ONLY if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"`{extra[0]}` goes with `checkpoints`")
        if self.checkpoint is None and self.checkpoints is None:
            extra = [k for k in _CHECKPOINT_ONLY if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"`{extra[0]}` goes with `checkpoint`")
            return self
        if self.metric is None:
            raise ValueError("with `checkpoint` or `checkpoints`, give the `metric` to "
                             "compute, such as `relative_change`")
        _two_runs(self)
        if self.compare is not None and self.metric not in NEEDS_BASE:
            raise ValueError(f"`compare` goes with metrics that compare two checkpoints, not "
                             f"`{self.metric}`")
        if self.layout != "params":
            raise ValueError("a checkpoint's rows are its tensors: leave out `layout`")
        if self.metric in NEEDS_BASE and self.base is None:
            raise ValueError(f"metric `{self.metric}` compares two checkpoints: give `base`")
        if (self.tolerance is not None or self.relative_tolerance is not None) and \
                self.metric not in ("changed_fraction", "sparsity"):
            raise ValueError("`tolerance` and `relative_tolerance` go with `changed_fraction` "
                             "and `sparsity`")
        if self.tolerance is not None and self.relative_tolerance is not None:
            raise ValueError("give `tolerance` or `relative_tolerance`, not both")
        return self


def _two_runs(data: Data) -> None:
    """A metric of two runs' updates: the second run and the base given, as
    the first run is (`other` for `checkpoint`, `others` for `checkpoints`)."""
    if data.checkpoint is not None and data.others is not None:
        raise PydanticCustomError("value_error", "`others` goes with `checkpoints`",
                                  {"hint": "with `checkpoint`, name the second run's "
                                   "checkpoint in `other`"})
    if data.checkpoints is not None and data.other is not None:
        raise PydanticCustomError("value_error", "`other` goes with `checkpoint`",
                                  {"hint": "with `checkpoints`, name the second run's "
                                   "checkpoints in `others` (a glob, matched by step)"})
    if data.metric not in NEEDS_OTHER:
        return
    key = "other" if data.checkpoint is not None else "others"
    if getattr(data, key) is None:
        raise PydanticCustomError("value_error", f"metric `{data.metric}` compares the update "
                                  f"of two runs: give `{key}`, the second run's", {
                                      "hint": f"`{key}` names the run compared with "
                                      f"`{'checkpoint' if key == 'other' else 'checkpoints'}`; "
                                      "both start from `base`"})
    if data.base is None:
        raise PydanticCustomError("value_error", f"metric `{data.metric}` compares the updates "
                                  f"of two runs from one base: give `base`", {
                                      "hint": "`base` is the checkpoint both runs started "
                                      "from (each update is a run's weights minus it)"})
    if data.compare == "previous":
        raise PydanticCustomError("value_error", f"metric `{data.metric}` compares each run's "
                                  "update from `base`: `compare: previous` does not go with it",
                                  {"hint": "leave out `compare`"})


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
        if _partial(info):
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
        "$comment": "Generated by `figspec schema` from compiler/models.py; do not edit."})

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
        if self.panels is None and not _partial(info):
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

