"""The README stays true: CI runs its test command, its reference lists every
field of the spec language, and its example spec is the one in specs/."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from compiler.models import Spec

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
        annotation = info.annotation
        is_list = typing.get_origin(annotation) is list
        candidates = typing.get_args(annotation) or (annotation,)
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if nested:
            out += _field_paths(nested[0], path + ("[]." if is_list else "."))
        else:
            out.append(path)
    return out


def test_reference_lists_every_field():
    table = README.split("### Spec reference", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    fields = set(_field_paths(Spec))
    assert fields - documented == set(), "fields missing from the README reference"
    assert documented - fields - {"modules"} == set(), "README documents fields that do not exist"


def test_readme_example_is_the_shipped_spec():
    example = _fences("yaml")[0]
    shipped = (REPO / "specs" / "update_ratio_1p5b.yaml").read_text()
    body = [line for line in example.splitlines() if not line.startswith("#")]
    assert "\n".join(body) in shipped
