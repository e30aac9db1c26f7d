"""Writes the corpus of broken specs and data files (run once; the files are
committed). Each invalid/NAME.yaml has its expected `figspec check` output
beside it in invalid/NAME.expected."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
INV = HERE / "invalid"
DATA = HERE / "data"

MODS = """modules:
  - {name: q_proj, label: "attn. q"}
  - {name: k_proj, label: "attn. k"}
"""
GOOD = "data:\n  path: ../data/good.csv\n" + MODS

def rows(n=4, mods=("q_proj", "k_proj")):
    return [(l, m, round(0.1 + l / 100 + i / 1000, 4)) for l in range(n) for i, m in enumerate(mods)]

def csv(rs, header="layer,module,value"):
    return header + "\n" + "".join(f"{l},{m},{v}\n" for l, m, v in rs)

data_files = {
    "good.csv": csv(rows()),
    "good_wide.tsv": "layer\tq_proj\n0\t0.1\n1\t0.2\n",
    "missing_cell.csv": csv([r for r in rows() if r[:2] != (2, "k_proj")]),
    "duplicate_row.csv": csv(rows() + [(1, "q_proj", 0.5)]),
    "not_a_number.csv": csv(rows()[:3]) + "1,k_proj,n/a\n" + csv(rows()[4:]).split("\n", 1)[1],
    "nan.csv": csv(rows()[:5]) + "2,k_proj,nan\n" + csv(rows()[6:]).split("\n", 1)[1],
    "bad_layer.csv": csv(rows()) + "three,q_proj,0.1\n",
    "empty.csv": "",
    "header_only.csv": "layer,module,value\n",
    "ragged.csv": "layer,module,value\n0,q_proj,0.1\n0,k_proj\n",
    "inf.jsonl": "".join('{"layer": %d, "module": "%s", "value": %s}\n' % (l, m, "Infinity" if (l, m) == (3, "q_proj") else v) for l, m, v in rows()),
    "bad.jsonl": '{"layer": 0, "module": "q_proj", "value": 0.1}\n{"layer": 1, "module": "q_proj" "value": 0.1}\n',
    "not_list.json": '{"layer": 0, "module": "q_proj", "value": 0.1}\n',
    "syntax.json": '[\n  {"layer": 0, "module": "q_proj", "value": 0.1},\n  {"layer": 1, "module": "q_proj", "value": 0.1,}\n]\n',
    "string_value.json": "[\n" + ",\n".join('  {"layer": %d, "module": "%s", "value": %s}' % (l, m, '"big"' if (l, m) == (2, "q_proj") else v) for l, m, v in rows()) + "\n]\n",
}
for name, text in data_files.items():
    (DATA / name).write_text(text)
(DATA / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
(DATA / "latin1.csv").write_bytes(csv(rows()).encode() + "2,caf\xe9,0.1\n".encode("latin-1"))

specs = {
    # -- YAML and document shape
    "empty_file": "",
    "only_comments": "# nothing here\n",
    "not_a_mapping_list": "- data\n- modules\n",
    "not_a_mapping_scalar": "heatmap please\n",
    "yaml_syntax_error": "data:\n  path: ../data/good.csv\n modules: [q_proj]\n",
    "yaml_unclosed_flow": "data: {path: ../data/good.csv\nmodules: [q_proj]\n",
    "two_documents": GOOD + "---\n" + GOOD,
    "duplicate_key": GOOD + "domain: [0.1, 0.2]\ndomain: [0.1, 0.3]\n",
    "python_tag": GOOD + "title: !!python/object/apply:os.system ['echo pwned']\n",
    "custom_tag": GOOD + "legend: !include legend.yaml\n",
    "merge_key": "base: &b {first: 0}\n" + GOOD + "layers:\n  <<: *b\n  last: 3\n",
    "billion_laughs": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + GOOD,
    "deep_nesting": "title: " + "[" * 5000 + "]" * 5000 + "\n" + GOOD,
    # -- keys
    "unknown_key": GOOD + "colour: {scheme: blueorange}\n",
    "unknown_nested_key": "data:\n  pth: ../data/good.csv\n" + MODS,
    "missing_data": MODS,
    "missing_modules": "data:\n  path: ../data/good.csv\n",
    "wrong_type_modules": "data:\n  path: ../data/good.csv\nmodules: q_proj\n",
    # -- data block
    "data_url": "data:\n  path: https://example.com/cells.csv\n" + MODS,
    "data_path_and_values": "data:\n  path: ../data/good.csv\n  values: [{layer: 0, module: q_proj, value: 0.1}]\n" + MODS,
    "data_no_source": "data:\n  layout: long\n" + MODS,
    "data_unknown_suffix": "data:\n  path: ../data/cells.xlsx\n" + MODS,
    "data_missing_file": "data:\n  path: ../data/nope.csv\n" + MODS,
    "data_outside_project": "data:\n  path: ../../../../../../../../etc/cells.csv\n" + MODS,
    "data_bad_layout": "data:\n  path: ../data/good.csv\n  layout: wid\n" + MODS,
    "column_missing": "data:\n  path: ../data/good.csv\n  value: val\n" + MODS,
    "where_column_missing": "data:\n  path: ../data/good.csv\n  where: {run: grpo}\n" + MODS,
    # -- modules
    "modules_empty": "data:\n  path: ../data/good.csv\nmodules: []\n",
    "modules_duplicate": GOOD + "  - q_proj\n",
    "module_not_in_data": GOOD + "  - {name: k_prj, label: K}\n".replace("k_prj", "v_prj"),
    "module_typo": "data:\n  path: ../data/good.csv\nmodules: [q_proj, k_prj]\n",
    "module_label_typo": "data:\n  path: ../data/good.csv\nmodules:\n  - {name: q_proj, lable: Q}\n",
    # -- layers
    "tick_every_zero": GOOD + "layers: {tick_every: 0}\n",
    "last_below_first": GOOD + "layers: {first: 3, last: 1}\n",
    "first_negative": GOOD + "layers: {first: -1}\n",
    "zero_at_middle": GOOD + "layers: {zero_at: middle}\n",
    "layer_not_integer": GOOD + "layers: {last: three}\n",
    # -- domain and colour
    "domain_decreasing": GOOD + "domain: [0.18, 0.12]\n",
    "domain_one_number": GOOD + "domain: [0.12]\n",
    "domain_not_numbers": GOOD + "domain: [low, high]\n",
    "domain_word_typo": GOOD + "domain: nicer\n",
    "scheme_typo": GOOD + "color: {scheme: blueornge}\n",
    "scheme_and_colors": GOOD + "color: {scheme: blueorange, colors: ['#000000', '#ffffff']}\n",
    "bad_hex_color": GOOD + "color: {colors: ['#2166ac', 'orange']}\n",
    "legend_bad_format": GOOD + "legend: {format: .2z}\n",
    "mid_outside_data_domain": GOOD + "color: {mid: 5}\n",
    # -- characters no font draws (written as YAML escapes: raw, YAML refuses them)
    "title_control_character": GOOD + 'title: "Update\\x01 ratio"\n',
    "label_vertical_tab": "data:\n  path: ../data/good.csv\nmodules:\n"
                          '  - {name: q_proj, label: "attn.\\vq"}\n',
    "legend_title_noncharacter": GOOD + 'legend: {title: "ratio \\uFFFE"}\n',
    "layer_title_delete": GOOD + 'layers: {title: "layer\\x7f"}\n',
    "title_next_line": GOOD + 'title: "Update\\Nratio"\n',
    "title_private_use": GOOD + 'title: "\\uE000 ratio"\n',
    "title_newline_and_tab": GOOD + 'title: "Update\\n\\tratio"\n',
    "panel_title_line_separator": GOOD + 'panels:\n  - {title: "a\\Lb"}\n',
    # -- output
    "format_unknown": GOOD + "output: {formats: [svg, jpg]}\n",
    "format_twice": GOOD + "output: {formats: [svg, svg]}\n",
    "output_name_escapes": GOOD + "output: {name: ../../evil}\n",
    "output_name_folder": GOOD + "output: {name: figs/a}\n",
    "png_scale_zero": GOOD + "output: {scale: 0}\n",
    # -- data contents
    "data_missing_cell": "data:\n  path: ../data/missing_cell.csv\n" + MODS,
    "data_duplicate_row": "data:\n  path: ../data/duplicate_row.csv\n" + MODS,
    "data_not_a_number": "data:\n  path: ../data/not_a_number.csv\n" + MODS,
    "data_nan": "data:\n  path: ../data/nan.csv\n" + MODS,
    "data_infinity_jsonl": "data:\n  path: ../data/inf.jsonl\n" + MODS,
    "data_bad_layer": "data:\n  path: ../data/bad_layer.csv\n" + MODS,
    "data_empty_file": "data:\n  path: ../data/empty.csv\n" + MODS,
    "data_header_only": "data:\n  path: ../data/header_only.csv\n" + MODS,
    "data_ragged_csv": "data:\n  path: ../data/ragged.csv\n" + MODS,
    "data_binary": "data:\n  path: ../data/binary.csv\n" + MODS,
    "data_not_utf8": "data:\n  path: ../data/latin1.csv\n" + MODS,
    "data_jsonl_syntax": "data:\n  path: ../data/bad.jsonl\n" + MODS,
    "data_json_not_list": "data:\n  path: ../data/not_list.json\n" + MODS,
    "data_json_syntax": "data:\n  path: ../data/syntax.json\n" + MODS,
    "data_json_string_value": "data:\n  path: ../data/string_value.json\n" + MODS,
    "wide_missing_module": "data:\n  path: ../data/good_wide.tsv\n  layout: wide\n" + MODS,
    "inline_bad_value": "data:\n  values:\n    - {layer: 0, module: q_proj, value: 0.1}\n    - {layer: 0, module: k_proj, value: .nan}\n" + MODS,
    "several_problems": "data:\n  path: ../data/good.csv\n  layot: wide\n" + MODS + "domain: [2, 1]\ncolor: {scheme: viridiss}\n",
}
for name, text in specs.items():
    (INV / f"{name}.yaml").write_text(text)
(INV / "not_utf8.yaml").write_bytes(GOOD.encode() + "title: caf\xe9\n".encode("latin-1"))
(INV / "binary_spec.yaml").write_bytes(b"\x00\x01\x02 binary \xff\xfe")
(INV / "control_character.yaml").write_bytes(b"data:\n  path: ../data/good.csv\n\x0cmodules: [q_proj]\n")

# -- broken safetensors checkpoints (tiny: two 2x2 F32 tensors a checkpoint) ----
import json as _json
import struct as _struct

CK = DATA / "ckpt"
NAMES = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"]


def _safetensors(tensors, header_edit=None, body_edit=None, length=None):
    header, body = {}, b""
    for name, values in tensors.items():
        raw = _struct.pack("<4f", *values)
        header[name] = {"dtype": "F32", "shape": [2, 2], "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    if header_edit:
        header_edit(header)
    text = _json.dumps(header).encode()
    if body_edit:
        body = body_edit(body)
    return (len(text) if length is None else length).to_bytes(8, "little") + text + body


GOOD_T = {NAMES[0]: (1, 2, 3, 4), NAMES[1]: (5, 6, 7, 8)}


def _write(folder, raw, name="model.safetensors"):
    (CK / folder).mkdir(parents=True, exist_ok=True)
    (CK / folder / name).write_bytes(raw)


_write("base", _safetensors(GOOD_T))
_write("absurd_header", _safetensors(GOOD_T, length=1 << 60))
_write("bad_json", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + b"\x00" * 32)
_write("overlap", _safetensors(GOOD_T, header_edit=lambda h: h[NAMES[1]].update(data_offsets=[0, 16])))
_write("past_the_end", _safetensors(GOOD_T, header_edit=lambda h: h[NAMES[1]].update(data_offsets=[1000, 1016])))
_write("truncated", _safetensors(GOOD_T, body_edit=lambda b: b[:20]))
# A drawn tensor in a dtype figspec does not read (4 bytes of I8, then the other tensor).
_write("dtype_i8", _safetensors(GOOD_T, header_edit=lambda h: (h[NAMES[0]].update(dtype="I8", data_offsets=[0, 4], shape=[2, 2]), h[NAMES[1]].update(data_offsets=[4, 20])),
                                body_edit=lambda b: b[:4] + b[16:]))
_write("shape_differs", _safetensors({NAMES[0]: (1, 2, 3, 4), NAMES[1]: (5, 6, 7, 8)},
                                     header_edit=lambda h: h[NAMES[1]].update(shape=[4, 1])))
_write("tensor_missing", _safetensors({NAMES[0]: (1, 2, 3, 4)}))
(CK / "missing_shard").mkdir(parents=True, exist_ok=True)
(CK / "missing_shard" / "model.safetensors.index.json").write_text(_json.dumps(
    {"weight_map": {NAMES[0]: "model-00001-of-00002.safetensors",
                    NAMES[1]: "model-00002-of-00002.safetensors"}}))
_write("missing_shard", _safetensors({NAMES[0]: (1, 2, 3, 4)}), "model-00001-of-00002.safetensors")
(CK / "pickle").mkdir(parents=True, exist_ok=True)
(CK / "pickle" / "pytorch_model.bin").write_bytes(b"\x80\x04\x95 not a checkpoint figspec opens")

# What the format's reference (the safetensors library) refuses, and figspec with it.
_GOOD_TEXT = _safetensors(GOOD_T)[8:-32]
_write("header_length_short", _safetensors(GOOD_T, length=len(_GOOD_TEXT) - 1))
_write("trailing_bytes", _safetensors(GOOD_T, body_edit=lambda b: b + b"\x00" * 4))
_write("hole", _safetensors(GOOD_T, header_edit=lambda h: h[NAMES[1]].update(data_offsets=[20, 36]),
                            body_edit=lambda b: b[:16] + b"\x00" * 4 + b[16:]))
_write("bom", (len(_GOOD_TEXT) + 3).to_bytes(8, "little") + b"\xef\xbb\xbf" + _GOOD_TEXT + _safetensors(GOOD_T)[-32:])
_write("utf16", len(_GOOD_TEXT.decode().encode("utf-16-le")).to_bytes(8, "little") + _GOOD_TEXT.decode().encode("utf-16-le") + _safetensors(GOOD_T)[-32:])
_write("surrogate", _safetensors(GOOD_T, header_edit=lambda h: h.update({"__metadata__": {"note": "\ud800"}})))
_write("metadata_not_strings", _safetensors(GOOD_T, header_edit=lambda h: h.update({"__metadata__": {"step": 100}})))
_write("dtype_list", _safetensors(GOOD_T, header_edit=lambda h: h[NAMES[1]].update(dtype=["F32"])))

CKMODS = "modules: [q_proj, k_proj]\n"
for case in ("absurd_header", "bad_json", "overlap", "past_the_end", "truncated", "dtype_i8",
             "missing_shard", "pickle", "header_length_short", "trailing_bytes", "hole", "bom",
             "utf16", "surrogate", "metadata_not_strings", "dtype_list"):
    (INV / f"checkpoint_{case}.yaml").write_text(
        f"data:\n  checkpoint: ../data/ckpt/{case}\n  base: ../data/ckpt/base\n"
        f"  metric: relative_change\n" + CKMODS)
for case in ("shape_differs", "tensor_missing"):
    (INV / f"checkpoint_{case}.yaml").write_text(
        f"data:\n  checkpoint: ../data/ckpt/base\n  base: ../data/ckpt/{case}\n"
        f"  metric: relative_change\n" + CKMODS)
(INV / "checkpoint_no_base.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  metric: cosine\n" + CKMODS)

# A 1-D tensor drawn for update_rank; a tensor with no entries; a pattern whose
# layer group captures what is no number.
_NORM = "model.layers.0.input_layernorm.weight"
_write("with_norm", _safetensors(GOOD_T, header_edit=lambda h: h.update(
    {_NORM: {"dtype": "F32", "shape": [4], "data_offsets": [32, 48]}}),
    body_edit=lambda b: b + _struct.pack("<4f", 1, 1, 1, 1)))
_write("zero_size", _safetensors(GOOD_T, header_edit=lambda h: h[NAMES[1]].update(
    shape=[0, 2], data_offsets=[16, 16]), body_edit=lambda b: b[:16]))
(INV / "checkpoint_rank_of_a_vector.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/with_norm\n  base: ../data/ckpt/with_norm\n"
    "  metric: update_rank\nmodules: [q_proj, input_layernorm]\n")
(INV / "checkpoint_zero_size.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/zero_size\n  metric: rms\n" + CKMODS)
(INV / "checkpoint_layer_not_a_number.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  metric: norm\n"
    "  pattern: '(?P<layer>[a-z]+)\\.\\d+\\.(?P<module>.+)\\.weight'\n" + CKMODS)

# A quote never closed: reported where it opens, not where the file ends.
(INV / "unterminated_quote.yaml").write_text(
    GOOD + 'title: "Qwen2.5-1.5B: update ratio\n')

# -- paths no file can have: a NUL character in each kind of path a spec names
(INV / "data_path_nul.yaml").write_text('data:\n  path: "../data/go\\0od.csv"\n' + MODS)
(INV / "extends_nul.yaml").write_text('extends: "ba\\0se.yaml"\n' + GOOD)
(INV / "checkpoint_nul.yaml").write_text(
    'data:\n  checkpoint: "../data/ckpt/ba\\0se"\n  metric: norm\n' + CKMODS)
(INV / "checkpoint_base_nul.yaml").write_text(
    'data:\n  checkpoint: ../data/ckpt/base\n  base: "../data/ckpt/ba\\0se"\n'
    '  metric: relative_change\n' + CKMODS)
(INV / "checkpoints_glob_nul.yaml").write_text(
    'data:\n  checkpoints: "../data/ckpt/checkpoint-\\0*"\n  metric: norm\n' + CKMODS)
(INV / "checkpoints_folder_nul.yaml").write_text(
    'data:\n  checkpoints: "../data/ck\\0pt/checkpoint-*"\n  metric: norm\n' + CKMODS)

# -- a module the checkpoint lacks: suggested from the checkpoint's own modules,
# with the preset that fits them (a phi3 checkpoint: qkv_proj, gate_up_proj)
(INV / "checkpoint_module_typo.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  metric: norm\nmodules: [q_proj, k_prj]\n")
_PHI3 = ["model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.self_attn.o_proj.weight",
         "model.layers.0.mlp.gate_up_proj.weight", "model.layers.0.mlp.down_proj.weight"]
_write("phi3", _safetensors({n: (1, 2, 3, 4) for n in _PHI3}))
(INV / "checkpoint_module_of_another_preset.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/phi3\n  metric: norm\nmodules: [q_proj, o_proj]\n")

# -- two runs' updates against each other (`other`, `others`): the base missing,
# `other` without a metric of two runs, shapes that differ between the runs,
# two runs whose steps do not match
_MOVED = {NAMES[0]: (1, 2, 3, 5), NAMES[1]: (5, 6, 7, 9)}
for _run, _steps in (("run_a", (1, 2)), ("run_b", (1, 3))):
    for _step in _steps:
        _write(f"{_run}/checkpoint-{_step}", _safetensors(_MOVED))
(INV / "two_runs_no_base.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  other: ../data/ckpt/base\n"
    "  metric: update_cosine\n" + CKMODS)
(INV / "two_runs_other_without_their_metric.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  other: ../data/ckpt/base\n"
    "  base: ../data/ckpt/base\n  metric: relative_change\n" + CKMODS)
(INV / "two_runs_shape_differs.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  other: ../data/ckpt/shape_differs\n"
    "  base: ../data/ckpt/base\n  metric: update_cosine\n" + CKMODS)
(INV / "two_runs_steps_differ.yaml").write_text(
    "data:\n  checkpoints: ../data/ckpt/run_a/checkpoint-*\n"
    "  others: ../data/ckpt/run_b/checkpoint-*\n  base: ../data/ckpt/base\n"
    "  metric: update_difference\n" + CKMODS)

# -- attention heads (`data.heads`): the heads come from the checkpoint's config.json
_DOWN = "model.layers.0.mlp.down_proj.weight"
_CONFIGS = {"heads": '{"num_attention_heads": 2, "num_key_value_heads": 2, "hidden_size": 2}\n',
            "heads_three": '{"num_attention_heads": 3}\n',
            "heads_not_json": '{"num_attention_heads": 2,\n',
            "heads_no_count": '{"hidden_size": 2}\n'}
for folder, config in _CONFIGS.items():
    _write(folder, _safetensors({**GOOD_T, _DOWN: (1, 0, 0, 1)}))
    (CK / folder / "config.json").write_text(config)
_HEADS = "  base: ../data/ckpt/heads\n  metric: relative_change\n"
(INV / "heads_not_attention.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/heads\n" + _HEADS + "  heads: true\n"
    "modules: [q_proj, down_proj]\n")
(INV / "heads_do_not_divide.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/heads_three\n" + _HEADS + "  heads: true\n" + CKMODS)
(INV / "heads_no_config.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/base\n  base: ../data/ckpt/base\n"
    "  metric: relative_change\n  heads: true\n" + CKMODS)
(INV / "heads_config_not_json.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/heads_not_json\n" + _HEADS + "  heads: true\n" + CKMODS)
(INV / "heads_config_no_count.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/heads_no_count\n" + _HEADS + "  heads: true\n" + CKMODS)
(INV / "heads_not_listed.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/heads\n" + _HEADS + "  heads: [q_proj, v_proj]\n" + CKMODS)
(INV / "heads_without_checkpoint.yaml").write_text(
    "data:\n  path: ../data/good.csv\n  heads: true\n" + MODS)

# -- peft adapters that are not one, or not of this base (the base: ckpt/base)
_LORA = {f"base_model.model.{NAMES[0][:-len('.weight')]}.lora_{x}.weight": (1, 2, 3, 4)
         for x in "AB"}
_ADAPTER_CONFIG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                   "base_model_name_or_path": "meta-llama/Llama-3.2-1B"}
for case, config in {"adapter_no_config": None, "adapter_bad_config": "{not json",
                     "adapter_ia3": _json.dumps({**_ADAPTER_CONFIG, "peft_type": "IA3"}),
                     "adapter_good": _json.dumps(_ADAPTER_CONFIG),
                     "adapter_misfit": _json.dumps({**_ADAPTER_CONFIG, "r": 1})}.items():
    _write(case, _safetensors(_LORA), "adapter_model.safetensors")
    if config is not None:
        (CK / case / "adapter_config.json").write_text(config)
for case in ("adapter_no_config", "adapter_bad_config", "adapter_ia3", "adapter_misfit"):
    (INV / f"checkpoint_{case}.yaml").write_text(
        f"data:\n  checkpoint: ../data/ckpt/{case}\n  base: ../data/ckpt/base\n"
        f"  metric: relative_change\n" + CKMODS)
(INV / "checkpoint_adapter_no_base.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/adapter_good\n  metric: norm\n" + CKMODS)
(INV / "checkpoint_adapter_base_is_an_adapter.yaml").write_text(
    "data:\n  checkpoint: ../data/ckpt/adapter_good\n  base: ../data/ckpt/adapter_good\n"
    "  metric: relative_change\n" + CKMODS)
