"""Attention heads as columns (`data.heads`): every metric of every head of
the committed real checkpoints (data/real: Llama, Qwen2 with grouped-query
attention and q/k/v biases, Phi-3's fused qkv_proj, GPT-2's transposed
c_attn), as `figspec table` prints it, against the float64 reference
(tests/reference.py), which cuts each head from its definition; both
kernel paths; the columns and labels drawn; the cache and the committed
numbers keyed by the heads."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import reference as ref
import support

REAL = Path(__file__).resolve().parent.parent / "data" / "real"
#: (variant, attention modules as listed, their module paths)
ATTENTION = {
    "llama-bf16": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
    "llama-f32-sharded": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj"],
    "qwen2-f32": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
    "qwen2-bf16-sharded": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj"],
    "gemma2-bf16": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                    "self_attn.o_proj"],
    "phi3-bf16": ["self_attn.qkv_proj", "self_attn.o_proj"],
    "phi3-f32-sharded": ["self_attn.qkv_proj", "self_attn.o_proj"],
    "gpt2-f32": ["attn.c_attn", "attn.c_proj"],
}
BIASES = {"qwen2-f32": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
          "qwen2-bf16-sharded": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
          "gpt2-f32": ["attn.c_attn"]}
METRICS = [m for m in ref.METRICS if m != "update_rank"]


def table(run, project: Path, data: dict, modules: list[str]) -> list[dict[str, str]]:
    spec = support.write(project / "specs" / "fig.yaml",
                         f"data: {json.dumps(data)}\nmodules: {json.dumps(modules)}\n")
    code, out, err = run("table", str(spec), "--allow-outside")
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def pair_data(variant: str, metric: str, **extra: object) -> dict:
    return {"checkpoint": str(REAL / variant / "tuned"), "base": str(REAL / variant / "base"),
            "metric": metric, "heads": True, **extra}


def expected(variant: str, path: str, layer: int, head: str, metric: str, kind: str = "weight"
             ) -> float:
    """The reference's metric of one head, cut as the definition says."""
    tuned, base = (ref.read_checkpoint(REAL / variant / side) for side in ("tuned", "base"))
    config = json.loads((REAL / variant / "tuned" / "config.json").read_text())
    prefix = "transformer.h" if variant.startswith("gpt2") else "model.layers"
    name = f"{prefix}.{layer}.{path}.{kind}"
    index = ref.heads(path, kind, config)[head]
    return ref.metric(metric, ref.Part(tuned[name], index), ref.Part(base[name], index))


def check(rows: list[dict[str, str]], variant: str, paths: list[str], metric: str,
          kind: str = "weight") -> int:
    config = json.loads((REAL / variant / "tuned" / "config.json").read_text())
    compared = 0
    for row in rows:
        listed, _, head = row["module"].partition(".heads.")
        path = next(p for p in paths if p == listed or p.endswith("." + listed))
        want = expected(variant, path, int(row["layer"]), head, metric, kind)
        assert ref.close(float(row["value"]), want), (row, want)
        compared += 1
    # every head of every module of every layer, and nothing else
    layers = {r["layer"] for r in rows}
    assert compared == len(layers) * sum(len(ref.heads(p, kind, config)) for p in paths)
    return compared


def listed(paths: list[str]) -> list[str]:
    return [p.rsplit(".", 1)[-1] if not p.startswith("attn.") else p for p in paths]


@pytest.mark.parametrize("variant", sorted(ATTENTION))
@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_of_every_head_matches_the_reference(project: Path, run, variant: str,
                                                          metric: str):
    paths = ATTENTION[variant]
    extra = {"relative_tolerance": 0.01} if metric == "sparsity" else {}
    rows = table(run, project, pair_data(variant, metric, **extra), listed(paths))
    if metric == "sparsity":  # the reference takes the same option
        for row in rows:
            name, _, head = row["module"].partition(".heads.")
            path = next(p for p in paths if p == name or p.endswith("." + name))
            tuned, base = (ref.read_checkpoint(REAL / variant / s) for s in ("tuned", "base"))
            config = json.loads((REAL / variant / "tuned" / "config.json").read_text())
            prefix = "transformer.h" if variant.startswith("gpt2") else "model.layers"
            t = f"{prefix}.{row['layer']}.{path}.weight"
            index = ref.heads(path, "weight", config)[head]
            want = ref.metric("sparsity", ref.Part(tuned[t], index), ref.Part(base[t], index),
                              relative_tolerance=0.01)
            assert ref.close(float(row["value"]), want)
        return
    assert check(rows, variant, paths, metric) > 0


@pytest.mark.parametrize("variant", sorted(ATTENTION))
def test_update_rank_of_every_head_matches_the_reference(project: Path, run, variant: str):
    paths = ATTENTION[variant]
    rows = table(run, project, pair_data(variant, "update_rank"), listed(paths))
    check(rows, variant, paths, "update_rank")


