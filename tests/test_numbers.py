"""A checkpoint figure's committed numbers (`specs/NAME.numbers.json`): written
by a build, byte for byte the same each time; where the checkpoints are
absent, every command draws from them and says so once; where they are
present and the same, no reduction; where they changed, rebuilt; damaged,
refused; a run's steps appended and removed. On checkpoints written by
transformers' save_pretrained (data/real) and by tests/checkpoints.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import checkpoints as ck
import figspec
import support

REAL = Path(__file__).resolve().parent.parent / "data" / "real" / "qwen2-bf16-sharded"
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
NUMBERS = Path("specs/fig.numbers.json")


def spec(project: Path, metric: str = "relative_change", modules: list[str] = MODULES,
         title: str = "A", extra: str = "") -> Path:
    return support.write(project / "specs" / "fig.yaml", (
        f"title: {title}\ndata:\n  checkpoint: ../ckpt/tuned\n  base: ../ckpt/base\n"
        f"  metric: {metric}\n{extra}modules: [{', '.join(modules)}]\n"
        "output: {formats: [svg]}\n"))


@pytest.fixture
def real(project: Path) -> Path:
    """The project with a real Qwen2 pair (three shards each) at ckpt/."""
    shutil.copytree(REAL / "tuned", project / "ckpt" / "tuned")
    shutil.copytree(REAL / "base", project / "ckpt" / "base")
    spec(project)
    return project


def fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    """Another machine's (empty) figspec cache."""
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path / f"cache-{name}"))


def without_checkpoints(project: Path) -> None:
    shutil.rmtree(project / "ckpt")


def test_a_build_writes_the_numbers_beside_the_spec(real: Path, run, monkeypatch, tmp_path):
    code, _, err = run("build")
    assert code == 0, err
    raw = NUMBERS.read_bytes()
    data = json.loads(raw)
    assert len(raw) < 20_000
    assert list(data) == sorted(data) and data["format"] == "figspec numbers 1"
    (pair,) = data["pairs"]
    assert pair["key"] == "../ckpt/tuned against ../ckpt/base"
    files = pair["sides"]["checkpoint"]["files"]
    # the shards holding what is drawn, as the spec names them
    assert files and all(w.startswith("../ckpt/tuned/model-0000") for w in files)
    assert set(files) == {t["file"] for t in pair["tensors"].values()}
    for written, got in files.items():
        shard = real / "specs" / written
        head = shard.read_bytes()
        length = int.from_bytes(head[:8], "little")
        assert got["size"] == shard.stat().st_size
        assert got["header"] == hashlib.sha256(head[:8 + length]).hexdigest()
    # one tensor a line: a co-author's diff names the tensors whose numbers moved
    lines = [ln for ln in raw.decode().splitlines() if ln.strip().startswith('"model.layers.')]
    assert len(lines) == len(pair["tensors"]) == 2 * len(MODULES)
    # the numbers the figure drew: `figspec table`'s values, exactly
    _, out, _ = run("table", "specs/fig.yaml")
    value = out.splitlines()[1].split(",")[-1]
    s = pair["tensors"]["model.layers.0.self_attn.q_proj.weight"]["sums"]
    assert repr(s["dd"] ** 0.5 / s["bb"] ** 0.5) == value
    # byte for byte again on another machine's cache, and a no-op build leaves it
    fresh_cache(monkeypatch, tmp_path, "other")
    assert run("build", "--force")[0] == 0
    assert NUMBERS.read_bytes() == raw


def test_without_the_checkpoints_every_command_draws_from_the_numbers(
        real: Path, run, monkeypatch, tmp_path):
    assert run("build")[0] == 0
    svg = (real / "out" / "fig.svg").read_bytes()
    _, csv_with, _ = run("table", "specs/fig.yaml")
    without_checkpoints(real)
    fresh_cache(monkeypatch, tmp_path, "laptop")
    shutil.rmtree(real / "out")
    note = "specs/fig.numbers.json: note: the checkpoints are not here"
    code, _, err = run("build")
    assert code == 0, err
    assert (real / "out" / "fig.svg").read_bytes() == svg
    assert err.count(note) == 1
    code, _, err = run("check")
    assert code == 0 and err.count(note) == 1 and "not computed" not in err
    code, out, err = run("table", "specs/fig.yaml")
    assert code == 0 and out == csv_with and err.count(note) == 1
    spec(real, title="B")
    code, out, err = run("status")
    assert code == 0 and "stale" in out and err.count(note) == 1
    loaded = figspec.load("specs/fig.yaml")
    assert [n.file for n in loaded.notes] == ["specs/fig.numbers.json"]
    # the checkpoints fetched: the figure is stale, and drawn from them
    spec(real)
    assert run("build")[0] == 0
    assert "up to date" in run("status")[1]
    shutil.copytree(REAL / "tuned", real / "ckpt" / "tuned")
    shutil.copytree(REAL / "base", real / "ckpt" / "base")
    code, out, err = run("status")
    assert "stale" in out and "not here" not in err


