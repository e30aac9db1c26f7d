"""A training run's checkpoints (`data.checkpoints`): every step's values
against the float64 reference, each checkpoint read once and cached, a new
checkpoint noticed, one still being written left out, the diagnostics, and
the two layouts (`x: module`, `x: step`)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
from collections import Counter
from pathlib import Path

import pytest

import checkpoints as ck
import reference as ref
import support
from figspec.builder import compile_spec
from figspec.sources.metrics import NAMES, NEEDS_BASE, NEEDS_OTHER
from figspec.sources.reduce import CHUNK, reduce_all, reduce_chain
from figspec.sources.safetensors import open_checkpoint
from figspec.sources.shard_data import Files

MODULES = ["q_proj", "k_proj", "up_proj"]
#: the synthetic run of every test: checkpoint-100, -200, -300 of a 2-layer model
STEPS = [100, 200, 300]
GLOB = "../ckpt/run/checkpoint-*"
#: Each test's cache holds the kernel compiled once per session: a test here
#: may be the first in this process to reduce (or the first after a test of
#: figspec.caches.clear_all), and compiling is not what these tests prove.
pytestmark = pytest.mark.usefixtures("compiled_kernel")


def spec(project: Path, metric: str = "changed_fraction", extra: str = "",
         data: str = "", name: str = "traj", checkpoints: str = GLOB) -> Path:
    base = "" if metric not in NEEDS_BASE else "  base: ../ckpt/base\n"
    return support.write(project / "specs" / f"{name}.yaml", (
        f"data:\n  checkpoints: {checkpoints}\n{base}  metric: {metric}\n{data}"
        f"modules: [{', '.join(MODULES)}]\n{extra}"))


def table(run, path: Path) -> list[dict[str, str]]:
    code, out, err = run("table", str(path))
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def module_name(module: str) -> str:
    return f"mlp.{module}" if module.endswith("_proj") and module[:-5] in ("up", "down", "gate") \
        else f"self_attn.{module}"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Chunks read from disk for a reduction, by the checkpoint folder read
    (each tensor here is one chunk): counted, not timed, where every read of
    a stored tensor's entries starts, Files.mapped (a chunk handed out where
    the file is mapped, or by read_into, which asks it first)."""
    seen: Counter[str] = Counter()
    real = Files.mapped

    def counting(self, t, *args, **kw):
        seen[t.file.parent.name] += 1
        return real(self, t, *args, **kw)

    monkeypatch.setattr(Files, "mapped", counting)
    return seen


# -- values ---------------------------------------------------------------------------

@pytest.mark.parametrize("metric,compare", [
    (m, c) for m in NAMES if m not in NEEDS_OTHER  # two runs': tests/test_two_runs.py
    for c in (("base", "previous") if m in NEEDS_BASE else ("base",))])
def test_every_step_equals_the_float64_reference(project: Path, run, metric: str,
                                                  compare: str):
    runs = ck.make_run(project / "ckpt", STEPS, dtype="F32" if metric.startswith("update_rank")
                       else "BF16")
    data = f"  compare: {compare}\n" if metric in NEEDS_BASE else ""
    rows = table(run, spec(project, metric, data=data))
    assert len(rows) == len(STEPS) * 2 * len(MODULES)
    stored = {s: ref.read_checkpoint(runs / f"checkpoint-{s}") for s in STEPS}
    base = ref.read_checkpoint(project / "ckpt" / "base")
    for row in rows:
        step = int(row["step"])
        assert row["checkpoint"] == f"../ckpt/run/checkpoint-{step}"
        name = f"model.layers.{row['layer']}.{module_name(row['module'])}.weight"
        before = STEPS[STEPS.index(step) - 1] if compare == "previous" and step > STEPS[0] \
            else None
        against = stored[before] if before else base
        want = ref.metric(metric, stored[step][name], against[name] if metric in NEEDS_BASE
                          else None)
        assert ref.close(float(row["value"]), want), (row, want)


