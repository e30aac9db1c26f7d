"""Make the SYNTHETIC checkpoint pair behind specs/checkpoint_heads.yaml.

Not a model: random numbers shaped like the attention of a tiny Llama-style
transformer with grouped-query attention (6 layers; 8 query heads and 2
key/value heads of 4 dimensions; hidden 32), stored as safetensors in
bfloat16, each side with the config.json that says so (figspec reads its
heads from it). `tuned/` is the base with every entry of a few "hot" heads
moved further than the rest (illustrative: one query head per layer, moving
across the layers, and its output columns; one key/value head in the later
layers), so that a per-head figure has something to show. Fixed seed: the
files are rewritten identically on each run.

    python data/make_heads.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "heads"
LAYERS, HEADS, KV, DIM = 6, 8, 2, 4
HIDDEN = HEADS * DIM
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
          "hidden_size": HIDDEN, "num_attention_heads": HEADS, "num_key_value_heads": KV,
          "head_dim": DIM, "num_hidden_layers": LAYERS, "intermediate_size": 64,
          "torch_dtype": "bfloat16", "note": "synthetic, made by data/make_heads.py"}


def bf16(a: np.ndarray) -> bytes:
    bits = a.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()


def save(folder: Path, tensors: dict[str, np.ndarray]) -> None:
    header, body = {}, b""
    for name, a in tensors.items():
        raw = bf16(a)
        header[name] = {"dtype": "BF16", "shape": list(a.shape),
                        "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    header["__metadata__"] = {"format": "pt", "note": "synthetic, made by data/make_heads.py"}
    text = json.dumps(header, sort_keys=True).encode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + body)
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=2, sort_keys=True) + "\n")


def main() -> None:
    rng = np.random.default_rng(29)
    base: dict[str, np.ndarray] = {}
    tuned: dict[str, np.ndarray] = {}
    for layer in range(LAYERS):
        hot_q = (2 * layer + 1) % HEADS          # one query head per layer moves most
        hot_kv = 1 if layer >= LAYERS // 2 else None
        shapes = {"q_proj": (HIDDEN, HIDDEN), "k_proj": (KV * DIM, HIDDEN),
                  "v_proj": (KV * DIM, HIDDEN), "o_proj": (HIDDEN, HIDDEN)}
        for module, shape in shapes.items():
            name = f"model.layers.{layer}.self_attn.{module}.weight"
            b = rng.normal(0, 0.02, size=shape)
            scale = np.full(shape, 0.002 * (1 + layer / LAYERS))
            hot = hot_q if module in ("q_proj", "o_proj") else hot_kv
            if hot is not None:
                cut = np.s_[:, hot * DIM:(hot + 1) * DIM] if module == "o_proj" else \
                    np.s_[hot * DIM:(hot + 1) * DIM]
                scale[cut] *= 4
            base[name], tuned[name] = b, b + rng.normal(0, 1, size=shape) * scale
    save(HERE / "base", base)
    save(HERE / "tuned", tuned)


if __name__ == "__main__":
    main()
