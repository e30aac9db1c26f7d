"""A float64 reference for every checkpoint metric, written from the README's
metric table and nothing else: it imports no figspec code, reads safetensors
files with json and numpy alone, and computes each metric from whole arrays
the plain way (figspec reads pieces and keeps running sums).

T is the checkpoint's tensor, B the base's, each as float64 from its stored
values; BF16 is widened as the format defines it (the 16 bits are the top
half of a float32). O is `other`'s tensor: a second run's, from the same base.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

#: numpy's type for the stored bits and for the stored values of each dtype.
_BITS = {"BF16": "<u2", "F16": "<u2", "F32": "<u4", "F64": "<u8"}
_VALUES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}

#: Every metric of the README's table, and those that need a base.
METRICS = ("relative_change", "changed_fraction", "sparsity", "cosine", "update_norm",
           "update_rms", "update_rank", "update_rank_absolute", "norm", "rms", "max_abs")
NEEDS_BASE = METRICS[:8]
#: The metrics of two runs' updates from one base (with `other`).
TWO_RUNS = ("update_cosine", "update_difference")


class Stored:
    """One tensor as stored: its dtype, shape and raw bits."""

    def __init__(self, dtype: str, shape: tuple[int, ...], raw: bytes):
        self.dtype, self.shape, self.raw = dtype, shape, raw

    def bits(self) -> np.ndarray:
        return np.frombuffer(self.raw, _BITS[self.dtype]).reshape(self.shape)

    def float32(self) -> np.ndarray:
        """The stored values as float32 (exact for BF16, F16 and F32)."""
        if self.dtype == "BF16":
            return (self.bits().astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(self.raw, _VALUES[self.dtype]).astype(np.float32).reshape(self.shape)

    def float64(self) -> np.ndarray:
        if self.dtype == "F64":
            return np.frombuffer(self.raw, "<f8").reshape(self.shape).copy()
        return self.float32().astype(np.float64)


def read_file(path: Path) -> dict[str, Stored]:
    """Every tensor of one .safetensors file: 8 bytes of header length
    (little-endian), the JSON header, then the data."""
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    start = 8 + length
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = Stored(info["dtype"], tuple(info["shape"]), blob[start + begin:start + end])
    return out


def read_checkpoint(folder: Path) -> dict[str, Stored]:
    """A folder with model.safetensors.index.json and its shards, or with one
    model.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    tensors: dict[str, Stored] = {}
    for shard in shards:
        tensors.update(read_file(folder / shard))
    return tensors


def metric(name: str, t: Stored, b: Stored | None, *, tolerance: float | None = None,
           relative_tolerance: float | None = None) -> float:
    """The README's definition of ``name`` for one tensor (``b``: the base's)."""
    T = t.float64()
    n = T.size
    if name == "norm":
        return math.sqrt(float(np.sum(T * T)))
    if name == "rms":
        return math.sqrt(float(np.sum(T * T)) / n)
    if name == "max_abs":
        return float(np.max(np.abs(T)))
    assert b is not None, f"{name} needs a base"
    B = b.float64()
    D = T - B
    if name == "relative_change":
        return math.sqrt(float(np.sum(D * D))) / math.sqrt(float(np.sum(B * B)))
    if name == "cosine":
        return float(np.sum(T * B)) / (math.sqrt(float(np.sum(T * T))) *
                                       math.sqrt(float(np.sum(B * B))))
    if name == "update_norm":
        return math.sqrt(float(np.sum(D * D)))
    if name == "update_rms":
        return math.sqrt(float(np.sum(D * D)) / n)
    if name in ("changed_fraction", "sparsity"):
        if tolerance is not None:
            changed = np.abs(D) > tolerance
        elif relative_tolerance is not None:
            changed = np.abs(D) > relative_tolerance * np.maximum(np.abs(T), np.abs(B))
        elif t.dtype == b.dtype:
            changed = t.bits() != b.bits()  # as stored, bit for bit
        else:
            changed = T != B
        fraction = int(np.count_nonzero(changed)) / n
        return fraction if name == "changed_fraction" else 1 - fraction
    if name == "update_rank":
        return _rank(t.float32() - b.float32()) / min(t.shape)
    if name == "update_rank_absolute":
        return _rank(t.float32() - b.float32())
    raise ValueError(f"unknown metric {name}")


