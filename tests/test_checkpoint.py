"""Metrics straight from safetensors checkpoints: every metric and option
against an independent float64 reference, broken files, read-once and cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import checkpoints as ck
import support
from figspec.builder import Options, build, compile_spec
from figspec.sources import reduce as source

LABELS = dict(zip(["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"],
                  support.LABELS))


def spec_for(project: Path, metric: str, extra: str = "", modules: str = "qwen2",
             name: str = "fig", data: str = "") -> Path:
    base = "" if metric in ("norm", "rms", "max_abs") else "  base: ../ckpt/base\n"
    return support.write(project / "specs" / f"{name}.yaml", (
        f"data:\n  checkpoint: ../ckpt/tuned\n{base}  metric: {metric}\n{data}"
        f"modules: {modules}\n{extra}"))


def reference(stored: dict, name: str, metric: str, dtype: str, shape: tuple[int, int],
              tolerance: float | None = None, relative: float | None = None) -> float:
    t = ck.decode(stored["tuned"][name], dtype, shape).ravel()
    b = ck.decode(stored["base"][name], dtype, shape).ravel()
    d = t - b
    n = t.size
    if tolerance is not None:
        changed = np.count_nonzero(np.abs(d) > tolerance)
    elif relative is not None:
        changed = np.count_nonzero(np.abs(d) > relative * np.maximum(np.abs(t), np.abs(b)))
    else:  # entry by entry, as stored: their bytes differ
        changed = _bitwise_changed(stored, name, n)
    return {
        "relative_change": math.sqrt(np.sum(d * d)) / math.sqrt(np.sum(b * b)),
        "changed_fraction": changed / n, "sparsity": 1 - changed / n,
        "cosine": np.sum(t * b) / (math.sqrt(np.sum(t * t)) * math.sqrt(np.sum(b * b))),
        "update_norm": math.sqrt(np.sum(d * d)), "update_rms": math.sqrt(np.sum(d * d) / n),
        "norm": math.sqrt(np.sum(t * t)), "rms": math.sqrt(np.sum(t * t) / n),
        "max_abs": float(np.max(np.abs(t))),
    }[metric]


def _bitwise_changed(stored: dict, name: str, n: int) -> int:
    t, b = stored["tuned"][name], stored["base"][name]
    width = len(t) // n
    return sum(t[i * width:(i + 1) * width] != b[i * width:(i + 1) * width] for i in range(n))


def cells(vl: dict) -> dict[tuple[int, str], float]:
    return {(r["layer"], r["module"]): r["value"] for r in vl["data"]["values"]}


METRICS = ["relative_change", "changed_fraction", "sparsity", "cosine", "update_norm",
           "update_rms", "norm", "rms", "max_abs"]


@pytest.mark.parametrize("dtype,shards", [("BF16", 1), ("F16", 2), ("F32", 3)])
def test_every_metric_matches_a_float64_reference(project: Path, dtype: str, shards: int):
    _, _, stored = ck.make_pair(project / "ckpt", dtype=dtype, shards=shards)
    for metric in METRICS:
        spec = spec_for(project, metric, "output: {formats: [svg]}\n")
        got = cells(compile_spec(spec))
        assert len(got) == 3 * 7
        for layer in range(3):
            for module, label in LABELS.items():
                group = "mlp" if module in ("up_proj", "down_proj", "gate_proj") else "self_attn"
                name = f"model.layers.{layer}.{group}.{module}.weight"
                want = reference(stored, name, metric, dtype, (16, 24))
                assert got[(layer, label)] == pytest.approx(want, rel=1e-9, abs=1e-300), \
                    (metric, name)


@pytest.mark.parametrize("option,value", [("tolerance", 1e-5), ("relative_tolerance", 1e-3)])
def test_tolerances(project: Path, option: str, value: float):
    _, _, stored = ck.make_pair(project / "ckpt", dtype="F32", scale=1e-5)
    for metric in ("changed_fraction", "sparsity"):
        spec = spec_for(project, metric, data=f"  {option}: {value}\n")
        got = cells(compile_spec(spec))
        name = "model.layers.1.self_attn.v_proj.weight"
        kw = {"tolerance": value} if option == "tolerance" else {"relative": value}
        assert got[(1, "attn. v")] == pytest.approx(
            reference(stored, name, metric, "F32", (16, 24), **kw), rel=1e-12)


def test_a_tiny_update_keeps_its_digits(project: Path):
    """||T - B|| is summed from T - B itself, never from ||T||, ||B|| and <T, B>."""
    b = np.random.default_rng(1).normal(0, 1, size=(64, 64))
    t = b * (1 + 1e-4)
    for side, values in (("base", b), ("tuned", t)):
        ck.write_safetensors(project / "ckpt" / side / "model.safetensors", {
            "model.layers.0.self_attn.q_proj.weight": ("F64", (64, 64), values.tobytes())})
    spec = spec_for(project, "relative_change", modules="[q_proj]")
    (value,) = cells(compile_spec(spec)).values()
    assert value == pytest.approx(np.linalg.norm(t - b) / np.linalg.norm(b), rel=1e-9)


def test_update_rank_is_torch_s_rank_on_float32(project: Path):
    rng = np.random.default_rng(2)
    b = rng.normal(size=(32, 48))
    t = b + rng.normal(size=(32, 3)) @ rng.normal(size=(3, 48)) * 1e-2  # a rank-3 update
    for side, values in (("base", b), ("tuned", t)):
        ck.write_safetensors(project / "ckpt" / side / "model.safetensors", {
            "model.layers.0.self_attn.q_proj.weight": ("F32", (32, 48),
                                                        values.astype("<f4").tobytes())})
    spec = spec_for(project, "update_rank", modules="[q_proj]")
    (value,) = cells(compile_spec(spec)).values()
    d = (t.astype(np.float32).astype(np.float64) - b.astype(np.float32).astype(np.float64))
    s = np.linalg.svd(d.astype(np.float32), compute_uv=False)
    want = np.count_nonzero(s > s[0] * 48 * np.finfo(np.float32).eps) / 32
    assert value == want and 3 / 32 <= value


@pytest.mark.parametrize("shape,near", [((64, 96), True), ((96, 64), False), ((80, 80), True)])
def test_update_rank_near_its_threshold_is_torch_s_rank(project: Path, shape: tuple[int, int],
                                                        near: bool):
    """Singular values designed around the threshold (s_max * max(m, n) *
    eps_float32), or far from it, and a rank-deficient tail: the rank is
    float32 SVD's count, whichever way figspec finds it."""
    rng = np.random.default_rng(4)
    m, n = shape
    k = min(m, n)
    thr = max(m, n) * np.finfo(np.float32).eps
    s = np.concatenate([np.geomspace(1, 1e-3, k // 2),
                        thr * np.array([1.3, 1.05, 0.95, 0.7]) if near else [1e-4] * 4,
                        np.zeros(k - k // 2 - 4)])
    u, _ = np.linalg.qr(rng.normal(size=(m, k)))
    v, _ = np.linalg.qr(rng.normal(size=(n, k)))
    d = ((u * s) @ v.T).astype(np.float32)
    for side, values in (("base", np.zeros(shape, np.float32)), ("tuned", d)):
        ck.write_safetensors(project / "ckpt" / side / "model.safetensors", {
            "model.layers.0.self_attn.q_proj.weight": ("F32", shape, values.tobytes())})
    spec = spec_for(project, "update_rank", modules="[q_proj]")
    (value,) = cells(compile_spec(spec)).values()
    sv = np.linalg.svd(d, compute_uv=False)
    assert value == np.count_nonzero(sv > sv[0] * max(shape) * np.finfo(np.float32).eps) / k


def test_gpt2_names_and_biases(project: Path):
    _, _, stored = ck.make_pair(project / "ckpt", arch="gpt2", dtype="F32")
    spec = spec_for(project, "norm", modules="gpt2")
    got = cells(compile_spec(spec))
    want = reference(stored, "transformer.h.2.mlp.c_fc.weight", "norm", "F32", (16, 24))
    assert got[(2, "mlp. up")] == pytest.approx(want, rel=1e-12)


# -- read once, cached ---------------------------------------------------------------

@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many tensors were reduced (read from disk): counted, not timed."""
    count: list[int] = []
    real = source.reduce_pair

    def counting(*args, **kw):
        count.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(source, "reduce_pair", counting)
    return count


def test_a_pair_is_read_once_however_many_figures_use_it(project: Path, passes: list[int]):
    ck.make_pair(project / "ckpt")
    for i, metric in enumerate(("relative_change", "cosine", "update_norm")):
        spec_for(project, metric, name=f"f{i}")
    results = build([project / "specs"], Options(out_dir=project / "out", jobs=1))
    assert {r.status for r in results} == {"built"}
    assert len(passes) == 3 * 7  # each layer's weight once; embeddings and lm_head never
    first = len(passes)
    # A colour changed, a figure added with another metric of the pair: no read.
    spec_for(project, "relative_change", name="f0", extra="color: {scheme: redblue}\n")
    spec_for(project, "update_rms", name="f3")
    results = build([project / "specs"], Options(out_dir=project / "out", jobs=1))
    assert {r.status for r in results} == {"built", "up to date"}
    assert len(passes) == first


def test_a_shard_rewritten_in_place_is_noticed(project: Path, passes: list[int]):
    tuned, _, _ = ck.make_pair(project / "ckpt")
    spec = spec_for(project, "relative_change")
    before = cells(compile_spec(spec))
    ck.make_pair(project / "ckpt", seed=7)  # same names and sizes, other bytes
    assert cells(compile_spec(spec)) != before


def test_check_reads_headers_only(project: Path, passes: list[int], run):
    ck.make_pair(project / "ckpt")
    spec_for(project, "relative_change")
    assert run("check")[0] == 0
    assert passes == []


# -- where checkpoints are -----------------------------------------------------------

def test_a_named_root_may_lie_outside_the_project(project: Path, tmp_path_factory, run,
                                                  monkeypatch: pytest.MonkeyPatch):
    shared = tmp_path_factory.mktemp("shared")
    ck.make_pair(shared)
    support.write(project / "figspec.yaml", "roots: {ckpt: $CKPT_DIR}\n")
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $ckpt/tuned\n"
                  "  base: $ckpt/base\n  metric: relative_change\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and ("root `ckpt` in figspec.yaml takes its folder from the environment "
                          "variable CKPT_DIR, which is not set") in err
    monkeypatch.setenv("CKPT_DIR", str(shared))
    code, _, err = run("check")
    assert code == 0 and ": error:" not in err
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $other/tuned\n"
                  "  base: $ckpt/base\n  metric: relative_change\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "`$other` is not a root in figspec.yaml (roots: `$ckpt`)" in err
    support.write(project / "specs" / "fig.yaml", f"data:\n  checkpoint: {shared}/tuned\n"
                  "  base: $ckpt/base\n  metric: relative_change\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "lies outside the project" in err


# -- broken and hostile files --------------------------------------------------------

def corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    name = next(k for k in header if k.startswith("model.layers.0.self_attn.q"))
    if how == "absurd header":
        path.write_bytes((1 << 62).to_bytes(8, "little") + raw[8:])
    elif how == "bad json":
        path.write_bytes(raw[:8] + b"{" * n + raw[8 + n:])
    elif how in ("overlap", "past the end", "dtype", "truncated"):
        if how == "overlap":
            other = next(k for k in header if k != name and not k.startswith("__"))
            header[name]["data_offsets"] = header[other]["data_offsets"]
        elif how == "past the end":
            header[name]["data_offsets"] = [10 ** 12, 10 ** 12 + header[name]["data_offsets"][1]
                                            - header[name]["data_offsets"][0]]
        elif how == "dtype":  # one the format knows, of the same width, that is not read
            header[name]["dtype"] = "I16"
        text = json.dumps(header).encode()
        body = raw[8 + n:]
        if how == "truncated":
            body = body[:len(body) // 2]
        path.write_bytes(len(text).to_bytes(8, "little") + text + body)


@pytest.mark.parametrize("how,message", [
    ("absurd header", "header length 4,611,686,018,427,387,904 is past the end of the file"),
    ("bad json", "header is not JSON"),
    ("overlap", "its bytes overlap those of"),
    ("past the end", "past the end of the file"),
    ("truncated", "the file is truncated"),
    ("dtype", "dtype 'I16' is not read (figspec reads BF16, F16, F32, F64, F8_E4M3, "
              "F8_E5M2)"),
])
def test_a_broken_shard_gives_a_diagnostic_naming_file_and_tensor(project: Path, run,
                                                                  how: str, message: str):
    tuned, _, _ = ck.make_pair(project / "ckpt")
    corrupt(tuned / "model.safetensors", how)
    spec_for(project, "relative_change")
    for command in ("check", "build"):
        code, out, err = run(command)
        assert code == 1 and "Traceback" not in err, err
        assert "specs/fig.yaml:2:15: error: in ckpt/tuned/model.safetensors" in err, err
        assert message in err


def test_an_index_naming_a_missing_shard(project: Path, run):
    tuned, _, _ = ck.make_pair(project / "ckpt", shards=2)
    (tuned / "model-00002-of-00002.safetensors").unlink()
    spec_for(project, "relative_change")
    code, _, err = run("check")
    assert code == 1 and "names a shard that does not exist: model-00002-of-00002" in err


def test_pickles_are_never_unpickled(project: Path, run):
    (project / "ckpt" / "tuned").mkdir(parents=True)
    (project / "ckpt" / "tuned" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    ck.make_pair(project / "other")
    spec_for(project, "norm")
    code, _, err = run("check")
    assert code == 1 and "specs/fig.yaml:2:15: error: ckpt/tuned holds PyTorch pickle weights " \
        "(pytorch_model.bin); figspec reads safetensors only" in err, err
    assert "`model.save_pretrained(folder, safe_serialization=True)`" in err


def test_shapes_and_missing_tensors_between_checkpoint_and_base(project: Path, run):
    ck.make_pair(project / "ckpt")
    raw = (project / "ckpt" / "base" / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["model.layers.0.self_attn.q_proj.weight"]["shape"] = [24, 16]
    header["model.layers.1.mlp.up_proj.weight_renamed"] = header.pop(
        "model.layers.1.mlp.up_proj.weight")
    text = json.dumps(header).encode()
    (project / "ckpt" / "base" / "model.safetensors").write_bytes(
        len(text).to_bytes(8, "little") + text + raw[8 + n:])
    spec_for(project, "relative_change")
    code, _, err = run("check")
    assert "tensor `model.layers.0.self_attn.q_proj.weight` is [16, 24] in the checkpoint and " \
           "[24, 16] in the base" in err
    assert "tensor `model.layers.1.mlp.up_proj.weight` of the checkpoint is not in the base" in err


def test_non_finite_weights_are_named_and_counted(project: Path, run):
    rng = np.random.default_rng(3)
    b = rng.normal(size=(8, 8))
    t = b.copy()
    t[0, :3] = np.nan
    for side, values in (("base", b), ("tuned", t)):
        ck.write_safetensors(project / "ckpt" / side / "model.safetensors", {
            "model.layers.0.self_attn.q_proj.weight": ("F32", (8, 8),
                                                        values.astype("<f4").tobytes())})
    spec_for(project, "relative_change", modules="[q_proj]")
    code, _, err = run("build")
    assert code == 1 and ("tensor `model.layers.0.self_attn.q_proj.weight` holds 3 non-finite "
                          "weights (NaN or infinity) in the checkpoint") in err


def test_several_tensors_for_one_cell_need_aggregate(project: Path, run):
    rng = np.random.default_rng(4)
    tensors = {f"model.layers.0.mlp.experts.{e}.up_proj.weight":
               ("F32", (4, 4), rng.normal(size=(4, 4)).astype("<f4").tobytes()) for e in range(3)}
    ck.write_safetensors(project / "ckpt" / "tuned" / "model.safetensors", tensors)
    spec_for(project, "norm", modules="[up_proj]")
    code, _, err = run("check")
    assert code == 1 and "a second row for layer 0, module `up_proj`" in err
    assert "aggregate" in err
    spec_for(project, "norm", modules="[up_proj]", data="  aggregate: mean\n")
    assert run("check")[0] == 0


def test_figures_with_different_tolerances_share_one_pass(project: Path, passes: list[int]):
    _, _, stored = ck.make_pair(project / "ckpt", dtype="F32", scale=1e-5)
    spec_for(project, "changed_fraction", name="a")
    spec_for(project, "changed_fraction", name="b", data="  tolerance: 1.0e-5\n")
    spec_for(project, "sparsity", name="c", data="  relative_tolerance: 1.0e-3\n")
    spec_for(project, "update_rms", name="d")
    results = build([project / "specs"], Options(out_dir=project / "out", jobs=1))
    assert {r.status for r in results} == {"built"}
    assert len(passes) == 3 * 7  # one reduction per tensor for four figures
    got = cells(compile_spec(project / "specs" / "b.yaml"))
    name = "model.layers.1.self_attn.v_proj.weight"
    assert got[(1, "attn. v")] == pytest.approx(
        reference(stored, name, "changed_fraction", "F32", (16, 24), tolerance=1e-5), rel=1e-12)
    assert len(passes) == 3 * 7  # and compiling again reads nothing


def test_slow_work_is_shown_in_the_progress(project: Path, run):
    ck.make_pair(project / "ckpt")
    spec_for(project, "update_rank", modules="[q_proj]")
    code, out, _ = run("build")
    assert code == 0
    assert "specs/fig.yaml: computing update_rank from checkpoints (one SVD per matrix" in out


def test_tensor_bias_selects_the_biases(project: Path):
    rng = np.random.default_rng(5)
    tensors = {}
    for kind, shape in (("weight", (4, 4)), ("bias", (4,))):
        values = rng.normal(size=shape)
        tensors[f"model.layers.0.self_attn.q_proj.{kind}"] = ("F64", shape, values.tobytes())
    ck.write_safetensors(project / "ckpt" / "tuned" / "model.safetensors", tensors)
    for kind in ("weight", "bias"):
        spec = spec_for(project, "norm", modules="[q_proj]",
                        data=f"  tensor: {kind}\n" if kind == "bias" else "")
        (value,) = cells(compile_spec(spec)).values()
        raw = tensors[f"model.layers.0.self_attn.q_proj.{kind}"][2]
        assert value == pytest.approx(float(np.linalg.norm(np.frombuffer(raw))), rel=1e-12)


# -- figures a paper can trust ---------------------------------------------------------

def _with_norms(folder: Path, seed: int = 0, zero_bias: bool = False) -> None:
    """A Qwen2-like checkpoint: matrices, biases (zero in the base if asked) and
    1-D norms in every layer, as real checkpoints have them."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(2):
        p = f"model.layers.{layer}"
        for m in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"):
            tensors[f"{p}.{m}.weight"] = rng.normal(size=(8, 12))
        tensors[f"{p}.self_attn.q_proj.bias"] = (np.zeros(8) if zero_bias
                                                 else rng.normal(size=8))
        tensors[f"{p}.input_layernorm.weight"] = np.ones(12)
    ck.write_safetensors(folder / "model.safetensors", {
        n: ("F32", v.shape, v.astype("<f4").tobytes()) for n, v in tensors.items()})


def _tuned_from(project: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    raw = (project / "ckpt" / "base" / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        values = np.frombuffer(raw[8 + n + begin:8 + n + end], "<f4").astype(np.float64)
        low_rank = np.outer(rng.normal(size=info["shape"][0]), rng.normal(size=info["shape"][1])) \
            if len(info["shape"]) == 2 else rng.normal(size=info["shape"])
        values = values + low_rank.ravel()
        tensors[name] = ("F32", tuple(info["shape"]), values.astype("<f4").tobytes())
    ck.write_safetensors(project / "ckpt" / "tuned" / "model.safetensors", tensors)


def test_update_rank_reads_only_the_matrices_drawn(project: Path, run):
    """Real checkpoints hold norms and biases beside the matrices: never ranked."""
    _with_norms(project / "ckpt" / "base")
    _tuned_from(project)
    spec_for(project, "update_rank", modules="[q_proj, k_proj, up_proj]")
    code, out, err = run("table", "specs/fig.yaml")
    assert code == 0, err
    values = [float(line.rsplit(",", 1)[1]) for line in out.splitlines()[1:]]
    assert values == [1 / 8] * 6  # a rank-1 update of 8 x 12 matrices


def test_a_drawn_tensor_that_is_no_matrix_is_a_diagnostic_for_update_rank(project: Path, run):
    _with_norms(project / "ckpt" / "base")
    _tuned_from(project)
    spec_for(project, "update_rank", modules="[q_proj, input_layernorm]")
    for command in ("check", "build"):
        code, _, err = run(command)
        assert code == 1 and "Traceback" not in err and "internal error" not in err
        assert ("specs/fig.yaml:4:11: error: tensor `model.layers.0.input_layernorm.weight` has "
                "shape [12]: update_rank is the rank of a matrix") in err, err


def test_a_zero_base_says_which_tensor_and_what_to_use(project: Path, run):
    _with_norms(project / "ckpt" / "base", zero_bias=True)
    _tuned_from(project)
    spec_for(project, "relative_change", modules="[q_proj]", data="  tensor: bias\n")
    code, _, err = run("build")
    assert code == 1 and "column" not in err
    assert ("specs/fig.yaml:4:11: error: tensor `model.layers.0.self_attn.q_proj.bias`: its "
            "base is all zeros") in err, err
    assert "use `metric: update_norm` or `update_rms`" in err
    spec_for(project, "cosine", modules="[q_proj]", data="  tensor: bias\n")
    code, _, err = run("build")
    assert code == 1 and "cosine of T and B is undefined" in err
    spec_for(project, "update_norm", modules="[q_proj]", data="  tensor: bias\n")
    assert run("build")[0] == 0


def test_cosine_of_a_tensor_with_itself_is_one(project: Path, run):
    _with_norms(project / "ckpt" / "base")
    (project / "ckpt" / "tuned").mkdir()
    (project / "ckpt" / "tuned" / "model.safetensors").write_bytes(
        (project / "ckpt" / "base" / "model.safetensors").read_bytes())
    spec_for(project, "cosine", modules="[q_proj, k_proj, up_proj]")
    code, out, _ = run("table", "specs/fig.yaml")
    assert code == 0
    assert {line.rsplit(",", 1)[1] for line in out.splitlines()[1:]} == {"1.0"}


def test_a_zero_size_tensor_is_a_diagnostic(project: Path, run):
    ck.write_safetensors(project / "ckpt" / "tuned" / "model.safetensors", {
        "model.layers.0.self_attn.q_proj.weight": ("F32", (0, 16), b"")})
    spec_for(project, "rms", modules="[q_proj]")
    code, _, err = run("check")
    assert code == 1 and "has no entries (shape [0, 16])" in err and "Infinity" not in err


def test_a_retrained_checkpoint_is_noticed(project: Path, run, monkeypatch: pytest.MonkeyPatch):
    """Rewritten at the same paths: status names the shard, build redraws
    exactly the figures reading it, even if size and mtime are restored."""
    import os

    ck.make_pair(project / "ckpt", shards=2)
    spec_for(project, "relative_change", name="a")
    support.write(project / "specs" / "b.yaml", support.spec_text())
    assert run("build")[0] == 0
    before = (project / "out" / "a.svg").read_bytes()
    shard = project / "ckpt" / "tuned" / "model-00002-of-00002.safetensors"
    st = shard.stat()
    ck.make_pair(project / "ckpt", shards=2, seed=9)  # same names and sizes, other bytes
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shard.stat().st_size == st.st_size
    code, out, _ = run("status")
    assert ("stale       specs/a.yaml (checkpoint ckpt/base/model-00001-of-00002.safetensors "
            "changed)") in out, out
    assert "up to date  specs/b.yaml" in out
    code, out, _ = run("build")
    assert code == 0 and "1 built, 1 up to date" in out
    assert (project / "out" / "a.svg").read_bytes() != before
    code, out, _ = run("status")
    assert "stale" not in out


def test_a_no_op_build_never_hashes_a_checkpoint(project: Path, run,
                                                 monkeypatch: pytest.MonkeyPatch):
    import os

    from figspec import manifest

    ck.make_pair(project / "ckpt")
    spec_for(project, "norm")
    assert run("build")[0] == 0
    hashed: list[Path] = []
    monkeypatch.setattr(manifest, "hash_file", lambda p, size: hashed.append(p) or "")
    shard = project / "ckpt" / "tuned" / "model.safetensors"
    os.utime(shard)  # touched: a content stamp would be hashed to find it unchanged
    code, out, _ = run("status")
    assert hashed == [] and "stale       specs/fig.yaml (checkpoint" in out


def test_a_retrained_checkpoint_under_a_root_is_noticed(project: Path, run, tmp_path_factory,
                                                        monkeypatch: pytest.MonkeyPatch):
    shared = tmp_path_factory.mktemp("shared")
    ck.make_pair(shared)
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {shared}}}\n")
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $ckpt/tuned\n"
                  "  base: $ckpt/base\n  metric: relative_change\nmodules: qwen2\n")
    assert run("build")[0] == 0
    assert "up to date" in run("status")[1]
    ck.make_pair(shared, seed=3)
    code, out, _ = run("status")
    assert "stale       specs/fig.yaml (checkpoint" in out and "model.safetensors changed" in out


def test_check_uses_the_sums_a_build_computed(project: Path, run):
    """Before any build, check says once that the values were not checked;
    after one, check refuses the value-dependent layout build refused."""
    ck.make_pair(project / "ckpt")
    extra = "annotate: {format: .4~s}\ncell: {width: 14}\n"
    spec_for(project, "update_norm", name="a", extra=extra)
    spec_for(project, "update_rms", name="b", extra=extra)
    code, _, err = run("check")
    assert code == 0 and err.count("note: checkpoint metrics not computed yet") == 1, err
    assert "specs/a.yaml and 1 more" in err
    code, _, build_err = run("build")
    assert code == 1 and "annotat" in build_err
    code, _, err = run("check")
    assert code == 1 and "note:" not in err
    assert [line for line in err.splitlines() if "annotat" in line] == \
        [line for line in build_err.splitlines() if "annotat" in line]


def test_a_damaged_cache_entry_is_computed_again(project: Path, run, _own_cache: Path):
    ck.make_pair(project / "ckpt")
    spec_for(project, "norm")
    code, first, _ = run("table", "specs/fig.yaml")
    entries = list((_own_cache / "metrics").glob("*.json"))
    assert code == 0 and entries
    for entry in entries:
        entry.write_text('{"model.layers.0.self_attn.q_proj.weight": [1, 2]}')
    assert run("table", "specs/fig.yaml")[:2] == (0, first)


# -- where a checkpoint may be read from -----------------------------------------------

def test_a_linked_shard_outside_the_project_is_refused(project: Path, run, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    ck.make_pair(elsewhere)
    ck.make_pair(project / "ckpt")
    shard = project / "ckpt" / "tuned" / "model.safetensors"
    shard.unlink()
    shard.symlink_to(elsewhere / "tuned" / "model.safetensors")
    spec_for(project, "norm")
    code, _, err = run("table", "specs/fig.yaml")
    assert code == 1 and f"is a link to {elsewhere}" in err and "outside the project" in err
    assert run("table", "specs/fig.yaml", "--allow-outside")[0] == 0


def test_a_root_cannot_be_left_with_dot_dot(project: Path, run, tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    ck.make_pair(shared / "secret")
    (shared / "ckpt").mkdir()
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {shared / 'ckpt'}}}\n")
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $ckpt/../secret/tuned\n"
                  "  metric: norm\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "'$ckpt/../secret/tuned' leaves the root `$ckpt`" in err


def test_an_empty_root_variable_is_named(project: Path, run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CKPT_DIR", "")
    support.write(project / "figspec.yaml", "roots: {ckpt: $CKPT_DIR}\n")
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $ckpt/tuned\n"
                  "  metric: norm\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "the environment variable CKPT_DIR, which is empty" in err


def _hub_snapshot(hub: Path, repo: str, commit: str) -> Path:
    """A model laid out as huggingface_hub caches it: files are links into blobs."""
    model = hub / ("models--" + repo.replace("/", "--"))
    ck.make_pair(model / "tmp", shards=2)
    snapshot = model / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (model / "blobs").mkdir()
    for i, f in enumerate(sorted((model / "tmp" / "tuned").iterdir())):
        blob = model / "blobs" / f"{i:040x}"
        f.rename(blob)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (model / "refs").mkdir()
    (model / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hugging_face_snapshot_is_read_and_named_by_id(project: Path, run, tmp_path_factory,
                                                         monkeypatch: pytest.MonkeyPatch):
    hub = tmp_path_factory.mktemp("hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    snapshot = _hub_snapshot(hub, "Org/Tiny-1B", "a" * 40)
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: hf:Org/Tiny-1B\n"
                  "  metric: norm\nmodules: qwen2\n")
    code, by_id, err = run("table", "specs/fig.yaml")
    assert code == 0, err
    support.write(project / "figspec.yaml", f"roots: {{hub: {snapshot}}}\n")
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $hub\n"
                  "  metric: norm\nmodules: qwen2\n")
    assert run("table", "specs/fig.yaml")[:2] == (0, by_id)
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: hf:Org/Other@v2\n"
                  "  metric: norm\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "Org/Other (revision v2) is not in the Hugging Face cache" in err
    assert "hf download Org/Other --revision v2" in err


def test_a_pattern_capturing_no_digits_as_layer(project: Path, run):
    ck.write_safetensors(project / "ckpt" / "tuned" / "model.safetensors", {
        "model.layers.\u00b2.self_attn.q_proj.weight": ("F32", (2, 2), b"\0" * 16)})
    spec_for(project, "norm", modules="[q_proj]",
             data="  pattern: 'layers\\.(?P<layer>[^.]+)\\.(?P<module>.+)\\.weight'\n")
    code, _, err = run("check")
    assert code == 1 and "not a whole number" in err and "Traceback" not in err


def test_watch_redraws_when_a_checkpoint_is_rewritten(project: Path):
    ck.make_pair(project / "ckpt")
    spec_for(project, "relative_change")
    builds, thread = support.watched(project)
    first = (project / "out" / "fig.svg").read_bytes()
    # Written beside, each file then renamed into place: the watch polls
    # meanwhile, and must never see a shard emptied and half written.
    ck.make_pair(project / "next", seed=5)
    for side in ("tuned", "base"):
        (project / "next" / side / "model.safetensors").replace(
            project / "ckpt" / side / "model.safetensors")
    thread.join(60)
    assert builds == [["built"], ["built"]]
    assert (project / "out" / "fig.svg").read_bytes() != first


def test_a_shard_truncated_while_it_is_read(project: Path, run,
                                            monkeypatch: pytest.MonkeyPatch):
    """The file shrinks between its header being checked and its bytes being
    read (a copy still running): a diagnostic at the key, never exit 3."""
    tuned, _, _ = ck.make_pair(project / "ckpt")
    real = source.reduce_pair

    def truncating(*args, **kw):
        shard = tuned / "model.safetensors"
        shard.write_bytes(shard.read_bytes()[:1000])
        return real(*args, **kw)

    monkeypatch.setattr(source, "reduce_pair", truncating)
    spec_for(project, "relative_change")
    code, _, err = run("build")
    assert code == 1 and "internal error" not in err, err
    assert "specs/fig.yaml:2:15: error: in ckpt/tuned/model.safetensors" in err
    assert "the file changed while it was read" in err


def test_a_layer_of_five_thousand_digits_is_never_drawn(project: Path, run):
    ck.write_safetensors(project / "ckpt" / "tuned" / "model.safetensors", {
        "model.layers.0.self_attn.q_proj.weight": ("F32", (2, 2), b"\0" * 16),
        f"model.layers.{'9' * 5000}.self_attn.q_proj.weight": ("F32", (2, 2), b"\0" * 16)})
    spec_for(project, "norm", modules="[q_proj]")
    code, out, err = run("table", "specs/fig.yaml")
    assert code == 0 and out.splitlines()[1:] == ["0,q_proj,q_proj,0.0"], err


# -- paths that loop or hold a NUL character (issue 27: 8) ---------------------------------

def _loop(path: Path) -> None:
    """A symbolic link to itself at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.name)


def _loop_shard(project: Path) -> None:
    _loop(project / "ckpt" / "tuned" / "model-00002.safetensors")


def _loop_index_shard(project: Path) -> None:
    tuned = project / "ckpt" / "tuned"
    (tuned / "model.safetensors").rename(tuned / "model-00001.safetensors")
    _loop(tuned / "model-00002.safetensors")
    names = ck.names("llama", 3)
    (tuned / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        **{n: "model-00001.safetensors" for n in names}, "x": "model-00002.safetensors"}}))


def _loop_index(project: Path) -> None:
    _loop(project / "ckpt" / "tuned" / "model.safetensors.index.json")


@pytest.mark.parametrize("make,data,message", [
    (lambda p: _loop(p / "data" / "loop.csv"), "  path: ../data/loop.csv\n",
     "specs/fig.yaml:2:9: error: '../data/loop.csv' is a symbolic link loop"),
    (lambda p: _loop(p / "ckpt" / "loop"), "  checkpoint: ../ckpt/loop\n  metric: norm\n",
     "specs/fig.yaml:2:15: error: '../ckpt/loop' is a symbolic link loop"),
    (lambda p: _loop(p / "ckpt" / "loop"), "  checkpoint: ../ckpt/tuned\n  base: ../ckpt/loop/b\n"
     "  metric: relative_change\n", "specs/fig.yaml:3:9: error: '../ckpt/loop/b' is a symbolic "
     "link loop"),
    (_loop_shard, "  checkpoint: ../ckpt/tuned\n  metric: norm\n",
     "specs/fig.yaml:2:15: error: in ckpt/tuned/model-00002.safetensors: is a symbolic link loop"),
    (_loop_index_shard, "  checkpoint: ../ckpt/tuned\n  metric: norm\n",
     "error: in ckpt/tuned/model.safetensors.index.json: names a shard that is a symbolic link "
     "loop: model-00002.safetensors"),
    (_loop_index, "  checkpoint: ../ckpt/tuned\n  metric: norm\n",
     "error: in ckpt/tuned: its model.safetensors.index.json is a symbolic link loop"),
])
def test_a_symbolic_link_loop_in_any_path_is_a_diagnostic(project: Path, run, make, data: str,
                                                          message: str):
    ck.make_pair(project / "ckpt")
    make(project)
    support.write(project / "specs" / "fig.yaml", f"data:\n{data}modules: qwen2\n")
    for command in (("check",), ("build",), ("check", "--allow-outside")):
        code, _, err = run(*command)
        assert code == 1 and "internal error" not in err, err
        assert message in err, err


def test_a_loop_in_extends_or_a_root_is_a_diagnostic(project: Path, run):
    ck.make_pair(project / "ckpt")
    _loop(project / "specs" / "base.yaml")
    support.write(project / "specs" / "fig.yaml", "extends: base.yaml\ndata:\n  checkpoint: "
                  "../ckpt/tuned\n  metric: norm\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "specs/fig.yaml:1:10: error: `extends` 'base.yaml' is a symbolic link " \
        "loop" in err, err
    _loop(project / "shared")
    support.write(project / "figspec.yaml", "roots:\n  ckpt: shared\n")
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $ckpt/tuned\n"
                  "  metric: norm\nmodules: qwen2\n")
    code, _, err = run("check")
    assert code == 1 and "figspec.yaml:2:9: error: the folder of root `ckpt`, 'shared', is a " \
        "symbolic link loop" in err, err


def test_a_root_whose_folder_holds_a_nul_is_a_diagnostic_in_figspec_yaml(project: Path, run):
    support.write(project / "figspec.yaml", 'roots:\n  ckpt: "/shared/ck\\0pt"\n')
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: $ckpt/tuned\n"
                  "  metric: norm\nmodules: qwen2\n")
    for command in ("check", "build"):
        code, _, err = run(command)
        assert code == 1 and "internal error" not in err, err
        assert "figspec.yaml:2:9: error: the folder of root `ckpt`, '/shared/ck\\x00pt', " \
            "contains a NUL character" in err, err


# -- modules the checkpoint holds (issue 27: 17) -------------------------------------------

def test_a_module_typo_is_suggested_from_the_checkpoint_with_the_preset_that_fits(project: Path,
                                                                                  run):
    ck.make_pair(project / "ckpt", arch="gpt2")
    spec_for(project, "norm", modules="[attn.c_atn]")
    code, _, err = run("check")
    assert code == 1
    assert "error: module `attn.c_atn` is not in ckpt/tuned; did you mean `attn.c_attn`" in err, err
    assert "the modules it holds: `c_attn`, `attn.c_proj`, `c_fc`, `mlp.c_proj`; " \
        "`modules: gpt2` fits them" in err, err


def test_a_module_outside_the_layers_drawn_is_not_called_missing(project: Path, run):
    ck.make_pair(project / "ckpt")
    spec_for(project, "norm", modules="[q_proj]", extra="layers: {first: 10}\n")
    code, _, err = run("check")
    assert code == 1
    assert "error: module `q_proj` is in ckpt/tuned, but in no layer drawn" in err, err


# -- what `figspec table` imports (issue 32: its fixed cost) ------------------------------------

def test_table_of_a_checkpoint_imports_only_what_it_uses(project: Path):
    """`figspec table` draws nothing and, when the spec is right, explains no
    mistake: neither the renderer (figspec.render, figspec.vega), nor difflib
    (`did you mean`), nor statistics (a cell's mean or median) is imported;
    `import figspec.cli` reads no package's metadata (importlib.metadata)."""
    import os
    import subprocess
    import sys

    ck.make_pair(project / "ckpt")
    spec_for(project, "relative_change")
    unused = ("figspec.render", "figspec.vega", "difflib", "statistics")
    code = ("import sys; import figspec.cli; cli = 'importlib.metadata' in sys.modules; "
            "rc = figspec.cli.main(['table', 'specs/fig.yaml']); "
            f"print(rc, cli, [m for m in {unused!r} if m in sys.modules])")
    env = {**os.environ, "FIGSPEC_KERNEL": "numpy"}  # the modules, not the kernel, are the subject
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 False []"
