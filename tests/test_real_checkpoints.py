"""Checkpoints written by transformers' own save_pretrained (data/real, made by
data/make_real_checkpoints.py): every metric of every module of every
architecture, as `figspec table` prints it, against the float64 reference of
tests/reference.py, which shares no code with figspec. Neither torch nor
transformers is needed: the files are committed."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

import reference as ref
import support

REAL = Path(__file__).resolve().parent.parent / "data" / "real"
VARIANTS = sorted(p.name for p in REAL.iterdir() if (p / "tuned").is_dir())
#: A layer's tensors: `model.layers.N.<module>.weight`, GPT-2's `transformer.h.N.<module>.weight`.
LAYER_TENSOR = re.compile(r"^(?:model\.layers|transformer\.h)\.(\d+)\.(.+)\.(weight|bias)$")
#: Each panel of the big spec: (title, metric, options).
CASES = [(m, m, {}) for m in ref.METRICS if not m.startswith("update_rank")] + [
    ("changed_fraction tolerance", "changed_fraction", {"tolerance": 1e-4}),
    ("sparsity relative_tolerance", "sparsity", {"relative_tolerance": 0.01}),
]


def pair(variant: str) -> tuple[dict[str, ref.Stored], dict[str, ref.Stored]]:
    return ref.read_checkpoint(REAL / variant / "tuned"), ref.read_checkpoint(REAL / variant / "base")


def layer_tensors(tensors: dict[str, ref.Stored], kind: str = "weight"
                  ) -> dict[tuple[int, str], str]:
    """(layer, module path) -> tensor name, for every tensor of a layer."""
    out = {}
    for name in tensors:
        m = LAYER_TENSOR.match(name)
        if m and m.group(3) == kind:
            out[(int(m.group(1)), m.group(2))] = name
    return out


def defined(metric: str, t: ref.Stored, b: ref.Stored) -> bool:
    """relative_change divides by ||B||, cosine by ||T|| ||B||: undefined at zero
    (Gemma's norms and every bias start at zero)."""
    if metric == "relative_change":
        return bool(b.float64().any())
    if metric == "cosine":
        return bool(b.float64().any() and t.float64().any())
    if metric == "update_rank":
        return len(t.shape) == 2
    return True


def table(run, project: Path, text: str) -> list[dict[str, str]]:
    spec = support.write(project / "specs" / "fig.yaml", text)
    code, out, err = run("table", str(spec), "--allow-outside")
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def data_yaml(variant: str, metric: str | None = None, **extra: object) -> str:
    data = {"checkpoint": str(REAL / variant / "tuned"), "base": str(REAL / variant / "base"),
            **({"metric": metric} if metric else {}), **extra}
    return json.dumps(data)


def modules_for(cases: list[tuple[str, str, dict]], tuned: dict, base: dict,
                cells: dict[tuple[int, str], str]) -> dict[str, list[str]]:
    """Each case's modules: every module of a layer whose metric is defined in
    every layer."""
    names = sorted({m for _, m in cells})
    return {title: [m for m in names
                    if all(defined(metric, tuned[n], base[n])
                           for (_, mod), n in cells.items() if mod == m)]
            for title, metric, _ in cases}


def check_panels(run, project: Path, variant: str, cases: list[tuple[str, str, dict]],
                 kind: str = "weight") -> int:
    """One spec, a panel per case, every module listed by its full path; every
    printed cell compared with the reference. Returns how many were compared."""
    tuned, base = pair(variant)
    cells = layer_tensors(tuned, kind)
    modules = modules_for(cases, tuned, base, cells)
    panels = [{"title": title, "data": {"metric": metric, **options},
               "modules": modules[title]} for title, metric, options in cases]
    rows = table(run, project, f"data: {data_yaml(variant, 'norm', tensor=kind)}\n"
                 f"panels: {json.dumps(panels)}\n")
    options = {title: (metric, o) for title, metric, o in cases}
    seen = set()
    for row in rows:
        metric, o = options[row["panel"]]
        name = cells[(int(row["layer"]), row["module"])]
        want = ref.metric(metric, tuned[name], base[name], **o)
        got = float(row["value"])
        assert ref.close(got, want), (variant, row["panel"], name, got, want)
        seen.add((row["panel"], name))
    expected = {(title, n) for title, _, _ in cases for (_, m), n in cells.items()
                if m in modules[title]}
    assert seen == expected
    return len(seen)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_metric_of_every_module_matches_the_reference(project: Path, run, variant: str):
    compared = check_panels(run, project, variant, CASES)
    tuned, _ = pair(variant)
    # every tensor of every layer, norms included, was compared for most metrics
    assert compared >= len(layer_tensors(tuned)) * (len(CASES) - 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_update_rank_of_every_matrix_matches_the_reference(project: Path, run, variant: str):
    """Only the matrices are listed; the layers' 1-D norms beside them are not
    drawn, so they are not reduced."""
    compared = check_panels(run, project, variant, [("update_rank", "update_rank", {})])
    assert compared >= 8


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith(("qwen2-", "gpt2-"))])
def test_biases_match_the_reference(project: Path, run, variant: str):
    """q/k/v biases (Qwen2), every Conv1D's and LayerNorm's (GPT-2): they start
    at zero, so relative_change and cosine are left out."""
    cases = [c for c in CASES if c[1] not in ("relative_change", "cosine")]
    compared = check_panels(run, project, variant, cases, kind="bias")
    assert compared >= 6 * len(cases)