@pytest.mark.parametrize("variant", sorted(BIASES))
def test_the_biases_of_q_k_and_v_are_cut_into_heads(project: Path, run, variant: str):
    paths = BIASES[variant]
    for metric in ("update_norm", "norm", "changed_fraction"):
        rows = table(run, project, pair_data(variant, metric, tensor="bias"), listed(paths))
        check(rows, variant, paths, metric, "bias")


def test_grouped_query_attention_gives_k_and_v_fewer_heads(project: Path, run):
    rows = table(run, project, pair_data("qwen2-f32", "norm"), ["q_proj", "k_proj", "v_proj"])
    assert [r["label"] for r in rows if r["layer"] == "0"] == [
        "q_proj 0", "q_proj 1", "k_proj 0", "v_proj 0"]  # 2 heads, 1 key/value head
    rows = table(run, project, pair_data("phi3-bf16", "norm"), ["qkv_proj"])
    assert [r["label"] for r in rows if r["layer"] == "0"] == [
        "qkv_proj q0", "qkv_proj q1", "qkv_proj k0", "qkv_proj v0"]


def test_heads_can_split_some_modules_and_leave_others_whole(project: Path, run):
    rows = table(run, project, pair_data("llama-bf16", "update_norm", heads=["o_proj"]),
                 ["q_proj", "o_proj", "down_proj"])
    assert [r["module"] for r in rows if r["layer"] == "1"] == [
        "q_proj", "o_proj.heads.0", "o_proj.heads.1", "down_proj"]


def test_aggregate_folds_the_heads_of_a_module_into_one_cell(project: Path, run):
    rows = table(run, project, pair_data("llama-bf16", "update_norm", aggregate="max"),
                 ["q_proj"])
    heads = [expected("llama-bf16", "self_attn.q_proj", 0, h, "update_norm") for h in "01"]
    assert [r["module"] for r in rows] == ["q_proj", "q_proj"]
    assert ref.close(float(rows[0]["value"]), max(heads))


def test_both_kernel_paths_give_the_same_heads(project: Path, run, monkeypatch, tmp_path):
    data = pair_data("qwen2-f32", "relative_change")
    numba = table(run, project, data, ["q_proj", "k_proj", "o_proj"])
    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path / "other-cache"))
    assert table(run, project, data, ["q_proj", "k_proj", "o_proj"]) == numba


def test_another_config_cuts_other_heads_and_the_figure_is_stale(project: Path, run):
    """config.json is an input: its heads key the cached sums and the
    committed numbers, so a changed head count is never drawn from old sums."""
    for side in ("tuned", "base"):
        shutil.copytree(REAL / "llama-bf16" / side, project / "ck" / side)
    data = {"checkpoint": "../ck/tuned", "base": "../ck/base", "metric": "norm", "heads": True}
    spec = support.write(project / "specs" / "fig.yaml",
                         f"data: {json.dumps(data)}\nmodules: [q_proj]\n")
    assert run("build", str(spec))[0] == 0
    numbers = project / "specs" / "fig.numbers.json"
    assert "q_proj.heads.1.weight" in numbers.read_text()
    code, out, _ = run("table", str(spec))
    assert [r["label"] for r in csv.DictReader(io.StringIO(out))][:2] == ["q_proj 0", "q_proj 1"]
    config = project / "ck" / "tuned" / "config.json"
    values = json.loads(config.read_text())
    values.update(num_attention_heads=4, head_dim=4)
    config.write_text(json.dumps(values))
    code, out, err = run("status", str(spec))
    assert "stale" in out + err
    code, out, err = run("table", str(spec))
    assert code == 0, err
    got = list(csv.DictReader(io.StringIO(out)))
    assert [r["label"] for r in got if r["layer"] == "0"] == [f"q_proj {h}" for h in range(4)]
    tuned = ref.read_checkpoint(project / "ck" / "tuned")
    q = tuned["model.layers.0.self_attn.q_proj.weight"]
    assert ref.close(float(got[1]["value"]), ref.metric("norm", ref.Part(q, slice(4, 8)), None))
    assert run("build", str(spec))[0] == 0
    assert "q_proj.heads.3.weight" in numbers.read_text()


def test_a_figure_of_heads_is_drawn_from_its_committed_numbers(project: Path, run):
    for side in ("tuned", "base"):
        shutil.copytree(REAL / "qwen2-f32" / side, project / "ck" / side)
    data = {"checkpoint": "../ck/tuned", "base": "../ck/base", "metric": "update_rank",
            "heads": True}
    spec = support.write(project / "specs" / "fig.yaml",
                         f"data: {json.dumps(data)}\nmodules: [q_proj, o_proj]\n")
    assert run("build", str(spec))[0] == 0
    computed = run("table", str(spec))[1]
    shutil.rmtree(project / "ck")
    code, out, err = run("table", str(spec))
    assert code == 0, err
    assert out == computed
    assert "committed numbers" in err
    # the spec asks for another cut than the numbers hold: said, never drawn
    support.write(spec, f"data: {json.dumps({**data, 'heads': ['o_proj']})}\n"
                        "modules: [q_proj, o_proj]\n")
    code, _, err = run("table", str(spec))
    assert code == 1
    assert "hold module `q_proj` head by head" in err and "fig.yaml:1:" in err


