"""Two runs' updates against each other (`data.other`, `data.others`): every
value against the float64 reference (tests/reference.py), mixed dtypes (a
side of F64), sums past float64's range, each triple reduced once and
cached, committed numbers drawn without the checkpoints, per step of two
runs, the diagnostics; and update_rank_absolute."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import checkpoints as ck
import reference as ref
import support
from figspec.sources.shard_data import Files

Q = "model.layers.{}.self_attn.q_proj.weight"
MODULES = ["q_proj", "k_proj", "up_proj"]
STEPS = [100, 200, 300]


def module_name(module: str) -> str:
    return f"mlp.{module}" if module in ("up_proj", "down_proj", "gate_proj") \
        else f"self_attn.{module}"


def make_triple(folder: Path, *, dtypes: tuple[str, str, str] = ("BF16", "BF16", "BF16"),
                layers: int = 3, shape: tuple[int, int] = (16, 24), seed: int = 0,
                follows: float = 0.6) -> None:
    """A base, a run A (`a/`) and a run O (`o/`) from it: O repeats a share
    of A's update and adds one of its own; ``dtypes``: of A, O, the base."""
    rng = np.random.default_rng(seed)
    sides: dict[str, dict] = {"a": {}, "o": {}, "base": {}}
    for name in ck.names("llama", layers):
        b = rng.normal(0, 0.02, size=shape)
        da = (rng.random(shape) < 0.3) * rng.normal(0, 1e-3, size=shape)
        do = np.where(rng.random(shape) < follows, da, rng.normal(0, 1e-3, size=shape))
        for side, values, dtype in (("a", b + da, dtypes[0]), ("o", b + do, dtypes[1]),
                                    ("base", b, dtypes[2])):
            sides[side][name] = (dtype, shape, ck.encode(values, dtype))
    for side, tensors in sides.items():
        ck.write_checkpoint(folder / side, tensors)


def spec(project: Path, metric: str = "update_cosine", data: str = "",
         modules: list[str] = MODULES, name: str = "fig", extra: str = "") -> Path:
    return support.write(project / "specs" / f"{name}.yaml", (
        "data:\n  checkpoint: ../ckpt/a\n  other: ../ckpt/o\n  base: ../ckpt/base\n"
        f"  metric: {metric}\n{data}modules: [{', '.join(modules)}]\n{extra}"))


def table(run, path: Path, *args: str) -> list[dict[str, str]]:
    code, out, err = run("table", str(path), *args)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def checked(run, path: Path) -> str:
    code, out, err = run("check", str(path))
    assert code == 1 and "Traceback" not in err + out, err
    return err


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Chunks read from disk for a reduction, by the checkpoint folder read."""
    seen: Counter[str] = Counter()
    real = Files.read_into

    def counting(self, t, *args, **kw):
        seen[t.file.parent.name] += 1
        return real(self, t, *args, **kw)

    monkeypatch.setattr(Files, "read_into", counting)
    return seen


# -- values ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtypes", [("BF16", "BF16", "BF16"), ("F16", "F16", "F16"),
                                    ("F32", "F32", "F32"), ("BF16", "F64", "BF16"),
                                    ("F64", "F32", "BF16")])
@pytest.mark.parametrize("metric", ref.TWO_RUNS)
def test_every_value_equals_the_float64_reference(project: Path, run, metric: str,
                                                  dtypes: tuple[str, str, str]):
    """The sides may be of different dtypes: a side of F64 values (formed
    elsewhere, as a merged adapter's) goes through the same pass."""
    make_triple(project / "ckpt", dtypes=dtypes)
    rows = table(run, spec(project, metric))
    assert len(rows) == 3 * len(MODULES)
    a, o, b = (ref.read_checkpoint(project / "ckpt" / side) for side in ("a", "o", "base"))
    for row in rows:
        name = f"model.layers.{row['layer']}.{module_name(row['module'])}.weight"
        want = ref.two_runs(metric, a[name], o[name], b[name])
        assert ref.close(float(row["value"]), want), (row, want)


def test_the_same_update_has_cosine_one_and_no_difference(project: Path, run):
    make_triple(project / "ckpt", follows=1.0, dtypes=("F32", "F32", "F32"))
    assert {float(r["value"]) for r in table(run, spec(project))} == {1.0}
    assert {float(r["value"]) for r in table(run, spec(project, "update_difference"))} == {0.0}


@pytest.mark.parametrize("metric", ref.TWO_RUNS)
def test_f64_weights_near_1e200_keep_their_values_in_range(project: Path, run, metric: str):
    """Their squares overflow a float64: the sums are taken of the values
    scaled by a power of two (exact), and the metric undoes it."""
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1e200, 64)
    da, do = rng.normal(0, 1e199, 64), rng.normal(0, 1e199, 64)
    for side, values in (("base", b), ("a", b + da), ("o", b + do + da)):
        ck.write_safetensors(project / "ckpt" / side / "model.safetensors",
                             {Q.format(0): ("F64", (8, 8), values.tobytes())})
    rows = table(run, spec(project, metric, modules=["q_proj"], extra="layers: {last: 0}\n"))
    a, o, base = (ref.read_checkpoint(project / "ckpt" / s) for s in ("a", "o", "base"))
    scaled = [ref.Stored("F64", (8, 8), (x.float64() * 2.0 ** -700).tobytes())
              for x in (a[Q.format(0)], o[Q.format(0)], base[Q.format(0)])]
    want = ref.two_runs(metric, *scaled)  # a ratio: the same for the values scaled
    assert math.isfinite(float(rows[0]["value"]))
    assert float(rows[0]["value"]) == pytest.approx(want, rel=1e-12)


