"""Property-based tests: whatever the input (mutated valid specs, arbitrary
YAML, arbitrary bytes as spec or data), `check` and `build` either succeed or
report clean diagnostics; they never raise anything else."""

from __future__ import annotations

import copy
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import support
from figspec.builder import Options, build, check
from figspec.diagnostics import Diagnostic

REPO = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((REPO / "specs" / "update_ratio_1p5b.yaml").read_text())
BASE["data"]["path"] = "../data/cells.csv"
BASE["data"].pop("where")
BASE["layers"]["last"] = 5
KEYS = ["title", "data", "path", "values", "layout", "layer", "module", "value", "where",
        "modules", "name", "label", "layers", "first", "last", "tick_every", "zero_at",
        "domain", "color", "scheme", "colors", "legend", "format", "output", "formats",
        "scale", "cell", "width", "height", "colour", "lable"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 100), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["svg", "png", "wide", "top", "#fff", "redblue",
                                           ".2f", "q_proj", "../data/cells.csv", "x.json"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=8)


def paths(node, prefix=()):
    """Every location in a nested spec."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(spec))))
        parent = spec
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if not where:
            continue
        last = where[-1]
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(last)
    return spec


def assert_clean(results, spec: Path) -> None:
    for r in results:
        assert r.status in {"checked", "built", "failed"}
        if r.status == "failed":
            assert r.diagnostics
        for d in r.diagnostics:
            assert isinstance(d, Diagnostic)
            assert d.file in {"specs/fig.yaml", "data/cells.csv"}, d
            assert d.message and "\n" not in d.format()
            assert d.line is None or d.line >= 1


def make_project(tmp: Path) -> Path:
    import tempfile

    return support.make_project(Path(tempfile.mkdtemp(dir=tmp)))


SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def run_check(tmp: Path, monkeypatch_chdir, content: bytes):
    root = make_project(tmp)
    monkeypatch_chdir(root)
    spec = root / "specs" / "fig.yaml"
    spec.write_bytes(content)
    assert_clean(check([spec]), spec)


@settings(max_examples=1200, **SETTINGS)
@given(spec=mutated_specs())
def test_check_mutated_specs(spec, tmp_path_factory, monkeypatch_chdir):
    run_check(tmp_path_factory.getbasetemp(), monkeypatch_chdir,
              yaml.safe_dump(spec, allow_unicode=True).encode())


@settings(max_examples=400, **SETTINGS)
@given(text=st.text(alphabet=st.sampled_from(list(string.printable) + ["é", "\u2028", "\t"]),
                    max_size=200))
def test_check_arbitrary_text(text, tmp_path_factory, monkeypatch_chdir):
    run_check(tmp_path_factory.getbasetemp(), monkeypatch_chdir, text.encode())


@settings(max_examples=300, **SETTINGS)
@given(raw=st.binary(max_size=300))
def test_check_arbitrary_bytes(raw, tmp_path_factory, monkeypatch_chdir):
    run_check(tmp_path_factory.getbasetemp(), monkeypatch_chdir, raw)


@settings(max_examples=200, **SETTINGS)
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_check_arbitrary_data_files(raw, tmp_path_factory, monkeypatch_chdir):
    root = make_project(tmp_path_factory.getbasetemp())
    monkeypatch_chdir(root)
    (root / "data" / "cells.csv").write_bytes(b"layer,module,value\n" + raw)
    spec = root / "specs" / "fig.yaml"
    spec.write_text(yaml.safe_dump(BASE))
    assert_clean(check([spec]), spec)


@settings(max_examples=150, **SETTINGS)
@given(spec=mutated_specs())
def test_build_mutated_specs(spec, tmp_path_factory, monkeypatch_chdir):
    root = make_project(tmp_path_factory.getbasetemp())
    monkeypatch_chdir(root)
    path = root / "specs" / "fig.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    results = build([path], Options(out_dir=root / "out"))
    assert_clean(results, path)
    (result,) = results
    written = sorted(p.name for p in (root / "out").iterdir()) if (root / "out").exists() else []
    assert (result.status == "built") == bool(written)
