"""Read a YAML spec safely and remember where every node came from.

PyYAML composes the text into a node graph carrying line and column marks;
we then build plain Python values from that graph ourselves, so that

* no tag can construct an object or run code: only the standard scalar tags
  are understood, anything else is a diagnostic;
* aliases are allowed but their expansion is bounded (``MAX_NODES``), so a
  "billion laughs" document fails fast; so is nesting (``MAX_DEPTH``),
  during composition and during expansion (an anchor may refer to itself);
* duplicate keys are errors instead of silently keeping the last one;
* every value keeps its position: :meth:`Document.locate` maps a location
  path such as ``("modules", 2, "name")`` to a line and column;
* plain scalars are read as YAML 1.2's core schema says, as editors' YAML
  language servers and JSON do, not as YAML 1.1 (PyYAML's default), which
  made ``where: {country: NO}`` false, ``{run: 012}`` 10 and ``{time: 1:30}``
  90: here they are the text ``NO``, the number 12 and the text ``1:30``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from .diagnostics import Diagnostic, FigspecError, display_path
from .files import Stamp, TooLarge, read_stamped

MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_BYTES = 10_000_000

Loc = tuple[str | int, ...]

_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}"
                                    for t in ("str", "int", "float", "bool", "null"))
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL}
# Timestamps (explicitly tagged) are read as the text written: a spec has no
# use for dates, and plain strings keep every value JSON-compatible.
_AS_TEXT_TAGS = {"tag:yaml.org,2002:timestamp"}
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


class _Core12(BaseResolver):
    """Plain scalars resolved by YAML 1.2's core schema (section 10.3.2)."""


