"""Parameter names -> layers and modules: the default pattern finding both in
a full parameter name (``model.layers.12.self_attn.q_proj.weight``), and
which listed module (and which expert) a module path found there is. Used by
``layout: params`` tables (:mod:`figspec.cells`) and checkpoints
(:mod:`figspec.sources.checkpoint`). And the other way: the module paths a
source holds as a spec would list them, and the preset that fits them (for
a typo's suggestions). Plain names; nothing heavy is imported."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

#: Finds the layer and module in a full parameter name: Llama, Qwen and Mistral
#: (``model.layers.12.self_attn.q_proj.weight``), GPT-2 (``transformer.h.3.attn.c_attn.weight``)
#: and most others (``blocks.N``, ``layer.N``, ``layers.N``).
DEFAULT_PARAM_PATTERN = (r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(?P<layer>\d+)\."
                         r"(?P<module>.+?)(?:\.(?:weight|bias))?$")


def param_pattern(pattern: str | None) -> re.Pattern[str]:
    """The spec's ``data.pattern``, or the default when it gives none."""
    return re.compile(pattern or DEFAULT_PARAM_PATTERN)


def module_matcher(names: Iterable[str]) -> Callable[[str], str | None]:
    """found -> the listed module that a module path found in a parameter name
    is (see :func:`expert_matcher`; a head's path, ``q_proj.heads.3``, is its
    module's); None when no listed module matches."""
    match = expert_matcher(names)
    return lambda found: match(split_head(found)[0])[0]


#: An attention head's place in a module path: ``self_attn.q_proj.heads.3``, a
#: fused projection's ``self_attn.qkv_proj.heads.k1`` (:mod:`figspec.sources.heads`).
HEAD = re.compile(r"\.heads\.([qkv]?[0-9]+)$")


def split_head(found: str) -> tuple[str, str | None]:
    """A module path -> the module's path and the head it names (None: the
    whole module): ``self_attn.q_proj.heads.3`` -> (``self_attn.q_proj``, "3")."""
    m = HEAD.search(found)
    return (found, None) if m is None else (found[:m.start()], m.group(1))


def head_column(listed: str, head: str) -> str:
    """The column of one head, as an expert's (:func:`expert_column`):
    ``q_proj`` -> ``q_proj.heads.3``."""
    return f"{listed}.heads.{head}"


def head_order(head: str) -> tuple[int, int]:
    """Heads in order: a module's by number; a fused one's q, then k, then v."""
    return ("qkv".find(head[0]) + 1 if head[0] in "qkv" else 0, int(head.lstrip("qkv")))


#: An expert's index in a module path: ``block_sparse_moe.experts.3.w1``.
EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)(?=\.)")


def expert_matcher(names: Iterable[str]) -> Callable[[str], tuple[str | None, int | None]]:
    """found -> which listed module a module path found in a parameter name is,
    and the expert it belongs to when it matched as experts.

    A listed name matches the path exactly or as its last dotted parts
    (``q_proj`` is ``self_attn.q_proj``; the longest listed name wins). Failing
    that, ``experts.w1`` matches every expert's ``experts.N.w1`` (the path with
    its expert index left out), and not a shared expert's
    ``shared_expert.w1``."""
    direct = _direct_matcher(names)

    def match(found: str) -> tuple[str | None, int | None]:
        listed = direct(found)
        if listed is not None:
            return listed, None
        m = EXPERT.search(found)
        if m is None:
            return None, None
        return direct(found[:m.start(1) - 1] + found[m.end(1):]), int(m.group(1))

    return match


def _direct_matcher(names: Iterable[str]) -> Callable[[str], str | None]:
    """found -> itself if listed, or the longest listed name it ends with."""
    listed = set(names)
    by_length = sorted(listed, key=len, reverse=True)

    def match(found: str) -> str | None:
        if found in listed:
            return found
        tail = found.rpartition(".")[2]  # a cheap test first: most names match no module
        return next((n for n in by_length if (n == tail or "." in n) and
                     found.endswith("." + n)), None)

    return match


def expert_column(listed: str, expert: int) -> str:
    """The column of one expert: ``experts.w1`` -> ``experts.3.w1``."""
    head, _, tail = listed.rpartition("experts.")
    return f"{head}experts.{expert}.{tail}"


# -- the modules a source holds, as a spec would list them --------------------------

def listable(paths: Iterable[str]) -> dict[str, str]:
    """Module paths found in parameter names, as a spec would list them: each
    path, its expert index left out -> the shortest tail naming it alone
    (``q_proj`` for ``self_attn.q_proj``, ``attn.c_proj`` beside
    ``mlp.c_proj``), an expert's with ``experts.`` and no index
    (``experts.w1``: a column per expert)."""
    paths = list(dict.fromkeys(split_head(p)[0] for p in paths))  # a head is its module's
    plain = list(dict.fromkeys(_without_expert(p) for p in paths))
    experts = {_without_expert(p) for p in paths if EXPERT.search(p)}
    tails = Counter(tail for p in plain for tail in _tails(p))
    out = {}
    for p in plain:
        parts = p.split(".")
        # An expert's tail keeps `experts`: `w1` alone would match every expert as one.
        shortest = len(parts) - parts.index("experts") if p in experts else 1
        out[p] = next((t for t in _tails(p)[shortest - 1:] if tails[t] == 1), p)
    return out


def _without_expert(path: str) -> str:
    m = EXPERT.search(path)
    return path if m is None else path[:m.start(1) - 1] + path[m.end(1):]


def _tails(path: str) -> list[str]:
    """A dotted path's tails, shortest first: `c`, `b.c`, `a.b.c`."""
    parts = path.split(".")
    return [".".join(parts[-k:]) for k in range(1, len(parts) + 1)]


def fitting_preset(paths: tuple[str, ...]) -> str | None:
    """The module preset (``modules: phi3``) every one of whose modules the
    paths hold, the one drawing most of them; None if none fits."""
    from ..presets import MODULE_PRESETS

    best: tuple[int, str] | None = None
    for name, preset in MODULE_PRESETS.items():
        match = expert_matcher(n for n, _ in preset)
        hits = [match(split_head(p)[0])[0] for p in paths]
        if len({h for h in hits if h is not None}) < len(preset):
            continue
        drawn = sum(h is not None for h in hits)
        if best is None or drawn > best[0]:
            best = (drawn, name)
    return best[1] if best else None
