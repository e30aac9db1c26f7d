"""The corpus of broken specs and data files (tests/corpus): for each
invalid/NAME.yaml, `figspec check` and `figspec build` exit 1 with exactly the
diagnostics stored in invalid/NAME.expected, and nothing is written.

To regenerate the expected files after a deliberate change of wording, run
``FIGSPEC_BLESS=1 pytest tests/test_corpus.py`` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted((CORPUS / "invalid").glob("*.yaml"))


def test_the_corpus_is_large():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_input_gives_its_diagnostic_and_writes_nothing(case: Path, run, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(CORPUS)
    spec = case.relative_to(CORPUS).as_posix()
    code, out, err = run("check", spec)
    expected_file = case.with_suffix(".expected")
    if os.environ.get("FIGSPEC_BLESS"):
        expected_file.write_text(err)
    assert code == 1
    assert "Traceback" not in err + out
    assert err == expected_file.read_text()
    for line in err.splitlines():
        assert line.startswith(f"{spec}:") or line.startswith("data/"), line
        assert ": error: " in line

    out_dir = tmp_path / "out"
    code, out, build_err = run("build", spec, "--out", str(out_dir))
    assert code == 1
    assert build_err == err  # build reports the same diagnostics as check
    assert not out_dir.exists() or not any(out_dir.iterdir())
