"""The spec language's models: documented fields, one list of formats."""

from __future__ import annotations

import typing

from pydantic import BaseModel

from figspec import models
from figspec.files import FORMATS
from figspec.models import base, data


def _models() -> list[type[BaseModel]]:
    """Every model of the spec language, in whichever of its modules."""
    return [m for module in (models, base, data) for m in vars(module).values()
            if isinstance(m, type) and issubclass(m, BaseModel) and m is not models.Model
            and m.__module__ == module.__name__]


def test_every_model_is_found():
    assert {"Spec", "Panel", "Data", "Every"} <= {m.__name__ for m in _models()}


def test_every_field_is_documented():
    for model in _models():
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


def test_the_formats_a_spec_may_name_are_the_renderer_s():
    (annotation,) = typing.get_args(models.Output.model_fields["formats"].annotation)
    assert typing.get_args(annotation) == FORMATS


def test_a_partial_spec_requires_nothing():
    assert models.Spec.model_validate({"font": {"family": "serif"}},
                                      context={"partial": True}).data is None
