"""Two runs' updates against each other, step by step: ``data.others``.

``data: {checkpoints: $runs/sft/checkpoint-*, others: $runs/rl/checkpoint-*,
base: $ckpt/base, metric: update_cosine}``: each run's checkpoints are
found as a run's are (:mod:`figspec.sources.trajectory`: each its step),
the two matched by step, and each step drawn is two runs' checkpoints from
one base (:mod:`figspec.sources.two_runs`), reduced in one pass over the
three and cached by their files' identities. The runs must have the same
steps (those `steps:` draws, or all); a run's newest checkpoint that is not
whole yet is left out of both, with a note, as a run's is.

The rows and how they are drawn are a run's (`x: module`: a panel per step;
`x: step`: the steps as columns); the ``checkpoint`` column is the first
run's. Where a run's folder is absent, the steps of the committed numbers
are drawn (:func:`figspec.sources.numbers.two_run_steps`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from ..diagnostics import FigspecError
from . import Context, Rows, numbers
from .trajectory import (
    CHECKPOINT,
    STEP,
    RunRows,
    Step,
    Trajectory,
    _modules_in_every_step,
    _whole,
    found,
)
from .two_runs import TwoRuns


class TwoRunSteps(Trajectory):
    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        second = _second_run(ctx)
        held = numbers.two_run_steps(ctx)  # a run is not here: the steps committed are drawn
        if held is not None:
            first = {n: Step(n, w, ctx.doc.path.parent / w) for n, w, _ in held}
            others = {n: Step(n, w, ctx.doc.path.parent / w) for n, _, w in held}
            pairs = [(s, others[s.step]) for s in self._selected(ctx, list(first.values()))]
        else:
            pairs = self._matched(ctx, second)
        rows, modules = [], []
        for a, o in pairs:
            sub = replace(ctx, data=data.model_copy(update={
                "checkpoint": a.written, "other": o.written, "checkpoints": None,
                "others": None}))
            source = TwoRuns({"checkpoint": "checkpoints", "other": "others"},
                             {"checkpoint": a.named,
                              "other": f"the other run's {o.named}"}, step=a.step)
            got = source.read(sub)
            rows += [(origin, {**r, STEP: a.step, CHECKPOINT: a.written})
                     for origin, r in got.rows]
            modules.append((a, got.modules))
        _modules_in_every_step(ctx, modules)
        return RunRows(rows, [data.param, data.value, STEP, CHECKPOINT],
                       f"the checkpoints {data.checkpoints} and {data.others}", drawn=modules)

    def _matched(self, ctx: Context, second: Context) -> list[tuple[Step, Step]]:
        """Each step drawn: the first run's checkpoint and the second's. A
        run's newest checkpoint not whole yet is left out (a note says so),
        of both runs; any other step one run has and the other lacks is an
        error at `others`."""
        found_a, found_b = found(ctx), found(second)
        run_a, run_b = self._complete(ctx, found_a), self._complete(second, found_b)
        left_out = ({s.step for s in found_a} - {s.step for s in run_a}) | \
            ({s.step for s in found_b} - {s.step for s in run_b})
        run_a = [s for s in run_a if s.step not in left_out]
        run_b = [s for s in run_b if s.step not in left_out]
        drawn = self._selected(ctx, run_a)
        by_step = {s.step: s for s in run_b}
        missing = [s for s in drawn if s.step not in by_step]
        extra = [s for s in run_b if s.step not in {a.step for a in run_a}] \
            if ctx.data.steps is None else []
        if missing or extra:
            raise _unmatched(ctx, run_a, run_b, missing, extra)
        pairs = [(s, by_step[s.step]) for s in drawn]
        _whole(ctx, [a for a, _ in pairs])
        _whole(second, [o for _, o in pairs])
        return pairs


def _unmatched(ctx: Context, run_a: list[Step], run_b: list[Step], missing: list[Step],
               extra: list[Step]) -> FigspecError:
    """Steps one run has and the other lacks, at `others`."""
    common = sorted({s.step for s in run_a} & {s.step for s in run_b})

    def steps(run: list[Step]) -> str:
        shown = ", ".join(str(s.step) for s in run[:20])
        return (shown + (f" and {len(run) - 20} more" if len(run) > 20 else "")) or "none"

    if missing:
        message = (f"{missing[0].named} has no checkpoint of the same step in `others`, "
                   f"whose steps are {steps(run_b)}")
    else:
        message = (f"the other run's {extra[0].named} has no checkpoint of the same step in "
                   f"`checkpoints`, whose steps are {steps(run_a)}")
    more = len(missing) + len(extra) - 1
    if more:
        message += f"; and {more} more step{'s' if more > 1 else ''} not in both"
    hint = (f"draw the steps both runs have: `steps: [{', '.join(map(str, common[:20]))}]`"
            if common else "`others` names the second run's checkpoints, of the same steps "
            "as `checkpoints`")
    return ctx.error(("data", "others"), message, hint)


def _second_run(ctx: Context) -> Context:
    """The second run read as a run of its own: its glob at `checkpoints`, its
    problems reported at `others`."""
    data = ctx.data.model_copy(update={"checkpoints": ctx.data.others})
    renamed = _Renamed(ctx.doc, ctx.base + ("data", "checkpoints"), ctx.base + ("data", "others"))
    return replace(ctx, data=data, doc=cast(Any, renamed))


class _Renamed:
    """A spec whose diagnostics at one key are at another (the second run's,
    read by the code reading `checkpoints`, at `others`); all else the spec's."""

    def __init__(self, doc: Any, old: tuple[Any, ...], new: tuple[Any, ...]) -> None:
        self._doc, self._old, self._new = doc, old, new

    def diagnostic(self, loc: Any, message: str, hint: str | None = None, *,
                   key: bool = False) -> Any:
        loc = tuple(loc)
        if loc[:len(self._old)] == self._old:
            loc = self._new + loc[len(self._old):]
        return self._doc.diagnostic(loc, message, hint, key=key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._doc, name)


SOURCE = TwoRunSteps()
