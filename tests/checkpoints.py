"""Tiny safetensors checkpoints for tests, written without the safetensors
package (the format is an 8-byte header length, a JSON header, the bytes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MODULES = {"llama": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                     "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj", "mlp.gate_proj"],
           "gpt2": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]}


def to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (round to nearest even), as uint16."""
    bits = a.astype(np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def encode(array: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":
        return to_bf16(array).astype("<u2").tobytes()
    kind = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]
    return array.astype(kind).tobytes()


def fp8(byte: int, dtype: str) -> float:
    """One FP8 byte's value from the formats' definitions (OCP 8-bit floating
    point): E4M3 has no infinity and one NaN (S.1111.111); E5M2 is IEEE-like."""
    e_bits, bias = (4, 7) if dtype == "F8_E4M3" else (5, 15)
    m_bits = 7 - e_bits
    sign = -1.0 if byte & 0x80 else 1.0
    e, m = (byte >> m_bits) & ((1 << e_bits) - 1), byte & ((1 << m_bits) - 1)
    if dtype == "F8_E4M3" and e == 15 and m == 7:
        return math.nan
    if dtype == "F8_E5M2" and e == 31:
        return sign * math.inf if m == 0 else math.nan
    if e == 0:
        return sign * m / (1 << m_bits) * 2.0 ** (1 - bias)
    return sign * (1 + m / (1 << m_bits)) * 2.0 ** (e - bias)


def decode(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The stored values as float64: the reference side of every metric test."""
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return np.array([fp8(b, dtype) for b in raw], dtype=np.float64).reshape(shape)
    if dtype == "BF16":
        return from_bf16(np.frombuffer(raw, "<u2")).reshape(shape)
    kind = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]
    return np.frombuffer(raw, kind).astype(np.float64).reshape(shape)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def names(arch: str, layers: int) -> list[str]:
    prefix = "model.layers" if arch == "llama" else "transformer.h"
    return [f"{prefix}.{layer}.{m}.weight" for layer in range(layers) for m in MODULES[arch]]


def make_pair(folder: Path, *, arch: str = "llama", layers: int = 3, dtype: str = "BF16",
              shards: int = 1, seed: int = 0, changed: float = 0.12, scale: float = 1e-3,
              shape: tuple[int, int] = (16, 24)) -> tuple[Path, Path, dict]:
    """A base and a tuned checkpoint (the tuned one changed in about ``changed``
    of its entries), each as ``shards`` files with an index when sharded; and
    the stored bytes of every tensor, for the reference."""
    rng = np.random.default_rng(seed)
    stored: dict[str, dict[str, bytes]] = {"base": {}, "tuned": {}}
    tensors: dict[str, dict[str, tuple[str, tuple[int, ...], bytes]]] = {"base": {}, "tuned": {}}
    all_names = names(arch, layers) + ["model.embed_tokens.weight", "lm_head.weight"]
    for name in all_names:
        b = rng.normal(0, 0.02, size=shape)
        mask = rng.random(shape) < changed
        t = b + mask * rng.normal(0, scale, size=shape)
        for side, values in (("base", b), ("tuned", t)):
            raw = encode(values, dtype)
            stored[side][name] = raw
            tensors[side][name] = (dtype, shape, raw)
    for side in ("base", "tuned"):
        write_checkpoint(folder / side, tensors[side], shards)
    return folder / "tuned", folder / "base", stored


def write_checkpoint(out: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]],
                     shards: int = 1) -> None:
    """One model.safetensors, or ``shards`` files with an index."""
    if shards == 1:
        write_safetensors(out / "model.safetensors", tensors)
        return
    items, weight_map = list(tensors.items()), {}
    for i in range(shards):
        part = dict(items[i::shards])
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(out / fname, part)
        weight_map.update({n: fname for n in part})
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def make_run(folder: Path, steps: list[int], *, layers: int = 2, dtype: str = "BF16",
             shards: int = 1, seed: int = 0, shape: tuple[int, int] = (8, 12),
             trainer_state: bool = False, name: str = "checkpoint-{step}",
             settled: bool = True) -> Path:
    """A base (``folder/base``) and a training run (``folder/run/checkpoint-N``),
    each step's weights the previous step's with more entries changed (some
    entries of each tensor never change, some change at every step). With
    ``trainer_state``, each folder has a trainer_state.json giving its step.
    ``settled``: the files' mtimes set a minute back (written long ago, not
    still being written). Returns the run's folder."""
    rng = np.random.default_rng(seed)
    all_names = names("llama", layers) + ["model.embed_tokens.weight"]
    current = {n: rng.normal(0, 0.02, size=shape) for n in all_names}

    def save(out: Path, values: dict[str, np.ndarray]) -> None:
        write_checkpoint(out, {n: (dtype, shape, encode(v, dtype)) for n, v in values.items()},
                         shards)

    save(folder / "base", current)
    for step in steps:
        current = {n: v + (rng.random(shape) < 0.2) * rng.normal(0, 1e-3, size=shape)
                   for n, v in current.items()}
        out = folder / "run" / name.format(step=step)
        save(out, current)
        if trainer_state:
            (out / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if settled:
        settle(folder)
    return folder / "run"


def settle(folder: Path) -> None:
    """Every file under ``folder`` dated a minute back: written, not being written."""
    import os
    import time

    past = time.time() - 60
    for f in folder.rglob("*"):
        if f.is_file():
            os.utime(f, (past, past))


def hub_snapshot(hub: Path, repo: str, commit: str, *, seed: int = 0, ref: str | None = "main"
                 ) -> Path:
    """A revision of a model laid out as huggingface_hub caches it: the files
    are links into the model's ``blobs``; ``ref`` (a branch or tag) is
    written to name ``commit``, as a download moves it. Several revisions of
    one model share its folder."""
    model = hub / ("models--" + repo.replace("/", "--"))
    tuned, _, _ = make_pair(model / f"tmp-{commit[:8]}", shards=2, seed=seed)
    snapshot = model / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (model / "blobs").mkdir(exist_ok=True)
    for f in sorted(tuned.iterdir()):
        blob = model / "blobs" / f"{commit[:8]}{f.name}"
        f.rename(blob)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", blob.name))
    if ref is not None:
        (model / "refs").mkdir(exist_ok=True)
        (model / "refs" / ref).write_text(commit)
    return snapshot
