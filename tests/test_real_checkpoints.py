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
from compiler.sources import checkpoint as source

REAL = Path(__file__).resolve().parent.parent / "data" / "real"
VARIANTS = sorted(p.name for p in REAL.iterdir() if (p / "tuned").is_dir())
#: A layer's tensors: `model.layers.N.<module>.weight`, GPT-2's `transformer.h.N.<module>.weight`.
LAYER_TENSOR = re.compile(r"^(?:model\.layers|transformer\.h)\.(\d+)\.(.+)\.(weight|bias)$")
#: Each panel of the big spec: (title, metric, options).
CASES = [(m, m, {}) for m in ref.METRICS if m != "update_rank"] + [
    ("changed_fraction tolerance", "changed_fraction", {"tolerance": 1e-4}),
    ("sparsity relative_tolerance", "sparsity", {"relative_tolerance": 0.01}),
]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path / "cache"))
    source._MEMORY.clear()


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
