"""One error handler: user errors 1, usage 2, an interrupt 130, a closed pipe
141, and a bug 3 with a one-line message and a log."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import errors
from compiler.diagnostics import Diagnostic, FigspecError, UsageError


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
    from compiler.commands import schema

    def broken() -> int:
        raise RuntimeError("a bug in figspec")

    monkeypatch.setattr(schema, "schema", broken)
    from compiler.cli import main

    assert main(["schema"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("figspec: internal error: RuntimeError: a bug in figspec; details in ")
    log = Path(err.split("details in ", 1)[1].split(";", 1)[0])
    assert log.parent == tmp_path / "cache" / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "a bug in figspec" in text
    assert "vl-convert-python==" in text and "Python 3." in text