def test_serve_draws_from_the_numbers_without_the_checkpoints(real: Path, run, capsys):
    from figspec.serve import Board

    assert run("build")[0] == 0
    without_checkpoints(real)
    board = Board([real / "specs"])
    board.refresh()
    (figure,) = board.state()["figures"]
    assert figure["problems"] == [] and figure["vegalite"] is not None
    # Said once, naming the file, on the page's state and on stderr.
    assert len(figure["notes"]) == 1 and ".numbers.json" in figure["notes"][0]
    with (real / "specs" / "fig.yaml").open("a") as f:
        f.write("# edited: checked again, the note not said again\n")
    assert board.refresh()
    assert capsys.readouterr().err.count(".numbers.json") == 1


@pytest.mark.parametrize("change", [
    {"title": "Another title"},
    {"modules": ["v_proj", "q_proj"]},
    {"metric": "cosine"},
    {"metric": "changed_fraction"},
    {"extra": "layers: {first: 1}\n"},
])
def test_a_co_author_restyles_without_the_checkpoints(real: Path, run, change):
    assert run("build")[0] == 0
    before = NUMBERS.read_bytes()
    without_checkpoints(real)
    spec(real, **change)
    code, _, err = run("build")
    assert code == 0, err
    assert NUMBERS.read_bytes() == before  # what a subset draws never shrinks the numbers


@pytest.mark.parametrize("change, said", [
    ({"modules": MODULES + ["gate_proj"]}, "hold no tensor of module `gate_proj`"),
    ({"metric": "update_rank"}, "hold no update_rank of tensor"),
    ({"metric": "changed_fraction", "extra": "  tolerance: 0.001\n"},
     "hold no `changed:abs:0.001` counts"),
])
def test_what_the_numbers_do_not_hold_names_the_checkpoints_and_the_command(
        real: Path, run, change, said):
    assert run("build")[0] == 0
    without_checkpoints(real)
    spec(real, **change)
    code, _, err = run("build")
    assert code != 0
    assert said in err and "the checkpoints are not here" in err
    assert "where ../ckpt/tuned and ../ckpt/base are, run `figspec build specs/fig.yaml`, " \
        "then commit specs/fig.numbers.json" in err


def test_the_same_checkpoints_are_not_reduced_again(real: Path, run, monkeypatch, tmp_path):
    assert run("build")[0] == 0
    fresh_cache(monkeypatch, tmp_path, "clone")
    # Without its cache, `check` reads no metric; the committed numbers of
    # these very files are the values, so they are checked too.
    code, _, err = run("check")
    assert code == 0 and "not computed" not in err, err
    assert not list((tmp_path / "cache-clone").rglob("*.json"))


def test_changed_checkpoints_make_the_numbers_stale(real: Path, run):
    assert run("build")[0] == 0
    before = json.loads(NUMBERS.read_bytes())
    written = sorted(before["pairs"][0]["sides"]["checkpoint"]["files"])[-1]
    shard = real / "specs" / written
    raw = bytearray(shard.read_bytes())
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    drawn = next(n for n, t in before["pairs"][0]["tensors"].items() if t["file"] == written)
    at = 8 + length + header[drawn]["data_offsets"][0]
    raw[at] ^= 0x01  # one weight of a tensor drawn: the same header and size
    shard.write_bytes(bytes(raw))
    code, out, err = run("status")
    assert f"{written} changed since these committed numbers were computed" in err
    assert "stale" in out
    assert run("build")[0] == 0
    after = json.loads(NUMBERS.read_bytes())
    moved = [n for n, t in after["pairs"][0]["tensors"].items()
             if t != before["pairs"][0]["tensors"][n]]
    assert len(moved) == 1


