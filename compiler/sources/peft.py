"""PEFT (LoRA) adapters read as checkpoints: a folder with ``adapter_config.json``
and ``adapter_model.safetensors``, against the base model it adapts.

Every tensor of the base is a tensor of the adapted model: where the adapter
targets its module, T = W0 + s·B·A (s = lora_alpha / r, or lora_alpha / √r
with ``use_rslora``; r and lora_alpha per module by ``rank_pattern`` and
``alpha_pattern``, matched as peft matches them), and with ``use_dora`` each
row of W0 + s·B·A scaled to its entry of ``lora_magnitude_vector`` over its
norm, as peft's merge does; a ``modules_to_save`` copy replaces the module's
weights; any other module is the base's (zero update). No merged model is
written: :class:`Merged` computes T a few rows at a time, in float64, when the
reduction (:mod:`figspec.sources.reduce`) reads it, so every metric is the
metric of the merged weights, from the same kernel. ``‖T − W0‖²`` and the
rank of the update come from the r×r factors alone (:meth:`Merged.exact`):
Bᵀ B and A Aᵀ, and the R factors of B's and Aᵀ's QR decompositions.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import FigspecError, display_path
from ..files import TooLarge, read_stamped
from .safetensors import File, Stamps, Tensor, Within, read_header
from .shard_data import Computed, Files

if TYPE_CHECKING:
    from . import Context

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
#: What peft prefixes a wrapped model's names with.
PREFIX = "base_model.model."
#: The adapters read: peft's LoRA (with rsLoRA, DoRA, patterns, modules_to_save).
SUPPORTED = ("LORA",)
#: adapter_config.json is read whole; a larger one is refused.
_CONFIG_LIMIT = 10_000_000
#: Settings of LoRA that change what merging means and are not read: refused.
_UNREAD = {"lora_bias": "a LoRA bias (`lora_bias`)",
           "fan_in_fan_out": "`fan_in_fan_out` (GPT-2's Conv1D layers)",
           "layer_replication": "`layer_replication`", "target_parameters": "`target_parameters`",
           "use_qalora": "QA-LoRA (`use_qalora`)",
           "alora_invocation_tokens": "activated LoRA (`alora_invocation_tokens`)",
           "trainable_token_indices": "`trainable_token_indices`"}


def is_adapter(path: Path) -> bool:
    """Whether ``path`` is (meant as) a peft adapter: a folder holding either file."""
    try:
        return path.is_dir() and ((path / CONFIG).exists() or (path / WEIGHTS).exists())
    except OSError:
        return False


@dataclass(frozen=True)
class Config:
    """What merging needs of adapter_config.json."""

    path: Path
    r: int
    alpha: float
    rslora: bool
    dora: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    base: str | None

    def scale(self, module: str) -> tuple[int, float]:
        """A module's rank and s, as peft's LoRA layer takes them."""
        r = self.rank_pattern.get(_pattern_key(self.rank_pattern, module), self.r)
        alpha = self.alpha_pattern.get(_pattern_key(self.alpha_pattern, module), self.alpha)
        return r, alpha / (math.sqrt(r) if self.rslora else r)


def _pattern_key(patterns: dict[str, Any], key: str) -> str:
    """peft's get_pattern_key: the first pattern matching the module's name
    whole or after a dot (patterns are regular expressions), else the name."""
    for pattern in patterns:
        try:
            if re.match(rf"(.*\.)?({pattern})$", key):
                return pattern
        except re.error:
            continue
    return key


def read_config(ctx: Context, path: Path, at: tuple[Any, ...]) -> Config:
    """adapter_config.json checked: a LoRA adapter's, with what merging needs."""
    shown = display_path(path)

    def bad(why: str, hint: str | None = None) -> FigspecError:
        return ctx.error(at, f"{shown} {why}", hint)

    try:
        raw, stamp = read_stamped(path, _CONFIG_LIMIT)
        ctx.stamps[path.resolve()] = stamp
        settings = json.loads(raw)
    except (OSError, TooLarge) as e:
        raise bad(f"cannot be read: {e}") from None
    except (ValueError, RecursionError) as e:
        raise bad(f"is not JSON: {str(e)[:200]}", "save the adapter again with "
                  "`model.save_pretrained(folder)`") from None
    if not isinstance(settings, dict):
        raise bad("is not a JSON object")
    kind = settings.get("peft_type")
    if kind not in SUPPORTED:
        raise bad(f"is of peft type {str(kind)[:40]!r}; figspec reads "
                  f"{', '.join(SUPPORTED)} adapters (LoRA, rsLoRA, DoRA)",
                  "merge it with peft (`merge_and_unload()`), save the merged model and "
                  "name that folder")
    for key, what in _UNREAD.items():
        if settings.get(key) not in (None, False, [], {}, "", "none"):
            raise bad(f"uses {what}, which figspec does not merge", "merge it with peft "
                      "(`merge_and_unload()`) and name the merged model")
    r: Any = settings.get("r")
    alpha: Any = settings.get("lora_alpha")
    if not _count(r):
        raise bad(f"gives `r` {json.dumps(r)[:40]}, not a whole number above 0")
    if not _number(alpha):
        raise bad(f"gives `lora_alpha` {json.dumps(alpha)[:40]}, not a number")
    ranks, alphas = settings.get("rank_pattern") or {}, settings.get("alpha_pattern") or {}
    if not (isinstance(ranks, dict) and all(_count(v) for v in ranks.values())):
        raise bad("gives a `rank_pattern` that is not a map of patterns to ranks")
    if not (isinstance(alphas, dict) and all(_number(v) for v in alphas.values())):
        raise bad("gives an `alpha_pattern` that is not a map of patterns to numbers")
    base = settings.get("base_model_name_or_path")
    return Config(path, r, float(alpha), settings.get("use_rslora") is True,
                  settings.get("use_dora") is True, ranks,
                  {k: float(v) for k, v in alphas.items()},
                  base if isinstance(base, str) else None)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- the adapted model's tensors ---------------------------------------------------------