def test_the_checkpoints_are_what_the_tests_claim():
    """Each form is there several times, and training changed the weights."""
    forms = {"bf16": 0, "f32": 0, "sharded": 0, "single": 0}
    for v in VARIANTS:
        forms["bf16" if "-bf16" in v else "f32"] += 1
        sharded = (REAL / v / "tuned" / "model.safetensors.index.json").is_file()
        forms["sharded" if sharded else "single"] += 1
        tuned, base = pair(v)
        assert {t.dtype for t in tuned.values()} == {"BF16" if "-bf16" in v else "F32"}
        names = layer_tensors(tuned).values()
        changed = [n for n in names if tuned[n].raw != base[n].raw]
        assert len(changed) > len(names) // 2
    assert min(forms.values()) >= 3, forms


# -- module presets ------------------------------------------------------------------

_ATTENTION = [("attn. q", ["self_attn.q_proj"]), ("attn. k", ["self_attn.k_proj"]),
              ("attn. v", ["self_attn.v_proj"]), ("attn. o", ["self_attn.o_proj"])]
_LLAMA = _ATTENTION + [("mlp. up", ["mlp.up_proj"]), ("mlp. down", ["mlp.down_proj"]),
                       ("mlp. gate", ["mlp.gate_proj"])]
EXPERTS = range(4)
#: Each preset's columns, written out by hand: (label, the module paths of a
#: layer whose tensors the column combines).
PRESETS = {
    "llama": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma2": _LLAMA,
    "gpt2": [("attn. qkv", ["attn.c_attn"]), ("attn. o", ["attn.c_proj"]),
             ("mlp. up", ["mlp.c_fc"]), ("mlp. down", ["mlp.c_proj"])],
    "phi3": [("attn. qkv", ["self_attn.qkv_proj"]), ("attn. o", ["self_attn.o_proj"]),
             ("mlp. gate+up", ["mlp.gate_up_proj"]), ("mlp. down", ["mlp.down_proj"])],
    "mixtral": _ATTENTION + [
        ("experts up", [f"block_sparse_moe.experts.{e}.w3" for e in EXPERTS]),
        ("experts down", [f"block_sparse_moe.experts.{e}.w2" for e in EXPERTS]),
        ("experts gate", [f"block_sparse_moe.experts.{e}.w1" for e in EXPERTS]),
        ("router", ["block_sparse_moe.gate"])],
    "qwen2_moe": _ATTENTION + [
        ("experts up", [f"mlp.experts.{e}.up_proj" for e in EXPERTS]),
        ("experts down", [f"mlp.experts.{e}.down_proj" for e in EXPERTS]),
        ("experts gate", [f"mlp.experts.{e}.gate_proj" for e in EXPERTS]),
        ("shared up", ["mlp.shared_expert.up_proj"]),
        ("shared down", ["mlp.shared_expert.down_proj"]),
        ("shared gate", ["mlp.shared_expert.gate_proj"]), ("router", ["mlp.gate"])],
}
PRESET_VARIANTS = [(p, v) for p in PRESETS for v in VARIANTS
                   if v.split("-")[0] == p or (p == "llama" and v.startswith("llama"))]


