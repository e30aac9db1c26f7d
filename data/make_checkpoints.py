"""Make the SYNTHETIC checkpoint pair behind specs/checkpoint_relative_change.yaml.

Not a model: random numbers shaped like a tiny Qwen2-style transformer (8
layers; attention with 2 key/value heads; hidden 16, intermediate 32), stored
as safetensors in bfloat16. `base/` is one file; `tuned/` is the base with
about 12% of its entries nudged, more in later layers and in the MLP, and is
sharded in two files with an index, as real checkpoints are. Fixed seed: the
files are rewritten identically on each run.

    python data/make_checkpoints.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "ckpt"
LAYERS, HIDDEN, KV, INTER = 8, 16, 4, 32
SHAPES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN),
          "self_attn.v_proj": (KV, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
          "mlp.up_proj": (INTER, HIDDEN), "mlp.down_proj": (HIDDEN, INTER),
          "mlp.gate_proj": (INTER, HIDDEN)}
#: How much each module moves, relative to the others (illustrative).
MOVES = {"self_attn.q_proj": 1.0, "self_attn.k_proj": 0.8, "self_attn.v_proj": 1.4,
         "self_attn.o_proj": 1.2, "mlp.up_proj": 1.6, "mlp.down_proj": 1.8,
         "mlp.gate_proj": 1.5}


def bf16(a: np.ndarray) -> bytes:
    bits = a.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()


def save(path: Path, tensors: dict[str, tuple[tuple[int, ...], bytes]]) -> None:
    header, body = {}, b""
    for name, (shape, raw) in tensors.items():
        header[name] = {"dtype": "BF16", "shape": list(shape),
                        "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    header["__metadata__"] = {"format": "pt", "note": "synthetic, made by data/make_checkpoints.py"}
    text = json.dumps(header, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(text).to_bytes(8, "little") + text + body)


def main() -> None:
    rng = np.random.default_rng(2026)
    base: dict[str, tuple[tuple[int, ...], bytes]] = {}
    tuned: dict[str, tuple[tuple[int, ...], bytes]] = {}
    for layer in range(LAYERS):
        for module, shape in SHAPES.items():
            name = f"model.layers.{layer}.{module}.weight"
            b = rng.normal(0, 0.02, size=shape)
            changed = rng.random(shape) < 0.12
            step = 0.004 * MOVES[module] * (1 + layer / LAYERS)
            t = b + changed * rng.normal(0, step, size=shape)
            base[name], tuned[name] = (shape, bf16(b)), (shape, bf16(t))
    embed = rng.normal(0, 0.02, size=(64, HIDDEN))  # no layer: never read
    base["model.embed_tokens.weight"] = tuned["model.embed_tokens.weight"] = ((64, HIDDEN),
                                                                              bf16(embed))
    save(HERE / "base" / "model.safetensors", base)
    names = sorted(tuned)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for fname, part in halves.items():
        save(HERE / "tuned" / fname, {n: tuned[n] for n in part})
    index = {"metadata": {"note": "synthetic"},
             "weight_map": {n: f for f, part in halves.items() for n in part}}
    (HERE / "tuned" / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
