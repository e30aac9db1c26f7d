"""One error handler: user errors 1, usage 2, an interrupt 130, a closed pipe
141, and a bug 3 with a one-line message and a log."""

from __future__ import annotations

from pathlib import Path

import pytest

from figspec import errors
from figspec.diagnostics import Diagnostic, FigspecError, UsageError


@pytest.mark.parametrize("raised,status", [
    (FigspecError([Diagnostic("s.yaml", 1, 2, "bad")]), 1), (UsageError("no such file"), 2),
    (KeyboardInterrupt(), 130)])
def test_each_error_has_its_exit_status(raised: BaseException, status: int):
    def command() -> int:
        raise raised

    assert errors.run(command) == status


def test_an_unexpected_exception_exits_3_with_one_line_and_a_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path / "cache"))
    from figspec.commands import schema

    def broken() -> int:
        raise RuntimeError("a bug in figspec")

    monkeypatch.setattr(schema, "schema", broken)
    from figspec.cli import main

    assert main(["schema"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("figspec: internal error: RuntimeError: a bug in figspec; details in ")
    log = Path(err.split("details in ", 1)[1].split(";", 1)[0])
    assert log.parent == tmp_path / "cache" / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "a bug in figspec" in text
    assert "vl-convert-python==" in text and "Python 3." in text


@pytest.mark.parametrize("argv", [["table", "specs/a.yaml"], ["compile", "specs/a.yaml"],
                                  ["schema"], ["check", "--format", "json", "specs/bad.yaml"]])
@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_output_that_cannot_be_written_is_an_error_not_a_bug(project: Path, argv: list[str],
                                                             stdout: str, tmp_path: Path):
    """`figspec table s.yaml > /dev/full` or `>&-`: one line on stderr, exit 1."""
    import os
    import subprocess
    import sys

    import support

    support.write(project / "specs" / "a.yaml", support.spec_text())
    support.write(project / "specs" / "bad.yaml", support.spec_text(extra="colour: x\n"))
    command = [sys.executable, "-m", "figspec", *argv]
    env = {**os.environ, "FIGSPEC_CACHE": str(tmp_path / "cache")}
    if stdout == "full":
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, cwd=project, stdout=full, stderr=subprocess.PIPE,
                                  text=True, env=env)
    else:  # the shell's `>&-`: the child starts without file descriptor 1
        done = subprocess.run(["/bin/sh", "-c", 'exec "$@" >&-', "sh", *command], cwd=project,
                              stderr=subprocess.PIPE, text=True, env=env)
    reason = "No space left on device" if stdout == "full" else "Bad file descriptor"
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"figspec: error: cannot write to standard output: {reason}\n"
