"""peft LoRA adapters (data/peft, written by the real peft library through
data/make_peft_adapters.py) read as checkpoints: every metric of every module,
as `figspec table` prints it from the adapter and its base, against the float64
reference (tests/reference.py, no figspec code) of merge_and_unload()'s
weights saved beside each adapter. Neither torch nor peft is needed."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

import reference as ref
import support

DATA = Path(__file__).resolve().parent.parent / "data"
PEFT, REAL = DATA / "peft", DATA / "real"
ADAPTERS = sorted(p.name for p in PEFT.iterdir() if (p / "adapter").is_dir())
CASES = [(m, m, {}) for m in ref.METRICS] + [
    ("changed_fraction tolerance", "changed_fraction", {"tolerance": 1e-3}),
    ("sparsity relative_tolerance", "sparsity", {"relative_tolerance": 0.01}),
]
RUN = PEFT / "llama-run"


def base_of(adapter: Path) -> Path:
    settings = json.loads((adapter / "adapter_config.json").read_text())
    return DATA.parent / settings["base_model_name_or_path"]


def table(run, project: Path, text: str, *args: str) -> tuple[list[dict[str, str]], str]:
    spec = support.write(project / "specs" / "fig.yaml", text)
    code, out, err = run("table", str(spec), "--allow-outside", *args)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out))), err


def merged(folder: Path) -> dict[str, ref.Stored]:
    return ref.read_file(folder / "model.safetensors")


def modules_of(tensors: dict[str, ref.Stored], kind: str = "weight") -> list[str]:
    return sorted({n.split(".", 3)[3].rsplit(".", 1)[0] for n in tensors
                   if n.endswith("." + kind)})


def check(run, project: Path, adapter: Path, tuned: dict[str, ref.Stored],
          cases: list[tuple[str, str, dict]], kind: str = "weight") -> int:
    """A panel per case over every module of the merged weights; each cell
    compared with the reference of the merged weights against the base."""
    base = ref.read_checkpoint(base_of(adapter))
    modules = modules_of(tuned, kind)
    panels = [{"title": t, "data": {"metric": m, **o}, "modules": modules}
              for t, m, o in cases if not (kind == "bias" and m in (
                  "relative_change", "cosine", "update_rank", "update_rank_absolute"))]
    data = {"checkpoint": str(adapter), "base": str(base_of(adapter)), "metric": "norm",
            "tensor": kind}
    rows, _ = table(run, project, f"data: {json.dumps(data)}\npanels: {json.dumps(panels)}\n")
    options = {t: (m, o) for t, m, o in cases}
    for row in rows:
        metric, o = options[row["panel"]]
        name = f"model.layers.{row['layer']}.{row['module']}.{kind}"
        want = ref.metric(metric, tuned[name], base[name], **o)
        assert ref.close(float(row["value"]), want, 1e-9), (adapter, row, want)
    assert len(rows) == len(panels) * len(modules) * 2
    return len(rows)


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_metric_of_an_adapter_is_that_of_its_merged_weights(project: Path, run, name):
    adapter = PEFT / name / "adapter"
    check(run, project, adapter, merged(PEFT / name / "merged"), CASES)


def test_qwen2s_biases_are_the_bases(project: Path, run):
    """LoRA leaves the q/k/v biases as they are: zero update, drawn."""
    adapter = PEFT / "qwen2-lora" / "adapter"
    check(run, project, adapter, merged(PEFT / "qwen2-lora" / "merged"), CASES, kind="bias")


def test_the_adapters_are_what_the_tests_claim():
    """LoRA, rsLoRA with patterns, DoRA, modules_to_save, two architectures,
    and training moved lora_B off zero."""
    configs = {n: json.loads((PEFT / n / "adapter" / "adapter_config.json").read_text())
               for n in ADAPTERS}
    assert {c["peft_type"] for c in configs.values()} == {"LORA"}
    assert any(c["use_rslora"] and c["rank_pattern"] and c["alpha_pattern"]
               for c in configs.values())
    assert sum(c["use_dora"] for c in configs.values()) == 2
    assert any(c["modules_to_save"] for c in configs.values())
    assert {base_of(PEFT / n / "adapter").parent.name for n in ADAPTERS} == {
        "llama-f32-sharded", "qwen2-bf16-sharded"}
    for n in ADAPTERS:
        stored = ref.read_file(PEFT / n / "adapter" / "adapter_model.safetensors")
        bs = [t for k, t in stored.items() if ".lora_B." in k]
        assert bs and all(t.float64().any() for t in bs)


def test_an_adapter_draws_what_its_merged_model_draws_with_either_kernel(project: Path, run,
                                                                         monkeypatch):
    """The numpy and numba paths give the same bits for an adapter; the note
    names the modules the adapter does not target, once."""
    adapter = PEFT / "llama-dora" / "adapter"
    data = {"checkpoint": str(adapter), "base": str(base_of(adapter)),
            "metric": "relative_change"}
    text = f"data: {json.dumps(data)}\nmodules: [q_proj, k_proj, down_proj]\n"
    numba_rows, err = table(run, project, text)
    assert err.count("note:") == 1 and "does not target `self_attn.k_proj`" in err
    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")
    shutil.rmtree(os.environ["FIGSPEC_CACHE"], ignore_errors=True)
    numpy_rows, _ = table(run, project, text)
    assert numba_rows == numpy_rows
    assert {r["value"] for r in numba_rows if r["module"] == "k_proj"} == {"0.0"}


def test_the_update_rank_of_lora_is_its_rank(project: Path, run):
    """rank_pattern gives q_proj rank 2 and layer 1's v_proj rank 6 (over 8 rows)."""
    adapter = PEFT / "llama-rslora" / "adapter"
    data = {"checkpoint": str(adapter), "base": str(base_of(adapter)), "metric": "update_rank"}
    rows, _ = table(run, project, f"data: {json.dumps(data)}\nmodules: [q_proj, v_proj]\n")
    got = {(r["layer"], r["module"]): float(r["value"]) for r in rows}
    assert got == {("0", "q_proj"): 2 / 16, ("1", "q_proj"): 2 / 16,
                   ("0", "v_proj"): 4 / 8, ("1", "v_proj"): 6 / 8}