@dataclass(frozen=True)
class Merged(Computed):
    """A tensor of the adapted model: ``base`` (W0) plus the adapter's update,
    computed a few rows at a time in float64 (dtype F64). With no factors
    (``a`` None: a module the adapter does not target), the base's entries
    as stored (dtype: the base's)."""

    # keyword-only: they follow Tensor's fields, some of which have defaults
    base: Tensor = field(kw_only=True)
    config: Path = field(kw_only=True)
    a: Tensor | None = None
    b: Tensor | None = None
    magnitude: Tensor | None = None
    scale: float = 1.0
    #: why the module's factors do not fit the base (said if it is drawn)
    misfit: str | None = None

    @property
    def inputs(self) -> tuple[File, ...]:
        return (self.file, self.config)

    @property
    def targeted(self) -> bool:
        return self.a is not None

    def compute_into(self, files: Files, first: int, count: int, buffer: bytearray
                     ) -> memoryview:
        import numpy as np

        if self.a is None:
            return files.read_into(self.base, first, count, buffer)
        cols = self.shape[1]
        r0, r1 = first // cols, -(-(first + count) // cols)
        rows = self._rows(files, r0, r1).reshape(-1)
        start = first - r0 * cols
        np.ndarray(count, "<f8", buffer=buffer)[:] = rows[start:start + count]
        return memoryview(buffer)[:count * 8]

    def _rows(self, files: Files, r0: int, r1: int) -> Any:
        """Rows r0..r1 of T: W0 + s·B·A (the outer products added in order,
        never left to BLAS, so that the same bits come on every machine), then
        DoRA's scaling of each row to its magnitude."""
        import numpy as np

        cols = self.shape[1]
        w = _values(files, self.base, r0 * cols, (r1 - r0) * cols).reshape(r1 - r0, cols)
        a, b = _factor(files, self.a), _factor(files, self.b)[r0:r1]
        update, term = np.zeros_like(w), np.empty_like(w)
        for k in range(a.shape[0]):
            np.multiply(b[:, k:k + 1], a[k], out=term)
            update += term
        update *= self.scale
        w += update
        if self.magnitude is not None:
            with np.errstate(all="ignore"):  # a zero row: non-finite, reported
                norms = np.sqrt(np.add.reduce(w * w, axis=1))
                w *= (_factor(files, self.magnitude)[r0:r1] / norms)[:, None]
        return w

    def terms(self) -> list[tuple[float, Tensor, Tensor]] | None:
        """The update as a sum of low-rank products (s, B, A); None for DoRA."""
        if self.magnitude is not None:
            return None
        return [] if self.a is None or self.b is None else [(self.scale, self.b, self.a)]

    def exact(self, other: Tensor, files: Files) -> dict[str, float] | None:
        """‖T − other‖² and the rank of T − other from the factors alone,
        where ``other`` is W0 or another LoRA update of it; None otherwise."""
        mine = self.terms()
        if other == self.base:
            theirs: list[tuple[float, Tensor, Tensor]] | None = []
        elif isinstance(other, Merged) and other.base == self.base:
            theirs = other.terms()
        else:
            return None
        if mine is None or theirs is None:
            return None
        terms = mine + [(-s, b, a) for s, b, a in theirs]
        return _low_rank(files, terms, self.shape)


