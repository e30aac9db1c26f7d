"""A training run's checkpoints, one step each: ``data.checkpoints``.

``data: {checkpoints: $runs/grpo/checkpoint-*, base: $ckpt/base, metric: ...}``:
the glob's matches are the run's checkpoints, each given its step (``step:``,
else ``global_step`` of its trainer_state.json, else the last whole number
in its name). Each step drawn is a checkpoint pair, read by the checkpoint
source (:mod:`figspec.sources.checkpoint`): the checkpoint against ``base``
(``compare: base``) or against the step drawn before it (``compare:
previous``). So a pair's sums are cached by its two sides' file identity,
and a build after a new checkpoint lands reads only the new one. Building,
the pairs no cache holds are reduced in one pass that reads each file once:
the base once for every step, or (``compare: previous``) each checkpoint
once, as the checkpoint of its pair and the base of the next.

The rows are the checkpoint source's, each with the ``step`` and the
``checkpoint`` (its path as the spec would write it). Through the source's
interface (:class:`figspec.sources.Source`) they are split into one part
per step, the ``step`` and ``checkpoint`` columns of ``figspec table``,
drawn (:mod:`figspec.views`) as a panel per step (``x: module``) or with
the steps as the columns of a panel per module (``x: step``).

The glob is an input of the figure (its matches, stamped through
:meth:`figspec.sources.Context.glob`), so a checkpoint appearing makes the
figure stale. The newest checkpoint, when it is not whole yet (a shard
shorter than its header says, an index naming a shard not there yet, a
``-of-N`` sibling missing, a Trainer folder without its trainer_state.json),
is left out with a note, and drawn once it is complete: whole is a property
of the files, never of the time, so a checkpoint copied in is drawn at once.

Where the run's folder is absent (or holds none of its checkpoints), the
steps of its committed numbers (:mod:`figspec.sources.numbers`) are drawn.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..diagnostics import FigspecError, display_path
from ..files import LOOP, NUL, Stamp, TooLarge, glob_input, is_loop, read_stamped
from . import COLUMNS, PANELS, Context, Part, Row, Rows, Source, numbers
from .checkpoint import Checkpoint, Pair, Todo, pickle_message, pickle_weights
from .params import module_matcher
from .safetensors import CheckpointError, open_checkpoint

if TYPE_CHECKING:
    from ..yaml_reader import Document

#: Glob characters: allowed in the last part of `checkpoints` only.
_GLOB = re.compile(r"[*?\[]")
#: trainer_state.json is read for its step; a larger one is refused.
_STATE_LIMIT = 50_000_000
#: The columns a trajectory's rows add to a checkpoint's.
STEP, CHECKPOINT = "step", "checkpoint"


@dataclass(frozen=True)
class Step:
    """One checkpoint of the run."""

    step: int
    #: the path as the spec would write it (the glob's folder and the name)
    written: str
    path: Path

    @property
    def named(self) -> str:
        """How a message names it: "step 300 (runs/grpo/checkpoint-300)"."""
        return f"step {self.step} ({self.written})"


@dataclass
class RunRows(Rows):
    """A run's rows, and each step drawn with the module paths its checkpoint
    holds: a step whose checkpoint lacks a module listed is a part of its
    own, with no rows, reported as that step's."""

    drawn: list[tuple[Step, tuple[str, ...] | None]] | None = None


