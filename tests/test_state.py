"""Process state: the renderer starts once however many threads ask first,
and leaves the environment as it was; every in-memory cache is bounded,
declared in figspec.caches, and hands out values a caller cannot change
under the next one; importing the compiled kernel writes and patches nothing."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import support
from figspec import caches, project

PACKAGE = Path(__file__).resolve().parent.parent / "compiler"
HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def child(code: str, cwd: Path, **env: str) -> str:
    """Run ``code`` in a fresh Python (nothing started yet); its last line of output."""
    p = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, **env}, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


# -- the renderer --------------------------------------------------------------------

STARTS_AT_ONCE = """
import json, os, threading, time
import vl_convert

registered = []
real = vl_convert.register_font_directory
vl_convert.register_font_directory = lambda d: (registered.append(d), real(d))[1]
os.environ["TZ"] = "America/New_York"
os.environ.pop("FONTCONFIG_FILE", None)
time.tzset()
import figspec

before = dict(os.environ)
together = threading.Barrier(8)
errors = []

def draw(i):
    together.wait()
    try:
        figspec.load("specs/fig.yaml").save(f"out/f{i}.svg")
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=draw, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
svgs = {open(f"out/f{i}.svg", "rb").read() for i in range(8)}
# A start registers each font folder (matplotlib's, figspec's own) once.
print(json.dumps([len(registered) / max(1, len(set(registered))), dict(os.environ) == before,
                  len(svgs), errors,
                  time.tzname[0]]))
"""


def test_threads_drawing_first_at_once_start_the_renderer_once(project: Path):
    """serve draws in several threads: the first calls of all of them start
    vl-convert once, and the environment (TZ, FONTCONFIG_FILE) is the
    process's own again afterwards, as is the C library's time zone."""
    support.write(project / "specs" / "fig.yaml", support.spec_text())
    (project / "out").mkdir()
    starts, same_env, distinct, errors, zone = json.loads(child(STARTS_AT_ONCE, project))
    assert errors == []
    assert starts == 1
    assert same_env is True
    assert distinct == 1  # every thread drew the same figure
    assert zone == "EST"


# -- caches --------------------------------------------------------------------------

def test_a_caller_changing_the_settings_it_got_changes_nothing_the_next_load_sees(
        project: Path):
    path = support.write(project / "figspec.yaml",
                         "out: figures\ndefaults:\n  font: {family: serif, size: 8}\n"
                         "roots: {ckpt: /shared}\n")
    got = _load(path)
    got.defaults["font"]["size"] = 99
    got.doc.data["out"] = "elsewhere"
    got.doc.positions.clear()
    again = _load(path)
    assert again.defaults == {"font": {"family": "serif", "size": 8}}
    assert again.doc.data["out"] == "figures"
    assert again.doc.positions
    assert again.roots == {"ckpt": "/shared"}


def _load(path: Path) -> project.Settings:
    settings = project.load(path)
    assert settings is not None
    return settings


def test_settings_are_read_again_when_the_file_changes_and_after_clear_all(project: Path):
    """The cache is keyed by size and mtime; one rewritten with both kept is
    seen once the caches are cleared."""
    path = support.write(project / "figspec.yaml", "out: aaaa\n")
    assert _load(path).doc.data == {"out": "aaaa"}
    st = path.stat()
    path.write_text("out: bbbb\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _load(path).doc.data == {"out": "aaaa"}  # same size and mtime: the cache's
    caches.clear_all()
    assert _load(path).doc.data == {"out": "bbbb"}


def _decorated_caches() -> dict[str, list[str]]:
    """Per module of the package: each cache made there (a memo("name") used as
    a decorator), and every functools cache decorator found outside caches.py."""
    found: dict[str, list[str]] = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for d in node.decorator_list:
                text = ast.unparse(d)
                if text.startswith("memo("):
                    found.setdefault(str(f.relative_to(PACKAGE)), []).append(
                        ast.literal_eval(d.args[0]))  # type: ignore[union-attr]
                elif "cache" in text and f.name != "caches.py":
                    found.setdefault(str(f.relative_to(PACKAGE)), []).append(f"raw {text}")
    return found


def test_every_cache_is_declared_in_one_place_and_bounded():
    made = [name for names in _decorated_caches().values() for name in names]
    raw = [m for m in made if m.startswith("raw ")]
    assert raw == [], "make caches with figspec.caches.memo, declared there"
    declared = [c.name for c in caches.DECLARED]
    assert sorted(made) == sorted(declared)  # each declared cache made exactly once
    assert all(0 < c.bound <= 64 and c.holds for c in caches.DECLARED)


def test_no_functools_cache_outside_the_registry():
    """Nor lru_cache called by hand (functools.lru_cache(None)(f))."""
    for f in PACKAGE.rglob("*.py"):
        if f.name == "caches.py":
            continue
        text = f.read_text()
        assert "lru_cache" not in text and "functools.cache" not in text, f


# -- the compiled kernel -------------------------------------------------------------

KERNEL_IMPORT = """
import json, os, sys
from pathlib import Path
from numba.core import caching
impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
locators = list(impl._locator_classes)
import figspec.sources._kernel_numba
folder = Path(os.environ["FIGSPEC_CACHE"])
after_import = sorted(str(p) for p in folder.rglob("*"))
unpatched = list(impl._locator_classes) == locators
from figspec.sources import kernel
raw = bytes(range(256)) * 8
kernel.pair(raw, "F32", raw[::-1], "F32", (("exact", 0.0),), "numba")
print(json.dumps([after_import, unpatched, list(impl._locator_classes) == locators,
                  bool(list((folder / "numba").rglob("*.nbi")))]))
"""


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_importing_the_compiled_kernel_writes_and_patches_nothing(tmp_path: Path):
    """Folders are made, and the kernel compiled, on first use; numba's list of
    cache locators is never changed, even then (a library user's own cached
    numba functions keep numba's places), and the kernel is still cached in
    figspec's folder."""
    cache = tmp_path / "empty"
    cache.mkdir()
    after_import, unpatched, still_unpatched, cached = json.loads(
        child(KERNEL_IMPORT, tmp_path, FIGSPEC_CACHE=str(cache)))
    assert after_import == []
    assert unpatched and still_unpatched
    assert cached
