"""figspec: compile YAML heatmap specs into SVG, PNG, PDF and HTML figures.

The modules follow the data flow: ``source`` (YAML with positions) ->
``spec``/``models`` (validated spec) -> ``data`` (cell table) -> ``chart``
(Vega-Lite) -> ``render`` (bytes) -> ``builder`` (files); ``diagnostics`` is the
one problem type and ``cli`` the command line.
"""

from .diagnostics import Diagnostic, FigspecError, UsageError
from .versions import VERSION as __version__

__all__ = ["load", "build", "FigspecError", "UsageError", "Diagnostic", "__version__"]


def __getattr__(name: str):  # imported on first use: the command line needs neither
    if name in ("load", "build", "Loaded"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
