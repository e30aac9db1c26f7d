"""Tiny checkpoints written by `transformers` itself, for figspec's tests.

SYNTHETIC: these are not trained models. Each architecture is built from a
tiny config (2 layers, hidden size 16, vocabulary of 96) with transformers'
own random initialisation (a fixed seed), saved with ``save_pretrained`` as
``base``; then a few real AdamW steps on random tokens (a fixed seed) make
``tuned``. What the tests need is what real training leaves in real files:
transformers' tensor names and layouts (GPT-2's transposed Conv1D, Phi-3's
fused ``qkv_proj``, mixture-of-experts weights, q/k/v biases that start at
zero), BF16 and F32, one file or sharded with an index.

Written under ``data/real/<arch>-<dtype>[-sharded]/{base,tuned}/``: the
safetensors files, the index when sharded, and ``config.json`` (nothing else).
The tests (tests/test_real_checkpoints.py) read them with neither torch nor
transformers installed.

Run it in a throwaway environment (torch's CPU build is pinned; a plain
``torch`` would download gigabytes), from the repository's root:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers numpy
    /tmp/torchenv/bin/python data/make_real_checkpoints.py

The files committed were written with torch 2.13.0 (CPU) and transformers
5.24.0 (also in each config.json), Python 3.11; a run with the same versions
rewrites them byte for byte (one thread, deterministic algorithms, fixed
seeds). transformers 5.24 writes mixture-of-experts weights one tensor per
expert (``experts.N.w1``), as the original checkpoints do, though it holds
them stacked in memory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import transformers

OUT = Path(__file__).resolve().parent / "real"
SEED = 0
STEPS = 4
LEARNING_RATE = 3e-3
BATCH, SEQUENCE = 4, 12
#: Small enough that every checkpoint here is split into a few shards.
SHARD_SIZE = "8KB"

#: What every config shares: 2 layers, hidden 16, 2 query heads of 8 and one
#: key/value head, so that k/v projections are not square.
COMMON: dict[str, Any] = dict(vocab_size=96, hidden_size=16, intermediate_size=48,
                              num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=1, max_position_embeddings=64,
                              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                              pad_token_id=0)

ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),  # q/k/v projections with biases
    "gpt2": ("GPT2Config", dict(vocab_size=96, n_embd=16, n_layer=2, n_head=2, n_positions=64,
                                n_inner=48, bos_token_id=1,
                                eos_token_id=2)),
    "phi3": ("Phi3Config", {}),
    "mixtral": ("MixtralConfig", dict(intermediate_size=24, num_local_experts=4,
                                      num_experts_per_tok=2)),
    "qwen2_moe": ("Qwen2MoeConfig", dict(moe_intermediate_size=24,
                                         shared_expert_intermediate_size=32, num_experts=4,
                                         num_experts_per_tok=2, decoder_sparse_step=1)),
    "gemma2": ("Gemma2Config", dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=8)),
    "qwen3": ("Qwen3Config", dict(head_dim=8)),
}

#: Which architectures are written in which forms: each of BF16, F32,
#: one file and sharded comes up several times.
VARIANTS: list[tuple[str, str, bool]] = [
    ("llama", "bf16", False), ("llama", "f32", True),
    ("qwen2", "bf16", True), ("qwen2", "f32", False),
    ("gpt2", "f32", False), ("gpt2", "bf16", True),
    ("phi3", "bf16", False), ("phi3", "f32", True),
    ("mixtral", "bf16", True),
    ("qwen2_moe", "f32", False),
    ("gemma2", "bf16", False),
    ("qwen3", "f32", True),
]
DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32}
KEEP = ("config.json", "model.safetensors.index.json")


def config(arch: str) -> Any:
    name, own = ARCHITECTURES[arch]
    cls = getattr(transformers, name)
    kwargs = own if arch == "gpt2" else {**COMMON, **own}
    return cls(**kwargs)


def model(arch: str) -> Any:
    torch.manual_seed(SEED)
    return transformers.AutoModelForCausalLM.from_config(config(arch))


def train(m: Any) -> None:
    """A few AdamW steps on random tokens, in float32."""
    g = torch.Generator().manual_seed(SEED + 1)
    optimizer = torch.optim.AdamW(m.parameters(), lr=LEARNING_RATE)
    m.train()
    for _ in range(STEPS):
        tokens = torch.randint(0, m.config.vocab_size, (BATCH, SEQUENCE), generator=g)
        loss = m(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def save(m: Any, folder: Path, dtype: str, sharded: bool) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    m.to(DTYPES[dtype]).save_pretrained(folder, max_shard_size=SHARD_SIZE if sharded
                                        else "1GB")
    m.to(torch.float32)
    for f in folder.iterdir():  # generation_config.json and the like
        if not (f.name in KEEP or f.suffix == ".safetensors"):
            f.unlink()


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for arch in dict.fromkeys(a for a, _, _ in VARIANTS):
        forms = [(d, s) for a, d, s in VARIANTS if a == arch]
        m = model(arch)
        for dtype, sharded in forms:
            save(m, OUT / name(arch, dtype, sharded) / "base", dtype, sharded)
        train(m)
        for dtype, sharded in forms:
            save(m, OUT / name(arch, dtype, sharded) / "tuned", dtype, sharded)
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__}))


def name(arch: str, dtype: str, sharded: bool) -> str:
    return f"{arch}-{dtype}" + ("-sharded" if sharded else "")


if __name__ == "__main__":
    main()
