"""Make the SYNTHETIC training runs behind specs/trajectory_changed_fraction.yaml
and specs/two_runs_update_cosine.yaml.

Not a model and not a training run: random numbers shaped like the tiny
Qwen2-style transformer of make_checkpoints.py (8 layers), in bfloat16.
`run/base/` is the start; `run/checkpoint-200/` ... `run/checkpoint-800/`
are four "steps", each the step before with a few more of its entries
nudged: more in later layers and in the MLP, so the changed fraction grows
with the step, as RL fine-tuning's sparse updates are reported to.
`run_b/checkpoint-200/` ... `run_b/checkpoint-800/` are a second "run" from
the same base, of the same steps: at each step it repeats a share of the
first run's nudges and makes nudges of its own elsewhere; the share is
larger in attention than in the MLP and falls with depth, so the cosine of
the two runs' updates does too. Each checkpoint has the trainer_state.json
the Hugging Face Trainer writes (its `global_step` is the step figspec
reads). Fixed seeds: the files are rewritten identically on each run.

    python data/make_run.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from make_checkpoints import LAYERS, MOVES, SHAPES, bf16, save

HERE = Path(__file__).resolve().parent / "run"
STEPS = (200, 400, 600, 800)


SECOND = Path(__file__).resolve().parent / "run_b"

Weights = dict[str, np.ndarray]


def main() -> None:
    rng = np.random.default_rng(2027)
    weights = {f"model.layers.{layer}.{module}.weight": rng.normal(0, 0.02, size=shape)
               for layer in range(LAYERS) for module, shape in SHAPES.items()}
    start = {n: w.copy() for n, w in weights.items()}
    save(HERE / "base" / "model.safetensors", stored(weights))
    nudges: list[Weights] = []  # each step's nudges of the first run, for the second
    for step in STEPS:
        nudged = {}
        for name, w in weights.items():
            share = 0.03 * MOVES[module_of(name)] * (1 + layer_of(name) / LAYERS)
            nudged[name] = (rng.random(w.shape) < share) * rng.normal(0, 0.004, size=w.shape)
            w += nudged[name]
        nudges.append(nudged)
        write_step(HERE, step, weights)
    second_run(start, nudges)


def second_run(weights: Weights, nudges: list[Weights]) -> None:
    """The second run from the same start: at each step, each of the first
    run's nudges repeated with a probability that is higher in attention and
    falls with depth, and nudges of its own where it does not."""
    rng = np.random.default_rng(2028)
    for step, nudged in zip(STEPS, nudges):
        for name, w in weights.items():
            layer, module = layer_of(name), module_of(name)
            follows = (0.9 if module.startswith("self_attn") else 0.6) - 0.5 * layer / LAYERS
            same = rng.random(w.shape) < follows
            share = 0.03 * MOVES[module] * (1 + layer / LAYERS)
            own = (rng.random(w.shape) < share) * rng.normal(0, 0.004, size=w.shape)
            w += np.where(same, nudged[name], own)
        write_step(SECOND, step, weights)


def layer_of(name: str) -> int:
    return int(name.split(".")[2])


def module_of(name: str) -> str:
    return name.split(".", 3)[3][:-len(".weight")]


def stored(weights: Weights) -> dict[str, tuple[tuple[int, ...], bytes]]:
    return {n: (w.shape, bf16(w)) for n, w in weights.items()}


def write_step(run: Path, step: int, weights: Weights) -> None:
    folder = run / f"checkpoint-{step}"
    save(folder / "model.safetensors", stored(weights))
    (folder / "trainer_state.json").write_text(
        json.dumps({"global_step": step, "note": "synthetic"}, indent=1) + "\n")


if __name__ == "__main__":
    main()