def preset_rows(run, project: Path, variant: str, preset: str, metric: str,
                aggregate: str | None = None) -> list[dict[str, str]]:
    extra = {"aggregate": aggregate} if aggregate else {}
    return table(run, project, f"data: {data_yaml(variant, metric, **extra)}\n"
                 f"modules: {preset}\n")


def expected(variant: str, columns: list[tuple[str, list[str]]], metric: str,
             aggregate: str | None) -> list[tuple[int, str, float]]:
    """(layer, label, value) of every cell, layer by layer, from the reference."""
    tuned, base = pair(variant)
    prefix = "transformer.h" if variant.startswith("gpt2") else "model.layers"
    out = []
    for layer in (0, 1):
        for label, paths in columns:
            names = [f"{prefix}.{layer}.{p}.weight" for p in paths]
            values = [ref.metric(metric, tuned[n], base[n]) for n in names]
            out.append((layer, label, ref.combine(values, aggregate)))
    return out


def assert_cells(rows: list[dict[str, str]], want: list[tuple[int, str, float]]) -> None:
    assert [(int(r["layer"]), r["label"]) for r in rows] == [(w[0], w[1]) for w in want]
    for r, (_, label, value) in zip(rows, want):
        assert ref.close(float(r["value"]), value), (label, r["value"], value)


@pytest.mark.parametrize("preset,variant", PRESET_VARIANTS)
def test_each_preset_names_its_architecture_s_modules(project: Path, run, preset: str,
                                                      variant: str):
    """Every column of the preset, in order and labelled, is the tensor (or the
    experts, averaged) the preset says."""
    aggregate = "mean" if preset in ("mixtral", "qwen2_moe") else None
    rows = preset_rows(run, project, variant, preset, "relative_change", aggregate)
    assert_cells(rows, expected(variant, PRESETS[preset], "relative_change", aggregate))


@pytest.mark.parametrize("aggregate", ["mean", "median", "min", "max"])
def test_with_aggregate_the_experts_of_a_layer_fold_into_one_column(project: Path, run,
                                                                    aggregate: str):
    """The routed experts only: the shared expert keeps its own column."""
    rows = preset_rows(run, project, "qwen2_moe-f32", "qwen2_moe", "update_norm", aggregate)
    assert_cells(rows, expected("qwen2_moe-f32", PRESETS["qwen2_moe"], "update_norm",
                                aggregate))


@pytest.mark.parametrize("preset,variant", [("mixtral", "mixtral-bf16-sharded"),
                                            ("qwen2_moe", "qwen2_moe-f32")])
def test_without_aggregate_each_expert_is_a_column(project: Path, run, preset: str,
                                                   variant: str):
    """`experts up` becomes `experts up 0` ... `experts up 3`, in the preset's
    place, each the expert's own tensor."""
    columns = [(f"{label} {e}", [path]) if len(paths) > 1 else (label, paths)
               for label, paths in PRESETS[preset]
               for e, path in (enumerate(paths) if len(paths) > 1 else [(0, None)])]
    rows = preset_rows(run, project, variant, preset, "cosine")
    assert_cells(rows, expected(variant, columns, "cosine", None))
    assert rows[4]["module"] == ("experts.0.w3" if preset == "mixtral" else
                                 "experts.0.up_proj")


