"""Spec validation: pydantic's errors become diagnostics at the key."""

from __future__ import annotations

from figspec.spec import _one_branch


def test_a_union_s_errors_come_from_the_branch_the_value_was_meant_for():
    errors = [
        {"type": "float_parsing", "loc": ("domain", "tuple[float, float]", 0), "input": "low"},
        {"type": "literal_error", "loc": ("domain", "literal['nice']"), "input": ["low", 1]},
    ]
    assert [e["loc"] for e in _one_branch(errors)] == [("domain", 0)]
    errors = [
        {"type": "tuple_type", "loc": ("domain", "tuple[float, float]"), "input": "nicer"},
        {"type": "literal_error", "loc": ("domain", "literal['nice']"), "input": "nicer"},
    ]
    assert [(e["type"], e["loc"]) for e in _one_branch(errors)] == [("literal_error", ("domain",))]


def test_an_unknown_key_is_never_taken_for_a_branch():
    errors = [{"type": "extra_forbidden", "loc": ("color", "Scheme"), "input": 1}]
    assert _one_branch(errors)[0]["loc"] == ("color", "Scheme")