class Trajectory(Source):
    columns = (STEP, CHECKPOINT)
    at = ("data", "checkpoints")

    def read(self, ctx: Context) -> Rows:
        data = ctx.data
        on_hub = _hub_steps(ctx)  # a run over Hub revisions, read online
        held = numbers.steps(ctx) if on_hub is None else None  # the run is not here
        if on_hub is not None:
            drawn = self._selected(ctx, on_hub)
        elif held is not None:  # the steps committed are drawn
            drawn = self._selected(ctx, [Step(n, w, ctx.doc.path.parent / w) for n, w in held])
        else:
            run = found(ctx)
            newest = run[-1] if run else None
            run = self._complete(ctx, run)
            drawn = self._selected(ctx, run)
            _whole(ctx, [s for s in drawn if s is not newest])
        if data.compare == "previous" and len(drawn) < 2:
            raise ctx.error(("data", "compare"), f"`compare: previous` compares each step with "
                            f"the one before it, but {len(drawn)} checkpoint is drawn",
                            "draw more steps, or compare each with `base`")
        pairs = _pairs(ctx, drawn)
        if data.compare == "previous":
            _step_by_step_at_once(ctx, [(source, sub) for source, sub, _ in pairs])
        else:
            _against_base_at_once(ctx, [(source, sub) for source, sub, against_base in pairs
                                        if against_base])
        rows, modules = [], []
        for s, (source, sub, _) in zip(drawn, pairs):
            got = source.read(sub)
            rows += [(o, {**r, STEP: s.step, CHECKPOINT: s.written}) for o, r in got.rows]
            modules.append((s, got.modules))
        _modules_in_every_step(ctx, modules)
        if on_hub is not None:
            _identical(ctx, drawn)
        return RunRows(rows, [data.param, data.value, STEP, CHECKPOINT],
                       f"the checkpoints {data.checkpoints}", drawn=modules)

    def parts(self, ctx: Context, rows: Rows) -> list[Part]:
        """One part per step, in order: its key the step and its checkpoint.
        Each is named by its step in messages, so that a step lacking what
        the others have says which it is."""
        by_step: dict[int, list[Row]] = {}
        for origin, row in rows.rows:
            by_step.setdefault(row[STEP], []).append((origin, row))
        drawn = rows.drawn if isinstance(rows, RunRows) and rows.drawn is not None else [
            (Step(step, some[0][1][CHECKPOINT], Path()), rows.modules)
            for step, some in sorted(by_step.items())]
        return [Part(Rows(by_step.get(s.step, []), rows.columns, s.named, modules),
                     (s.step, s.written), f"step {s.step}")
                for s, modules in sorted(drawn, key=lambda d: d[0].step)]

    def arrange(self, doc: Document, x: str) -> str:
        """`x: module`: a panel per step; `x: step`: the steps as columns."""
        return COLUMNS if x == "step" else PANELS

    @staticmethod
    def _complete(ctx: Context, run: list[Step]) -> list[Step]:
        """The run without its newest checkpoint when that one is not whole yet
        (a note says so): its folder's names and files, stamped before they
        were looked at, are inputs of the figure, so that their completion
        makes it stale. An older one not whole is an error (:func:`_whole`)."""
        if not run:
            return run
        newest = run[-1]
        looked = _looked(newest.path)
        why = _incomplete(newest.path, looked)
        if why is None:
            return run
        note = ctx.doc.diagnostic(
            ctx.base + ("data", "checkpoints"),
            f"step {newest.step} ({display_path(newest.path)}) is left out: {why.text()}",
            "it is drawn once it is complete")
        notes = ctx.session.notes.setdefault(ctx.doc.path, [])
        if replace(note, severity="note") not in notes:  # checked, then computed: said once
            notes.append(replace(note, severity="note"))
        ctx.stamps.update(looked)
        return run[:-1]

    @staticmethod
    def _selected(ctx: Context, run: list[Step]) -> list[Step]:
        """The steps `steps:` asks for, in order."""
        steps = ctx.data.steps
        if not run:
            raise ctx.error(("data", "checkpoints"), "the run's only checkpoint is still "
                            "being written: there is nothing to draw yet",
                            "build again once it is complete")
        if steps is None:
            chosen = run
        elif steps == "last":
            chosen = run[-1:]
        elif isinstance(steps, list):
            have = {s.step: s for s in run}
            missing = [n for n in steps if n not in have]
            if missing:
                shown = ", ".join(str(s.step) for s in run[:20])
                raise ctx.error(("data", "steps"), f"step {missing[0]} is not among the "
                                f"checkpoints' steps ({shown or 'none'})")
            chosen = [have[n] for n in sorted(set(steps))]
        else:
            chosen = [s for s in run if s.step % steps.every == 0]
        if not chosen:
            raise ctx.error(("data", "steps"), "no checkpoint's step is drawn: "
                            f"the steps are {', '.join(str(s.step) for s in run[:20]) or 'none'}")
        return chosen


