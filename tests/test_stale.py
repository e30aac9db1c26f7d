"""A figure is never stale without `status` saying so: what a figure resolved
through (a hub ref, a root's environment variable) is an input of it."""

from __future__ import annotations

from pathlib import Path

import pytest

import checkpoints as ck
import support

SPEC = "data:\n  checkpoint: {where}\n  metric: norm\nmodules: qwen2\n"


def _table(run) -> str:
    code, out, err = run("table", "specs/fig.yaml")
    assert code == 0, err
    return out


# -- a hub model's revision -------------------------------------------------------------

@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


def test_a_moved_hub_ref_makes_the_figure_stale(project: Path, run, hub: Path):
    ck.hub_snapshot(hub, "Org/Tiny", "a" * 40)
    support.write(project / "specs" / "fig.yaml", SPEC.format(where="hf:Org/Tiny"))
    assert run("build")[0] == 0
    first, drawn = _table(run), (project / "out" / "fig.svg").read_bytes()
    ck.hub_snapshot(hub, "Org/Tiny", "0123456789ab" + "c" * 28, seed=7)  # a new download
    code, out, _ = run("status")
    assert "stale" in out and "hf:Org/Tiny: refs/main is now 0123456789ab (was " \
        "aaaaaaaaaaaa)" in out, out
    code, out, err = run("build")
    assert code == 0 and "built" in out, out + err
    assert (project / "out" / "fig.svg").read_bytes() != drawn
    assert _table(run) != first
    assert "up to date" in run("status")[1]


def test_a_tag_is_an_input_and_a_commit_is_not(project: Path, run, hub: Path):
    commit = "b" * 40
    ck.hub_snapshot(hub, "Org/Tiny", commit, ref="v1")
    support.write(project / "specs" / "fig.yaml", SPEC.format(where="hf:Org/Tiny@v1"))
    support.write(project / "specs" / "pinned.yaml", SPEC.format(where=f"hf:Org/Tiny@{commit}"))
    assert run("build")[0] == 0
    ck.hub_snapshot(hub, "Org/Tiny", "d" * 40, seed=3, ref="v1")
    code, out, _ = run("status")
    assert "specs/fig.yaml (hf:Org/Tiny@v1: refs/v1 is now dddddddddddd (was " \
        "bbbbbbbbbbbb))" in out, out
    assert "up to date  specs/pinned.yaml" in out


def test_a_ref_removed_is_said(project: Path, run, hub: Path):
    ck.hub_snapshot(hub, "Org/Tiny", "a" * 40)
    support.write(project / "specs" / "fig.yaml", SPEC.format(where="hf:Org/Tiny"))
    assert run("build")[0] == 0
    (hub / "models--Org--Tiny" / "refs" / "main").unlink()
    code, out, _ = run("status")
    assert "hf:Org/Tiny: refs/main is gone (was aaaaaaaaaaaa)" in out, out


# -- a root's environment variable --------------------------------------------------------

@pytest.fixture
def runs(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs' checkpoints, runA and runB, and a root from $CKPT_DIR."""
    shared = tmp_path_factory.mktemp("shared")
    ck.make_pair(shared / "runA")
    ck.make_pair(shared / "runB", seed=9)
    support.write(project / "figspec.yaml", "roots: {ckpt: $CKPT_DIR}\n")
    support.write(project / "specs" / "fig.yaml", SPEC.format(where="$ckpt/tuned"))
    return shared


def test_a_root_variable_pointing_elsewhere_makes_the_figure_stale(
        project: Path, run, runs: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CKPT_DIR", str(runs / "runA"))
    assert run("build")[0] == 0
    drawn = (project / "out" / "fig.svg").read_bytes()
    assert "up to date" in run("status")[1]
    monkeypatch.setenv("CKPT_DIR", str(runs / "runB"))
    code, out, _ = run("status")
    assert f"root `ckpt` is now {runs / 'runB'} (was {runs / 'runA'})" in out, out
    code, out, err = run("build")
    assert code == 0 and "built" in out, out + err
    assert (project / "out" / "fig.svg").read_bytes() != drawn
    assert "up to date" in run("status")[1]


def test_an_unset_root_variable_is_stale_not_up_to_date(project: Path, run, runs: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CKPT_DIR", str(runs / "runA"))
    assert run("build")[0] == 0
    monkeypatch.delenv("CKPT_DIR")
    code, out, _ = run("status")
    assert "root `ckpt`'s variable CKPT_DIR is not set" in out, out
    # the checkpoints not here: drawn from the numbers the build committed (issue 28)
    code, _, err = run("build")
    assert code == 0 and "the checkpoints are not here" in err
    for numbers in (project / "specs").glob("*.numbers.json"):
        numbers.unlink()
    assert run("build", "--force")[0] == 1
    monkeypatch.setenv("CKPT_DIR", str(runs / "runA"))
    assert run("build")[0] == 0  # the numbers written again
    assert "up to date" in run("status")[1]


def test_a_root_written_out_still_says_figspec_yaml_changed(project: Path, run, runs: Path):
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {runs / 'runA'}}}\n")
    assert run("build")[0] == 0
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {runs / 'runB'}}}\n")
    assert "figspec.yaml changed its `roots.ckpt`" in run("status")[1]


# -- where the hub cache is -----------------------------------------------------------------

@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_a_hub_cache_under_an_unknown_home_is_a_diagnostic(project: Path, run, variable: str,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(variable, "~nosuchuser-figspec/hub")
    support.write(project / "specs" / "fig.yaml", SPEC.format(where="hf:Org/Tiny"))
    code, _, err = run("check")
    assert code == 1 and "Traceback" not in err and "internal error" not in err, err
    assert "specs/fig.yaml:2:15: error:" in err
    assert f"{variable} is '~nosuchuser-figspec/hub'" in err and "nosuchuser-figspec" in err


def test_a_hub_cache_without_a_home_is_a_diagnostic(project: Path, run,
                                                    monkeypatch: pytest.MonkeyPatch):
    import pwd

    for name in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_user(uid: int):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_user)  # a user the system does not know
    support.write(project / "specs" / "fig.yaml", SPEC.format(where="hf:Org/Tiny"))
    code, _, err = run("check")
    assert code == 1 and "Traceback" not in err and "internal error" not in err, err
    assert "specs/fig.yaml:2:15: error:" in err and "HOME is not set" in err
    assert not (project / "~").exists()
