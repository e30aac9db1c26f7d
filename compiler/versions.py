"""The versions a figure's bytes depend on, as one key: a figure drawn under
another key is stale. Plain names; nothing heavy is imported."""

from __future__ import annotations

from .caches import memo

#: figspec's own version (``figspec.__version__``; pyproject.toml says the same).
VERSION = "0.1.0"

#: Distributions whose versions change the bytes of a figure (matplotlib
#: ships the fonts; fontTools subsets them into HTML pages). Not Altair: it
#: only serves notebooks (``Figure.chart``) and draws no figure, so a new
#: Altair release must not rebuild every figure.
RENDERERS = ("figspec", "vl-convert-python", "pikepdf", "matplotlib", "fonttools")


@memo("versions.environment_key")
def environment_key() -> str:
    """Versions of figspec and of everything that draws, as one string."""
    # importlib.metadata costs 20-30 ms to import, and only a build (and a
    # crash log) asks for versions, while every command, `--version` too,
    # imports VERSION from here. (pydantic imports it as well, to look for its
    # plugins, once a spec is validated.)
    from importlib import metadata

    versions = []
    for dist in RENDERERS:
        try:
            versions.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist}==?")
    return ";".join(versions)
