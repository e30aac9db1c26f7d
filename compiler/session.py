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

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What "changed" means: ("exact", 0), ("abs", tolerance) or ("rel", relative_tolerance).
Option = tuple[str, float]
#: tensor name -> its sums (see figspec.sources.checkpoint)
Sums = dict[str, dict[str, float]]


@dataclass
class PairRequest:
    """Everything the session's figures want of one checkpoint pair."""

    #: tensor name -> the tensor (its shard and place), of every figure
    tensors: dict[str, Any] = field(default_factory=dict)
    options: set[Option] = field(default_factory=set)
    #: tensors whose update_rank is wanted (matrices only)
    ranks: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Reduction:
    """One checkpoint pair's sums still to compute, as plain picklable data
    (each tensor's file, name, dtype, shape and byte offsets; the options and
    ranks wanted): what an engine sends to where the pair is reduced
    (:mod:`figspec.engine`), which reads the files itself and sends back only
    the sums (``reduce_all``'s, the same bits wherever it runs)."""

    #: tensor name -> the tensor of the checkpoint (figspec.sources.safetensors.Tensor)
    tensors: dict[str, Any]
    #: tensor name -> the base's (None: a metric of one checkpoint)
    base: dict[str, Any] | None
    options: frozenset[Option]
    ranks: frozenset[str]
    #: how progress names it: "runs/checkpoint-300 against runs/checkpoint-200"
    shown: str

    @property
    def nbytes(self) -> int:
        """The bytes it reads: its tensors', and their base's."""
        sides = [self.tensors] + ([{n: self.base[n] for n in self.tensors}] if self.base else [])
        return sum(t.end - t.start for side in sides for t in side.values())


@dataclass
class Pending:
    """A reduction the session's figures want, gathered while they were
    checked: the specs that want it, and what keeps its sums once computed
    (in the session and figspec's cache)."""

    reduction: Reduction
    specs: set[Path]
    keep: Callable[[Sums], Any]


#: A Dask scheduler's address (``tcp://host:8786``, ``tls://...``, ``host:port``)
#: or ``local``: where a build's reductions run (``--engine``, ``engine:``).
ENGINE = re.compile(r"local|(?:(?:tcp|tls|ws|wss|ucx)://)?"
                    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")


@dataclass
class Session:
    """What one invocation knows; made once per command or API call, where
    the invocation starts, and passed down to every stage: none is made up
    below (one would drop what the invocation allows and what it computed)."""

    #: False for `check` and `status`: read what is cheap (a checkpoint's
    #: headers, cached sums), never compute what is costly
    compute: bool = True
    #: data may be read outside the spec's project (--allow-outside)
    allow_outside: bool = False
    #: `figspec diff`: (a revision's folder, a working tree's file or folder
    #: (resolved) that git tracks at neither revision, lent to it) -> the
    #: working tree's top; that revision's specs read it as their own
    lent: dict[tuple[Path, Path], Path] = field(default_factory=dict)
    #: checkpoint pair (cache key) -> what the figures want of it
    requests: dict[str, PairRequest] = field(default_factory=dict)
    #: checkpoint pair (cache key) -> the sums read or computed so far
    sums: dict[str, Sums] = field(default_factory=dict)
    #: specs whose checkpoint values were not computed (checking only)
    unchecked: set[Path] = field(default_factory=set)
    #: spec -> notes its sources left (a run's newest checkpoint left out, say)
    notes: dict[Path, list[Any]] = field(default_factory=dict)
    #: spec -> files its sources write beside it when its figure is built
    #: (a checkpoint figure's committed numbers): path -> an object whose
    #: ``content()`` gives the bytes, or None to leave the file as it is
    beside: dict[Path, dict[Path, Any]] = field(default_factory=dict)
    #: what sources parsed or hashed once for every figure and step of the
    #: invocation (a committed numbers file, a shard's identity), keyed by
    #: what they read and its stamp
    parsed: dict[Any, Any] = field(default_factory=dict)
    #: the machine's cores this invocation may use, and how many of them its
    #: drawing workers hold right now: a checkpoint reduction takes the rest
    cores: int = field(default_factory=lambda: cores())
    drawing: int = 0
    #: where reductions run: None, on this process's threads (the cores
    #: above), each as a figure asks for it; a Dask scheduler's address, on
    #: that cluster: the pairs are gathered (``pending``) while the figures
    #: are checked, then sent at once, a task each (:mod:`figspec.engine`)
    engine: str | None = None
    #: checkpoint pair (cache key) -> its reduction, gathered for the engine
    pending: dict[str, Pending] = field(default_factory=dict)

    def reduce_threads(self) -> int:
        """Threads for a checkpoint reduction: the cores the drawing workers
        leave, at least one. Drawing and reducing never oversubscribe."""
        return max(1, self.cores - self.drawing)

    def request(self, key: str) -> PairRequest:
        return self.requests.setdefault(key, PairRequest())

    def defer(self, key: str, reduction: Reduction, spec: Path,
              keep: Callable[[Sums], Any]) -> None:
        """A pair's reduction, for the engine: the latest asked holds what
        every figure before it asked of the pair (see PairRequest)."""
        was = self.pending.get(key)
        self.pending[key] = Pending(reduction, (was.specs if was else set()) | {spec}, keep)


def cores() -> int:
    """The cores this process may run on (its affinity, where the system says)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1
