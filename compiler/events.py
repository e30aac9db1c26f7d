"""A build as a stream of events: what the command line's progress display,
``--watch`` and a preview server consume, each in its own way.

    for event in builder.build_events(paths, options):
        match event:
            case Started(total=n): ...
            case FigureDone(result=r, done=i, total=n): ...
            case Finished(results=rs, seconds=s): ...

``watch`` yields the same events for every build, and ``Waiting`` between
builds. Plain data: nothing here imports anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .diagnostics import Diagnostic
from .files import Seen

if TYPE_CHECKING:
    from .pipeline import Prepared

Status = Literal["built", "checked", "up to date", "stale", "failed"]


@dataclass
class Result:
    """What happened to one spec."""

    spec: Path
    status: Status
    name: str | None = None
    outputs: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    seconds: float = 0.0
    #: why the figure was (or would be) rebuilt
    reason: str | None = None
    #: the checked spec and table, kept so that a build does not read them twice
    prepared: Prepared | None = field(default=None, repr=False, compare=False)
    #: every file checking looked at (read, or looked for), failed or not: a
    #: watch retries a failed figure when one of them changes
    looked_at: Seen = field(default_factory=Seen, repr=False, compare=False)
    #: checked without its values: a checkpoint metric not computed yet
    values_unchecked: bool = False
    #: notes its sources left: a run's newest checkpoint left out, say
    notes: list[Diagnostic] = field(default_factory=list)
    #: files its sources write beside the spec once its figure is built
    #: (numbers to commit, say): path -> content
    beside: dict[Path, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"




@dataclass(frozen=True)
class Started:
    """A build began: ``total`` specs (figures and unreadable folders) to go."""

    total: int


@dataclass(frozen=True)
class FigureDone:
    """One spec is done: built, up to date or failed (``result.status``)."""

    result: Result
    done: int
    total: int


@dataclass(frozen=True)
class Working:
    """Slow work for one spec is starting (metrics from checkpoints: reading
    them, an SVD per matrix for update_rank): said so that nobody waits blind."""

    spec: Path
    what: str


@dataclass(frozen=True)
class Sent:
    """The build's checkpoint reductions went to its engine: ``total``
    pairs, a task each, to the Dask cluster at ``engine`` (``workers`` of them)."""

    engine: str
    total: int
    workers: int


@dataclass(frozen=True)
class Reduced:
    """One checkpoint pair's sums came back from the engine: ``done`` of ``total``."""

    #: the pair, as progress names it: "runs/checkpoint-300 against runs/base"
    what: str
    done: int
    total: int
    #: the bytes its worker read
    nbytes: int
    #: the worker that reduced it ("" where it was not reduced there)
    worker: str
    #: why it was not, where it was not (its figures fail saying so)
    problem: str | None = None
    #: not reduced there, nor failed: this build reduces it itself (a
    #: damaged checkpoint, whose diagnostic the local reading locates)
    here: bool = False


@dataclass(frozen=True)
class Finished:
    """The build is over; every spec's result, in spec order."""

    results: list[Result]
    seconds: float


@dataclass(frozen=True)
class Waiting:
    """A watch is waiting for one of ``files`` to change."""

    files: tuple[Path, ...]


Event = Started | Working | Sent | Reduced | FigureDone | Finished | Waiting
