"""The pre-commit hook, for real: a temporary git repository uses this
repository (its working tree, snapshotted into a commit) as a hook repository
through the pre-commit package; a broken spec is refused with its diagnostic,
the fixed spec goes in."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import support

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".git", ".venv", "out", "*.egg-info", "__pycache__",
                                ".pytest_cache", ".hypothesis", "tests", "benchmarks")


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          env=_env(cwd))


def _env(cwd: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", PRE_COMMIT_HOME=str(cwd.parent / "pc-home"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    return env


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This repository as a hook repository (a snapshot commit), and the rev.
    Its tests share one PRE_COMMIT_HOME: pre-commit installs the hook once."""
    hooks = tmp_path_factory.mktemp("precommit") / "hook-repo"
    shutil.copytree(REPO, hooks, ignore=IGNORE)
    git(hooks, "init", "-q")
    git(hooks, "add", "-A")
    assert git(hooks, "commit", "-qm", "snapshot").returncode == 0
    return hooks, git(hooks, "rev-parse", "HEAD").stdout.strip()


def paper(hooks: tuple[Path, str], name: str) -> Path:
    """A git repository (beside the hook repository) whose pre-commit config
    uses the hook, with data/cells.csv."""
    work = hooks[0].parent / name
    work.mkdir()
    git(work, "init", "-q")
    support.write_csv(work / "data" / "cells.csv", support.long_rows())
    support.write(work / ".pre-commit-config.yaml", f"""
        repos:
          - repo: {hooks[0]}
            rev: {hooks[1]}
            hooks:
              - id: figspec-check
        """)
    return work


@pytest.mark.slow
def test_hook_refuses_a_broken_spec_and_accepts_the_fix(hooks: tuple[Path, str]):
    work = paper(hooks, "paper")
    spec = work / "specs" / "fig.yaml"
    support.write(spec, support.spec_text(extra="colour: {scheme: blueorange}\n"))
    git(work, "add", "-A")
    hook = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--files",
                           "specs/fig.yaml", ".pre-commit-config.yaml"], cwd=work,
                          capture_output=True, text=True, env=_env(work), timeout=900)
    assert hook.returncode == 1, hook.stdout + hook.stderr
    assert ("specs/fig.yaml:11:1: error: unknown key `colour`; did you mean `color`?"
            in hook.stdout), hook.stdout

    # Through a real commit: refused, then accepted once fixed.
    assert subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=work,
                          env=_env(work), capture_output=True).returncode == 0
    refused = git(work, "commit", "-qm", "add figure")
    assert refused.returncode != 0
    assert "unknown key `colour`" in refused.stdout + refused.stderr
    support.write(spec, support.spec_text(extra="color: {scheme: blueorange}\n"))
    git(work, "add", "-A")
    accepted = git(work, "commit", "-qm", "add figure")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "figspec check" in accepted.stdout + accepted.stderr

    # A staged data file re-checks the specs that read it.
    rows = support.long_rows()
    rows[4]["value"] = "n/a"
    support.write_csv(work / "data" / "cells.csv", rows)
    git(work, "add", "-A")
    refused = git(work, "commit", "-qm", "new data")
    assert refused.returncode != 0
    assert 'data/cells.csv:6: error: value "n/a" in column `value` is not a number' in \
        refused.stdout + refused.stderr


@pytest.mark.slow
def test_each_error_is_printed_once_however_many_files_are_staged(hooks: tuple[Path, str]):
    """Many specs, figspec.yaml and a data file staged together: pre-commit
    would split them into parallel batches (one per CPU); the hook runs one
    figspec for them all, so each error shows once."""
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("pre-commit runs one batch on one CPU: nothing to tell apart")
    work = paper(hooks, "many")
    support.write(work / "figspec.yaml", "defaults:\n  color: {scheme: blueorange}\n")
    names = [f"specs/fig{i:02}.yaml" for i in range(16)]
    for name in names:
        support.write(work / name, support.spec_text())
    support.write(work / "specs" / "broken.yaml", support.spec_text(extra="colour: x\n"))
    rows = support.long_rows()
    rows[4]["value"] = "n/a"
    support.write_csv(work / "data" / "cells.csv", rows)
    git(work, "add", "-A")
    hook = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=work,
                          capture_output=True, text=True, env=_env(work), timeout=900)
    out = hook.stdout + hook.stderr
    assert hook.returncode == 1, out
    # figspec.yaml and a data file re-check the specs they feed; each spec
    # reading the broken data says so: once per batch, were there batches.
    for error in ("specs/broken.yaml:11:1: error: unknown key `colour`",
                  'data/cells.csv:6: error: value "n/a"'):
        assert out.count(error) == 1, (error, out)
