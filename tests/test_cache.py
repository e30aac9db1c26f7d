"""figspec's cache folder: where it is, one maker at a time, what uses it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import checkpoints as ck
import support
from figspec import cache

HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def test_where_the_cache_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FIGSPEC_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.folder() == tmp_path / "xdg" / "figspec"
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path / "mine"))
    assert cache.folder() == tmp_path / "mine"
    monkeypatch.delenv("FIGSPEC_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.folder() == tmp_path / "home" / ".cache" / "figspec"


def test_an_entry_is_made_once_however_many_ask_at_once(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path))
    made: list[int] = []

    def make() -> bytes:
        made.append(1)
        time.sleep(0.2)  # slow, as bundling Vega is
        return b"bundle"

    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(cache.entry("b.js", make)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [b"bundle"] * 4 and made == [1]
    assert (tmp_path / "b.js").read_bytes() == b"bundle"


def test_an_unwritable_cache_costs_time_not_correctness(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setenv("FIGSPEC_CACHE", str(blocked))
    assert cache.entry("x", lambda: b"made") == b"made"
    assert cache.put("y", b"z") is None


def test_fonts_and_the_vega_bundle_live_in_the_cache(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    import subprocess
    import sys

    code = ("from figspec import html; html.html_page({'mark': 'rect'}, 't'); "
            "import os; print(os.environ.get('FONTCONFIG_FILE'))")
    env = {**__import__("os").environ, "FIGSPEC_CACHE": str(tmp_path)}
    env.pop("FONTCONFIG_FILE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "None"  # named while vl-convert started, then put back
    from figspec import fonts

    assert str(Path(fonts.font_dir())) in \
        (tmp_path / "fonts.conf").read_text()
    assert list(tmp_path.glob("vega-bundle-*.js"))


# -- a damaged cache costs time, never a result, never a hang ----------------------------

def test_a_damaged_entry_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FIGSPEC_CACHE", str(tmp_path))
    assert cache.entry("b.js", lambda: b"bundle") == b"bundle"
    (tmp_path / "b.js.sha256").write_bytes(b"12abc nonsense\n")  # a digest not "SIZE SHA"
    assert cache.entry("b.js", lambda: b"again") == b"again"
    (tmp_path / "b.js").unlink()
    os.mkfifo(tmp_path / "b.js")  # opened as a file, it would block for ever
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(cache.entry("b.js", lambda: b"new")),
                              daemon=True)
    reader.start()
    reader.join(30)
    assert got == [b"new"] and (tmp_path / "b.js").read_bytes() == b"new"


def _metrics_project(project: Path) -> None:
    ck.make_pair(project / "ckpt", layers=2, shape=(8, 12))
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}\n"
        "modules: qwen2\n"))


def _table(project: Path, cache_dir: Path, prelude: str = "", kernel: str | None = "numpy",
           **env: str) -> subprocess.CompletedProcess:
    """`figspec table` in a child process (a hang is a failure, not a stuck suite)."""
    environ = {**os.environ, "FIGSPEC_CACHE": str(cache_dir), **env}
    environ.pop("FIGSPEC_KERNEL", None)
    if kernel:
        environ["FIGSPEC_KERNEL"] = kernel
    code = (f"import sys; {prelude}from figspec.cli import main; "
            "sys.exit(main(['-v', 'table', 'specs/fig.yaml']))")
    return subprocess.run([sys.executable, "-c", code], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_a_metrics_entry_that_is_a_fifo_or_truncated_is_computed_again(project: Path):
    _metrics_project(project)
    cache_dir = project / "cache"
    first = _table(project, cache_dir)
    assert first.returncode == 0, first.stderr
    (entry,) = (cache_dir / "metrics").glob("*.json")
    entry.write_bytes(entry.read_bytes()[:40])
    again = _table(project, cache_dir)
    assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr
    entry.unlink()
    os.mkfifo(entry)  # read as a file, it would wait for a writer for ever
    again = _table(project, cache_dir)
    assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr
    assert entry.is_file()  # replaced by the sums computed again


needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")


@needs_numba
def test_a_damaged_numba_cache_is_compiled_again(project: Path, compiled_kernel):
    """Truncated index and data files (UnpicklingError, EOFError), then an
    index that is a FIFO: the same table, and the cache repaired. (The cache
    starts whole, compiled for every dtype: what is damaged is what a first
    use leaves.)"""
    _metrics_project(project)
    cache_dir = compiled_kernel(project / "cache")
    reference = _table(project, project / "c0").stdout

    def table(**env: str) -> subprocess.CompletedProcess:
        for f in (cache_dir / "metrics").glob("*") if (cache_dir / "metrics").exists() else ():
            f.unlink()  # the kernel runs, not the metrics cache
        p = _table(project, cache_dir, kernel="numba", **env)
        table = "".join(line for line in p.stdout.splitlines(keepends=True)
                        if not line.startswith("[cache]"))  # NUMBA_DEBUG_CACHE's
        assert (p.returncode, table) == (0, reference), p.stderr
        assert "the numba kernel" in p.stderr
        return p

    table()
    files = sorted((cache_dir / "numba").rglob("*.nb[ic]"))
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
    assert "data saved" in table(NUMBA_DEBUG_CACHE="1").stdout  # compiled, and kept again
    logged = table(NUMBA_DEBUG_CACHE="1").stdout
    assert "data loaded" in logged and "data saved" not in logged  # repaired
    index = sorted((cache_dir / "numba").rglob("*.nbi"))[0]
    index.unlink()
    os.mkfifo(index)
    table()


@needs_numba
def test_a_full_disk_while_numba_writes_its_cache(project: Path):
    """ENOSPC when numba saves the compiled code: compiled for this process,
    the same table."""
    _metrics_project(project)
    reference = _table(project, project / "c0").stdout
    full = ("import builtins, errno; real = builtins.open\n"
            "def full(file, mode='r', *a, **k):\n"
            "    if '/numba/' in str(file) and 'w' in mode:\n"
            "        raise OSError(errno.ENOSPC, 'No space left on device', str(file))\n"
            "    return real(file, mode, *a, **k)\n"
            "builtins.open = full; ")
    p = _table(project, project / "cache", prelude=full, kernel="numba")
    assert (p.returncode, p.stdout) == (0, reference), p.stderr
    assert "the numba kernel" in p.stderr