def test_steps_from_trainer_state_and_from_a_pattern(project: Path, run):
    ck.make_run(project / "ckpt", STEPS, trainer_state=True, name="ckpt-{step}-final7")
    path = support.write(project / "specs" / "traj.yaml", (
        "data:\n  checkpoints: ../ckpt/run/ckpt-*\n  base: ../ckpt/base\n"
        "  metric: update_norm\nmodules: [q_proj]\n"))
    assert {r["step"] for r in table(run, path)} == {"100", "200", "300"}
    for s in STEPS:  # without trainer_state.json: the last number in the name (7)
        (project / "ckpt" / "run" / f"ckpt-{s}-final7" / "trainer_state.json").unlink()
    code, _, err = run("check", str(path))
    assert code == 1 and "are both step 7" in err, err
    text = path.read_text().replace("  metric:", "  step: 'ckpt-(?P<step>[0-9]+)'\n  metric:")
    path.write_text(text)
    assert {r["step"] for r in table(run, path)} == {"100", "200", "300"}


def test_steps_chooses_a_list_every_n_or_the_last(project: Path, run):
    ck.make_run(project / "ckpt", [100, 200, 300, 400])
    for steps, want in (("[100, 300]", {"100", "300"}), ("{every: 200}", {"200", "400"}),
                        ("last", {"400"})):
        path = spec(project, data=f"  steps: {steps}\n")
        assert {r["step"] for r in table(run, path)} == want, steps


# -- read once, cached, incremental ---------------------------------------------------

def test_each_file_is_read_once_and_a_new_checkpoint_alone(project: Path, run, reads):
    ck.make_run(project / "ckpt", STEPS)
    spec(project, "relative_change")
    spec(project, "cosine", name="other")  # a second figure of the same pairs
    code, _, err = run("build")
    assert code == 0, err
    tensors = 2 * len(MODULES)
    # Every checkpoint once, and the base once for all of them (not once per step).
    assert reads == {"base": tensors, **{f"checkpoint-{s}": tensors for s in STEPS}}
    reads.clear()
    assert run("build")[0] == 0 and not reads
    # Training writes a new checkpoint: status names it, a build reads it alone
    # (with the base); the steps before come from the cache.
    other = ck.make_run(project / "more", STEPS + [400])
    shutil.copytree(other / "checkpoint-400", project / "ckpt" / "run" / "checkpoint-400")
    ck.settle(project / "ckpt" / "run" / "checkpoint-400")
    code, out, _ = run("status")
    assert "stale       specs/traj.yaml (1 new checkpoint (ckpt/run/checkpoint-*))" in out, out
    code, _, err = run("build")
    assert code == 0, err
    assert reads == {"base": tensors, "checkpoint-400": tensors}