def _modules_in_every_step(ctx: Context,
                           found: list[tuple[Step, tuple[str, ...] | None]]) -> None:
    """A module listed that some steps' checkpoints hold and others lack: the
    steps lacking it named, and one that holds it (a module no step holds is
    the table's to report, with the modules there are)."""
    problems = []
    for i, name in enumerate(ctx.modules):
        match = module_matcher([name])
        holds = [(s, paths is None or any(match(p) is not None for p in paths))
                 for s, paths in found]
        lacking = [s for s, held in holds if not held]
        if not lacking or len(lacking) == len(holds):
            continue
        more = f" and {len(lacking) - 1} more steps" if len(lacking) > 1 else ""
        having = next(s for s, held in holds if held)
        problems.append(ctx.doc.diagnostic(
            ctx.base + ("modules", i), f"module `{name}` is not in {lacking[0].named}{more}, "
            f"though step {having.step} holds it", "leave the step out with `steps:`, or the "
            "module out of `modules`"))
    if problems:
        raise FigspecError(problems)


def _pairs(ctx: Context, drawn: list[Step]) -> list[tuple[Checkpoint, Context, bool]]:
    """Each step drawn as a checkpoint pair: the checkpoint source reading it,
    its context (the pair as a `data.checkpoint` would say it), and whether
    it is compared with the base."""
    data, out = ctx.data, []
    previous: Step | None = None
    for s in drawn:
        chained = previous if data.compare == "previous" else None
        against = chained.written if chained else data.base
        keys = {"checkpoint": "checkpoints", "base": "checkpoints" if chained else "base"}
        names = {"checkpoint": s.named,
                 "base": f"the previous step (step {chained.step})" if chained else "the base"}
        pair = data.model_copy(update={"checkpoint": s.written, "base": against,
                                       "checkpoints": None})
        out.append((Checkpoint(keys, names, step=s.step, model=data.base if chained else None),
                    replace(ctx, data=pair),
                    chained is None and data.base is not None))
        previous = s
    return out


def _against_base_at_once(ctx: Context, pairs: list[tuple[Checkpoint, Context]]) -> None:
    """Building: the sums of every step compared with the base that no cache
    holds, reduced in one pass that reads each chunk of the base once for all
    of them (:func:`figspec.sources.reduce.reduce_run`). Each pair's sums
    then come from the session, as if each had been read alone."""
    from .checkpoint import keep
    from .reduce import reduce_run

    if not ctx.session.compute:
        return
    pending = _pending(pairs)
    if len(pending) < 2:
        return  # nothing to share: the pair is read as one pair
    base = pending[0][2].base
    assert base is not None
    options = frozenset(o for *_, todo in pending for o in todo.options)
    try:
        fresh = reduce_run([todo.tensors for *_, todo in pending], base, options,
                           [todo.ranks for *_, todo in pending], ctx.session.reduce_threads())
    except CheckpointError as e:
        source, sub = pending[0][0], pending[0][1]
        raise source.error(sub, e) from None
    for (_, sub, pair, todo), sums in zip(pending, fresh):
        keep(sub.session, pair.key, todo.sums, sums)


def _pending(pairs: list[tuple[Checkpoint, Context]]
             ) -> list[tuple[Checkpoint, Context, Pair, Todo]]:
    """The pairs building must reduce: planned, with what no cache holds."""
    planned = [(source, sub, source.plan(sub)) for source, sub in pairs
               if not source.absent(sub)]  # absent: read from the committed numbers
    pending = [(source, sub, pair, source.todo(sub, pair)) for source, sub, pair in planned]
    return [p for p in pending if p[3].tensors]