# -- a Trainer run of adapters --------------------------------------------------------

@pytest.mark.parametrize("compare", ["base", "previous"])
def test_a_run_of_adapters_is_a_trajectory(project: Path, run, compare: str):
    base = ref.read_checkpoint(base_of(RUN / "checkpoint-2"))
    steps = {n: merged(RUN / "merged" / f"checkpoint-{n}") for n in (2, 4, 6)}
    data = {"checkpoints": str(RUN / "checkpoint-*"), "base": str(base_of(RUN / "checkpoint-2")),
            "metric": "update_norm", "compare": compare}
    rows, _ = table(run, project, f"data: {json.dumps(data)}\n"
                    "modules: [self_attn.q_proj, self_attn.v_proj, mlp.down_proj, self_attn.k_proj]\n")
    assert {r["step"] for r in rows} == {"2", "4", "6"}
    for r in rows:
        step = int(r["step"])
        name = f"model.layers.{r['layer']}.{r['module']}.weight"
        against = base if compare == "base" or step == 2 else steps[step - 2]
        want = ref.metric("update_norm", steps[step][name], against[name])
        assert ref.close(float(r["value"]), want, 1e-9), (r, want)


# -- the adapter's files are inputs --------------------------------------------------

def copied_adapter(project: Path, name: str = "llama-lora") -> Path:
    folder = project / "adapter"
    shutil.copytree(PEFT / name / "adapter", folder)
    return folder


def test_editing_the_adapters_config_changes_the_figure_and_its_numbers(project: Path, run):
    """The config is part of the cache's key and of the committed numbers."""
    adapter = copied_adapter(project)
    data = {"checkpoint": "../adapter", "base": str(base_of(PEFT / "llama-lora" / "adapter")),
            "metric": "update_norm"}
    spec = support.write(project / "specs" / "fig.yaml",
                         f"data: {json.dumps(data)}\nmodules: [q_proj]\n")
    code, out, err = run("table", str(spec), "--allow-outside")
    assert code == 0, err
    code, _, err = run("build", str(spec), "--allow-outside")
    assert code == 0, err
    numbers = (project / "specs" / "fig.numbers.json").read_text()
    assert "../adapter/adapter_config.json" in numbers
    assert "../adapter/adapter_model.safetensors" in numbers
    config = adapter / "adapter_config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "lora_alpha": settings["lora_alpha"] * 2}))
    code, again, err = run("table", str(spec), "--allow-outside")
    assert code == 0, err
    before = [float(r["value"]) for r in csv.DictReader(io.StringIO(out))]
    after = [float(r["value"]) for r in csv.DictReader(io.StringIO(again))]
    assert all(ref.close(a, 2 * b) for a, b in zip(after, before))