# -- read once, cached, committed ----------------------------------------------------

def test_each_triple_is_read_once_in_one_pass_and_cached(project: Path, run,
                                                         reads: Counter[str]):
    make_triple(project / "ckpt")
    table(run, spec(project))
    assert reads == {"a": 9, "o": 9, "base": 9}  # one chunk of each tensor drawn
    reads.clear()
    table(run, spec(project, "update_difference"))  # another metric of the same sums
    assert reads == {}
    table(run, spec(project, modules=["q_proj", "k_proj", "up_proj", "down_proj"]))
    assert reads == {"a": 3, "o": 3, "base": 3}  # only the module added
    reads.clear()
    make_triple(project / "ckpt", seed=5)  # the files rewritten: read again
    table(run, spec(project, modules=["q_proj"]))
    assert reads == {"a": 3, "o": 3, "base": 3}


def test_check_reads_headers_only(project: Path, run, reads: Counter[str]):
    make_triple(project / "ckpt")
    spec(project)
    assert run("check")[0] == 0
    assert reads == {}


def test_the_committed_numbers_draw_the_figure_without_the_checkpoints(
        project: Path, run, reads: Counter[str], monkeypatch: pytest.MonkeyPatch):
    make_triple(project / "ckpt")
    path = spec(project, extra="output: {formats: [svg]}\n")
    assert run("build")[0] == 0
    numbers = project / "specs" / "fig.numbers.json"
    committed = json.loads(numbers.read_text())
    (pair,) = committed["pairs"]
    assert pair["key"] == "../ckpt/a and ../ckpt/o against ../ckpt/base"
    assert set(pair["sides"]) == {"checkpoint", "other", "base"}
    sums = pair["tensors"][Q.format(0)]["sums"]
    assert {"n", "uu", "vv", "uv", "ww"} <= sums.keys() and "tt" not in sums
    before = table(run, path)
    reads.clear()
    # present and unchanged, in a fresh cache: the committed sums, no reduction
    monkeypatch.setenv("FIGSPEC_CACHE", str(project / "fresh-cache"))
    assert table(run, path) == before
    # a co-author's clone: no checkpoints
    shutil.rmtree(project / "ckpt" / "o")
    code, out, err = run("table", str(path))
    assert code == 0 and list(csv.DictReader(io.StringIO(out))) == before
    assert "the checkpoints are not here" in err
    assert reads == {}
    code, _, err = run("table", str(spec(project, "update_difference",
                                          extra="output: {formats: [svg]}\n")))
    assert code == 0, err  # any metric of the same sums
    numbers.write_text(numbers.read_text().replace('"uu": ', '"uu": 1'))
    code, _, err = run("table", str(path))
    assert code == 1 and "does not match its digest" in err


# -- two runs, step by step ----------------------------------------------------------

def make_runs(folder: Path, steps: list[int], steps_b: list[int] | None = None,
              shape: tuple[int, int] = (8, 12)) -> None:
    """A base, a run (`run/checkpoint-N`) and a second run (`run_b/`) from it."""
    rng = np.random.default_rng(1)
    names = ck.names("llama", 2)
    a = {n: rng.normal(0, 0.02, size=shape) for n in names}
    o = {n: v.copy() for n, v in a.items()}

    def save(out: Path, values: dict) -> None:
        ck.write_checkpoint(out, {n: ("BF16", shape, ck.encode(v, "BF16"))
                                  for n, v in values.items()})

    save(folder / "base", a)
    for step in sorted(set(steps) | set(steps_b or steps)):
        nudge = {n: (rng.random(shape) < 0.3) * rng.normal(0, 1e-3, size=shape) for n in names}
        for n in names:
            a[n] = a[n] + nudge[n]
            o[n] = o[n] + np.where(rng.random(shape) < 0.5, nudge[n],
                                   rng.normal(0, 1e-3, size=shape))
        if step in steps:
            save(folder / "run" / f"checkpoint-{step}", a)
        if step in (steps_b or steps):
            save(folder / "run_b" / f"checkpoint-{step}", o)
    ck.settle(folder)