def two_runs(name: str, t: Stored, o: Stored, b: Stored) -> float:
    """The README's definition of a metric of two runs' updates: U = T - B,
    V = O - B, in float64."""
    U = t.float64() - b.float64()
    V = o.float64() - b.float64()
    if name == "update_cosine":
        return float(np.sum(U * V)) / (math.sqrt(float(np.sum(U * U))) *
                                       math.sqrt(float(np.sum(V * V))))
    if name == "update_difference":
        return math.sqrt(float(np.sum((U - V) ** 2))) / math.sqrt(float(np.sum(U * U)))
    raise ValueError(f"unknown metric {name}")


def _rank(d: np.ndarray) -> int:
    """torch.linalg.matrix_rank's default on float32: singular values above
    s_max * max(rows, cols) * eps(float32)."""
    assert d.ndim == 2 and d.dtype == np.float32
    s = np.linalg.svd(d, compute_uv=False)
    if s.size == 0 or s[0] == 0:
        return 0
    return int(np.count_nonzero(s > s[0] * max(d.shape) * np.finfo(np.float32).eps))


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    """Equal to ``rel`` relative; exact zeros must be zeros (to 1e-300)."""
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)


def combine(values: list[float], how: str | None) -> Any:
    """``aggregate:`` as the README defines it."""
    import statistics

    return {"mean": statistics.fmean, "median": statistics.median, "min": min,
            "max": max, None: lambda v: v[0]}[how](values)


# -- attention heads, from the definition -------------------------------------------

class Part:
    """Some entries of a stored tensor (one attention head's), as Stored gives them."""

    def __init__(self, whole: Stored, index: Any):
        self.whole, self.index, self.dtype = whole, index, whole.dtype
        self.shape = whole.bits()[index].shape

    def bits(self) -> np.ndarray:
        return self.whole.bits()[self.index]

    def float32(self) -> np.ndarray:
        return self.whole.float32()[self.index]

    def float64(self) -> np.ndarray:
        return self.whole.float64()[self.index]


def head_config(config: dict[str, Any]) -> tuple[int, int, int]:
    """(query heads, key/value heads, head size) as Hugging Face's configs define
    them: num_attention_heads (GPT-2: n_head), num_key_value_heads (default:
    as many), head_dim (default: hidden_size / num_attention_heads)."""
    heads = config.get("num_attention_heads") or config["n_head"]
    kv = config.get("num_key_value_heads") or heads
    size = config.get("head_dim") or (config.get("hidden_size") or config["n_embd"]) // heads
    return heads, kv, size


def heads(module: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Each head of an attention projection -> the numpy index of its entries
    in the stored tensor (``kind``: weight or bias). Stored as nn.Linear (out,
    in): q, k and v's heads are blocks of rows, o's blocks of columns; Phi-3's
    qkv_proj stacks q's rows, then k's, then v's. GPT-2's Conv1D is stored (in,
    out): c_attn's columns are q, k, v; c_proj's rows are the heads."""
    nh, nkv, d = head_config(config)
    leaf = module.rsplit(".", 1)[-1]
    gpt2 = module.endswith("attn.c_attn") or module.endswith("attn.c_proj")
    if leaf in ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "c_proj"):
        n = nkv if leaf in ("k_proj", "v_proj") else nh
        along_columns = leaf in ("o_proj", "out_proj") and kind == "weight"
        return {str(h): (np.s_[:, h * d:(h + 1) * d] if along_columns else
                         np.s_[h * d:(h + 1) * d]) for h in range(n)}
    assert leaf in ("qkv_proj", "c_attn"), module
    out, at = {}, 0
    for part, n in (("q", nh), ("k", nkv if not gpt2 else nh), ("v", nkv if not gpt2 else nh)):
        for h in range(n):
            rows = np.s_[at:at + d]
            out[f"{part}{h}"] = np.s_[:, at:at + d] if gpt2 and kind == "weight" else rows
            at += d
    return out
