"""Named vocabularies of the spec language: the module lists of common
architectures (``modules: llama``) and Vega's colour schemes
(``color.scheme``). The models validate names against these and the JSON
Schema lists them; plain data, nothing is imported."""

from __future__ import annotations

#: Module lists of common architectures, labelled as in the seed figures.
_LLAMA = (("q_proj", "attn. q"), ("k_proj", "attn. k"), ("v_proj", "attn. v"),
          ("o_proj", "attn. o"), ("up_proj", "mlp. up"), ("down_proj", "mlp. down"),
          ("gate_proj", "mlp. gate"))
_ATTENTION = _LLAMA[:4]
#: Mixture-of-experts layouts name the experts `experts.w1` (`experts.N.w1` in
#: the tensor names): one column per expert, or one per weight kind with
#: `aggregate` (see figspec.sources.params).
MODULE_PRESETS: dict[str, tuple[tuple[str, str], ...]] = {
    "llama": _LLAMA, "qwen": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "mistral": _LLAMA,
    "gemma": _LLAMA, "gemma2": _LLAMA,
    "gpt2": (("attn.c_attn", "attn. qkv"), ("attn.c_proj", "attn. o"),
             ("mlp.c_fc", "mlp. up"), ("mlp.c_proj", "mlp. down")),
    "phi3": (("qkv_proj", "attn. qkv"), ("o_proj", "attn. o"), ("gate_up_proj", "mlp. gate+up"),
             ("down_proj", "mlp. down")),
    # Mixtral: w1 is the gate projection, w3 the up, w2 the down.
    "mixtral": _ATTENTION + (("experts.w3", "experts up"), ("experts.w2", "experts down"),
                             ("experts.w1", "experts gate"),
                             ("block_sparse_moe.gate", "router")),
    "qwen2_moe": _ATTENTION + (("experts.up_proj", "experts up"),
                               ("experts.down_proj", "experts down"),
                               ("experts.gate_proj", "experts gate"),
                               ("shared_expert.up_proj", "shared up"),
                               ("shared_expert.down_proj", "shared down"),
                               ("shared_expert.gate_proj", "shared gate"),
                               ("mlp.gate", "router")),
}

#: Vega's continuous colour schemes (vega-scale), the ones that make sense for
#: a quantitative scale. A test checks each against the bundled Vega.
DIVERGING_SCHEMES = (
    "blueorange", "brownbluegreen", "purplegreen", "pinkyellowgreen", "purpleorange",
    "redblue", "redgrey", "redyellowblue", "redyellowgreen", "spectral",
)
SEQUENTIAL_SCHEMES = (
    "blues", "tealblues", "teals", "greens", "browns", "greys", "purples", "warmgreys",
    "reds", "oranges", "turbo", "viridis", "inferno", "magma", "plasma", "cividis",
    "bluegreen", "bluepurple", "goldgreen", "goldorange", "goldred", "greenblue",
    "orangered", "purplebluegreen", "purpleblue", "purplered", "redpurple",
    "yellowgreenblue", "yellowgreen", "yelloworangebrown", "yelloworangered",
    "darkblue", "darkgold", "darkgreen", "darkmulti", "darkred",
    "lightgreyred", "lightgreyteal", "lightmulti", "lightorange", "lighttealblue",
    "rainbow", "sinebow",
)
SCHEMES = DIVERGING_SCHEMES + SEQUENTIAL_SCHEMES