def test_experts_listed_by_hand(project: Path, run):
    """`experts.w1` and `experts.2.w1` are names as good as a preset's; each
    tensor feeds one column, the most specific name (expert 2 is not in the
    mean of the others); a name of experts in a model without them is
    reported like any missing module."""
    variant = "mixtral-bf16-sharded"
    rows = table(run, project, f"data: {data_yaml(variant, 'norm', aggregate='mean')}\n"
                 "modules: [experts.2.w1, experts.w1]\n")
    assert_cells(rows, expected(variant, [
        ("experts.2.w1", ["block_sparse_moe.experts.2.w1"]),
        ("experts.w1", [f"block_sparse_moe.experts.{e}.w1" for e in (0, 1, 3)])], "norm",
        "mean"))
    support.write(project / "specs" / "fig.yaml", f"data: {data_yaml('llama-bf16', 'norm')}\n"
                  "modules: [q_proj, experts.w1]\n")
    code, _, err = run("check", "specs/fig.yaml", "--allow-outside")
    assert code == 1 and "module `experts.w1` is not in" in err


def test_a_module_every_expert_ends_with_needs_aggregate_and_says_how_to_draw_each(
        project: Path, run):
    support.write(project / "specs" / "fig.yaml",
                  f"data: {data_yaml('mixtral-bf16-sharded', 'norm')}\nmodules: [w1]\n")
    code, _, err = run("check", "specs/fig.yaml", "--allow-outside")
    assert code == 1 and "a second row for layer 0, module `w1`" in err
    assert "`aggregate: mean`" in err and "list `experts.w1`" in err


@pytest.mark.parametrize("variant,modules,metric,kind,said", [
    ("gemma2-bf16", "[q_proj, input_layernorm]", "update_rank", "weight",
     "tensor `model.layers.0.input_layernorm.weight` has shape [16]"),
    ("qwen2-f32", "[q_proj]", "relative_change", "bias",
     "tensor `model.layers.0.self_attn.q_proj.bias`: its base is all zeros"),
    ("gemma2-bf16", "[pre_feedforward_layernorm]", "cosine", "weight",
     "tensor `model.layers.0.pre_feedforward_layernorm.weight`"),
])
def test_what_a_metric_cannot_say_of_a_real_tensor_is_a_diagnostic(
        project: Path, run, variant: str, modules: str, metric: str, kind: str, said: str):
    """A 1-D norm drawn for update_rank; a bias or a Gemma norm whose base is
    all zeros (as transformers initialises them) for relative_change or cosine."""
    support.write(project / "specs" / "fig.yaml",
                  f"data: {data_yaml(variant, metric, tensor=kind)}\nmodules: {modules}\n")
    code, _, err = run("table", "specs/fig.yaml", "--allow-outside")
    assert code == 1 and said in err, err


def test_each_expert_s_column_is_drawn(project: Path):
    """The figure, not only the table: one labelled column per expert, and one
    cell per layer and column."""
    from figspec.builder import Options, compile_spec

    spec = support.write(project / "specs" / "fig.yaml",
                         f"data: {data_yaml('mixtral-bf16-sharded', 'update_rms')}\n"
                         "modules: mixtral\n")
    sg = support.scenegraph(compile_spec(spec, Options(allow_outside=True)))
    numbered = [f"{label} {e}" if len(paths) > 1 else label
                for label, paths in PRESETS["mixtral"] for e in range(len(paths))]
    assert support.axis_texts(sg)[0] == numbered
    assert len(support.placed(sg, "mark", "rect")) == 2 * len(numbered)  # 2 layers
