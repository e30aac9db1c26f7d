from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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


#: Compiles the C kernel into $FIGSPEC_CACHE/kernel (where there is a C
#: compiler) and numba's for every dtype into $FIGSPEC_CACHE/numba (where
#: numba is installed), as a first use does.
_COMPILE = ("import importlib.util; from figspec.sources import kernel; kernel.path(); "
            "raw = bytearray(bytes(range(256)) * 8)\n"
            "if importlib.util.find_spec('numba'):\n"
            "    kernel.pair(raw, 'F32', raw, 'F32', (('exact', 0.0),), 'numba')")
#: The compiled kernels' folders in a cache.
_KERNELS = ("kernel", "numba")


@pytest.fixture(scope="session")
def _kernel_compiled_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache the kernels were compiled into, once per session, in a child
    process: compiling numba's for every dtype takes 15-35 s, the C one 1-3 s,
    and their tests, each with a cache of its own, paid it again and again."""
    cache = tmp_path_factory.mktemp("compiled-kernel")
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIGSPEC_KERNEL", "NUMBA_DEBUG_CACHE", "NUMBA_DISABLE_JIT")}
    env["FIGSPEC_CACHE"] = str(cache)
    subprocess.run([sys.executable, "-c", _COMPILE], env=env, check=True, capture_output=True,
                   timeout=600)
    if importlib.util.find_spec("numba") is not None:
        assert list((cache / "numba").rglob("*.nbi")), "the kernel was not cached"
    return cache


@pytest.fixture
def compiled_kernel(_kernel_compiled_once: Path, _own_cache: Path) -> Callable[[Path], Path]:
    """For tests whose subject is not compiling the kernel: the test's own
    cache (FIGSPEC_CACHE) holds a copy of the kernels compiled once per
    session (C, numba: those this machine can have), and ``seed(folder)``
    copies them into another cache folder (a child's). A copy: no test
    changes what another reads. Tests of the compiling and caching itself do
    not use this, and start cold."""
    def seed(cache: Path) -> Path:
        for name in _KERNELS:
            if (_kernel_compiled_once / name).is_dir():
                shutil.copytree(_kernel_compiled_once / name, cache / name, dirs_exist_ok=True)
        return cache

    seed(_own_cache)
    return seed


@pytest.fixture(scope="session")
def monkeypatch_chdir():
    """chdir for hypothesis tests, which may not use function-scoped fixtures
    per example; the original directory is restored at the end of the session."""
    here = os.getcwd()
    yield os.chdir
    os.chdir(here)
