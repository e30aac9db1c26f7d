"""The JSON Schema: committed, current, and satisfied by every example spec."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from figspec.commands.schema import json_schema
from figspec.presets import SCHEMES

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "schemas" / "figspec.schema.json"


def test_committed_schema_is_current(run):
    code, out, _ = run("schema")
    assert code == 0
    assert json.loads(out) == json_schema()
    assert COMMITTED.read_text() == out, "run: figspec schema > schemas/figspec.schema.json"


@pytest.mark.parametrize("spec", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_satisfy_the_schema(spec: Path):
    jsonschema.Draft202012Validator(json.loads(COMMITTED.read_text())).validate(
        yaml.safe_load(spec.read_text()))


def test_every_field_has_a_title_description_default_and_example():
    schema = json_schema()
    for name, model in [*schema["$defs"].items(), ("Spec", schema)]:
        assert model.get("description"), name
        for field, prop in model["properties"].items():
            # A field that refers to a model carries the title on the model's definition.
            target = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else {}
            for key in ("title", "description", "examples"):
                assert prop.get(key, target.get(key)) is not None, f"{name}.{field} has no {key}"
            if field not in model.get("required", []):
                assert "default" in prop, f"{name}.{field} has no default"


def test_the_schema_rejects_what_the_compiler_rejects():
    v = jsonschema.Draft202012Validator(json_schema())
    good = {"data": {"path": "a.csv"}, "modules": ["q", {"name": "k", "label": "K"}]}
    assert not list(v.iter_errors(good))
    for bad in ({**good, "colour": 1}, {"data": {"path": "a.csv"}},
                {**good, "color": {"scheme": "nope"}}, {**good, "layers": {"zero_at": "up"}}):
        assert list(v.iter_errors(bad)), bad


def _fills(scheme: str) -> list[str | None]:
    from support import marks, scenegraph

    vl = {"data": {"values": [{"x": "a", "v": 0}, {"x": "b", "v": 0.5}, {"x": "c", "v": 1}]},
          "mark": "rect",
          "encoding": {"x": {"field": "x", "type": "nominal"},
                       "color": {"field": "v", "type": "quantitative",
                                 "scale": {"scheme": scheme}}}}
    return [item.get("fill") for item in marks(scenegraph(vl), "mark", "rect")]


def test_every_scheme_is_known_to_the_bundled_vega():
    # Vega only logs an unknown scheme and draws the cells without a fill, so
    # a scheme is known when its low end and middle are drawn in two different
    # colours (cyclical schemes such as rainbow end where they start).
    for scheme in SCHEMES:
        low, high, _ = _fills(scheme)
        assert low and high and low != high, scheme
    low, high, _ = _fills("notascheme")
    assert not (low and high and low != high)
