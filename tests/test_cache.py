"""figspec's cache folder: where it is, one maker at a time, what uses it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from figspec import cache


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
