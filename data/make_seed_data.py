"""Make the ILLUSTRATIVE data behind the five example figures.

These numbers are not measurements. They were reconstructed by hand from the
written descriptions of five published-style figures (restated in ``docs/seeds.md``):
for each module, the description's pattern ("orange at the top, blue in the
middle", or the table of approximate values given for seed 003) became a few
anchor points (layer -> value); values in between are interpolated linearly,
and small Gaussian noise from a fixed seed makes the cells look like data.
Run ``python data/make_seed_data.py`` to rewrite the files; the output is the
same on every run.

Each figure uses a different file type and layout on purpose, so the example
specs exercise all of them: CSV (long, with a `run` column filtered by
`where:`), plain CSV, JSON records, wide TSV (one column per module) and
JSON Lines.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]

# module -> [(layer, value), ...]; layer 0 is the first layer.
Anchors = dict[str, list[tuple[int, float]]]

# 000: 36 layers, domain 0.11-0.13. q and k orange throughout; v blue, most of
# all in layers 6-24; o orange below 6 and above 27, blue between; up blue,
# warming towards 30; down mostly orange with some blue; gate blue below 6
# and above 24, orange between.
SEED_000: Anchors = {
    "q_proj": [(0, 0.1265), (18, 0.1275), (35, 0.127)],
    "k_proj": [(0, 0.126), (18, 0.127), (35, 0.1265)],
    "v_proj": [(0, 0.1175), (6, 0.1135), (24, 0.1135), (35, 0.117)],
    "o_proj": [(0, 0.127), (5, 0.1255), (8, 0.114), (25, 0.114), (28, 0.1255), (35, 0.127)],
    "up_proj": [(0, 0.1145), (24, 0.1155), (30, 0.1215), (35, 0.117)],
    "down_proj": [(0, 0.1255), (11, 0.1245), (13, 0.1155), (16, 0.1155), (18, 0.1245),
                  (35, 0.126)],
    "gate_proj": [(0, 0.1145), (5, 0.1155), (8, 0.1255), (23, 0.1255), (26, 0.1145),
                  (35, 0.114)],
}

# 001: 28 layers, domain 0.12-0.18. q rises from ~0.12 (0-4) to 0.17-0.18
# (24-27); k likewise, 0.12-0.14 up to 12 and 0.16-0.17 at 24-27; v 0.12-0.14
# flat; o 0.12-0.13; up 0.14-0.16 in 8-20, ~0.17 at 24-27; down 0.13-0.15;
# gate 0.12-0.14.
SEED_001: Anchors = {
    "q_proj": [(0, 0.121), (4, 0.123), (16, 0.145), (23, 0.163), (24, 0.172), (27, 0.178)],
    "k_proj": [(0, 0.122), (12, 0.138), (20, 0.150), (24, 0.162), (27, 0.168)],
    "v_proj": [(0, 0.128), (27, 0.132)],
    "o_proj": [(0, 0.124), (27, 0.126)],
    "up_proj": [(0, 0.138), (8, 0.145), (20, 0.156), (24, 0.168), (27, 0.171)],
    "down_proj": [(0, 0.134), (14, 0.142), (27, 0.146)],
    "gate_proj": [(0, 0.127), (27, 0.132)],
}

# 002: 36 layers, domain 0.11-0.13, layer 0 drawn at the top. q and k
# orange (0.12-0.13), a little lower near layer 0; v, o, down and gate rise
# from ~0.11 near layer 0 to ~0.13 near 35, gate most steeply; up 0.11-0.12.
SEED_002: Anchors = {
    "q_proj": [(0, 0.1235), (6, 0.1245), (27, 0.1275), (35, 0.128)],
    "k_proj": [(0, 0.123), (6, 0.124), (35, 0.127)],
    "v_proj": [(0, 0.1135), (9, 0.115), (24, 0.1245), (35, 0.1275)],
    "o_proj": [(0, 0.114), (9, 0.1155), (24, 0.124), (35, 0.127)],
    "up_proj": [(0, 0.1145), (35, 0.1155)],
    "down_proj": [(0, 0.1145), (35, 0.126)],
    "gate_proj": [(0, 0.111), (35, 0.1295)],
}

# 003: 28 layers, domain 0.12-0.18: the description's own table of values.
_L003 = [0, 4, 8, 12, 16, 20, 24, 27]
SEED_003: Anchors = {
    m: list(zip(_L003, vs))
    for m, vs in {
        "q_proj": [0.14, 0.15, 0.16, 0.15, 0.16, 0.17, 0.17, 0.17],
        "k_proj": [0.18, 0.17, 0.16, 0.14, 0.13, 0.13, 0.13, 0.14],
        "v_proj": [0.17, 0.16, 0.15, 0.13, 0.12, 0.13, 0.13, 0.14],
        "o_proj": [0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.17, 0.18],
        "up_proj": [0.14, 0.15, 0.15, 0.15, 0.16, 0.16, 0.16, 0.16],
        "down_proj": [0.14, 0.15, 0.15, 0.15, 0.16, 0.16, 0.16, 0.16],
        "gate_proj": [0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.17, 0.18],
    }.items()
}

# 004: 28 layers, domain 0.12-0.16 (values 0.11-0.17, clamped at the ends).
# q rises from ~0.115 (0-3) to ~0.14 (24-27); k moderate blue to 9 (lowest at
# 3-6), orange 15-21, pale at 24-27; v orange at 0-3, blue 6-18, mid at the
# top; o orange at 0-3, pale blue 6-12, an orange band 15-18, pale at the
# top; up and down ~0.14, up a little higher above 15; gate dark blue 0-6,
# lightening to ~0.14 by 21-27.
SEED_004: Anchors = {
    "q_proj": [(0, 0.114), (3, 0.117), (24, 0.139), (27, 0.140)],
    "k_proj": [(0, 0.131), (3, 0.124), (6, 0.124), (9, 0.131), (15, 0.158), (21, 0.159),
               (24, 0.142), (27, 0.140)],
    "v_proj": [(0, 0.160), (3, 0.156), (6, 0.128), (18, 0.127), (24, 0.142), (27, 0.148)],
    "o_proj": [(0, 0.157), (3, 0.153), (6, 0.136), (12, 0.135), (15, 0.158), (18, 0.159),
               (21, 0.142), (27, 0.139)],
    "up_proj": [(0, 0.139), (14, 0.140), (15, 0.143), (27, 0.145)],
    "down_proj": [(0, 0.141), (27, 0.142)],
    "gate_proj": [(0, 0.119), (6, 0.121), (21, 0.139), (27, 0.141)],
}


def interpolate(anchors: list[tuple[int, float]], layer: int) -> float:
    """Piecewise-linear value at ``layer`` through the anchor points."""
    if layer <= anchors[0][0]:
        return anchors[0][1]
    for (l0, v0), (l1, v1) in zip(anchors, anchors[1:]):
        if l0 <= layer <= l1:
            return v0 + (v1 - v0) * (layer - l0) / (l1 - l0)
    return anchors[-1][1]


def values(anchors: Anchors, n_layers: int, noise: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"layer": layer, "module": m,
         "value": round(interpolate(anchors[m], layer) + rng.gauss(0, noise), 5)}
        for layer in range(n_layers)
        for m in MODULES
    ]


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def wide(rows: list[dict]) -> list[dict]:
    out: dict[int, dict] = {}
    for r in rows:
        out.setdefault(r["layer"], {"layer": r["layer"]})[r["module"]] = r["value"]
    return list(out.values())


def main() -> None:
    # 000: long CSV
    write_csv(HERE / "weight_change_36l.csv", values(SEED_000, 36, 0.0008, 0))
    # 001: JSON records
    rows = values(SEED_001, 28, 0.002, 1)
    (HERE / "grad_norm_28l.json").write_text(
        "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    # 002: wide TSV, one column per module
    write_csv(HERE / "correlation_36l.tsv", wide(values(SEED_002, 36, 0.0007, 2)), "\t")
    # 003: long CSV with two runs; the figure keeps run == grpo. The sft run is
    # the same pattern flattened towards its mean, so that `where:` matters.
    grpo = values(SEED_003, 28, 0.003, 3)
    sft = [{**r, "value": round(0.15 + (r["value"] - 0.15) * 0.4, 5)} for r in grpo]
    write_csv(HERE / "update_ratio_1p5b.csv",
              [{"run": run, **r} for run, rs in (("grpo", grpo), ("sft", sft)) for r in rs])
    # 004: JSON Lines
    rows = values(SEED_004, 28, 0.002, 4)
    (HERE / "activation_28l.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The multi-panel example: seed 003's pattern for two model sizes, keyed by
    # full parameter names. The 36-layer model stretches the 28-layer anchors.
    write_csv(HERE / "update_ratio_params.csv", params_rows())


def params_rows() -> list[dict]:
    stretched = {m: [(round(layer * 35 / 27), v) for layer, v in a] for m, a in SEED_003.items()}
    rows = []
    for model, anchors, n, seed in (("1.5b", SEED_003, 28, 5), ("3b", stretched, 36, 6)):
        rows.append({"model": model, "param": "model.embed_tokens.weight", "value": 0.2})
        for r in values(anchors, n, 0.003, seed):
            part = "mlp" if r["module"] in ("up_proj", "down_proj", "gate_proj") else "self_attn"
            rows.append({"model": model, "param": f"model.layers.{r['layer']}.{part}."
                         f"{r['module']}.weight", "value": r["value"]})
        rows.append({"model": model, "param": "lm_head.weight", "value": 0.2})
    return rows


if __name__ == "__main__":
    main()