def test_a_run_s_checkpoints_are_cut_into_heads_step_by_step(project: Path, run):
    import checkpoints

    folder = checkpoints.make_run(project / "ck", [100, 200])
    for config in [folder.parent / "base", *sorted(folder.iterdir())]:
        (config / "config.json").write_text('{"num_attention_heads": 2}')
    checkpoints.settle(project / "ck")
    for compare in ("base", "previous"):
        data = {"checkpoints": "../ck/run/checkpoint-*", "base": "../ck/base",
                "metric": "update_norm", "heads": True, "compare": compare}
        rows = table(run, project, data, ["q_proj", "o_proj"])
        assert {r["step"] for r in rows} == {"100", "200"}
        for row in rows:
            listed_as, _, head = row["module"].partition(".heads.")
            h = int(head)
            against = "base" if compare == "base" or row["step"] == "100" else "run/checkpoint-100"
            t = ref.read_checkpoint(project / "ck" / "run" / f"checkpoint-{row['step']}")
            b = ref.read_checkpoint(project / "ck" / against)
            name = f"model.layers.{row['layer']}.self_attn.{listed_as}.weight"
            index = np.s_[:, 6 * h:6 * h + 6] if listed_as == "o_proj" else np.s_[4 * h:4 * h + 4]
            want = ref.metric("update_norm", ref.Part(t[name], index), ref.Part(b[name], index))
            assert ref.close(float(row["value"]), want), row


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_a_head_of_o_larger_than_a_chunk_is_read_row_by_row_in_spans(
        project: Path, run, monkeypatch, kernel: str):
    """o_proj's heads are strided: 3000 rows of 700 (7 heads of 100 columns),
    so a head's 300,000 entries cross the reduction's 262,144-entry chunk in
    the middle of a row and take many spans of rows."""
    import checkpoints

    monkeypatch.setenv("FIGSPEC_KERNEL", kernel)
    rng = np.random.default_rng(5)
    b = rng.normal(0, 0.02, size=(3000, 700))
    t = b + rng.normal(0, 1e-3, size=b.shape) * (np.arange(700) // 100 + 1)
    name = "model.layers.0.self_attn.o_proj.weight"
    for side, values in (("base", b), ("tuned", t)):
        checkpoints.write_safetensors(project / "ck" / side / "model.safetensors",
                                      {name: ("F32", b.shape, checkpoints.encode(values, "F32"))})
        (project / "ck" / side / "config.json").write_text(
            '{"num_attention_heads": 7, "hidden_size": 700}')
    data = {"checkpoint": "../ck/tuned", "base": "../ck/base", "heads": True}
    tuned, base = (ref.read_checkpoint(project / "ck" / s) for s in ("tuned", "base"))
    for metric in ("update_norm", "cosine", "max_abs", "update_rank"):
        rows = table(run, project, {**data, "metric": metric}, ["o_proj"])
        assert len(rows) == 7
        for h, row in enumerate(rows):
            index = np.s_[:, 100 * h:100 * h + 100]
            want = ref.metric(metric, ref.Part(tuned[name], index), ref.Part(base[name], index))
            assert ref.close(float(row["value"]), want), (metric, h, row, want)


def test_the_bias_of_the_output_projection_has_no_heads(project: Path, run):
    spec = support.write(project / "specs" / "fig.yaml", "data: " + json.dumps(
        pair_data("gpt2-f32", "norm", tensor="bias")) + "\nmodules: [attn.c_proj]\n")
    code, _, err = run("check", str(spec), "--allow-outside")
    assert code == 1
    assert "attn.c_proj.bias`: the output projection's bias is added after the heads are " \
        "summed: it has no heads" in err and "fig.yaml:2:" in err


def test_a_table_of_parameter_names_with_heads_draws_a_column_per_head(project: Path, run):
    values = [{"param": f"model.layers.{layer}.self_attn.q_proj.heads.{h}.weight",
               "value": layer + h / 10} for layer in range(2) for h in range(3)]
    spec = support.write(project / "specs" / "fig.yaml", "data: " + json.dumps(
        {"values": values, "layout": "params"}) + "\nmodules: [{name: q_proj, label: head}]\n")
    code, out, err = run("table", str(spec))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["label"] for r in rows[:3]] == ["head 0", "head 1", "head 2"]
    assert [float(r["value"]) for r in rows] == [0, 0.1, 0.2, 1, 1.1, 1.2]