def _step_by_step_at_once(ctx: Context, pairs: list[tuple[Checkpoint, Context]]) -> None:
    """Building `compare: previous`: the sums of every pair (each step against
    the one before) that no cache holds, reduced in one pass that reads each
    chunk of each checkpoint once, as T of its pair and B of the next
    (:func:`figspec.sources.reduce.reduce_chain`). Each pair's sums then come
    from the session under its own key, as if each had been read alone."""
    from .checkpoint import keep
    from .reduce import reduce_chain

    if not ctx.session.compute:
        return
    pending = _pending(pairs)
    if len(pending) < 2:
        return  # nothing to share: the pair is read as one pair
    links = [{n: (t, pair.base[n] if pair.base is not None else None)
              for n, t in todo.tensors.items()} for _, _, pair, todo in pending]
    try:
        fresh = reduce_chain(links, [frozenset(todo.options) for *_, todo in pending],
                             [todo.ranks for *_, todo in pending], ctx.session.reduce_threads())
    except CheckpointError as e:
        source, sub = pending[0][0], pending[0][1]
        raise source.error(sub, e) from None
    for (_, sub, pair, todo), sums in zip(pending, fresh):
        keep(sub.session, pair.key, todo.sums, sums)


def _hub_steps(ctx: Context) -> list[Step] | None:
    """A run over a Hub repository's branches and tags (``hf:org/name@step*``):
    each matching ref a step (``step:``, else the last number in its name);
    None when the run is no such thing, or the Hub cannot be reached."""
    from . import inplace

    written, key = str(ctx.data.checkpoints), ("data", "checkpoints")
    if not inplace.is_hub_run(written):
        return None
    refs = inplace.run_refs(ctx, written, key)
    if refs is None:
        return None
    repo = written.partition("@")[0]
    if not refs:
        raise ctx.error(key, f"no branch or tag of {repo} matches "
                        f"{written.partition('@')[2]!r}", "name the revisions as the "
                        "repository's branches are named (`@step*`)")
    by_step: dict[int, Step] = {}
    for name, _ in refs:
        s = Step(_step(ctx, Path(name)), f"{repo}@{name}", Path(f"{repo}@{name}"))
        if s.step in by_step:
            raise ctx.error(("data", "step") if ctx.data.step else key,
                            f"{by_step[s.step].written} and {s.written} are both step "
                            f"{s.step}", "give `step:` a pattern that tells them apart")
        by_step[s.step] = s
    return sorted(by_step.values(), key=lambda s: s.step)


def _identical(ctx: Context, drawn: list[Step]) -> None:
    """A note for each step whose revision holds the very content of an
    earlier one (equal content hashes): a flat line drawn from a broken upload
    would otherwise look like a finding."""
    from . import inplace

    first: dict[str, Step] = {}
    for s in drawn:
        found = inplace.located(ctx, s.written, ("data", "checkpoints"))
        if found is None:
            continue
        same = first.setdefault(found.identity, s)
        if same is s:
            continue
        note = replace(ctx.doc.diagnostic(
            ctx.base + ("data", "checkpoints"), f"step {s.step} is identical to step "
            f"{same.step} ({s.written} and {same.written} hold the same content hashes)",
            "a revision uploaded twice, or a broken upload: leave it out with `steps:`"),
            severity="note")
        notes = ctx.session.notes.setdefault(ctx.doc.path, [])
        if note not in notes:
            notes.append(note)


