"""Tiny LoRA adapters written by the `peft` library itself, for figspec's tests.

SYNTHETIC: these are not trained adapters. Each starts from a committed base
model of data/real (made by data/make_real_checkpoints.py), gets a peft
adapter (`get_peft_model`, a fixed seed), a few real AdamW steps on random
tokens (so that lora_B is not zero) and `save_pretrained`. What the tests need
is what peft writes: its tensor names (``base_model.model....lora_A.weight``,
``lora_magnitude_vector``, a ``modules_to_save`` copy), its adapter_config.json
(``r``, ``lora_alpha``, ``use_rslora``, ``rank_pattern``, ``alpha_pattern``,
``use_dora``), and a Trainer-like run of ``checkpoint-N/`` adapter folders
with trainer_state.json.

Beside each adapter, ``merged/model.safetensors`` holds the layers' weights of
``merge_and_unload()`` (the model cast to float64 first, so that the merged
weights are exact in float64, as figspec computes them): the input of the
independent reference (tests/reference.py) in tests/test_peft.py. Neither
torch nor peft is needed by the tests: the files are committed.

Run it in a throwaway environment from the repository's root:

    python3 -m venv /tmp/peftenv
    /tmp/peftenv/bin/pip install torch==2.13.0 transformers peft
    /tmp/peftenv/bin/python data/make_peft_adapters.py

The files committed were written with torch 2.13.0 (CPU), transformers
5.24.0 and peft 0.21.2, Python 3.11.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from safetensors.torch import save_file

DATA = Path(__file__).resolve().parent
OUT = DATA / "peft"
SEED = 0
LEARNING_RATE = 2e-2
BATCH, SEQUENCE = 4, 12
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]

#: name -> (base model under data/real, LoRA config, steps)
ADAPTERS: dict[str, tuple[str, dict[str, Any], int]] = {
    # attention and MLP targets; gate_proj saved whole (modules_to_save)
    "llama-lora": ("llama-f32-sharded", dict(r=4, lora_alpha=8, target_modules=ATTENTION +
                                             ["up_proj", "down_proj"],
                                             modules_to_save=["gate_proj"]), 3),
    # rsLoRA, a rank and an alpha per module by peft's patterns
    "llama-rslora": ("llama-f32-sharded", dict(
        r=4, lora_alpha=6, use_rslora=True, target_modules=ATTENTION + MLP,
        rank_pattern={"q_proj": 2, "layers.1.self_attn.v_proj": 6},
        alpha_pattern={"o_proj": 3, "model.layers.0.mlp.down_proj": 10}), 3),
    "llama-dora": ("llama-f32-sharded", dict(r=2, lora_alpha=4, use_dora=True,
                                             target_modules=["q_proj", "v_proj", "down_proj"]),
                   3),
    # a BF16 base with q/k/v biases (which LoRA leaves as they are)
    "qwen2-lora": ("qwen2-bf16-sharded", dict(r=4, lora_alpha=16,
                                              target_modules=ATTENTION + MLP), 3),
    "qwen2-dora": ("qwen2-bf16-sharded", dict(r=4, lora_alpha=8, use_dora=True,
                                              target_modules=["k_proj", "o_proj", "up_proj"]),
                   3),
}
#: A Trainer-like run: a LoRA adapter saved every RUN_EVERY steps.
RUN = ("llama-f32-sharded", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj",
                                                                       "down_proj"]))
RUN_STEPS, RUN_EVERY = 6, 2


def base_model(variant: str) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(
        DATA / "real" / variant / "base", dtype=torch.float32)


def steps(m: Any, optimizer: Any, g: torch.Generator, n: int) -> None:
    m.train()
    for _ in range(n):
        tokens = torch.randint(0, 96, (BATCH, SEQUENCE), generator=g)
        loss = m(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def adapted(variant: str, options: dict[str, Any]) -> Any:
    torch.manual_seed(SEED)
    config = peft.LoraConfig(init_lora_weights=True, lora_dropout=0.0, **options)
    return peft.get_peft_model(base_model(variant), config)


def save_adapter(m: Any, folder: Path, variant: str) -> None:
    m.save_pretrained(folder)
    config = folder / "adapter_config.json"  # the base as the repository names it
    settings = json.loads(config.read_text())
    settings["base_model_name_or_path"] = f"data/real/{variant}/base"
    config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    readme = folder / "README.md"  # peft's model card template: nothing the tests read
    if readme.exists():
        readme.unlink()


def save_merged(variant: str, adapter: Path, folder: Path) -> None:
    """merge_and_unload()'s weights of the layers, float64."""
    m = peft.PeftModel.from_pretrained(base_model(variant), adapter).double()
    merged = m.merge_and_unload()
    tensors = {k: v.contiguous() for k, v in merged.state_dict().items()
               if k.startswith("model.layers.") and "norm" not in k}
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name, (variant, options, n) in ADAPTERS.items():
        folder = fresh(OUT / name)
        m = adapted(variant, options)
        g = torch.Generator().manual_seed(SEED + 1)
        steps(m, torch.optim.AdamW(m.parameters(), lr=LEARNING_RATE), g, n)
        save_adapter(m, folder / "adapter", variant)
        save_merged(variant, folder / "adapter", folder / "merged")
    run = fresh(OUT / "llama-run")
    variant, options = RUN
    m = adapted(variant, options)
    g = torch.Generator().manual_seed(SEED + 2)
    optimizer = torch.optim.AdamW(m.parameters(), lr=LEARNING_RATE)
    for step in range(RUN_EVERY, RUN_STEPS + 1, RUN_EVERY):
        steps(m, optimizer, g, RUN_EVERY)
        checkpoint = run / f"checkpoint-{step}"
        save_adapter(m, checkpoint, variant)
        (checkpoint / "trainer_state.json").write_text(json.dumps(
            {"global_step": step, "max_steps": RUN_STEPS, "log_history": []}, indent=2) + "\n")
        save_merged(variant, checkpoint, run / "merged" / f"checkpoint-{step}")
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__}))


if __name__ == "__main__":
    main()
