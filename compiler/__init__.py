"""figspec: compile YAML heatmap specs into SVG, PNG, PDF and HTML figures.

The modules follow the data flow: ``source`` (YAML with positions) ->
``spec``/``models`` (validated spec) -> ``data`` (cell table) -> ``chart``
(Vega-Lite) -> ``render`` (bytes) -> ``builder`` (files); ``diagnostics`` is the
one problem type and ``cli`` the command line.
"""

__version__ = "0.1.0"

__all__ = ["load", "build"]


def __getattr__(name: str):  # imported on first use: the command line needs neither
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