def found(ctx: Context) -> list[Step]:
    """The checkpoints the glob matches, by step; FigspecError for a glob that
    matches nothing, a step that cannot be found, or two with one step."""
    written = str(ctx.data.checkpoints)
    head, _, pattern = written.rpartition("/")
    key = ("data", "checkpoints")
    if _GLOB.search(head):
        raise ctx.error(key, f"only the last part of {written!r} may hold `*`, `?` or `[`",
                        "name the run's folder, then a pattern of its checkpoints: "
                        "`runs/grpo/checkpoint-*`")
    if "\x00" in pattern:
        raise ctx.error(key, f"{written!r} {NUL}")
    folder = ctx.locate(head or ".", key)[0]
    names = ctx.glob(folder, pattern)
    if names is None:
        raise ctx.error(key, f"the folder {display_path(folder)} does not exist")
    if not names:
        raise ctx.error(key, f"{pattern!r} matches nothing in {display_path(folder)}",
                        "checkpoints are folders (or .safetensors files) named as the "
                        "pattern says")
    for name in names:
        if is_loop(folder / name):
            raise ctx.error(key, f"{display_path(folder / name)} {LOOP}",
                            "remove the link, or leave it out of the glob")
    run = [Step(_step(ctx, folder / name), f"{head}/{name}" if head else name, folder / name)
           for name in names]
    by_step: dict[int, Step] = {}
    for s in run:
        if s.step in by_step:
            raise ctx.error(("data", "step") if ctx.data.step else key,
                            f"{display_path(by_step[s.step].path)} and {display_path(s.path)} "
                            f"are both step {s.step}", "give `step:` a pattern that tells "
                            "them apart, or leave one out of the glob")
        by_step[s.step] = s
    _no_pickles(ctx, run)
    return sorted(run, key=lambda s: s.step)


def _no_pickles(ctx: Context, run: list[Step]) -> None:
    """A run saved as PyTorch pickles, said so before anything else is
    asked of its checkpoints (such a folder is no safetensors checkpoint
    being written: it never will be one)."""
    pickled = [(s, p) for s in sorted(run, key=lambda s: s.step) if (p := pickle_weights(s.path))]
    if not pickled:
        return
    (first, pickles), more = pickled[0], len(pickled) - 1
    message, hint = pickle_message(first.named, pickles)
    if more:
        message += f"; and {more} more of the run's checkpoints"
    raise ctx.error(("data", "checkpoints"), message, hint)


def _step(ctx: Context, path: Path) -> int:
    """A checkpoint's step: ``step:``'s group, else trainer_state.json's
    ``global_step``, else the last whole number in its name."""
    name = path.name
    if ctx.data.step:
        m = re.search(ctx.data.step, name)
        if m is None or not re.fullmatch(r"[0-9]{1,18}", m.group("step") or ""):
            raise ctx.error(("data", "step"), f"no step found in {name!r} by this pattern",
                            "the group `(?P<step>...)` must match the step's digits")
        return int(m.group("step"))
    state = path / "trainer_state.json"
    if path.is_dir() and state.is_file():
        try:
            raw, stamp = read_stamped(state, _STATE_LIMIT)
            step = json.loads(raw).get("global_step")
        except (OSError, TooLarge, ValueError, AttributeError, RecursionError):
            step = None
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
            ctx.stamps[state.resolve()] = stamp
            return step
    digits = re.findall(r"[0-9]+", name)
    if not digits or len(digits[-1]) > 18:
        raise ctx.error(("data", "checkpoints"), f"no step in {display_path(path)}: no "
                        "trainer_state.json with `global_step`, and no number in its name",
                        "give `step:` a pattern with a group `(?P<step>...)`")
    return int(digits[-1])


#: Files only Hugging Face's Trainer writes into a checkpoint folder: a folder
#: with one of them is Trainer's, and Trainer writes trainer_state.json last.
_TRAINER = re.compile(r"trainer_state\.json|optimizer\.pt|scheduler\.pt|scaler\.pt|"
                      r"training_args\.bin|rng_state(_[0-9]+)?\.pth")
#: A shard named as save_pretrained names them: model-00002-of-00004.safetensors.
_OF_N = re.compile(r"(?P<stem>.+)-(?P<k>[0-9]{1,6})-of-(?P<n>[0-9]{1,6})\.safetensors")


