"""YAML text -> validated :class:`~figspec.models.Spec`, with diagnostics at
the node that is wrong.

pydantic reports each error with a location path such as
``("layers", "tick_every")``; the loaded :class:`~figspec.yaml_reader.Document`
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

from .diagnostics import Diagnostic, FigspecError, did_you_mean, display_path, unique
from .files import BadPath, looked_at, resolved
from .models import Spec
from .yaml_reader import Document, Loc, dotted, load_yaml, overlay

if typing.TYPE_CHECKING:
    from .files import Stamp
    from .project import Settings

#: Longest chain of `extends:` followed.
MAX_EXTENDS = 16


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

    @property
    def inputs(self) -> dict[Path, Stamp]:
        """The spec file and every file it inherits from, stamped as read."""
        return self.doc.files()


def inherit(doc: Document, project: Settings | None, root: Path | None) -> Document:
    """The spec with its inherited values merged under it, and panels with the
    top-level fields merged under each; every value keeps where it was written."""
    if not isinstance(doc.data, dict):
        return doc  # validate() says what is wrong
    chain = _extends_chain(doc, root)
    merged: Document | None = None
    inherited = chain[1:]
    if project is not None and project.defaults:
        merged = Document(project.path, project.defaults,
                          origins={(): (project.doc, ("defaults",))})
        inherited.append(project.doc)
    for layer in reversed(chain):  # the most basic file first, the spec last
        if merged is None:
            merged = layer
            continue
        origins: dict[Loc, tuple[Document, Loc]] = dict(layer.origins)
        data = overlay(merged.data, (merged, ()), layer.data, (), origins)
        merged = Document(layer.path, data, layer.positions, layer.key_positions, layer.stamp,
                          origins, in_memory=layer.in_memory, labels=layer.labels)
    assert merged is not None
    merged.inherited = inherited
    _spread_panels(merged)
    return merged


def _extends_chain(doc: Document, root: Path | None) -> list[Document]:
    """The spec, the file it extends, the file that one extends, ..."""
    chain = [doc]
    while isinstance(chain[-1].data, dict) and "extends" in chain[-1].data:
        current = chain[-1]
        target = current.data["extends"]
        if not isinstance(target, str) or not target.strip():
            break  # validate() reports the type

        def fail(message: str, hint: str | None = None, current: Document = current
                 ) -> FigspecError:
            return FigspecError([current.diagnostic(("extends",), message, hint)])

        try:
            path = resolved(current.path.parent / target)
        except BadPath as e:
            raise fail(f"`extends` {target!r} {e.why}") from None
        looked_at(path)
        seen = [d.path.resolve() for d in chain]
        if path in seen:
            raise fail(f"`extends` cycle: {' -> '.join(display_path(p) for p in seen + [path])}",
                       "remove one of the `extends:`")
        if len(chain) > MAX_EXTENDS:
            raise fail(f"more than {MAX_EXTENDS} files extend one another")
        if path.suffix not in (".yaml", ".yml"):
            raise fail(f"`extends` must name a .yaml file, got {target!r}")
        if root is not None and not path.is_relative_to(root.resolve()):
            raise fail(f"{target!r} lies outside the project", "move the file into the project")
        if not path.is_file():
            raise fail(f"{display_path(path)} does not exist")
        base = load_yaml(path)
        if not isinstance(base.data, dict):
            raise FigspecError([base.diagnostic((), "a file named by `extends` must be a mapping "
                                                "of spec fields")])
        chain.append(base)
    return chain


def _spread_panels(doc: Document) -> None:
    """Top-level `data`, `modules` and `layers` apply to every panel."""
    panels = doc.data.get("panels")
    if not isinstance(panels, list):
        return
    shared = {k: doc.data.pop(k) for k in ("data", "modules", "layers") if k in doc.data}
    for i, panel in enumerate(panels):
        if isinstance(panel, dict):
            panels[i] = overlay(shared, (doc, ()), panel, ("panels", i), doc.origins)


def validate(doc: Document, partial: bool = False) -> Spec:
    if doc.data is None:
        raise FigspecError([doc.diagnostic((), "empty spec: expected a mapping with at least "
                                           "`data` and `modules`")])
    if not isinstance(doc.data, dict):
        kind = {list: "a list", str: "a string", int: "a number", float: "a number",
                bool: "true/false"}.get(type(doc.data), type(doc.data).__name__)
        raise FigspecError([doc.diagnostic((), f"a spec must be a mapping of keys to values, "
                                           f"not {kind}", "start with `data:` and `modules:`")])
    try:
        spec = Spec.model_validate(doc.data, context={"partial": partial})
    except ValidationError as e:
        # An inherited mistake is reported once, not once per panel.
        raise FigspecError(unique(_diagnostic(doc, err) for err in _one_branch(e.errors()))
                           ) from None
    problems = _listed_twice(doc, spec)
    if problems:
        raise FigspecError(problems)
    return spec


def _branch(part: Any) -> bool:
    """Whether a part of an error's location names a branch of a union
    (``tuple[float, float]``, ``literal['nice']``, ``str``) rather than a key:
    keys of the spec language are lower-case identifiers, never these."""
    return isinstance(part, str) and (not part.isidentifier() or part in _TYPE_NAMES)


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "tuple", "none"}
_KEY_ERRORS = {"extra_forbidden", "invalid_key"}


def _one_branch(errors: list[Any]) -> list[Any]:
    """pydantic reports a value that fits no branch of a union once per branch,
    with the branch's name in the location (``domain.literal['nice']``). Keep
    the errors of the branch the value was meant for (a string for a literal,
    anything else for the rest) and take the branch names out of locations,
    so each diagnostic lands on its key and reads as one mistake."""
    out = []
    for err in errors:
        loc = tuple(err["loc"])
        # The last part of an unknown key's location is the key as written.
        key = loc[-1:] if err["type"] in _KEY_ERRORS else ()
        branches = [p for p in loc[:len(loc) - len(key)] if _branch(p)]
        if branches:
            literal = str(branches[-1]).startswith("literal[")
            if literal != isinstance(err.get("input"), str) and _other_branches(errors, err):
                continue
            err = {**err, "loc": tuple(p for p in loc[:len(loc) - len(key)]
                                       if not _branch(p)) + key}
        out.append(err)
    return out


def _other_branches(errors: list[Any], err: Any) -> bool:
    """Whether another branch of the same union reported on the same value."""
    key = tuple(p for p in err["loc"] if not _branch(p))
    return any(other is not err and tuple(p for p in other["loc"] if not _branch(p))[:len(key)]
               == key for other in errors)


def _listed_twice(doc: Document, spec: Spec) -> list[Diagnostic]:
    """A module listed twice, by name or by label, is reported at the second one."""
    problems: list[Diagnostic] = []
    # Each list of modules with where it was written (a partial spec may have none).
    lists = [(("panels", v), panel.modules) for v, panel in enumerate(spec.panels or [])] \
        if spec.panels is not None else [((), spec.modules)]
    for base, modules in lists:
        for attr, what in (("name", "module"), ("shown", "label")):
            first: dict[str, int] = {}
            for i, m in enumerate(modules or []):
                key = getattr(m, attr)
                if key in first:
                    line = doc.locate(base + ("modules", first[key]))[0]
                    problems.append(doc.diagnostic(
                        base + ("modules", i), f"{what} `{key}` is listed twice (first at line "
                        f"{line})", "remove one of them"))
                else:
                    first[key] = i
    return unique(problems)


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
    # A check of the spec language may say how to fix what it found (its ctx's hint).
    hint = (err.get("ctx") or {}).get("hint")
    if hint is not None:
        hint = str(hint)
    elif "; did you mean" in message:
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
        model = unwrap_annotation(model)
        if isinstance(part, int):
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if args else None
        elif isinstance(model, type) and issubclass(model, BaseModel) and \
                part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            return []
    model = unwrap_annotation(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def unwrap_annotation(tp: Any) -> Any:
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