def steps_spec(project: Path, metric: str = "update_cosine", data: str = "",
               extra: str = "") -> Path:
    return support.write(project / "specs" / "runs.yaml", (
        "data:\n  checkpoints: ../ckpt/run/checkpoint-*\n  others: ../ckpt/run_b/checkpoint-*\n"
        f"  base: ../ckpt/base\n  metric: {metric}\n{data}"
        f"modules: [{', '.join(MODULES)}]\n{extra}"))


@pytest.mark.parametrize("metric", ref.TWO_RUNS)
def test_every_step_of_two_runs_equals_the_reference(project: Path, run, metric: str):
    make_runs(project / "ckpt", STEPS)
    rows = table(run, steps_spec(project, metric))
    assert len(rows) == len(STEPS) * 2 * len(MODULES)
    base = ref.read_checkpoint(project / "ckpt" / "base")
    for row in rows:
        step = row["step"]
        assert row["checkpoint"] == f"../ckpt/run/checkpoint-{step}"
        a = ref.read_checkpoint(project / "ckpt" / "run" / f"checkpoint-{step}")
        o = ref.read_checkpoint(project / "ckpt" / "run_b" / f"checkpoint-{step}")
        name = f"model.layers.{row['layer']}.{module_name(row['module'])}.weight"
        assert ref.close(float(row["value"]), ref.two_runs(metric, a[name], o[name],
                                                            base[name])), row


def test_two_runs_steps_draw_as_a_run_s_and_commit_per_step(project: Path, run):
    make_runs(project / "ckpt", STEPS)
    path = steps_spec(project, data="  steps: [100, 300]\n",
                      extra="x: step\noutput: {formats: [svg]}\n")
    code, _, err = run("build")
    assert code == 0, err
    committed = json.loads((project / "specs" / "runs.numbers.json").read_text())
    assert [p["step"] for p in committed["pairs"]] == [100, 300]
    assert committed["pairs"][1]["key"] == \
        "../ckpt/run/checkpoint-300 and ../ckpt/run_b/checkpoint-300 against ../ckpt/base"
    before = table(run, path)
    assert {r["step"] for r in before} == {"100", "300"}
    shutil.rmtree(project / "ckpt" / "run_b")
    code, out, err = run("table", str(path))
    assert code == 0, err
    assert list(csv.DictReader(io.StringIO(out))) == before


def test_new_checkpoints_of_both_runs_make_the_figure_stale_and_are_read_alone(
        project: Path, run, reads: Counter[str]):
    make_runs(project / "ckpt", STEPS)
    steps_spec(project, extra="output: {formats: [svg]}\n")
    assert run("build")[0] == 0
    tensors = 2 * len(MODULES)
    assert reads == {"base": 3 * tensors, **{f"checkpoint-{s}": 2 * tensors for s in STEPS}}
    reads.clear()
    make_runs(project / "more", STEPS + [400])
    for name in ("run_b", "run"):  # the second run's glob is an input too
        shutil.copytree(project / "more" / name / "checkpoint-400",
                        project / "ckpt" / name / "checkpoint-400")
        code, out, _ = run("status")
        assert f"specs/runs.yaml (1 new checkpoint (ckpt/{name}/checkpoint-*))" in out, out
        if name == "run_b":  # step 400 of the second run alone: not matched, said so
            assert out.startswith("failing") and run("build")[0] == 1
    assert run("build")[0] == 0
    assert reads == {"base": tensors, "checkpoint-400": 2 * tensors}  # the new step alone


def test_a_newest_checkpoint_being_written_is_left_out_of_both_runs(project: Path, run):
    make_runs(project / "ckpt", STEPS)
    newest = project / "ckpt" / "run_b" / "checkpoint-300" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-10])  # still being written
    code, out, err = run("table", str(steps_spec(project)))
    assert code == 0, err
    assert {r["step"] for r in csv.DictReader(io.StringIO(out))} == {"100", "200"}
    assert "specs/runs.yaml:3:11: note: step 300 (ckpt/run_b/checkpoint-300) is left out" in err


