"""Every in-memory cache figspec keeps, in one place.

A cache is process state, so each one is declared here, with its bound and
what it holds, and made only through :func:`memo`: a value a cache returns is
immutable (a string, a frozenset, a read-only mapping) or is copied by its
caller before it leaves the module (``project.load`` hands out a deep copy),
so no caller can change what the next call sees. Each cache is bounded;
those of size 1 hold a per-process constant (a version string, the started
renderer). :func:`clear_all` empties them (tests, a long-lived process that
wants memory back). Nothing here is heavy, and nothing is made at import:
a cache exists once its module is imported, and is filled on first call.

The disk cache (``$FIGSPEC_CACHE``) is :mod:`figspec.cache`'s.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Cache:
    """One declared cache: where it is, how many values it keeps, what they are."""

    name: str
    bound: int
    holds: str


#: Every cache of the package. A test greps the package for caches and checks
#: each is declared here and made with :func:`memo`.
DECLARED: tuple[Cache, ...] = (
    Cache("vega.engine", 1, "vl-convert, started once (TZ=UTC, figspec's fonts only)"),
    Cache("html.javascript_bundle", 1,
          "Vega, Vega-Lite and vega-embed in one script (a str), per vl-convert version"),
    Cache("fonts.coverage", 8, "per family: the code points its regular face draws "
          "(a frozenset); 4 families are shipped"),
    Cache("fonts.face", 16, "per family and face: its character map and advance widths "
          "(read-only mappings) and units per em"),
    Cache("versions.environment_key", 1, "the versions of everything that draws (a str)"),
    Cache("project.settings", 64, "validated figspec.yaml files by path, size and mtime; "
          "project.load hands out a deep copy"),
    Cache("kernel.announced", 3, "nothing (None): the --verbose line said once per "
          "kernel path"),
    Cache("kernel.values", 1, "every F16 bit pattern's value, then every F8_E4M3 and "
          "F8_E5M2 byte's (an array.array of float64; the C kernel reads it, none writes)"),
    Cache("kernel.f16_table", 1, "the same values as a numpy array (for the numba and "
          "numpy paths; none writes it)"),
    Cache("kernel.c", 1, "the loaded C kernel (its ctypes entry points), or None where "
          "it cannot be had"),
    Cache("kernel.numba", 1, "the compiled kernel (its read-only entry points), or None "
          "without numba"),
)

_BY_NAME = {c.name: c for c in DECLARED}
#: The functions made by memo, by cache name (filled as modules are imported;
#: only clear_all reads it).
_MADE: dict[str, Any] = {}
_MADE_LOCK = threading.Lock()


def memo(name: str) -> Callable[[F], F]:
    """A decorator: the function's results kept in the declared cache ``name``
    (an LRU of its bound), thread-safe as ``functools.lru_cache`` is. An
    undeclared name is a bug, caught at import."""
    declared = _BY_NAME[name]

    def wrap(function: F) -> F:
        cached = functools.lru_cache(maxsize=declared.bound)(function)
        with _MADE_LOCK:
            _MADE[name] = cached
        return cached  # type: ignore[return-value]

    return wrap


def clear_all() -> None:
    """Empty every cache made so far (the next calls make their values again)."""
    with _MADE_LOCK:
        made = list(_MADE.values())
    for cached in made:
        cached.cache_clear()
