"""figspec from Python: ``figspec.load`` for a notebook, ``figspec.build``
for a script. Both apply the spec's project's figspec.yaml, as the command
line does.

    fig = compiler.load("specs/update_ratio_1p5b.yaml")
    fig.chart                 # the Altair chart, shown inline by Jupyter
    fig.save("fig.pdf")       # any of .svg .png .pdf .html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .diagnostics import FigspecError, UsageError

__all__ = ["load", "build", "Loaded", "FigspecError"]

if TYPE_CHECKING:
    import altair as alt

    from .builder import Prepared, Result
    from .chart import Figure


@dataclass(frozen=True)
class Loaded:
    """A checked spec with its data, ready to show or save."""

    path: Path
    prepared: Prepared

    @property
    def figure(self) -> Figure:
        return self.prepared.figure

    @property
    def vegalite(self) -> dict[str, Any]:
        """The self-contained Vega-Lite."""
        return self.figure.vegalite

    @property
    def chart(self) -> alt.TopLevelMixin:
        """The Altair chart (validated against the Vega-Lite schema)."""
        from .chart import build_chart

        return build_chart(self.prepared.loaded.spec, self.prepared.tables)

    def save(self, path: str | Path) -> Path:
        """Write the figure; the format is the file's suffix."""
        from .files import write_atomic
        from .render import FORMATS, render

        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"{path}: unknown format {fmt!r}; use one of "
                             f"{', '.join('.' + f for f in FORMATS)}")
        fig = self.figure
        spec = self.prepared.loaded.spec
        files = render(fig.vegalite, [fmt], scale=fig.png_scale,
                       title=spec.title or self.prepared.loaded.name, size=fig.svg_size)
        write_atomic(path, files[fmt])
        return path


def load(spec: str | Path | Mapping[str, Any], *, data: Any = None,
         allow_outside: bool = False) -> Loaded:
    """Check one spec and read its data; FigspecError says what is wrong.

    ``spec`` is a spec file, or the spec as a mapping (a notebook's dict; a
    relative ``data.path`` is then relative to the working directory).
    ``data`` gives the data instead of ``data.path``/``data.values``: records
    (a list of mappings) or a pandas DataFrame (anything with
    ``to_dict("records")``; pandas itself is never imported here)."""
    from .builder import Options, prepare
    from .source import Document

    if isinstance(spec, Mapping):
        values = _with_data(dict(spec), data)
        path = Path.cwd() / "<spec>"
        doc = Document(path, values, positions={(): (1, 1)})
        return Loaded(path, prepare(path, Options(allow_outside=allow_outside), doc))
    if data is not None:
        raise UsageError("`data=` goes with a spec given as a mapping; in a file, use "
                         "`data.path` or `data.values`")
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return Loaded(path, prepare(path, Options(allow_outside=allow_outside)))


def _with_data(spec: dict[str, Any], data: Any) -> dict[str, Any]:
    """The spec with ``data`` (records or a DataFrame) as its inline values."""
    if data is None:
        return spec
    if hasattr(data, "to_dict") and not isinstance(data, Mapping):  # a pandas DataFrame
        data = data.to_dict("records")
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise UsageError("`data=` takes records (a list of mappings) or a pandas DataFrame")
    given = spec.get("data") if isinstance(spec.get("data"), Mapping) else {}
    settings = {k: v for k, v in given.items() if k not in ("path", "values")}
    return {**spec, "data": {**settings, "values": [dict(r) for r in data]}}


def build(paths: Sequence[str | Path] = (), *, out_dir: str | Path | None = None,
          force: bool = False, jobs: int | None = None) -> list[Result]:
    """What ``figspec build`` does: draw every figure not up to date; one Result
    per spec. As on the command line, the project (of the first path, else of
    the working directory) gives the default specs folder and out folder."""
    from .builder import Options, build as run
    from .project import of_command

    found = [Path(p) for p in paths]
    project = of_command(found)
    return run(found or [project.specs_dir],
               Options(out_dir=Path(out_dir) if out_dir else project.out_dir,
                        force=force, jobs=jobs))