# -- diagnostics -----------------------------------------------------------------------

def test_runs_whose_steps_do_not_match(project: Path, run):
    make_runs(project / "ckpt", STEPS, [100, 300, 400])
    err = checked(run, steps_spec(project))
    assert ("specs/runs.yaml:3:11: error: step 200 (../ckpt/run/checkpoint-200) has no "
            "checkpoint of the same step in `others`, whose steps are 100, 300, 400; and 1 "
            "more step not in both") in err, err
    assert "; draw the steps both runs have: `steps: [100, 300]`" in err
    assert run("check", str(steps_spec(project, data="  steps: [100, 300]\n")))[0] == 0
    make_runs(project / "ckpt", STEPS, [100, 200, 300, 400])
    err = checked(run, steps_spec(project))
    assert ("error: the other run's step 400 (../ckpt/run_b/checkpoint-400) has no checkpoint "
            "of the same step in `checkpoints`, whose steps are 100, 200, 300") in err, err


def test_the_second_run_s_glob_is_reported_at_others(project: Path, run):
    make_runs(project / "ckpt", STEPS)
    path = support.write(project / "specs" / "runs.yaml", steps_spec(project).read_text()
                         .replace("run_b/checkpoint-*", "run_c/checkpoint-*"))
    err = checked(run, path)
    assert "specs/runs.yaml:3:11: error: the folder ckpt/run_c does not exist" in err, err


def test_shapes_that_differ_between_the_runs(project: Path, run):
    make_triple(project / "ckpt")
    tensors = {n: ("BF16", (24, 16) if n == Q.format(1) else (16, 24), bytes(16 * 24 * 2))
               for n in ck.names("llama", 3)}
    del tensors["model.layers.2.mlp.up_proj.weight"]
    ck.write_checkpoint(project / "ckpt" / "o", tensors)
    err = checked(run, spec(project))
    assert (f"specs/fig.yaml:3:10: error: tensor `{Q.format(1)}` is [16, 24] in the checkpoint "
            "and [24, 16] in the other run's checkpoint") in err, err
    assert ("specs/fig.yaml:3:10: error: tensor `model.layers.2.mlp.up_proj.weight` of the "
            "checkpoint is not in the other run's checkpoint") in err, err
    assert "; `other` is a second run of the same model" in err


