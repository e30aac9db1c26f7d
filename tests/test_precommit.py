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


@pytest.mark.slow
def test_hook_refuses_a_broken_spec_and_accepts_the_fix(tmp_path: Path):
    hooks = tmp_path / "hook-repo"
    shutil.copytree(REPO, hooks, ignore=IGNORE)
    git(hooks, "init", "-q")
    git(hooks, "add", "-A")
    assert git(hooks, "commit", "-qm", "snapshot").returncode == 0
    rev = git(hooks, "rev-parse", "HEAD").stdout.strip()

    work = tmp_path / "paper"
    work.mkdir()
    git(work, "init", "-q")
    support.write_csv(work / "data" / "cells.csv", support.long_rows())
    support.write(work / ".pre-commit-config.yaml", f"""
        repos:
          - repo: {hooks}
            rev: {rev}
            hooks:
              - id: figspec-check
        """)
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
