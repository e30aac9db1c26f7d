"""The spec's `data`: where a heatmap's numbers come from (a table, inline
records, a checkpoint, a run's checkpoints) and what a checkpoint source
computes; every field checked against the others here, the files read by
:mod:`figspec.sources`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..sources import metrics
from ..sources.params import param_pattern
from ..sources.registry import BY_SUFFIX
from .base import Model, partial

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^data:", re.I)

Scalar = str | int | float | bool


def _missing_groups(pattern: str | None, groups: tuple[str, ...]) -> list[str]:
    """The named groups a regular expression lacks; ValueError if it is none."""
    if pattern is None:
        return []
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from None
    return [g for g in groups if g not in compiled.groupindex]


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
        if partial(info) and not given:
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
