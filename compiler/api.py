"""figspec from Python: ``figspec.load`` for a notebook, ``figspec.build``
for a script. Both apply the spec's project's figspec.yaml, as the command
line does.

    fig = figspec.load("specs/update_ratio_1p5b.yaml")
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
    from .layout import Figure


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
        """The Altair chart of the figure drawn (its Vega-Lite, as fitted to
        its size), validated against the Vega-Lite schema."""
        return _altair(self.vegalite)

    def save(self, path: str | Path) -> Path:
        """Write the figure; the format is the file's suffix."""
        from .files import FORMATS, write_atomic
        from .pipeline import render

        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"{path}: unknown format {fmt!r}; use one of "
                             f"{', '.join('.' + f for f in FORMATS)}")
        write_atomic(path, render(self.prepared, (fmt,))[fmt])
        return path


def _altair(vl: dict[str, Any]) -> alt.TopLevelMixin:
    """Vega-Lite as an Altair chart, validated (Altair is imported only here)."""
    import altair as alt

    vl = _schema_only(vl)
    kind = (alt.ConcatChart if "concat" in vl else alt.LayerChart if "layer" in vl
            else alt.Chart)
    return kind.from_dict(vl, validate=True)


def _schema_only(node: Any) -> Any:
    """A copy without the colorbar title's ``encode`` (the one key outside
    Vega-Lite's published schema, which Altair enforces): in a notebook that
    title reads top to bottom, as Vega turns it."""
    if isinstance(node, dict):
        return {k: _schema_only(v) for k, v in node.items()
                if not (k == "encode" and "titleOrient" in node)}
    if isinstance(node, list):
        return [_schema_only(v) for v in node]
    return node


def load(spec: str | Path | Mapping[str, Any], *, data: Any = None,
         allow_outside: bool = False) -> Loaded:
    """Check one spec and read its data; FigspecError says what is wrong.

    ``spec`` is a spec file, or the spec as a mapping (a notebook's dict; a
    relative ``data.path`` is then relative to the working directory).
    ``data`` gives the data instead of ``data.path``/``data.values``, with a
    file or a mapping: records (a list of mappings) or a pandas DataFrame
    (anything with ``to_dict("records")``; pandas itself is never imported
    here). A pivoted DataFrame (``df.pivot(index="layer", columns="module",
    values="value")``: layers as its index, modules as its columns) is read as
    ``layout: wide``. A problem in ``data`` names the DataFrame's row."""
    from .pipeline import prepare
    from .session import Session
    from .yaml_reader import Document, load_yaml

    if isinstance(spec, Mapping):
        path = Path.cwd() / "<spec>"
        doc = Document(path, dict(spec), positions={(): (1, 1)}, in_memory=True)
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        if data is None:
            return Loaded(path, prepare(path, Session(allow_outside=allow_outside)))
        doc = load_yaml(path)
    if data is not None:
        _with_data(doc, data)
    return Loaded(path, prepare(path, Session(allow_outside=allow_outside), doc))


def _with_data(doc: Any, data: Any) -> None:
    """Put ``data`` (records or a DataFrame) into the spec as its inline values,
    each row named for diagnostics."""
    records, layer = _records(data)
    if not isinstance(doc.data, dict):
        return  # validation says what is wrong with the spec
    given = doc.data.get("data") if isinstance(doc.data.get("data"), Mapping) else {}
    settings = {k: v for k, v in given.items() if k not in ("path", "values")}
    if layer is not None:  # pivoted: one row per layer, one column per module
        settings.update(layout="wide", layer=layer)
    doc.data = {**doc.data, "data": {**settings, "values": records}}
    index = _index(data)
    for i in range(len(records)):
        shown = f"DataFrame row {i}" if index is not None else f"record {i}"
        if index is not None and index[i] != i:
            shown += f" (index {index[i]!r})"
        doc.labels[("data", "values", i)] = shown


def _records(data: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Records, and the layer column when ``data`` is a pivoted DataFrame."""
    layer = None
    if hasattr(data, "to_dict") and not isinstance(data, Mapping):  # a pandas DataFrame
        if _pivoted(data):
            layer = str(data.index.name)
            data = data.reset_index()
            data.columns = [str(c) for c in data.columns]
        data = data.to_dict("records")
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise UsageError("`data=` takes records (a list of mappings) or a pandas DataFrame")
    return [dict(r) for r in data], layer


def _pivoted(frame: Any) -> bool:
    """Layers as a named index, modules as the columns: what
    ``df.pivot(index="layer", columns="module", ...)`` gives."""
    index = getattr(frame, "index", None)
    return getattr(index, "name", None) is not None and index.name not in frame.columns


def _index(data: Any) -> list[Any] | None:
    index = getattr(data, "index", None)
    if index is None or isinstance(data, list):
        return None
    return list(index) if not _pivoted(data) else list(range(len(index)))


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
