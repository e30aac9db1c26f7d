from __future__ import annotations

import os
from pathlib import Path

import pytest

import support

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (a folder with a .git marker) as the working directory,
    holding data/cells.csv: 6 layers x 7 modules of known values."""
    support.make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """Run the command line in this process: returns (exit status, stdout, stderr)."""
    from figspec.cli import main

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse on a misused command line
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the real Hub: an `hf:` revision that is not in the hub
    cache asks a closed port on 127.0.0.1 (refused at once: read as offline)
    unless the test starts its own Hub (tests/hubserver.py) and names it."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    """Every test its own cache folder (FIGSPEC_CACHE): no test reads what
    another computed, and none writes into the user's ~/.cache/figspec."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FIGSPEC_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def monkeypatch_chdir():
    """chdir for hypothesis tests, which may not use function-scoped fixtures
    per example; the original directory is restored at the end of the session."""
    here = os.getcwd()
    yield os.chdir
    os.chdir(here)
