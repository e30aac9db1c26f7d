"""Loading YAML: positions, safety limits, and refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from figspec import yaml_reader
from figspec.diagnostics import FigspecError
from figspec.yaml_reader import load_yaml


def load(tmp_path: Path, text: str | bytes):
    p = tmp_path / "s.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_yaml(p)


def test_positions_of_values_and_keys(tmp_path: Path):
    doc = load(tmp_path, "a: 1\nlist:\n  - x\n  - {name: y}\n")
    assert doc.data == {"a": 1, "list": ["x", {"name": "y"}]}
    assert doc.locate(("a",)) == (1, 4)
    assert doc.locate(("list", 1, "name")) == (4, 12)
    assert doc.locate(("list", 1, "name"), key=True) == (4, 6)
    assert doc.locate(("list", 7, "nothing")) == (3, 3)  # the list itself, the nearest ancestor


def test_scalars_are_plain_values(tmp_path: Path):
    doc = load(tmp_path, "i: 3\nf: 0.5\nb: true\nn: null\nd: 2024-01-02\ns: '3'\n")
    assert doc.data == {"i": 3, "f": 0.5, "b": True, "n": None, "d": "2024-01-02", "s": "3"}


def test_no_tag_constructs_objects(tmp_path: Path):
    for tag in ("!!python/object/apply:os.system ['true']", "!!python/name:os.system",
                "!!binary aGVsbG8=", "!!set {a: null}", "!custom x"):
        with pytest.raises(FigspecError, match="is not allowed"):
            load(tmp_path, f"a: {tag}\n")


def test_aliases_are_allowed_within_bounds(tmp_path: Path):
    doc = load(tmp_path, "m: &m [q, k]\nn: *m\n")
    assert doc.data == {"m": ["q", "k"], "n": ["q", "k"]}


def test_billion_laughs_fails_fast(tmp_path: Path):
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    start = time.perf_counter()
    with pytest.raises(FigspecError, match="expands to more than"):
        load(tmp_path, text)
    assert time.perf_counter() - start < 5


def test_self_referencing_alias(tmp_path: Path):
    with pytest.raises(FigspecError, match="deeper|expands"):
        load(tmp_path, "a: &a [*a]\n")


class _LibyamlWithDepthLimit:
    """Stands for libyaml as PyYAML 6.0.4 bundles it, whatever release is
    installed: it refuses nesting past ~1,000 levels with its own message."""

    offsets_in_bytes = True
    installed = yaml_reader._Loader

    def __init__(self, text: str):
        if text.count("[") + text.count("{") + text.count("- ") > 1000:
            raise yaml.scanner.ScannerError("while increasing flow level", None,
                                            "exceeded maximum nesting depth", None)
        self.inner = self.installed(text)

    def get_single_node(self):
        return self.inner.get_single_node()

    def dispose(self) -> None:
        self.inner.dispose()


@pytest.fixture(params=["installed", "pure-python", "libyaml-6.0.4"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The same YAML tests with whatever PyYAML parses by default, with its
    Python parser alone (a PyYAML built without libyaml), and with a libyaml
    that has a nesting limit of its own."""
    if request.param == "pure-python":
        monkeypatch.setattr(yaml_reader, "_Loader", yaml_reader._PyLoader)
    elif request.param == "libyaml-6.0.4":
        monkeypatch.setattr(yaml_reader, "_Loader", _LibyamlWithDepthLimit)
    return request.param


@pytest.mark.parametrize("deep", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000,
                                  "".join("  " * i + "- \n" for i in range(2000)),
                                  "[" * 1500 + "]" * 1500, "[" * 200 + "]" * 200])
def test_deep_nesting_fails_cleanly(tmp_path: Path, deep: str, yaml_parser: str):
    """figspec's own limit and message, whatever the parser's own limits."""
    with pytest.raises(FigspecError) as e:
        load(tmp_path, "a: " + deep + "\n" if deep.startswith(("[", "{")) else deep)
    (d,) = e.value.diagnostics
    assert d.message == "nesting deeper than 64 levels"
    assert d.hint == "flatten the document"
    if deep.startswith("["):
        assert (d.line, d.column) == (1, 4 + 63)  # level 65: the mapping, then 64 brackets


def test_duplicate_keys(tmp_path: Path):
    with pytest.raises(FigspecError, match=r"duplicate key `a` \(first at line 1\)"):
        load(tmp_path, "a: 1\nb: 2\na: 3\n")


@pytest.mark.parametrize("raw,message", [
    (b"a: caf\xe9\n", "not UTF-8"),
    (b"\x00\x01binary", "binary file"),
    (b"a: [1, 2\n", "YAML syntax error"),
    (b"a:\n\t- b\n", "YAML syntax error"),
])
def test_unreadable_text(tmp_path: Path, raw: bytes, message: str):
    with pytest.raises(FigspecError, match=message):
        load(tmp_path, raw)


def test_byte_order_mark_is_accepted(tmp_path: Path):
    assert load(tmp_path, b"\xef\xbb\xbfa: 1\n").data == {"a": 1}


def test_columns_count_characters_not_bytes(tmp_path: Path):
    doc = load(tmp_path, "a: é\nb: [é, éé, x]\n")
    assert doc.locate(("b", 2)) == (2, 12)


def test_control_character_position(tmp_path: Path):
    with pytest.raises(FigspecError) as e:
        load(tmp_path, "a: é\nb: x\x0c\n")
    assert e.value.diagnostics[0].format().endswith(
        "s.yaml:2:5: error: character U+000C is not allowed in YAML; remove it")