def test_numbers_edited_by_hand_are_refused(real: Path, run, monkeypatch, tmp_path):
    assert run("build")[0] == 0
    good = NUMBERS.read_text()
    NUMBERS.write_text(good.replace('"max_abs": 0', '"max_abs": 1', 1))
    assert NUMBERS.read_text() != good
    shutil.copytree(real / "ckpt", tmp_path / "ckpt-kept")
    without_checkpoints(real)
    code, _, err = run("build", "--force")
    assert code != 0
    assert "specs/fig.numbers.json: error: this numbers file does not match its digest: " \
        "it was edited by hand or damaged" in err
    assert "git checkout -- specs/fig.numbers.json" in err
    NUMBERS.write_text("{not json")
    assert "is not JSON" in run("check")[2]
    # digested again by hand, a sum left out: refused, never a traceback
    body = json.loads(good)
    del body["digest"]
    next(iter(body["pairs"][0]["tensors"].values()))["sums"].pop("bb")
    body["digest"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                    .encode()).hexdigest()
    NUMBERS.write_text(json.dumps(body))
    code, _, err = run("check")
    assert code != 0 and "does not hold pairs as figspec writes them" in err
    assert "Traceback" not in err
    # where the checkpoints are, a build writes them again, and says why
    shutil.copytree(tmp_path / "ckpt-kept", real / "ckpt")
    fresh_cache(monkeypatch, tmp_path, "again")
    code, _, err = run("build", "--force")
    assert code == 0 and "note: this numbers file does not hold pairs as figspec" in err
    assert NUMBERS.read_text() == good


def test_clean_removes_the_numbers_of_a_spec_that_is_gone(real: Path, run):
    assert run("build")[0] == 0
    (real / "specs" / "fig.yaml").unlink()
    code, out, _ = run("clean")
    assert code == 0 and "removed specs/fig.numbers.json" in out
    assert not NUMBERS.exists()


# -- a run's steps --------------------------------------------------------------

def run_spec(project: Path, title: str = "run") -> Path:
    return support.write(project / "specs" / "fig.yaml", (
        f"title: {title}\ndata:\n  checkpoints: ../ckpt/run/checkpoint-*\n"
        "  base: ../ckpt/base\n  metric: changed_fraction\nx: step\n"
        "modules: [q_proj, up_proj]\noutput: {formats: [svg]}\n"))


def steps_of() -> list[int]:
    return [p["step"] for p in json.loads(NUMBERS.read_bytes())["pairs"]]


def test_a_run_s_numbers_are_per_step(project: Path, run, monkeypatch, tmp_path):
    ck.make_run(project / "ckpt", [100, 200, 300])
    run_spec(project)
    assert run("build")[0] == 0
    assert steps_of() == [100, 200, 300]
    first = NUMBERS.read_text()
    # a new step appends; the others' lines stay as they were
    shutil.copytree(project / "ckpt" / "run" / "checkpoint-300",
                    project / "ckpt" / "run" / "checkpoint-400")
    ck.settle(project / "ckpt")
    assert run("build")[0] == 0
    assert steps_of() == [100, 200, 300, 400]
    kept = [ln for ln in first.splitlines() if '"model.layers.' in ln]
    assert all(ln in NUMBERS.read_text() for ln in kept)
    # a step gone from the glob is gone from the numbers
    shutil.rmtree(project / "ckpt" / "run" / "checkpoint-100")
    assert run("build")[0] == 0
    assert steps_of() == [200, 300, 400]
    svg = (project / "out" / "fig.svg").read_bytes()
    # the run's folder kept, its checkpoints gone: the steps committed are drawn
    for step in (200, 300, 400):
        shutil.rmtree(project / "ckpt" / "run" / f"checkpoint-{step}")
    assert run("build", "--force")[0] == 0
    assert (project / "out" / "fig.svg").read_bytes() == svg
    # without the run at all
    without_checkpoints(project)
    fresh_cache(monkeypatch, tmp_path, "ci")
    shutil.rmtree(project / "out")
    code, _, err = run("build")
    assert code == 0, err
    assert (project / "out" / "fig.svg").read_bytes() == svg
    assert err.count("note: the checkpoints are not here") == 1


# -- a clone with only the committed numbers (CI, a co-author, the hook) ----------

REPO = Path(__file__).resolve().parent.parent
GALLERY = ["checkpoint_relative_change", "trajectory_changed_fraction",
           "two_runs_update_cosine", "checkpoint_heads", "lora_run"]


def clone_without_checkpoints(root: Path) -> Path:
    """The gallery's checkpoint specs and their committed numbers, no data."""
    (root / ".git").mkdir(parents=True)
    (root / "specs").mkdir()
    for name in GALLERY:
        for suffix in (".yaml", ".numbers.json"):
            shutil.copy(REPO / "specs" / (name + suffix), root / "specs")
    return root


