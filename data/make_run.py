"""Make the SYNTHETIC training run behind specs/trajectory_changed_fraction.yaml.

Not a model and not a training run: random numbers shaped like the tiny
Qwen2-style transformer of make_checkpoints.py (8 layers), in bfloat16.
`run/base/` is the start; `run/checkpoint-200/` ... `run/checkpoint-800/`
are four "steps", each the step before with a few more of its entries
nudged: more in later layers and in the MLP, so the changed fraction grows
with the step, as RL fine-tuning's sparse updates are reported to. Each
checkpoint has the trainer_state.json the Hugging Face Trainer writes (its
`global_step` is the step figspec reads). Fixed seed: the files are
rewritten identically on each run.

    python data/make_run.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from make_checkpoints import LAYERS, MOVES, SHAPES, bf16, save

HERE = Path(__file__).resolve().parent / "run"
STEPS = (200, 400, 600, 800)


def main() -> None:
    rng = np.random.default_rng(2027)
    weights = {f"model.layers.{layer}.{module}.weight": rng.normal(0, 0.02, size=shape)
               for layer in range(LAYERS) for module, shape in SHAPES.items()}

    def stored() -> dict[str, tuple[tuple[int, ...], bytes]]:
        return {n: (w.shape, bf16(w)) for n, w in weights.items()}

    save(HERE / "base" / "model.safetensors", stored())
    for step in STEPS:
        for name, w in weights.items():
            layer, module = int(name.split(".")[2]), name.split(".", 3)[3][:-len(".weight")]
            share = 0.03 * MOVES[module] * (1 + layer / LAYERS)  # nudged at this step
            w += (rng.random(w.shape) < share) * rng.normal(0, 0.004, size=w.shape)
        folder = HERE / f"checkpoint-{step}"
        save(folder / "model.safetensors", stored())
        (folder / "trainer_state.json").write_text(
            json.dumps({"global_step": step, "note": "synthetic"}, indent=1) + "\n")


if __name__ == "__main__":
    main()