for _tag, _pattern, _first in (
    (_NULL, r"~|null|Null|NULL|", "~nN"),
    (_BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (_FLOAT, r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", "-+.0123456789"),
    # Not YAML 1.2, but recognised so that `<<:` is refused with its own message.
    ("tag:yaml.org,2002:merge", r"<<", "<"),
):
    _Core12.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"),
                                  list(_first) + ([""] if _tag == _NULL else []))


def construct_scalar(tag: str, value: str) -> Any:
    """A core-schema scalar's value; ValueError when the text is not of its
    (explicit) tag."""
    if tag == _STR:
        return value
    if tag == _NULL:
        if value not in ("~", "null", "Null", "NULL", ""):
            raise ValueError(f"{value!r} is not null")
        return None
    if tag == _BOOL:
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")
        return value.lower() == "true"
    if tag == _INT:
        text = value.strip()
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits[:2] in ("0o", "0x"):
            return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
        if not digits.isascii() or not digits.isdigit():
            raise ValueError(f"{value!r} is not a whole number")
        return sign * int(digits)
    text = value.strip().lower()
    if text.lstrip("+-") == ".inf":
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    if not re.fullmatch(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:e[-+]?[0-9]+)?", text):
        raise ValueError(f"{value!r} is not a number")
    return float(text)


@dataclass
class Document:
    """A loaded YAML file: its value and where each part of it was written.

    A document may also hold values written elsewhere (inherited from
    ``figspec.yaml``, an ``extends:`` file, or a panel's top-level fields):
    ``origins`` maps the location of each such value to the document and
    location it was written at, so a diagnostic points at that file and line.
    """

    path: Path
    data: Any
    #: location path -> (line, column) of the value, 1-based
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    #: location path -> (line, column) of the mapping key naming it
    key_positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    #: the file as it was read, for incremental builds
    stamp: Stamp | None = None
    #: location path -> (document, location) where an inherited value was written
    origins: dict[Loc, tuple[Document, Loc]] = field(default_factory=dict)
    #: every document inherited from, whether or not a value of it survived
    inherited: list[Document] = field(default_factory=list)
    #: values given in Python (a mapping), not read from text: a place is named
    #: by its key, since it has no line
    in_memory: bool = False
    #: names of places that have no line: a DataFrame's rows given as
    #: ``data.values`` (("data", "values", 3) -> "DataFrame row 3 (index 7)")
    labels: dict[Loc, str] = field(default_factory=dict)

    @property
    def shown_path(self) -> str:
        return display_path(self.path)

    def where(self, loc: Sequence[str | int], *, key: bool = False) -> tuple[Document, int, int]:
        """The document that wrote ``loc`` (or its nearest ancestor), and the line and column."""
        loc = tuple(loc)
        if key and loc in self.key_positions:
            return self, *self.key_positions[loc]
        for n in range(len(loc), -1, -1):
            prefix = loc[:n]
            if prefix in self.origins:
                doc, at = self.origins[prefix]
                return doc.where(at + loc[n:], key=key)
            if prefix in self.positions:
                return self, *self.positions[prefix]
        return self, 1, 1

    def locate(self, loc: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Line and column of ``loc``, or of its nearest ancestor that exists."""
        _, line, col = self.where(loc, key=key)
        return line, col

    def diagnostic(
        self, loc: Sequence[str | int], message: str, hint: str | None = None, *, key: bool = False
    ) -> Diagnostic:
        doc, at = self.origin(tuple(loc))
        label = next((doc.labels[at[:n]] for n in range(len(at), 0, -1)
                      if at[:n] in doc.labels), None)
        if label is None and doc.in_memory and at:
            label = f"key `{dotted(at)}`"
        if label is not None:
            shown = message if message.startswith(dotted(at)) else f"{label}: {message}"
            return Diagnostic(doc.shown_path, None, None, shown, hint, yaml_path=dotted(loc))
        doc, line, col = self.where(loc, key=key)
        return Diagnostic(doc.shown_path, line, col, message, hint, yaml_path=dotted(loc))

    def origin(self, loc: Loc) -> tuple[Document, Loc]:
        """The document that wrote ``loc``, and where in it."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.origins:
                doc, at = self.origins[loc[:n]]
                return doc.origin(at + loc[n:])
        return self, loc

    def files(self) -> dict[Path, Stamp]:
        """Every file this document's values were read from, stamped as read."""
        out = {self.path.resolve(): self.stamp} if self.stamp is not None else {}
        for doc in self.inherited:
            out.update(doc.files())
        return out


def overlay(lower: Any, lower_at: tuple[Document, Loc], upper: Any, loc: Loc,
            origins: dict[Loc, tuple[Document, Loc]]) -> Any:
    """``upper`` over ``lower``: mappings merge key by key, anything else
    (lists included) is replaced. Each value taken from ``lower`` is recorded
    in ``origins`` at its new location ``loc + (key,)``."""
    if not (isinstance(lower, dict) and isinstance(upper, dict)):
        return upper
    doc, at = lower_at
    out = dict(upper)
    for k, v in lower.items():
        if k not in upper:
            out[k] = v
            origins[loc + (k,)] = (doc, at + (k,))
        else:
            out[k] = overlay(v, (doc, at + (k,)), upper[k], loc + (k,), origins)
    return out


def dotted(loc: Sequence[str | int]) -> str:
    """``("modules", 2, "name")`` -> ``modules[2].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _TooDeep(yaml.MarkedYAMLError):
    pass


def show_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/object`` -> ``!!python/object``, as written."""
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


class _DepthLimit(Composer):
    """PyYAML's composer (recursive) refusing documents nested deeper than MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(problem=f"nesting deeper than {MAX_DEPTH} levels",
                               problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PyLoader(Reader, Scanner, Parser, _DepthLimit, _Core12):
    """PyYAML's own parser (Python): slower, but it has no nesting limit of
    its own, so our composer's limit is the one that speaks."""

    offsets_in_bytes = False

    def __init__(self, text: str):
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _DepthLimit.__init__(self)
        _Core12.__init__(self)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(CParser, _DepthLimit, _Core12):  # type: ignore[misc]
        """libyaml's parser (C, a state machine: no recursion) for events, ten
        times faster than PyYAML's; the composer stays ours, in Python."""

        #: ReaderError positions count UTF-8 bytes here, characters in PyYAML
        offsets_in_bytes = True

        def __init__(self, text: str):
            CParser.__init__(self, text)
            _DepthLimit.__init__(self)
            _Core12.__init__(self)

        get_single_node = Composer.get_single_node

    _Loader: type = _CLoader
else:  # pragma: no cover - PyYAML wheels ship libyaml
    _Loader = _PyLoader

#: libyaml's own nesting limit (about 1,000 levels since PyYAML 6.0.4) reads
#: ahead of our composer in flow collections and would speak first, with its
#: own message and position: such a file is parsed again by PyYAML's Python
#: parser, whatever the release, so the message is always ours.
_LIBYAML_DEPTH = "maximum nesting depth"


def _compose(text: str, loader_class: type) -> Node | None:
    loader = loader_class(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def read_text(path: Path, max_bytes: int = MAX_BYTES) -> tuple[str, Stamp]:
    """The file's text and its stamp as read, or a FigspecError saying why it
    cannot be read as UTF-8."""
    shown = display_path(path)
    try:
        raw, stamp = read_stamped(path, max_bytes)
    except FileNotFoundError:
        raise FigspecError([Diagnostic(shown, message="no such file")]) from None
    except IsADirectoryError:
        raise FigspecError([Diagnostic(shown, message="is a directory, not a file")]) from None
    except TooLarge:
        raise FigspecError([Diagnostic(shown, 1, 1, f"file is larger than {max_bytes:,} bytes")]
                           ) from None
    except OSError as e:
        raise FigspecError([Diagnostic(shown, message=f"cannot read: {e.strerror}")]) from None
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise FigspecError([Diagnostic(shown, line, 1,
                                       "binary file (contains NUL bytes), not text")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise FigspecError(
            [Diagnostic(shown, line, col, f"not UTF-8 text (byte 0x{raw[e.start]:02x})",
                        "save the file as UTF-8")]
        ) from None
    return text, stamp


def _char_at(text: str, mark: Any) -> str:
    """The character a parser's mark points at ('' past the end)."""
    lines = text.splitlines(keepends=True)
    if mark.line < len(lines) and mark.column < len(lines[mark.line]):
        return lines[mark.line][mark.column]
    return ""


def load_yaml(path: Path) -> Document:
    """Load one YAML document from ``path`` with positions, or raise FigspecError."""
    text, stamp = read_text(path)
    shown = display_path(path)
    loader_class = _Loader
    try:
        try:
            root = _compose(text, loader_class)
        except yaml.MarkedYAMLError as e:
            if loader_class is _PyLoader or _LIBYAML_DEPTH not in str(e.problem):
                raise
            loader_class = _PyLoader
            root = _compose(text, loader_class)
    except yaml.reader.ReaderError as e:
        at = len(text.encode()[:e.position].decode(errors="ignore")) \
            if getattr(loader_class, "offsets_in_bytes", False) else e.position
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        raise FigspecError([Diagnostic(shown, line, col, f"character U+{e.character:04X} is "
                                       "not allowed in YAML", "remove it")]) from None
    except _TooDeep as e:
        mark = e.problem_mark
        raise FigspecError([Diagnostic(shown, mark.line + 1, mark.column + 1, str(e.problem),
                                       "flatten the document")]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = e.problem or "invalid YAML"
        if e.context and problem.startswith("but "):
            problem = f"{e.context}, {problem}"
        hint = None
        if e.context_mark and e.context and "quoted scalar" in e.context:
            # The quote left open is the mistake; where the scanner gave up
            # (often the end of the file) is not.
            line, col = e.context_mark.line + 1, e.context_mark.column + 1
            end = (f"line {mark.line + 1}" if mark and "end of stream" not in problem
                   else "the end of the file")
            problem = f"the quoted text starting here is not closed before {end} ({problem})"
            hint = "close the quote, or escape the quote character inside the text"
        elif any(p in problem for p in ("expected <block end>", "mapping values are not allowed",
                                      "did not find expected key")):
            hint = "check the indentation of this line"
        elif "did not find expected ','" in problem:
            hint = "close the bracket opened before, or quote values that hold `:`, `,` or `#`"
        elif "another document" in problem:
            hint = "a spec is one document: remove the `---` line"
        elif "found character '\\t'" in problem or (mark and _char_at(text, mark) == "\t"):
            hint = "indent with spaces, not tabs"  # libyaml does not name the character
        raise FigspecError([Diagnostic(shown, line, col, f"YAML syntax error: {problem}",
                                       hint)]) from None
    except yaml.YAMLError as e:
        raise FigspecError([Diagnostic(shown, 1, 1, f"YAML error: {e}")]) from None
    doc = Document(path=path, data=None, stamp=stamp)
    if root is None:
        doc.positions[()] = (1, 1)
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(root, (), 0)
    if builder.problems:
        raise FigspecError(builder.problems)
    return doc


class _Builder:
    """Builds plain values from YAML nodes, recording positions and problems."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.count = 0
        self.problems: list[Diagnostic] = []

    def _problem(self, node: Node, message: str, hint: str | None = None) -> None:
        m = node.start_mark
        self.problems.append(Diagnostic(self.doc.shown_path, m.line + 1, m.column + 1, message,
                                        hint))

    def build(self, node: Node, loc: Loc, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            what = (f"more than {MAX_NODES:,} values" if self.count > MAX_NODES
                    else f"nesting deeper than {MAX_DEPTH} levels")
            self._problem(node, f"document expands to {what} (through aliases?)",
                          "write the values out instead of nesting aliases")
            raise FigspecError(self.problems)
        self.doc.positions.setdefault(loc, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                self._problem(node, f"tag `{show_tag(node.tag)}` is not allowed", "remove the tag")
            return [self.build(item, loc + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, loc, depth)
        self._problem(node, "unsupported YAML node")  # pragma: no cover - PyYAML has three kinds
        return None

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag in _AS_TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._problem(node, f"tag `{show_tag(node.tag)}` is not allowed", "remove the tag")
            return None
        try:
            return construct_scalar(node.tag, node.value)
        except ValueError as e:
            self._problem(node, f"invalid {node.tag.rsplit(':', 1)[-1]}: {e}")
            return None

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self._problem(node, f"tag `{show_tag(node.tag)}` is not allowed", "remove the tag")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._problem(key_node, "merge keys (`<<`) are not supported",
                              "use `extends:` or write the keys out")
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, "a key must be a plain name, not a list or mapping")
                continue
            key = key_node.value
            if key in out:
                first = self.doc.key_positions[loc + (key,)]
                self._problem(key_node, f"duplicate key `{key}` (first at line {first[0]})",
                              "remove one of them")
                continue
            self.doc.key_positions[loc + (key,)] = (key_node.start_mark.line + 1,
                                                    key_node.start_mark.column + 1)
            out[key] = self.build(value_node, loc + (key,), depth + 1)
        return out
