"""YAML text -> validated :class:`~compiler.models.Spec`, with diagnostics at
the node that is wrong.

pydantic reports each error with a location path such as
``("layers", "tick_every")``; the loaded :class:`~compiler.source.Document`
knows the line and column of every such path, so each error is reported
where it was written, with a "did you mean" where a typo is likely.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .diagnostics import Diagnostic, FigspecError, did_you_mean
from .models import Spec
from .source import Document, dotted, load_yaml


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec and the document it was read from."""

    path: Path
    doc: Document
    spec: Spec

    @property
    def name(self) -> str:
        """Base name of the output files."""
        return self.spec.output.name or self.path.stem


def load_spec(path: Path) -> LoadedSpec:
    """Read and validate one spec file, or raise FigspecError with every problem."""
    doc = load_yaml(path)
    return LoadedSpec(path=path, doc=doc, spec=validate(doc))


def validate(doc: Document) -> Spec:
    if doc.data is None:
        raise FigspecError([doc.diagnostic((), "empty spec: expected a mapping with at least "
                                           "`data` and `modules`")])
    if not isinstance(doc.data, dict):
        kind = {list: "a list", str: "a string", int: "a number", float: "a number",
                bool: "true/false"}.get(type(doc.data), type(doc.data).__name__)
        raise FigspecError([doc.diagnostic((), f"a spec must be a mapping of keys to values, "
                                           f"not {kind}", "start with `data:` and `modules:`")])
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as e:
        raise FigspecError([_diagnostic(doc, err) for err in e.errors()]) from None
    problems = _listed_twice(doc, spec)
    if problems:
        raise FigspecError(problems)
    return spec


def _listed_twice(doc: Document, spec: Spec) -> list[Diagnostic]:
    """A module listed twice, by name or by label, is reported at the second one."""
    problems = []
    for attr, what in (("name", "module"), ("shown", "label")):
        first: dict[str, int] = {}
        for i, m in enumerate(spec.modules):
            key = getattr(m, attr)
            if key in first:
                line = doc.locate(("modules", first[key]))[0]
                problems.append(doc.diagnostic(("modules", i), f"{what} `{key}` is listed twice "
                                               f"(first at line {line})", "remove one of them"))
            else:
                first[key] = i
    return problems


def _diagnostic(doc: Document, err: Any) -> Diagnostic:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _fields_at(loc[:-1])
        return doc.diagnostic(loc, f"unknown key `{key}`", did_you_mean(key, allowed) if allowed
                              else None, key=True)
    if kind == "missing" and isinstance(loc[-1], int):  # a tuple too short: the domain
        return doc.diagnostic(loc[:-1], f"{dotted(loc[:-1])}: expected two numbers, [low, high]")
    if kind == "missing":
        return doc.diagnostic(loc[:-1], f"missing required key `{loc[-1]}`")
    message = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace(" after validation", "")
    hint = None
    if "; did you mean" in message:
        message, hint = message.split("; ", 1)
    elif kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in allowed.replace(" or ", ",").split(",") if c.strip(" '")]
        hint = did_you_mean(str(err.get("input")), choices)
        message = f"{message}, got {err.get('input')!r}"
    elif kind in _SHOW_INPUT and not isinstance(err.get("input"), (dict, list)):
        message = f"{message}, got {err.get('input')!r}"
    where = dotted(loc)
    return doc.diagnostic(loc, f"{where}: {message[0].lower()}{message[1:]}" if where else message,
                          hint)


_SHOW_INPUT = {"int_parsing", "int_from_float", "float_parsing", "string_type", "int_type",
               "float_type", "bool_type", "bool_parsing", "greater_than", "greater_than_equal",
               "less_than_equal", "string_too_short", "model_type", "list_type", "dict_type",
               "tuple_type", "finite_number"}


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at ``loc`` (for "did you mean")."""
    model: Any = Spec
    for part in loc:
        model = _unwrap(model)
        if isinstance(part, int):
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if args else None
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            return []
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """``Optional[X]`` and ``Annotated[X, ...]`` -> ``X``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