# -- what is not an adapter, or not one of this base ----------------------------------

def check_error(run, project: Path, checkpoint: str, base: str | None) -> str:
    data = {"checkpoint": checkpoint, "metric": "norm", **({"base": base} if base else {})}
    spec = support.write(project / "specs" / "fig.yaml",
                         f"data: {json.dumps(data)}\nmodules: [q_proj]\n")
    code, _, err = run("check", str(spec), "--allow-outside")
    assert code != 0
    assert "fig.yaml:1:" in err, err
    return err


LLAMA = str(REAL / "llama-f32-sharded" / "base")


def test_an_adapter_without_its_config(project: Path, run):
    adapter = copied_adapter(project)
    (adapter / "adapter_config.json").unlink()
    assert "holds adapter_model.safetensors but no adapter_config.json" in \
        check_error(run, project, "../adapter", LLAMA)


@pytest.mark.parametrize("text, said", [
    ("{not json", "is not JSON"),
    ('{"peft_type": "IA3", "r": 4}', "peft type 'IA3'; figspec reads LORA adapters"),
    ('{"peft_type": "LORA", "r": 0, "lora_alpha": 8}', "gives `r` 0"),
    ('{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "fan_in_fan_out": true}',
     "fan_in_fan_out"),
])
def test_a_broken_or_unsupported_config(project: Path, run, text: str, said: str):
    adapter = copied_adapter(project)
    (adapter / "adapter_config.json").write_text(text)
    assert said in check_error(run, project, "../adapter", LLAMA)


def test_an_adapter_without_a_base(project: Path, run):
    err = check_error(run, project, str(PEFT / "llama-lora" / "adapter"), None)
    assert "is a peft adapter" in err and "data/real/llama-f32-sharded/base" in err


def test_an_adapter_of_another_base(project: Path, run):
    """llama's factors against phi3's base, whose fused modules are not llama's."""
    err = check_error(run, project, str(PEFT / "llama-lora" / "adapter"),
                      str(REAL / "phi3-f32-sharded" / "base"))
    assert "the adapter targets module `model.layers.0.mlp.up_proj`, which the base " \
        "does not hold" in err


def test_factors_that_do_not_fit_the_base(project: Path, run):
    adapter = copied_adapter(project)
    config = adapter / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "r": 3}))
    err = check_error(run, project, "../adapter", LLAMA)
    assert "module `model.layers.0.self_attn.q_proj` of the adapter does not fit the base: " \
        "lora_A is [4, 16]" in err


@pytest.mark.parametrize("metric", ref.TWO_RUNS)
def test_two_adapters_updates_against_each_other_are_their_merged_weights(project: Path, run,
                                                                           metric):
    """`other:` an adapter too: two adapters of one base (LoRA, rsLoRA), their
    updates compared as those of their merged weights."""
    one, two = PEFT / "llama-lora", PEFT / "llama-rslora"
    base_folder = base_of(one / "adapter")
    data = {"checkpoint": str(one / "adapter"), "other": str(two / "adapter"),
            "base": str(base_folder), "metric": metric}
    modules = modules_of(merged(one / "merged"))
    rows, _ = table(run, project, f"data: {json.dumps(data)}\nmodules: {json.dumps(modules)}\n")
    t, o, b = merged(one / "merged"), merged(two / "merged"), ref.read_checkpoint(base_folder)
    for row in rows:
        name = f"model.layers.{row['layer']}.{row['module']}.weight"
        want = ref.two_runs(metric, t[name], o[name], b[name])
        assert ref.close(float(row["value"]), want, 1e-9), (row, want)
    assert len(rows) == len(modules) * 2