def test_a_side_that_cannot_be_read_is_named_at_its_key(project: Path, run):
    make_triple(project / "ckpt")
    shutil.rmtree(project / "ckpt" / "o")
    (project / "ckpt" / "o").mkdir()
    (project / "ckpt" / "o" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    err = checked(run, spec(project))
    assert "specs/fig.yaml:3:10: error: ckpt/o holds PyTorch pickle weights" in err, err


def test_non_finite_weights_are_named_at_the_side_holding_them(project: Path, run):
    make_triple(project / "ckpt", dtypes=("F32", "F32", "F32"))
    raw = bytearray((project / "ckpt" / "o" / "model.safetensors").read_bytes())
    n = int.from_bytes(raw[:8], "little")
    raw[8 + n:8 + n + 4] = np.array([np.nan], "<f4").tobytes()
    (project / "ckpt" / "o" / "model.safetensors").write_bytes(bytes(raw))
    code, _, err = run("table", str(spec(project)))
    assert code == 1
    assert "specs/fig.yaml:3:10: error: tensor `" in err and "holds 1 non-finite weights " \
        "(NaN or infinity) in the other run's checkpoint" in err, err


def test_an_update_of_zero_has_no_cosine(project: Path, run):
    make_triple(project / "ckpt", dtypes=("F32", "F32", "F32"))
    shutil.copytree(project / "ckpt" / "base", project / "ckpt" / "o", dirs_exist_ok=True)
    code, _, err = run("table", str(spec(project, modules=["q_proj"])))
    assert code == 1
    assert "specs/fig.yaml:5:11: error: tensor `model.layers.0.self_attn.q_proj.weight`: it " \
        "is not updated in `other` (O = B), so the cosine of the two updates is undefined" \
        in err, err
    code, out, err = run("table", str(spec(project, "update_difference", modules=["q_proj"])))
    assert code == 0 and {r["value"] for r in csv.DictReader(io.StringIO(out))} == {"1.0"}


@pytest.mark.parametrize("data,message,hint", [
    ("  checkpoint: ../ckpt/a\n  other: ../ckpt/o\n  metric: update_cosine\n",
     "2:3: error: data: metric `update_cosine` compares the updates of two runs from one "
     "base: give `base`", "; `base` is the checkpoint both runs started from"),
    ("  checkpoint: ../ckpt/a\n  base: ../ckpt/base\n  metric: update_difference\n",
     "2:3: error: data: metric `update_difference` compares the update of two runs: give "
     "`other`, the second run's", "; `other` names the run compared with `checkpoint`"),
    ("  checkpoint: ../ckpt/a\n  other: ../ckpt/o\n  base: ../ckpt/base\n"
     "  metric: relative_change\n", "3:10: error: data.other: `other` names a second run, "
     "whose update goes with a metric of two runs' updates, not `relative_change`",
     "; use `metric: update_cosine` or `update_difference`, or leave out `other`"),
    ("  checkpoints: ../ckpt/run/checkpoint-*\n  others: ../ckpt/run_b/checkpoint-*\n"
     "  metric: norm\n", "3:11: error: data.others: `others` names a second run",
     "leave out `others`"),
    ("  checkpoints: ../ckpt/run/checkpoint-*\n  other: ../ckpt/o\n  base: ../ckpt/base\n"
     "  metric: update_cosine\n", "2:3: error: data: `other` goes with `checkpoint`",
     "; with `checkpoints`, name the second run's checkpoints in `others`"),
    ("  checkpoints: ../ckpt/run/checkpoint-*\n  others: ../ckpt/run_b/checkpoint-*\n"
     "  base: ../ckpt/base\n  compare: previous\n  metric: update_cosine\n",
     "2:3: error: data: metric `update_cosine` compares each run's update from `base`: "
     "`compare: previous` does not go with it", "; leave out `compare`"),
])
def test_the_keys_of_two_runs_are_checked_where_written(project: Path, run, data: str,
                                                        message: str, hint: str):
    path = support.write(project / "specs" / "fig.yaml", f"data:\n{data}modules: [q_proj]\n")
    err = checked(run, path)
    assert f"specs/fig.yaml:{message}" in err, err
    assert hint in err, err


# -- update_rank_absolute ------------------------------------------------------------

def test_update_rank_absolute_is_the_rank_itself_from_the_same_pass(project: Path, run):
    """A rank-3 update of a 32 x 48 q_proj and a 16 x 48 k_proj: update_rank
    reads 3/32 and 3/16, update_rank_absolute 3 for both; one SVD each."""
    rng = np.random.default_rng(2)
    sides: dict[str, dict] = {"base": {}, "tuned": {}}
    for module, rows in (("q_proj", 32), ("k_proj", 16)):
        name = f"model.layers.0.self_attn.{module}.weight"
        b = rng.normal(size=(rows, 48))
        t = b + rng.normal(size=(rows, 3)) @ rng.normal(size=(3, 48)) * 1e-2
        for side, values in (("base", b), ("tuned", t)):
            sides[side][name] = ("F32", (rows, 48), values.astype("<f4").tobytes())
    for side, tensors in sides.items():
        ck.write_checkpoint(project / "ckpt" / side, tensors)
    stored = {s: ref.read_checkpoint(project / "ckpt" / s) for s in sides}

    def values(metric: str) -> dict[str, float]:
        path = support.write(project / "specs" / f"{metric}.yaml", (
            "data:\n  checkpoint: ../ckpt/tuned\n  base: ../ckpt/base\n"
            f"  metric: {metric}\nmodules: [q_proj, k_proj]\nlayers: {{last: 0}}\n"
            "output: {formats: [svg]}\n"))
        return {r["module"]: float(r["value"]) for r in table(run, path)}

    assert values("update_rank_absolute") == {"q_proj": 3.0, "k_proj": 3.0}
    for module in ("q_proj", "k_proj"):
        name = f"model.layers.0.self_attn.{module}.weight"
        assert ref.metric("update_rank_absolute", stored["tuned"][name],
                          stored["base"][name]) == 3
    assert values("update_rank") == {"q_proj": 3 / 32, "k_proj": 3 / 16}
    # committed: the numbers carry the rank each figure drew
    assert run("build")[0] == 0
    committed = json.loads((project / "specs" / "update_rank_absolute.numbers.json")
                           .read_text())
    sums = committed["pairs"][0]["tensors"]["model.layers.0.self_attn.k_proj.weight"]["sums"]
    assert sums["update_rank_absolute"] == 3.0 and "update_rank" not in sums
    shutil.rmtree(project / "ckpt")
    code, out, err = run("table", "specs/update_rank_absolute.yaml")
    assert code == 0, err
    assert {r["value"] for r in csv.DictReader(io.StringIO(out))} == {"3.0"}