def test_the_gallery_s_checkpoint_figures_build_in_a_clone_without_checkpoints(
        tmp_path: Path, monkeypatch, run):
    from importlib import metadata

    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = dict(ln.split("#")[0].strip().split("==") for ln in lines if ln.split("#")[0].strip())
    if any(metadata.version(d) != v for d, v in pins.items()):
        pytest.skip("the committed figures were drawn with the releases in constraints.txt")
    monkeypatch.chdir(clone_without_checkpoints(tmp_path / "clone"))
    code, _, err = run("build")
    assert code == 0, err
    assert err.count("the checkpoints are not here") == len(GALLERY)
    for name in GALLERY:
        for fmt in ("svg", "png", "pdf"):
            assert (Path("out") / f"{name}.{fmt}").read_bytes() == \
                (REPO / "out" / f"{name}.{fmt}").read_bytes(), f"{name}.{fmt}"
    assert run("check")[0] == 0


def test_the_gallery_s_committed_numbers_are_its_checkpoints_own(tmp_path: Path, run):
    """Built where the checkpoints are, with a cold cache, every gallery figure
    finds its committed numbers current: no note says a file changed (a heads
    figure's config.json once did, at every build), none is rewritten."""
    before = {n: (REPO / "specs" / f"{n}.numbers.json").read_bytes() for n in GALLERY}
    specs = [str(REPO / "specs" / f"{n}.yaml") for n in GALLERY]
    code, _, err = run("build", "--out", str(tmp_path / "out"), *specs)
    assert code == 0, err
    assert "changed since" not in err, err
    assert before == {n: (REPO / "specs" / f"{n}.numbers.json").read_bytes() for n in GALLERY}


def test_the_hook_without_checkpoints_passes_a_title_edit_and_refuses_a_broken_spec(
        tmp_path: Path, monkeypatch, run):
    monkeypatch.chdir(clone_without_checkpoints(tmp_path / "clone"))
    fig = Path("specs/checkpoint_relative_change.yaml")
    fig.write_text(fig.read_text().replace('title: "Relative change', 'title: "Change'))
    code, _, err = run("check", "--", str(fig), "specs/checkpoint_relative_change.numbers.json")
    assert code == 0, err
    fig.write_text(fig.read_text().replace("domain: nice", "domain: nicest"))
    code, _, err = run("check", "--", str(fig))
    assert code != 0 and "domain" in err


def git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def test_diff_across_revisions_compares_the_committed_numbers(tmp_path: Path, monkeypatch,
                                                               run):
    """The checkpoints were never committed, and are gone from this machine:
    each revision's committed numbers are its side of the diff."""
    paper = tmp_path / "paper"
    git(tmp_path, "init", "-q", str(paper))
    monkeypatch.chdir(paper)
    shutil.copytree(REAL / "tuned", paper / "ckpt" / "tuned")
    shutil.copytree(REAL / "base", paper / "ckpt" / "base")
    (paper / ".gitignore").write_text("ckpt/\nout/\n")
    spec(paper)
    assert run("build")[0] == 0
    git(paper, "add", "-A")
    git(paper, "commit", "-qm", "first")
    # retrained: one weight of q_proj in layer 0 moves
    before = json.loads(NUMBERS.read_bytes())["pairs"][0]
    q = before["tensors"]["model.layers.0.self_attn.q_proj.weight"]
    shard = paper / "specs" / q["file"]
    raw = bytearray(shard.read_bytes())
    length = int.from_bytes(raw[:8], "little")
    at = 8 + length + json.loads(raw[8:8 + length])[
        "model.layers.0.self_attn.q_proj.weight"]["data_offsets"][0]
    raw[at + 1] ^= 0x40
    shard.write_bytes(bytes(raw))
    assert run("build")[0] == 0
    git(paper, "commit", "-qam", "retrained")
    without_checkpoints(paper)
    code, out, err = run("diff", "HEAD~1", "HEAD")
    assert code == 0, err
    assert "changed   specs/fig.yaml" in out
    assert "  1 of 8 cells changed" in out
    assert "layer 0, q_proj:" in out


