"""One build session: what an invocation (a build, a check, one call of the
Python API) knows while it runs, passed down the stages instead of being
kept in module globals.

A build checks every stale spec cheaply first; each checkpoint figure then
says here what it wants of its checkpoint pair (which tensors, which
meanings of "changed", which ranks). When the values are computed, each pair
is read once for all the figures of the session. Nothing here outlives the
session: a second build, or a test, starts from an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What "changed" means: ("exact", 0), ("abs", tolerance) or ("rel", relative_tolerance).
Option = tuple[str, float]
#: tensor name -> its sums (see compiler.sources.checkpoint)
Sums = dict[str, dict[str, float]]


@dataclass
class PairRequest:
    """Everything the session's figures want of one checkpoint pair."""

    #: tensor name -> the tensor (its shard and place), of every figure
    tensors: dict[str, Any] = field(default_factory=dict)
    options: set[Option] = field(default_factory=set)
    #: tensors whose update_rank is wanted (matrices only)
    ranks: set[str] = field(default_factory=set)


@dataclass
class Session:
    """What one invocation knows; made once per command or API call."""

    #: False for `check` and `status`: read what is cheap (a checkpoint's
    #: headers, cached sums), never compute what is costly
    compute: bool = True
    #: checkpoint pair (cache key) -> what the figures want of it
    requests: dict[str, PairRequest] = field(default_factory=dict)
    #: checkpoint pair (cache key) -> the sums read or computed so far
    sums: dict[str, Sums] = field(default_factory=dict)
    #: specs whose checkpoint values were not computed (checking only)
    unchecked: set[Path] = field(default_factory=set)

    def request(self, key: str) -> PairRequest:
        return self.requests.setdefault(key, PairRequest())
