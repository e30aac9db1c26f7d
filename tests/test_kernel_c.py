"""The C kernel as a command meets it: compiled once into figspec's cache and
loaded from there without numba; the next path (numba, else numpy) where no
compiler can be had, with the same table; a damaged library compiled again,
never a crash; processes and threads compiling at once compile once.

Each child process gets a cache of its own; the bits themselves are pinned
for every path in test_kernel_bits."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import checkpoints as ck
import support
from figspec.sources import _kernel_c

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
CC = _kernel_c.compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler")
#: A table in a child, and whether numba and numpy were imported there (on stderr).
TABLE = ("import sys; {prelude}from figspec.cli import main; "
         "rc = main(['-v', 'table', 'specs/fig.yaml']); "
         "print('numba imported:', 'numba' in sys.modules, file=sys.stderr); "
         "print('numpy imported:', 'numpy' in sys.modules, file=sys.stderr); sys.exit(rc)")


@pytest.fixture
def spec(project: Path) -> Path:
    ck.make_pair(project / "ckpt", layers=2, shape=(40, 24))
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: update_rms}\n"
        "modules: [q_proj, up_proj]\n"))
    return project / "specs" / "fig.yaml"


@pytest.fixture
def reference(spec: Path, run, monkeypatch: pytest.MonkeyPatch) -> str:
    """The table, by the numpy path in this process."""
    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")
    code, out, err = run("table", "specs/fig.yaml")
    assert code == 0, err
    return out


def table(project: Path, cache: Path, prelude: str = "", **env: str
          ) -> subprocess.CompletedProcess:
    """`figspec -v table` in a child with the figspec cache ``cache``, its
    metrics removed first (the kernel runs, not the metrics cache)."""
    shutil.rmtree(cache / "metrics", ignore_errors=True)
    environ = {k: v for k, v in os.environ.items() if k != "FIGSPEC_KERNEL"}
    environ.update(FIGSPEC_CACHE=str(cache), **env)
    return subprocess.run([sys.executable, "-c", TABLE.format(prelude=prelude)], cwd=project,
                          env=environ, capture_output=True, text=True, timeout=300)


def libraries(cache: Path) -> list[Path]:
    return sorted((cache / "kernel").glob("*.so"))


@needs_cc
def test_a_table_with_the_c_kernel_cached_never_imports_numba(project: Path, reference: str,
                                                              compiled_kernel):
    """Nor numpy: the C kernel's table of F16 and FP8 values and its results
    are made without it (50 ms of a command's start)."""
    cache = compiled_kernel(project / "cache")
    p = table(project, cache)
    assert p.returncode == 0, p.stderr
    assert p.stdout == reference
    assert f"the c kernel, compiled into {libraries(cache)[0]}" in p.stderr
    assert "numba imported: False" in p.stderr
    assert "numpy imported: False" in p.stderr


@pytest.mark.parametrize("without", ["CC missing", "no cc on PATH", "CC fails"])
def test_without_a_compiler_the_next_path_gives_the_same_table(
        project: Path, reference: str, compiled_kernel, without: str):
    """No compiler: CC naming nothing, or no cc, gcc or clang on PATH; or a
    compiler that fails. The numba path is taken (numpy's without numba),
    says why, and gives the same table; FIGSPEC_KERNEL=c asks for C alone."""
    cache = compiled_kernel(project / "cache")
    for library in libraries(cache):
        library.unlink()  # numba's compiled kernel alone
    env = {"CC missing": {"CC": "/nonexistent"},
           "no cc on PATH": {"CC": "", "PATH": str(project / "empty")},
           "CC fails": {"CC": "false", "FIGSPEC_KERNEL": "c"}}[without]
    p = table(project, cache, **env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == reference
    why = "false failed (status 1)" if without == "CC fails" else ": no C compiler was found"
    assert why in p.stderr and "the C kernel is not used: " in p.stderr
    assert ("the numba kernel" if HAVE_NUMBA else "the numpy kernel") in p.stderr
    assert libraries(cache) == []
    assert [f.name for f in (cache / "kernel").glob(".build-*")] == []


def test_an_unwritable_cache_takes_the_next_path_and_says_why(project: Path, reference: str):
    (project / "not-a-folder").write_text("")
    p = table(project, project / "not-a-folder", prelude="sys.modules['numba'] = None; ")
    assert p.returncode == 0, p.stderr
    assert p.stdout == reference
    assert "the C kernel is not used: figspec's cache folder cannot be written" in p.stderr
    assert "the numpy kernel" in p.stderr


def damage(library: Path, how: str) -> None:
    if how == "truncated":
        library.write_bytes(library.read_bytes()[:len(library.read_bytes()) // 3])
    elif how == "overwritten":  # the same size, other bytes: the loader might accept it
        data = bytearray(library.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        library.write_bytes(bytes(data))
    elif how == "fifo":  # read as a file, it would wait for a writer for ever
        library.unlink()
        os.mkfifo(library)
    else:
        library.unlink()
        library.mkdir()
        if how == "folder with a file":
            (library / "x").write_text("")


@needs_cc
@pytest.mark.parametrize("how", ["truncated", "overwritten", "fifo", "folder",
                                 "folder with a file"])
def test_a_damaged_library_is_compiled_again(project: Path, reference: str, compiled_kernel,
                                             how: str):
    """What is at the library's name, damaged, is a miss: compiled again and
    put there (where a folder holding something is in the way, loaded from
    the build for this process alone); the next process loads it, without a
    compiler. A build that died left its temporary file: removed."""
    cache = compiled_kernel(project / "cache")
    (library,) = libraries(cache)
    whole = library.read_bytes()
    damage(library, how)
    died = cache / "kernel" / ".build-died.so"
    died.write_bytes(whole[:100])
    os.utime(died, (1e9, 1e9))
    p = table(project, cache)
    assert (p.returncode, p.stdout) == (0, reference), p.stderr
    assert "the c kernel, compiled into" in p.stderr
    assert [f.name for f in (cache / "kernel").glob(".build-*")] == []  # none left behind
    if how == "folder with a file":
        assert library.is_dir()
        return
    assert library.is_file() and library.read_bytes() == whole  # the same build, repaired
    again = table(project, cache, CC="/nonexistent")
    assert (again.returncode, again.stdout) == (0, reference), again.stderr
    assert f"the c kernel, compiled into {library}" in again.stderr


def test_a_whole_library_the_loader_rejects_is_not_compiled_again(project: Path,
                                                                   reference: str):
    """Bytes that are those its name says, but which the loader rejects (as
    on a cache mounted noexec): the next path, saying why; nothing is
    compiled (no compiler is even looked for) and the file is left."""
    rejected = b"not a shared library"
    key = _kernel_c._key(_kernel_c.SOURCE.read_bytes())
    library = project / "cache" / "kernel" / f"{key}-{_kernel_c._digest(rejected)}.so"
    library.parent.mkdir(parents=True)
    library.write_bytes(rejected)
    p = table(project, project / "cache", prelude="sys.modules['numba'] = None; ",
              CC="/nonexistent")
    assert (p.returncode, p.stdout) == (0, reference), p.stderr
    assert f"the C kernel is not used: {library} cannot be loaded" in p.stderr
    assert "no C compiler" not in p.stderr and "the numpy kernel" in p.stderr
    assert library.read_bytes() == rejected


#: Two threads taking the C kernel at once, in a process of their own.
THREADS = """
import threading
from figspec.sources import kernel
raw = bytearray(bytes(range(256)) * 8)
got = []
def reduce():
    got.append(kernel.pair(raw, "F32", raw[::-1], "F32", (("exact", 0.0),), kernel.path()))
threads = [threading.Thread(target=reduce) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print(kernel.path(), len(got), len({g.tobytes() for g in got}))
"""


@needs_cc
def test_processes_and_threads_compiling_at_once_compile_once(tmp_path: Path):
    """Two processes of two threads each, on an empty cache, at once: one
    compile (counted by a compiler that logs where it writes), every thread
    the same sums from the C kernel, one library and no temporary file left."""
    assert CC is not None
    log = tmp_path / "compiles.log"
    wrapper = tmp_path / "logging-cc"
    wrapper.write_text("#!/bin/sh\n"
                       'for a in "$@"; do case "$a" in *.so) echo "$a" >> "$LOG";; esac; done\n'
                       f'exec "{CC[0]}" "$@"\n')
    wrapper.chmod(0o755)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "FIGSPEC_KERNEL"}
    env.update(FIGSPEC_CACHE=str(cache), CC=str(wrapper), LOG=str(log))
    children = [subprocess.Popen([sys.executable, "-c", THREADS], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
    outs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], outs
    assert [out.split() for out, _ in outs] == [["c", "2", "1"]] * 2
    assert len(set(log.read_text().split())) == 1  # one build (its attempts, one file)
    assert len(libraries(cache)) == 1
    assert [f.name for f in (cache / "kernel").glob(".build-*")] == []


def test_the_compiler_is_found_without_running_anything(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path):
    """CC first (split as a shell would), else cc, gcc or clang on PATH."""
    import subprocess as sp

    calls: list[object] = []
    monkeypatch.setattr(sp, "run", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sp, "Popen", lambda *a, **k: calls.append(a))
    fake = tmp_path / "bin" / "gcc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.delenv("CC", raising=False)
    assert _kernel_c.compiler() == [str(fake)]
    monkeypatch.setenv("CC", "gcc -m64")
    assert _kernel_c.compiler() == [str(fake), "-m64"]
    monkeypatch.setenv("CC", "/nonexistent")
    assert _kernel_c.compiler() is None
    assert calls == []
