"""Parameter names -> layers and modules: the default pattern finding both in
a full parameter name (``model.layers.12.self_attn.q_proj.weight``), and
which listed module (and which expert) a module path found there is. Used by
``layout: params`` tables (:mod:`figspec.cells`) and checkpoints
(:mod:`figspec.sources.checkpoint`); plain names, only :mod:`re`."""

from __future__ import annotations

import re
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
    is (see :func:`expert_matcher`); None when no listed module matches."""
    match = expert_matcher(names)
    return lambda found: match(found)[0]


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
