"""The README stays true: CI runs its test command, its reference lists every
field of the spec language, and its example spec is the one in specs/."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from figspec.models import Spec
from figspec.spec import unwrap_annotation

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _fences(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_ci_runs_the_readme_test_command():
    build_cmd, test_cmd = [b.strip() for b in _fences("sh")[:2]]
    assert build_cmd.endswith("figspec build")
    assert test_cmd.endswith("pytest")
    assert test_cmd in (REPO / ".ci" / "run").read_text()


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = unwrap_annotation(info.annotation)
        is_list = typing.get_origin(annotation) is list
        candidates = typing.get_args(annotation) if is_list else (annotation,)
        nested = [c for c in map(unwrap_annotation, candidates)
                  if isinstance(c, type) and issubclass(c, BaseModel)]
        if nested:
            out += _field_paths(nested[0], path + ("[]." if is_list else "."))
        else:
            out.append(path)
    return out


def test_reference_lists_every_field():
    table = README.split("### Spec reference", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    fields = set(_field_paths(Spec))
    # A panel's data, modules and layers are the top-level ones: documented once.
    fields = {f for f in fields if not re.match(r"panels\[\]\.(data|modules|layers)[.\[]", f)}
    fields |= {"panels[].data", "panels[].modules", "panels[].layers"}
    assert fields - documented == set(), "fields missing from the README reference"
    # `modules` and `panels[].x` are documented as a whole as well as field by field.
    extra = {"modules", "panels"}
    assert documented - fields - extra == set(), "README documents fields that do not exist"


def test_readme_example_is_the_shipped_spec():
    example = _fences("yaml")[0]
    shipped = (REPO / "specs" / "update_ratio_1p5b.yaml").read_text()
    body = [line for line in example.splitlines() if not line.startswith("#")]
    assert "\n".join(body) in shipped


def pinned() -> dict[str, str]:
    """constraints.txt: the releases that drew the committed figures."""
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(line.split("#")[0].strip().split("==") for line in lines
                if line.split("#")[0].strip())


def test_the_build_command_pins_every_renderer():
    """Every distribution that shapes a figure's bytes is pinned for the README's
    build command (figspec is this checkout)."""
    from figspec.versions import RENDERERS

    build_cmd = _fences("sh")[0]
    assert "-c constraints.txt" in build_cmd
    assert set(pinned()) == set(RENDERERS) - {"figspec"}


def test_every_figure_the_readme_shows_is_built_from_the_specs(tmp_path: Path):
    """The gallery's images are what `figspec build` writes from specs/, byte for
    byte, with the pinned renderers (the README's build command installs them)."""
    from importlib import metadata

    from figspec.builder import Options, build

    drift = {d: (v, metadata.version(d)) for d, v in pinned().items()
             if metadata.version(d) != v}
    if drift:
        pytest.skip("committed figures were drawn with the releases in constraints.txt; "
                    "installed: " + ", ".join(f"{d} {now} (pinned {v})"
                                              for d, (v, now) in drift.items()))

    shown = set(re.findall(r"\]\((out/[^)]+\.png)\)", README))
    assert len(shown) >= 6  # the five seed figures and the multi-panel one
    results = build([REPO / "specs"], Options(out_dir=tmp_path, jobs=1))
    assert all(r.ok for r in results)
    for image in sorted(shown):
        fresh = tmp_path / Path(image).name
        assert fresh.is_file(), f"{image}: no spec writes it"
        assert (REPO / image).read_bytes() == fresh.read_bytes(), f"{image} is stale"
    for image in re.findall(r"\]\(((?:docs|out)/[^)]+)\)", README):
        assert (REPO / image).is_file(), image


def test_the_metric_table_is_the_one_figspec_computes_from():
    """The README's metric table is made from figspec.sources.metrics: a new
    metric is one row there, and the README must show it."""
    from figspec.sources import metrics

    assert metrics.markdown_table() in README
    assert set(metrics.NAMES) == {m.name for m in metrics.METRICS}
