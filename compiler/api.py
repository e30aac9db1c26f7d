"""figspec from Python: ``compiler.load`` for a notebook, ``compiler.builder``
for a script. Both apply the project's figspec.yaml, as the command line does.

    fig = compiler.load("specs/update_ratio_1p5b.yaml")
    fig.chart                 # the Altair chart, shown inline by Jupyter
    fig.save("fig.pdf")       # any of .svg .png .pdf .html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .diagnostics import UsageError

if TYPE_CHECKING:
    import altair as alt

    from .builder import Prepared, Result
    from .chart import Figure


def _options(**kw: Any) -> Any:
    from .builder import Options
    from .project import current

    return Options(project=current(), **kw)


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


def load(path: str | Path, *, allow_outside: bool = False) -> Loaded:
    """Check one spec and read its data; FigspecError says what is wrong."""
    from .builder import prepare

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return Loaded(path, prepare(path, _options(allow_outside=allow_outside)))


def build(paths: Sequence[str | Path] = ("specs",), *, out_dir: str | Path = "out",
          force: bool = False, jobs: int | None = None) -> list[Result]:
    """What ``figspec build`` does: draw every figure not up to date; one Result per spec."""
    from .builder import build as run

    return run([Path(p) for p in paths],
               _options(out_dir=Path(out_dir), force=force, jobs=jobs))