def _low_rank(files: Files, terms: list[tuple[float, Tensor, Tensor]],
              shape: tuple[int, ...]) -> dict[str, float]:
    """‖Σ s·B·A‖² = Σ (LᵀL) ⊙ (R Rᵀ) with L = [s·B ...], R = [A; ...] (r×r),
    summed in a fixed order; its rank from the R factors of L's and Rᵀ's QR,
    with update_rank's threshold (σ_max · max(rows, cols) · ε_float32)."""
    import numpy as np

    if not terms:
        return {"dd": 0.0, "rank": 0.0}
    left = np.concatenate([s * _factor(files, b) for s, b, _ in terms], axis=1)
    right = np.concatenate([_factor(files, a) for _, _, a in terms], axis=0)
    lt, k = np.ascontiguousarray(left.T), left.shape[1]
    gl = np.array([np.add.reduce(lt[j] * lt, axis=1) for j in range(k)])
    gr = np.array([np.add.reduce(right[j] * right, axis=1) for j in range(k)])
    dd = float(np.add.reduce((gl * gr).reshape(-1)))
    with np.errstate(all="ignore"):
        if not (np.isfinite(left).all() and np.isfinite(right).all()):
            return {"dd": dd, "rank": math.nan}
        rl: Any = np.linalg.qr(left, mode="r")
        rr: Any = np.linalg.qr(right.T, mode="r")
        s = np.linalg.svd(rl @ rr.T, compute_uv=False)
    if not s.size or s[0] == 0:
        return {"dd": dd, "rank": 0.0}
    tol = s[0] * max(shape) * float(np.finfo(np.float32).eps)
    return {"dd": dd, "rank": float(np.count_nonzero(s > tol))}


def _values(files: Files, t: Tensor, first: int, count: int) -> Any:
    import numpy as np

    from . import kernel

    raw = np.frombuffer(files.read(t, first, count), kernel.VALUES[t.dtype])
    return kernel.decoded(raw, t.dtype)


def _factor(files: Files, t: Tensor | None) -> Any:
    """A factor (or magnitude vector) as float64, read once per reduction."""
    assert t is not None
    key = ("peft", t.file, t.name)
    got = files.kept.get(key)
    if got is None:
        got = files.kept[key] = _values(files, t, 0, t.count).reshape(t.shape)
    return got


def open_adapter(ctx: Context, folder: Path, model: dict[str, Tensor], stamps: Stamps,
                 within: Within | None, at: tuple[Any, ...]) -> dict[str, Tensor]:
    """The adapted model's tensors: every tensor of ``model`` (the base's
    headers), merged with the adapter in ``folder`` where it targets it."""
    config_path, weights = folder / CONFIG, folder / WEIGHTS
    _whole(ctx, folder, at)
    config = read_config(ctx, config_path, at)
    if within is not None:
        within.check(weights)
        within.check(config_path)
    stored = {_plain(name): t for name, t in read_header(weights, stamps).items()}
    tensors: dict[str, Tensor] = {}
    for name, w0 in model.items():
        module, _, kind = name.rpartition(".")
        a, b = stored.get(f"{module}.lora_A.weight"), stored.get(f"{module}.lora_B.weight")
        if name in stored:  # modules_to_save: the module's new weights
            tensors[name] = replace(stored[name], name=name)
        elif kind == "weight" and a is not None and b is not None:
            magnitude = stored.get(f"{module}.lora_magnitude_vector")
            r, scale = config.scale(module)
            tensors[name] = Merged(name, weights, "F64", w0.shape, a.start, a.end, base=w0,
                                   config=config_path, a=a, b=b, magnitude=magnitude,
                                   scale=scale, misfit=_misfit(w0, a, b, magnitude, r, config))
        else:
            tensors[name] = Merged(name, weights, w0.dtype, w0.shape, w0.start, w0.end,
                                   base=w0, config=config_path)
    _not_in_base(ctx, stored, model, at)
    return tensors