def test_compare_previous_reads_each_interval_once_and_a_new_one_alone(project: Path, run,
                                                                      reads):
    ck.make_run(project / "ckpt", STEPS)
    spec(project, data="  compare: previous\n")
    assert run("build")[0] == 0
    tensors = 2 * len(MODULES)
    # (100, base), (200, 100), (300, 200) in one pass: each checkpoint read
    # once, as T of its pair and B of the next.
    assert reads == {"base": tensors, **{f"checkpoint-{s}": tensors for s in STEPS}}
    reads.clear()
    other = ck.make_run(project / "more", STEPS + [400])
    shutil.copytree(other / "checkpoint-400", project / "ckpt" / "run" / "checkpoint-400")
    ck.settle(project / "ckpt" / "run" / "checkpoint-400")
    assert run("build")[0] == 0
    assert reads == {"checkpoint-300": tensors, "checkpoint-400": tensors}


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Bytes of the files handed to the kernel, by the file's checkpoint
    folder: each chunk's, where the file is mapped or read into a buffer."""
    seen: Counter[str] = Counter()
    real = Files.read_into

    def counting(self, t, *args, **kw):
        got = real(self, t, *args, **kw)
        seen[t.file.parent.name] += got.nbytes
        return got

    monkeypatch.setattr(Files, "read_into", counting)
    return seen


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_compare_previous_reads_each_checkpoint_file_once(project: Path, run, bytes_read,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          kernel: str):
    """`compare: previous` reads each checkpoint's bytes once (as T of its pair
    and B of the next, two chunks per tensor here): as many bytes of each
    step as of the base, which is read once, and the bytes of the drawn
    tensors, no more."""
    monkeypatch.setenv("FIGSPEC_KERNEL", kernel)
    ck.make_run(project / "ckpt", STEPS, shape=(2, CHUNK // 2 + 3))
    spec(project, "relative_change", data="  compare: previous\n")
    code, _, err = run("build")
    assert code == 0, err
    drawn = 2 * len(MODULES) * 2 * (CHUNK + 6)  # 2 layers, BF16
    assert bytes_read == {"base": drawn, **{f"checkpoint-{s}": drawn for s in STEPS}}


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_a_run_step_by_step_gives_each_pair_s_sums_bit_for_bit(
        project: Path, monkeypatch: pytest.MonkeyPatch, kernel: str, dtype: str):
    """Each pair of a run compared step by step, reduced in one pass
    (`reduce_chain`), has every sum of that pair reduced alone (`reduce_all`),
    bit for bit: tensors of three chunks, on two threads, either path."""
    monkeypatch.setenv("FIGSPEC_KERNEL", kernel)
    ck.make_run(project / "ckpt", STEPS, shape=(3, CHUNK // 2 + 1), dtype=dtype, layers=1)
    sides = [open_checkpoint(project / "ckpt" / "base")] + [
        open_checkpoint(project / "ckpt" / "run" / f"checkpoint-{s}") for s in STEPS]
    options = [frozenset({("exact", 0.0)}), frozenset({("abs", 1e-3)}),
               frozenset({("exact", 0.0), ("rel", 1e-4)})]
    links = [{n: (t, b[n]) for n, t in tuned.items()} for b, tuned in zip(sides, sides[1:])]
    links[1].pop(next(iter(links[1])))  # a pair wanting fewer tensors breaks no chain
    chained = reduce_chain(links, options, [set(), set(), set()], threads=2)
    for k, (b, tuned) in enumerate(zip(sides, sides[1:])):
        alone = reduce_all({n: tuned[n] for n in links[k]}, b, options[k], set(), threads=1)
        assert {n: {key: struct.pack("<d", v) for key, v in s.items()}
                for n, s in chained[k].items()} == \
            {n: {key: struct.pack("<d", v) for key, v in s.items()} for n, s in alone.items()}


def test_a_changed_checkpoint_makes_the_figure_stale(project: Path, run):
    runs = ck.make_run(project / "ckpt", STEPS)
    spec(project)
    assert run("build")[0] == 0
    shard = runs / "checkpoint-200" / "model.safetensors"
    shard.write_bytes(shard.read_bytes())
    ck.settle(runs / "checkpoint-200")
    code, out, _ = run("status")
    assert "checkpoint ckpt/run/checkpoint-200/model.safetensors changed" in out, out


# -- a checkpoint still being written ------------------------------------------------

def damage_truncate(folder: Path) -> None:
    shard = folder / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-40])


def damage_missing_shard(folder: Path) -> None:
    (folder / "model-00002-of-00002.safetensors").unlink()


def damage_index_shard_not_there(folder: Path) -> None:
    """An index naming a shard (not named `-of-N`) that is not there yet."""
    index = folder / "model.safetensors.index.json"
    weights = json.loads(index.read_text())["weight_map"]
    renamed = {n: "late.safetensors" if f.startswith("model-00002") else "early.safetensors"
               for n, f in weights.items()}
    index.write_text(json.dumps({"weight_map": renamed}))
    (folder / "model-00001-of-00002.safetensors").rename(folder / "early.safetensors")
    (folder / "model-00002-of-00002.safetensors").unlink()


def damage_missing_sibling(folder: Path) -> None:
    """A sharded checkpoint without its index yet, one of its shards not there."""
    (folder / "model.safetensors.index.json").unlink()
    (folder / "model-00001-of-00002.safetensors").unlink()


def damage_no_trainer_state(folder: Path) -> None:
    """A Trainer folder whose trainer_state.json (written last) is not there yet."""
    (folder / "optimizer.pt").write_bytes(b"not read")
    (folder / "trainer_state.json").unlink()


@pytest.mark.parametrize("damage,shards,why", [
    (damage_truncate, 1, "ckpt/run/checkpoint-300/model.safetensors, tensor"),
    (damage_missing_shard, 2, "model-00002-of-00002.safetensors is not there"),
    (damage_index_shard_not_there, 2, "names a shard that does not exist: late.safetensors"),
    (damage_missing_sibling, 2, "model-00001-of-00002.safetensors is not there"),
    (damage_no_trainer_state, 1, "trainer_state.json is not there"),
])
def test_the_newest_checkpoint_still_being_written_is_left_out_with_a_note(
        project: Path, run, damage, shards: int, why: str):
    runs = ck.make_run(project / "ckpt", STEPS, shards=shards, trainer_state=True)
    newest = runs / "checkpoint-300"
    whole = {f.name: f.read_bytes() for f in newest.iterdir()}
    damage(newest)
    path = spec(project)
    code, _, err = run("build")
    assert code == 0, err
    assert "specs/traj.yaml:2:16: note: step 300 (ckpt/run/checkpoint-300) is left out" in err
    assert why in err, err
    assert {r["step"] for r in table(run, path)} == {"100", "200"}
    assert "up to date" in run("status")[1]
    # Once the writer is done, the figure is stale and draws the step, at once.
    for name, raw in whole.items():
        (newest / name).write_bytes(raw)
    assert "stale" in run("status")[1]
    code, _, err = run("build")
    assert code == 0 and "note:" not in err, err
    assert {r["step"] for r in table(run, path)} == {"100", "200", "300"}
    assert "up to date" in run("status")[1]


def test_a_checkpoint_copied_in_is_drawn_at_once(project: Path, run, tmp_path: Path):
    """Whole is a property of the files, never of their age: a checkpoint
    copied into the run a moment ago is drawn by the next table."""
    runs = ck.make_run(project / "ckpt", STEPS, shards=2, trainer_state=True)
    elsewhere = tmp_path / "checkpoint-300"
    shutil.move(runs / "checkpoint-300", elsewhere)
    path = spec(project)
    assert {r["step"] for r in table(run, path)} == {"100", "200"}
    shutil.copytree(elsewhere, runs / "checkpoint-300", copy_function=shutil.copy)  # as `cp -r`
    assert {r["step"] for r in table(run, path)} == {"100", "200", "300"}
    code, _, err = run("build")
    assert code == 0 and "note:" not in err, err


@pytest.mark.parametrize("damage,shards,message", [
    (damage_missing_sibling, 2, "error: in ckpt/run/checkpoint-200: "
     "model-00001-of-00002.safetensors is not there (beside model-00002-of-00002.safetensors)"),
    (damage_no_trainer_state, 1, "error: in ckpt/run/checkpoint-200: trainer_state.json is not "
     "there (Trainer writes it last), though the folder is a Trainer checkpoint: it has "
     "optimizer.pt"),
])
def test_an_older_checkpoint_not_whole_is_an_error_naming_what_is_missing(
        project: Path, run, damage, shards: int, message: str):
    runs = ck.make_run(project / "ckpt", STEPS, shards=shards, trainer_state=True)
    damage(runs / "checkpoint-200")
    spec(project)
    code, _, err = run("check")
    assert code == 1 and "internal error" not in err, err
    assert "specs/traj.yaml:2:16: " + message in err, err
    assert "; copy the missing file into the folder" in err, err


def test_the_same_damage_in_an_older_checkpoint_is_an_error_naming_the_file(project, run):
    runs = ck.make_run(project / "ckpt", STEPS)
    damage_truncate(runs / "checkpoint-200")
    ck.settle(runs)
    spec(project)
    code, _, err = run("check")
    assert code == 1
    assert "specs/traj.yaml:2:16: error: in ckpt/run/checkpoint-200/model.safetensors" in err


# -- diagnostics ---------------------------------------------------------------------

@pytest.mark.parametrize("data,message", [
    ("  checkpoints: ../ckpt/run/step-*\n", "specs/traj.yaml:2:16: error: 'step-*' matches "
     "nothing in ckpt/run"),
    ("  step: 'checkpoint-[0-9]+'\n", "specs/traj.yaml:5:9: error: data.step: needs a named "
     "group `(?P<step>...)`"),
    ("  step: 'checkpoint-(?P<step>[0-9])'\n", "specs/traj.yaml:5:9: error: "
     "ckpt/run/checkpoint-100 and ckpt/run/checkpoint-1100 are both step 1"),
    ("  compare: previous\n  steps: last\n", "specs/traj.yaml:5:12: error: `compare: previous` "
     "compares each step with the one before it, but 1 checkpoint is drawn"),
    ("  steps: [100, 250]\n", "error: step 250 is not among the checkpoints' steps "
     "(100, 200, 300)"),
    ("  checkpoints: ../ckpt/*/checkpoint-*\n", "only the last part of"),
])
def test_mistakes_are_diagnostics_at_their_key(project: Path, run, data: str, message: str):
    ck.make_run(project / "ckpt", STEPS)
    if "(?P<step>[0-9])" in data:  # two folders whose step, by this pattern, is 1
        ck.make_run(project / "ckpt", STEPS, name="checkpoint-1{step}")
    glob = data.split("checkpoints: ")[1].strip() if "checkpoints:" in data else None
    path = spec(project, data="" if glob else data, checkpoints=glob or GLOB)
    code, _, err = run("check", str(path))
    assert code == 1 and "internal error" not in err, err
    assert message in err, err


def test_x_step_goes_with_checkpoints(project: Path, run):
    support.write(project / "specs" / "fig.yaml", support.spec_text() + "x: step\n")
    code, _, err = run("check")
    assert code == 1 and "`x: step` draws a run's checkpoints" in err, err


# -- layout ---------------------------------------------------------------------------

def test_x_module_draws_one_panel_per_step(project: Path):
    ck.make_run(project / "ckpt", STEPS)
    sg = support.scenegraph(compile_spec(spec(project, extra="columns: 2\n")))
    assert len(support.placed(sg, "mark", "rect")) == len(STEPS) * 2 * len(MODULES)
    assert [t["text"] for t in support.marks(sg, "title-text")] == \
        ["step 100", "step 200", "step 300"]


def test_x_step_draws_the_steps_along_x_one_panel_per_module(project: Path, run):
    ck.make_run(project / "ckpt", STEPS)
    path = spec(project, extra="x: step\n")
    vl = compile_spec(path)
    sg = support.scenegraph(vl)
    cells = support.placed(sg, "mark", "rect")
    assert len(cells) == len(MODULES) * 2 * len(STEPS)
    assert [t["text"] for t in support.marks(sg, "title-text")] == MODULES
    assert ["100", "200", "300"] in support.axis_texts(sg)
    titles = [t["text"] for t in support.marks(sg, "axis-title")]
    assert titles.count("step") == len(MODULES) and "layer" in titles
    # The values are each step's: the table says the same whichever way it is drawn.
    by_module = table(run, path)
    path.write_text(path.read_text().replace("x: step\n", ""))
    assert table(run, path) == by_module


def test_x_step_with_one_module_is_one_heatmap(project: Path):
    ck.make_run(project / "ckpt", STEPS)
    path = support.write(project / "specs" / "one.yaml", (
        "data: {checkpoints: ../ckpt/run/checkpoint-*, base: ../ckpt/base, "
        "metric: update_rms}\nmodules: [q_proj]\nx: step\n"))
    sg = support.scenegraph(compile_spec(path))
    assert len(support.placed(sg, "mark", "rect")) == 2 * len(STEPS)
    assert len(support.marks(sg, "legend")) == 1


def test_watch_redraws_when_a_checkpoint_lands(project: Path, run):
    ck.make_run(project / "ckpt", STEPS)
    path = spec(project)
    builds, thread = support.watched(project)
    # Training writes checkpoint-400 elsewhere, then moves it into the run (whole).
    other = ck.make_run(project / "more", STEPS + [400])
    (other / "checkpoint-400").rename(project / "ckpt" / "run" / "checkpoint-400")
    thread.join(60)
    assert builds == [["built"], ["built"]]
    assert {r["step"] for r in table(run, path)} == {"100", "200", "300", "400"}


def test_watch_draws_a_checkpoint_once_its_writer_completes_it(project: Path, run):
    """Serve and watch: a newest checkpoint left out while it is written is
    drawn by the next build once its files are whole, however long it took."""
    runs = ck.make_run(project / "ckpt", STEPS)
    shard = runs / "checkpoint-300" / "model.safetensors"
    whole = shard.read_bytes()
    shard.write_bytes(whole[:-40])
    path = spec(project)
    builds, thread = support.watched(project)
    assert {r["step"] for r in table(run, path)} == {"100", "200"}
    with shard.open("ab") as f:  # the writer's last bytes, in one write
        f.write(whole[-40:])
    thread.join(60)
    assert builds == [["built"], ["built"]]
    assert {r["step"] for r in table(run, path)} == {"100", "200", "300"}


def test_a_step_is_the_same_number_as_its_pair_read_alone(project: Path, run, reads,
                                                         monkeypatch: pytest.MonkeyPatch):
    """Reading the base once for every step changes no bit of any value."""
    ck.make_run(project / "ckpt", STEPS, dtype="F32")
    rows = table(run, spec(project, "update_norm"))
    assert reads["base"] == 2 * len(MODULES)  # read once for the three steps
    monkeypatch.setenv("FIGSPEC_CACHE", str(project / "another-cache"))  # computed again
    for s in STEPS:
        alone = support.write(project / "specs" / f"alone{s}.yaml", (
            f"data: {{checkpoint: ../ckpt/run/checkpoint-{s}, base: ../ckpt/base, "
            f"metric: update_norm}}\nmodules: [{', '.join(MODULES)}]\n"))
        want = [(r["layer"], r["module"], r["value"]) for r in table(run, alone)]
        assert [(r["layer"], r["module"], r["value"]) for r in rows
                if r["step"] == str(s)] == want
    assert reads["base"] == 4 * 2 * len(MODULES)  # each pair read alone


def test_check_says_the_note_too_and_a_panel_of_other_data_has_no_step(project: Path, run):
    runs = ck.make_run(project / "ckpt", STEPS)
    damage_truncate(runs / "checkpoint-300")
    ck.settle(runs)
    path = support.write(project / "specs" / "mixed.yaml", (
        "modules: [q_proj]\npanels:\n"
        "  - {title: run, data: {checkpoints: ../ckpt/run/checkpoint-*, base: ../ckpt/base, "
        "metric: update_norm}}\n"
        "  - {title: file, data: {path: ../data/cells.csv}}\n"))
    code, _, err = run("check", str(path))
    assert code == 0 and "note: step 300 (ckpt/run/checkpoint-300) is left out" in err, err
    rows = table(run, path)
    assert {(r["step"], r["checkpoint"]) for r in rows} == {
        ("", ""), ("100", "../ckpt/run/checkpoint-100"), ("200", "../ckpt/run/checkpoint-200")}
    assert sum(r["step"] == "" for r in rows) == 6  # the file's 6 layers


def page_spec(page: Path) -> dict:
    """The Vega-Lite a figure's HTML page draws."""
    text = page.read_text()
    start = text.index('id="figure-spec">') + len('id="figure-spec">')
    return json.loads(text[start:text.index("</script>", start)])


@pytest.mark.parametrize("steps,bind", [(STEPS, "range"), ([100, 200, 500], "select")])
def test_the_html_page_has_one_heatmap_and_a_slider_over_the_steps(project: Path, run,
                                                                   steps, bind):
    ck.make_run(project / "ckpt", steps)
    spec(project, extra="output: {formats: [svg, html]}\n")
    code, _, err = run("build")
    assert code == 0, err
    vl = page_spec(project / "out" / "traj.html")
    (param,) = vl["params"]
    assert param["bind"]["input"] == bind and param["value"] == 100
    if bind == "range":
        assert (param["bind"]["min"], param["bind"]["max"], param["bind"]["step"]) == \
            (100, 300, 100)
    else:
        assert param["bind"]["options"] == steps
    sg = support.scenegraph(vl)
    assert len(support.placed(sg, "mark", "rect")) == 2 * len(MODULES)  # one step at a time
    assert len(support.marks(sg, "legend")) == 1
    # The colour domain is every step's, as in the small multiples the SVG draws.
    static = support.scenegraph(compile_spec(project / "specs" / "traj.yaml"))
    legend = [t["text"] for t in support.marks(sg, "legend-label")]
    assert len(legend) >= 2 and legend == [t["text"] for t in support.marks(static, "legend-label")]
    rows = table(run, project / "specs" / "traj.yaml")
    values = {(r["step"], r["layer"], r["module"]): float(r["value"]) for r in rows}
    assert {(str(r["step"]), str(r["layer"]), r["module"]): r["value"]
            for r in vl["data"]["values"]} == values


def test_a_run_whose_only_checkpoint_is_being_written_is_an_error_not_a_crash(project, run):
    runs = ck.make_run(project / "ckpt", [100])
    damage_truncate(runs / "checkpoint-100")
    ck.settle(runs)
    spec(project)
    code, _, err = run("build")
    assert code == 1 and "internal error" not in err, err
    assert "error: the run's only checkpoint is still being written" in err


# -- a run's diagnostics name its steps (issue 27: 8, 13, 16, 19) -----------------------

@pytest.mark.parametrize("x", ["step", "module"])
@pytest.mark.parametrize("command", ["check", "build"])
def test_a_run_whose_listed_modules_are_all_missing_is_a_diagnostic_at_modules(
        project: Path, run, x: str, command: str):
    ck.make_run(project / "ckpt", STEPS)
    support.write(project / "specs" / "traj.yaml", (
        f"data:\n  checkpoints: {GLOB}\n  base: ../ckpt/base\n  metric: relative_change\n"
        f"modules: [q_prj]\nx: {x}\n"))
    code, _, err = run(command)
    assert code == 1 and "internal error" not in err, err
    assert "specs/traj.yaml:5:11: error: module `q_prj` is not in step 100 " \
        "(../ckpt/run/checkpoint-100); did you mean `q_proj`" in err, err
    assert "`modules: llama` fits them" in err


def test_a_peft_run_without_its_adapter_configs_is_a_diagnostic(project: Path, run):
    for step in (10, 20):
        ck.write_checkpoint(project / "ckpt" / "run" / f"checkpoint-{step}", {
            f"base_model.model.model.layers.{layer}.self_attn.{m}_proj.{ab}.weight":
                ("F32", (2, 2), b"\0" * 16)
            for layer in range(2) for ab in ("lora_A", "lora_B") for m in ("q", "v")},
        )
        (project / "ckpt" / "run" / f"checkpoint-{step}" / "model.safetensors").rename(
            project / "ckpt" / "run" / f"checkpoint-{step}" / "adapter_model.safetensors")
    ck.settle(project / "ckpt")
    support.write(project / "specs" / "traj.yaml", (
        f"data:\n  checkpoints: {GLOB}\n  metric: norm\nmodules: [q_proj]\nx: step\n"))
    code, _, err = run("build")
    assert code == 1 and "internal error" not in err, err
    # read as peft adapters (tests/test_peft.py): this one lacks its config
    assert "specs/traj.yaml:2:16: error: ckpt/run/checkpoint-10 holds " \
        "adapter_model.safetensors but no adapter_config.json" in err, err


def _drop(shard: Path, name: str) -> None:
    """The tensor ``name`` renamed in the shard's header: the step lacks it."""
    raw = shard.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header[name + "_gone"] = header.pop(name)
    text = json.dumps(header).encode()
    shard.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def test_a_step_lacking_a_tensor_is_named_and_so_is_the_previous_step(project: Path, run):
    runs = ck.make_run(project / "ckpt", STEPS)
    _drop(runs / "checkpoint-200" / "model.safetensors", "model.layers.1.self_attn.q_proj.weight")
    ck.settle(runs)
    spec(project, "relative_change")
    code, _, err = run("check")
    assert code == 1
    assert "error: 1 cell in range has no row in step 200 (../ckpt/run/checkpoint-200): " \
        "layer 1 `q_proj`" in err, err
    spec(project, "relative_change", data="  compare: previous\n")
    code, _, err = run("check")
    assert code == 1
    assert "specs/traj.yaml:2:16: error: tensor `model.layers.1.self_attn.q_proj.weight` of " \
        "step 300 (../ckpt/run/checkpoint-300) is not in the previous step (step 200)" in err, err
    assert "the base" not in err


def test_a_step_lacking_a_module_is_named(project: Path, run):
    runs = ck.make_run(project / "ckpt", STEPS)
    for layer in range(2):
        _drop(runs / "checkpoint-200" / "model.safetensors",
              f"model.layers.{layer}.self_attn.k_proj.weight")
    ck.settle(runs)
    spec(project, "relative_change")
    code, _, err = run("check")
    assert code == 1
    assert "specs/traj.yaml:5:19: error: module `k_proj` is not in step 200 " \
        "(../ckpt/run/checkpoint-200), though step 100 holds it; leave the step out with " \
        "`steps:`, or the module out of `modules`" in err, err


@pytest.mark.parametrize("steps", [[100], STEPS])
def test_a_run_of_pytorch_pickles_is_said_to_be_one(project: Path, run, steps: list[int]):
    for step in steps:
        folder = project / "ckpt" / "run" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt", "rng_state.pth"):
            (folder / name).write_bytes(b"\x80\x04 a pickle")
    spec(project, "norm")
    for command in ("check", "build"):
        code, _, err = run(command)
        assert code == 1 and "internal error" not in err, err
        assert "specs/traj.yaml:2:16: error: step 100 (../ckpt/run/checkpoint-100) holds " \
            "PyTorch pickle weights (pytorch_model.bin); figspec reads safetensors only" in err, err
        assert "`model.save_pretrained(folder, safe_serialization=True)`" in err
        assert "being written" not in err
        assert ("2 more of the run's checkpoints" in err) == (len(steps) == 3)


def test_a_symbolic_link_loop_in_a_run_is_a_diagnostic(project: Path, run):
    runs = ck.make_run(project / "ckpt", STEPS)
    (runs / "checkpoint-400").symlink_to("checkpoint-400")
    spec(project)
    for command in ("check", "build", "status"):
        code, _, err = run(command)
        assert "internal error" not in err, err
        if command != "status":
            assert code == 1
            assert "specs/traj.yaml:2:16: error: ckpt/run/checkpoint-400 is a symbolic link " \
                "loop" in err, err
    (project / "ckpt" / "loop").symlink_to("loop")
    spec(project, checkpoints="../ckpt/loop/checkpoint-*")
    code, _, err = run("check")
    assert code == 1 and "error: '../ckpt/loop' is a symbolic link loop" in err, err
