"""vl-convert, started once per process: Vega and Vega-Lite in its embedded
JavaScript engine, resvg for PNG, its PDF writer. Every stage that runs Vega
(:mod:`figspec.render`, :mod:`figspec.html`, measuring in
:mod:`figspec.layout`) gets it from :func:`engine`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from .caches import memo

#: Number and date formatting are fixed, whatever the machine's settings.
LOCALE: Final = "en-US"


#: Held while vl-convert starts: the first calls of several threads (serve's)
#: wait for one start rather than each set the environment and start it.
_START = threading.Lock()


def engine() -> Any:
    """vl_convert, started with the time zone UTC (Vega formats dates in local
    time) and with figspec's fonts only (see figspec.fonts): figures must not
    depend on where they were drawn. Both are process settings (environment
    variables read when vl-convert loads its fonts and starts its JavaScript
    engine); they are set for that start alone and then put back, so a
    process that uses figspec as a library keeps its own.

    The start happens once per process, under a lock held around setting the
    variables, starting and putting them back: no two starts, and figspec
    itself reads neither variable. The caveat: os.environ and the C library's
    time zone are the process's, so a thread of a library user's own that
    reads ``TZ`` or ``FONTCONFIG_FILE`` (or local time) during that one start
    (about a second, at the first figure) sees figspec's values; before and
    after, it sees its own."""
    with _START:
        return _started()


@memo("vega.engine")
def _started() -> Any:
    from .fonts import font_dirs, fontconfig_file

    folders = font_dirs()
    settings = {"TZ": "UTC", "FONTCONFIG_FILE": str(fontconfig_file(folders))}
    with _environment(settings):
        import vl_convert

        for folder in folders:
            vl_convert.register_font_directory(str(folder))
        # Load the fonts and start the engine now, under these settings.
        vl_convert.vegalite_to_svg(_WARM_UP, allowed_base_urls=[], format_locale=LOCALE,
                                   time_format_locale=LOCALE)
    return vl_convert


def scenegraph(vl: dict[str, Any]) -> dict[str, Any]:
    """Every mark Vega draws, with its position, size and colour."""
    return engine().vegalite_to_scenegraph(vl, allowed_base_urls=[], format_locale=LOCALE,
                                         time_format_locale=LOCALE)


#: The smallest chart with text: it makes vl-convert load fonts and start Vega.
_WARM_UP = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "title": "x",
            "data": {"values": [{"a": 1}]}, "mark": "point", "encoding": {"x": {"field": "a"}}}


@contextlib.contextmanager
def _environment(settings: dict[str, str]) -> Iterator[None]:
    """Set environment variables (and the C library's time zone) for the block,
    then put back what was there."""
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    time.tzset()
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        time.tzset()