def _whole(ctx: Context, folder: Path, at: tuple[Any, ...]) -> None:
    """FigspecError for an adapter folder lacking one of its two files."""
    if not (folder / CONFIG).is_file():
        raise ctx.error(at, f"{display_path(folder)} holds {WEIGHTS} but no {CONFIG}: a "
                        "peft adapter needs its config (r, lora_alpha)", "copy the "
                        f"{CONFIG} saved with the adapter into the folder")
    if not (folder / WEIGHTS).is_file():
        raise ctx.error(at, f"{display_path(folder)} holds {CONFIG} but no {WEIGHTS}",
                        "save the adapter with `model.save_pretrained(folder)` (safetensors)")


def _plain(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def _misfit(w0: Tensor, a: Tensor, b: Tensor, magnitude: Tensor | None, r: int,
            config: Config) -> str | None:
    if len(w0.shape) != 2:
        return f"the base's tensor is {list(w0.shape)}, not a matrix"
    rows, cols = w0.shape
    if a.shape != (r, cols) or b.shape != (rows, r):
        return (f"lora_A is {list(a.shape)} and lora_B {list(b.shape)}; the base's weight "
                f"{list(w0.shape)} with r = {r} needs [{r}, {cols}] and [{rows}, {r}]")
    if config.dora and magnitude is None:
        return "the config says `use_dora`, but the adapter holds no lora_magnitude_vector"
    if magnitude is not None and magnitude.shape != (rows,):
        return (f"lora_magnitude_vector is {list(magnitude.shape)}; the base's weight "
                f"{list(w0.shape)} needs [{rows}]")
    for t in (a, b, magnitude):
        if t is not None and t.dtype not in ("BF16", "F16", "F32", "F64"):
            return f"{t.name} is {t.dtype}, which figspec does not read"
    return None


def _not_in_base(ctx: Context, stored: dict[str, Tensor], model: dict[str, Tensor],
                 at: tuple[Any, ...]) -> None:
    """An adapter's factors of a module the base does not have: not its base."""
    for name in stored:
        module, marker, _ = name.partition(".lora_A.")
        if marker and f"{module}.weight" not in model:
            raise ctx.error(at, f"the adapter targets module `{module}`, which the base "
                            "does not hold: is `base:` the model the adapter was trained on?",
                            "give `base:` that model (the adapter's adapter_config.json "
                            "names it as `base_model_name_or_path`)")


def check_drawn(ctx: Context, chosen: dict[str, Tensor], at: tuple[Any, ...]) -> None:
    """FigspecError where a drawn module's factors do not fit the base; a note
    naming the drawn modules the adapter leaves as they are (zero update)."""
    problems = []
    for name, t in chosen.items():
        if isinstance(t, Merged) and t.misfit:
            problems.append(ctx.doc.diagnostic(
                ctx.base + at, f"module `{name.rpartition('.')[0]}` of the adapter does not "
                f"fit the base: {t.misfit}", "give `base:` the model the adapter was "
                "trained on"))
    if problems:
        raise FigspecError(problems[:5])
    same = sorted({_module_of(ctx, n) for n, t in chosen.items()
                   if isinstance(t, Merged) and not t.targeted})
    if same:
        from dataclasses import replace as copied

        shown = ", ".join(f"`{m}`" for m in same[:6]) + (f" and {len(same) - 6} more"
                                                         if len(same) > 6 else "")
        note = ctx.doc.diagnostic(ctx.base + at, f"the adapter does not target {shown}: "
                                  "drawn as the base's weights (zero update)")
        notes = ctx.session.notes.setdefault(ctx.doc.path, [])
        note = copied(note, severity="note")
        if note not in notes:
            notes.append(note)


def _module_of(ctx: Context, name: str) -> str:
    m = ctx.data.param_pattern.search(name)
    return m.group("module") if m else name


def no_base(ctx: Context, folder: Path, at: tuple[Any, ...]) -> FigspecError:
    """An adapter named without the model it adapts (a folder lacking one of
    its files says that first)."""
    _whole(ctx, folder, at)
    named = ""
    try:
        settings = json.loads((folder / CONFIG).read_text())
        if isinstance(settings, dict) and isinstance(settings.get("base_model_name_or_path"),
                                                     str):
            named = f" (its {CONFIG} names `{settings['base_model_name_or_path'][:120]}`)"
    except (OSError, ValueError, RecursionError):
        pass
    return ctx.error(at, f"{display_path(folder)} is a peft adapter: it holds only an update, "
                     f"so its weights need the model it adapts{named}",
                     "give `base:` that model's folder")