def test_a_hub_model_s_revision_is_committed(project: Path, run, monkeypatch, tmp_path):
    commit = "c0ffee" + "0" * 34
    model = tmp_path / "hub" / "models--Org--Tiny"
    snapshot = model / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (model / "blobs").mkdir()
    for i, f in enumerate(sorted((REAL / "tuned").iterdir())):
        blob = model / "blobs" / f"{i:040x}"
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (model / "refs").mkdir()
    (model / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoint: hf:Org/Tiny\n"
                  "  metric: norm\nmodules: [q_proj]\noutput: {formats: [svg]}\n")
    assert run("build")[0] == 0
    (pair,) = json.loads(NUMBERS.read_bytes())["pairs"]
    assert pair["key"] == "hf:Org/Tiny" and pair["sides"]["checkpoint"]["revision"] == commit
    assert all(f.startswith("hf:Org/Tiny/model-") for f in pair["sides"]["checkpoint"]["files"])
    svg = (project / "out" / "fig.svg").read_bytes()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    fresh_cache(monkeypatch, tmp_path, "ci")
    shutil.rmtree(project / "out")
    code, _, err = run("build")
    assert code == 0 and "the checkpoints are not here" in err
    assert (project / "out" / "fig.svg").read_bytes() == svg


def test_a_figure_of_panels_commits_each_pair_once(real: Path, run, monkeypatch, tmp_path):
    support.write(real / "specs" / "fig.yaml", """
        data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}
        modules: [q_proj, k_proj]
        output: {formats: [svg]}
        panels:
          - title: moved
          - title: cosine
            data: {metric: cosine}
          - title: back
            data: {checkpoint: ../ckpt/base, base: ../ckpt/tuned}
        """)
    assert run("build")[0] == 0
    pairs = json.loads(NUMBERS.read_bytes())["pairs"]
    assert [p["key"] for p in pairs] == ["../ckpt/base against ../ckpt/tuned",
                                         "../ckpt/tuned against ../ckpt/base"]
    svg = (real / "out" / "fig.svg").read_bytes()
    without_checkpoints(real)
    fresh_cache(monkeypatch, tmp_path, "ci")
    code, _, err = run("build", "--force")
    assert code == 0 and err.count("the checkpoints are not here") == 1
    assert (real / "out" / "fig.svg").read_bytes() == svg


def test_panels_of_one_pair_commit_what_each_panel_drew(real: Path, run, monkeypatch,
                                                         tmp_path):
    support.write(real / "specs" / "fig.yaml", """
        data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}
        modules: [q_proj, k_proj]
        output: {formats: [svg]}
        panels:
          - title: attention
          - title: mlp
            modules: [up_proj, down_proj]
            data: {metric: update_rank}
          - title: bias
            modules: [q_proj]
            data: {tensor: bias, metric: changed_fraction, tolerance: 0.001}
        """)
    code, _, err = run("build")
    assert code == 0, err
    committed = NUMBERS.read_bytes()
    (pair,) = json.loads(committed)["pairs"]
    assert {n.split(".")[-2] + "." + n.split(".")[-1] for n in pair["tensors"]} == {
        "q_proj.weight", "k_proj.weight", "up_proj.weight", "down_proj.weight", "q_proj.bias"}
    assert pair["tensor"] == "bias, weight"
    svg = (real / "out" / "fig.svg").read_bytes()
    code, _, err = run("build", "--force")  # the checkpoints here, as committed: no note
    assert code == 0 and "changed since" not in err and NUMBERS.read_bytes() == committed
    without_checkpoints(real)
    fresh_cache(monkeypatch, tmp_path, "ci")
    code, _, err = run("build", "--force")
    assert code == 0, err
    assert err.count("the checkpoints are not here") == 1
    assert (real / "out" / "fig.svg").read_bytes() == svg
    assert NUMBERS.read_bytes() == committed


def test_a_pair_absent_beside_one_rebuilt_is_kept_as_committed(real: Path, run):
    shutil.copytree(real / "ckpt", real / "other")
    support.write(real / "specs" / "fig.yaml", """
        data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}
        modules: [q_proj]
        output: {formats: [svg]}
        panels:
          - title: here
          - title: elsewhere
            data: {checkpoint: ../other/tuned, base: ../other/base}
        """)
    assert run("build")[0] == 0
    before = {p["key"]: p for p in json.loads(NUMBERS.read_bytes())["pairs"]}
    shutil.rmtree(real / "other")
    (real / "ckpt" / "base").rename(real / "ckpt" / "old")
    shutil.copytree(real / "ckpt" / "tuned", real / "ckpt" / "base")  # now: no change at all
    code, _, err = run("build")
    assert code == 0, err
    after = {p["key"]: p for p in json.loads(NUMBERS.read_bytes())["pairs"]}
    here, elsewhere = "../ckpt/tuned against ../ckpt/base", "../other/tuned against ../other/base"
    assert after[elsewhere] == before[elsewhere]
    assert after[here] != before[here]
    assert all(t["sums"]["dd"] == 0.0 for t in after[here]["tensors"].values())
