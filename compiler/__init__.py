"""figspec: compile YAML heatmap specs into SVG, PNG, PDF and HTML figures.

The modules follow the data flow: ``source`` (YAML with positions) ->
``spec``/``models`` (validated spec) -> ``data`` (cell table) -> ``chart``
(Vega-Lite) -> ``render`` (bytes) -> ``build`` (files); ``diagnostics`` is the
one problem type and ``cli`` the command line.
"""

__version__ = "0.1.0"