def _incomplete(path: Path, stamps: dict[Path, Stamp]) -> CheckpointError | None:
    """What the checkpoint at ``path`` lacks to be whole, or None. Whole is a
    property of its files, never of the time: each shard as long as its header
    says, every shard its index names, every ``-of-N`` sibling of a shard, and
    trainer_state.json (written last) in a Trainer folder. Each file looked at
    is stamped in ``stamps`` before it is read, so a change after this look
    makes the figure stale."""
    try:
        names = {e.name for e in os.scandir(path) if e.is_file()} if path.is_dir() else None
    except OSError:
        return None  # unreadable: reading it says why, at the key
    if names is not None:
        missing = _missing_siblings(names) or _trainer_state(path, names, stamps)
        if missing is not None:
            return CheckpointError(missing, path, hint="copy the missing file into the folder")
    found: dict[Path, Stamp] = {}
    try:
        tensors = open_checkpoint(path, found, None)  # headers only
    except CheckpointError as e:
        return e
    finally:
        stamps.update({f.resolve(): stamp for f, stamp in found.items()})
    ends: dict[Path, int] = {}
    for t in tensors.values():
        if isinstance(t.file, Path):  # a local checkpoint's shards only
            ends[t.file] = max(ends.get(t.file, 0), t.end)
    for shard, end in sorted(ends.items()):
        if found[shard].size != end:
            return CheckpointError(f"the file holds {found[shard].size:,} bytes, but its header "
                                   f"says {end:,}", shard)
    return None


def _missing_siblings(names: set[str]) -> str | None:
    """The first shard missing from a set named ``-of-N``, as a message."""
    for name in sorted(names):
        m = _OF_N.fullmatch(name)
        if m is None or int(m["n"]) == 0:
            continue
        width = len(m["k"])
        for k in range(1, int(m["n"]) + 1):
            sibling = f"{m['stem']}-{k:0{width}d}-of-{m['n']}.safetensors"
            if sibling not in names:
                return f"{sibling} is not there (beside {name})"
    return None


def _trainer_state(path: Path, names: set[str], stamps: dict[Path, Stamp]) -> str | None:
    """In a folder Trainer wrote, trainer_state.json missing or not yet JSON."""
    by_trainer = sorted(n for n in names if _TRAINER.fullmatch(n))
    if not by_trainer:
        return None
    state = path / "trainer_state.json"
    if "trainer_state.json" not in names:
        return (f"trainer_state.json is not there (Trainer writes it last), though the "
                f"folder is a Trainer checkpoint: it has {by_trainer[0]}")
    try:
        raw, stamp = read_stamped(state, _STATE_LIMIT)
    except (OSError, TooLarge):
        return None  # unreadable or huge: not a sign of a checkpoint half written
    stamps[state.resolve()] = stamp
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return "trainer_state.json is not JSON yet: it may still be being written"
    return None


def _whole(ctx: Context, steps: list[Step]) -> None:
    """FigspecError for a checkpoint drawn, older than the newest, that is not
    whole: the newest is being written, but an older one is broken."""
    for s in steps:
        why = _incomplete(s.path, {})
        if why is not None:
            raise ctx.error(("data", "checkpoints"), why.text(), why.hint)


def _looked(path: Path) -> dict[Path, Stamp]:
    """A checkpoint's folder's names and its files' identities as they are now,
    before its completeness is decided: any file written after this look
    differs from its stamp."""
    stamps: dict[Path, Stamp] = {}
    try:
        if path.is_dir():
            stamps.update([glob_input(path, "*")])
            for e in os.scandir(path):
                if e.is_file():
                    stamps[Path(e.path).resolve()] = Stamp.identity(os.stat(e.path))
        else:
            stamps[path.resolve()] = Stamp.identity(path.stat())
    except OSError:  # gone meanwhile: the glob's own input notices what changes next
        pass
    return stamps


SOURCE = Trajectory()
