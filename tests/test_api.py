"""figspec from Python: figspec.load(...).chart and .save(...), figspec.build(...)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import figspec
import support
from figspec.diagnostics import FigspecError, UsageError
from support import MODULES, value_of


def test_load_gives_the_altair_chart_and_saves_any_format(project: Path):
    import altair as alt

    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="title: T\n"))
    fig = figspec.load("specs/fig.yaml")
    assert isinstance(fig.chart, alt.LayerChart)
    assert fig.chart.to_dict()["title"] == "T"
    for suffix in ("svg", "png", "pdf", "html"):
        path = fig.save(project / f"x.{suffix}")
        assert path.read_bytes()[:4] in (b"<svg", b"\x89PNG", b"%PDF", b"<!DO")
    # The same bytes as the command line writes.
    figspec.build(["specs"])
    assert (project / "x.svg").read_bytes() == (project / "out" / "fig.svg").read_bytes()
    with pytest.raises(UsageError, match="unknown format"):
        fig.save(project / "x.gif")


def _without_title_encoding(node):
    """The Vega-Lite as Altair's schema has it: no colorbar title's `encode`."""
    if isinstance(node, dict):
        return {k: _without_title_encoding(v) for k, v in node.items()
                if not (k == "encode" and "titleOrient" in node)}
    if isinstance(node, list):
        return [_without_title_encoding(v) for v in node]
    return node


def test_the_chart_is_the_figure_the_pipeline_fitted(project: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    """`.chart` is the loaded figure's own Vega-Lite, fitted to its size, not
    laid out a second time."""
    import altair as alt

    from figspec import layout

    support.write(project / "specs" / "fig.yaml", support.spec_text(
        extra="size: {width: 3.25in}\nlegend: {title: ratio}\n"))
    fig = figspec.load("specs/fig.yaml")
    monkeypatch.setattr(layout, "figure", None)  # laying out again would fail
    # Without Altair's theme and its records moved into `datasets`: as given.
    with alt.theme.enable("none"), \
            alt.data_transformers.enable("default", consolidate_datasets=False):
        drawn = fig.chart.to_dict()
    assert drawn == _without_title_encoding(fig.vegalite)
    assert drawn["width"] == fig.vegalite["width"] != len(MODULES) * 24  # fitted, not the cell's


def test_load_reports_problems_as_diagnostics(project: Path):
    support.write(project / "specs" / "fig.yaml", support.spec_text(extra="colour: {}\n"))
    with pytest.raises(FigspecError) as e:
        figspec.load("specs/fig.yaml")
    assert "unknown key `colour`" in e.value.diagnostics[0].message


def test_build_returns_one_result_per_spec(project: Path):
    support.write(project / "specs" / "a.yaml", support.spec_text())
    support.write(project / "specs" / "b.yaml", "nope: 1\n")
    results = figspec.build(["specs"], out_dir="figs")
    assert [(r.spec.name, r.status) for r in results] == [("a.yaml", "built"), ("b.yaml", "failed")]
    assert support.figures(project / "figs") == ["a.png", "a.svg"]


def test_figspec_is_the_only_name(tmp_path: Path):
    """`import figspec` works from a repository holding its own `compiler/`
    folder (a paper's), and nothing named `compiler` comes with figspec."""
    import subprocess
    import sys

    (tmp_path / "compiler").mkdir()
    (tmp_path / "compiler" / "__init__.py").write_text("MINE = True\n")
    code = ("import figspec, figspec.builder, compiler, sys; "
            "from figspec.diagnostics import FigspecError; "
            "print(FigspecError is figspec.FigspecError, compiler.MINE, "
            "figspec.builder.__name__, figspec.__version__, "
            "sorted(m for m in sys.modules if m.split('.')[0] == 'compiler'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["True", "True", "figspec.builder", figspec.__version__, "['compiler']"]
    assert importlib.util.find_spec("compiler") is None or \
        "site-packages" not in (importlib.util.find_spec("compiler").origin or "")


def test_load_takes_a_mapping_and_records(project: Path):
    records = [{"layer": layer, "module": m, "value": value_of(layer, i)}
               for layer in range(3) for i, m in enumerate(MODULES)]
    fig = figspec.load({"modules": "qwen2", "legend": {"format": ".2f"}}, data=records)
    values = fig.vegalite["data"]["values"]
    assert len(values) == 3 * 7
    assert values[0] == {"layer": 0, "module": "attn. q", "value": value_of(0, 0)}


def test_load_takes_a_dataframe_without_importing_pandas_itself(project: Path):
    class Frame:  # what figspec asks of a DataFrame: to_dict("records")
        def to_dict(self, orient: str):
            assert orient == "records"
            return [{"layer": 0, "module": "q_proj", "value": 0.5}]

    fig = figspec.load({"modules": ["q_proj"]}, data=Frame())
    assert fig.vegalite["data"]["values"] == [{"layer": 0, "module": "q_proj", "value": 0.5}]


def test_a_bad_mapping_raises_the_exported_error(project: Path):
    with pytest.raises(figspec.FigspecError, match=r"unknown key `colour`; did you mean `color`"):
        figspec.load({"modules": ["q_proj"], "colour": {}},
                      data=[{"layer": 0, "module": "q_proj", "value": 1}])


def test_every_error_is_a_figspec_error(project: Path):
    with pytest.raises(figspec.FigspecError, match="no such file"):
        figspec.load(project / "specs" / "missing.yaml")
    with pytest.raises(figspec.FigspecError, match="unknown format"):
        support.write(project / "specs" / "a.yaml", support.spec_text())
        figspec.load(project / "specs" / "a.yaml").save(project / "fig.gif")


def test_a_spec_file_takes_a_dataframe(project: Path):
    import pandas as pd

    support.write(project / "specs" / "a.yaml", support.spec_text(extra="title: From a file\n"))
    frame = pd.DataFrame(support.long_rows(layers=2))
    fig = figspec.load(project / "specs" / "a.yaml", data=frame)
    assert len(fig.vegalite["data"]["values"]) == 2 * 7
    assert fig.vegalite["title"] == "From a file"


def test_a_pivoted_dataframe_is_read_as_the_wide_layout(project: Path):
    import pandas as pd

    frame = pd.DataFrame(support.long_rows(layers=3))
    wide = frame.pivot(index="layer", columns="module", values="value")
    fig = figspec.load({"modules": "qwen2"}, data=wide)
    got = {(r["layer"], r["module"]): r["value"] for r in fig.vegalite["data"]["values"]}
    assert got == {(r["layer"], label): r["value"] for r in support.long_rows(layers=3)
                   for name, label in zip(MODULES, support.LABELS) if r["module"] == name}


def test_errors_in_python_data_name_the_key_and_the_row(project: Path):
    import pandas as pd

    rows = support.long_rows(layers=2)
    rows[5]["value"] = "n/a"
    frame = pd.DataFrame(rows, index=[f"r{i}" for i in range(len(rows))])
    with pytest.raises(figspec.FigspecError) as caught:
        figspec.load({"modules": "qwen2"}, data=frame)
    assert str(caught.value) == ('<spec>: error: DataFrame row 5 (index \'r5\'): value "n/a" '
                                 'in column `value` is not a number')
    with pytest.raises(figspec.FigspecError) as caught:
        figspec.load({"modules": "qwen2", "cell": {"width": -3}}, data=frame.iloc[:4])
    assert str(caught.value).startswith("<spec>: error: cell.width: input should be")


def test_a_library_user_s_process_is_left_as_it_was(project: Path):
    """Time zone, environment and umask stay the caller's, and the figure is
    still what `figspec build` draws (UTC, the shipped fonts)."""
    import subprocess
    import sys

    support.write(project / "specs" / "a.yaml", support.spec_text(
        extra="title: T\noutput: {formats: [svg, png, pdf]}\n"))
    code = """if True:
        import os, time
        os.umask(0o027)
        before = (dict(os.environ), time.tzname, time.timezone)
        import figspec
        fig = figspec.load("specs/a.yaml")
        for fmt in ("svg", "png", "pdf"):
            fig.save(f"mine.{fmt}")
        after = (dict(os.environ), time.tzname, time.timezone)
        print(before == after, oct(os.umask(0)), oct(os.stat("mine.png").st_mode & 0o777))
    """
    env = {**__import__("os").environ, "TZ": "America/New_York"}
    env.pop("FONTCONFIG_FILE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.split() == ["True", "0o27", "0o640"]
    subprocess.run([sys.executable, "-m", "figspec", "build"], cwd=project, env=env, check=True,
                   capture_output=True)
    for fmt in ("svg", "png", "pdf"):
        assert (project / f"mine.{fmt}").read_bytes() == \
            (project / "out" / f"a.{fmt}").read_bytes(), fmt


def _records(**change: object) -> list[dict]:
    rows = support.long_rows(layers=3, modules=["q_proj", "k_proj"])
    for key, value in change.items():
        index, column = key.rsplit("_", 1)
        rows[int(index.lstrip("r"))][column] = value
    return rows


def test_numpy_scalars_in_records_are_their_values(project: Path):
    import numpy as np

    rows = [{"layer": np.int64(r["layer"]), "module": np.str_(r["module"]),
             "value": np.float32(r["value"])} for r in _records()]
    fig = figspec.load({"modules": ["q_proj", "k_proj"]}, data=rows)
    got = {(v["layer"], v["module"]): v["value"] for v in fig.vegalite["data"]["values"]}
    assert got[(2, "k_proj")] == float(np.float32(value_of(2, 1)))
    doubled = figspec.load({"modules": ["q_proj", "k_proj"], "data": {"aggregate": "mean"}},
                           data=rows + rows)
    assert len(doubled.vegalite["data"]["values"]) == 3 * 2


@pytest.mark.parametrize("data,message", [
    (lambda pd: _records(r2_value=pd.NaT),
     'record 2: value "" in column `value` is not a number'),
    (lambda pd: pd.DataFrame(_records(r2_layer=None)).astype({"layer": object}).assign(
        layer=lambda d: d.layer.where(d.index != 2, pd.NaT)),
     'DataFrame row 2: layer "" in column `layer` is not a non-negative whole number'),
    (lambda pd: pd.Series([1, 2, 3]), "not a Series"),
    (lambda pd: _records(r2_value=10**5000),
     "record 2: value (a 5,001-digit integer) in column `value` is not a finite number"),
    (lambda pd: _records(r2_layer=10**5000), "record 2: layer (a 5,001-digit integer)"),
    (lambda pd: _records(r2_value=object()), "record 2, column `value`: an object"),
    (lambda pd: _records(r0_module=b"q_proj"), "record 0, column `module`: a bytes (b'q_proj')"),
    (lambda pd: _records(r4_value=b"0.1"), "decode it to text first"),
    (lambda pd: _records() + [{"layer": 0, "module": "q_proj", "value": "x"}],
     'record 6: value "x" in column `value` is not a number'),
])
def test_python_data_that_is_no_number_or_text_is_a_figspec_error(project: Path, data,
                                                                  message: str):
    import pandas as pd

    with pytest.raises(figspec.FigspecError) as caught:
        figspec.load({"modules": ["q_proj", "k_proj"], "data": {"aggregate": "mean"}},
                     data=data(pd))
    assert message in str(caught.value)


@pytest.mark.parametrize("spec,message", [
    ({"modules": {"q_proj", "k_proj"}}, "spec key `modules`: a set"),
    ({"modules": ["q_proj"], "layers": {"last": 10**5000}}, "spec key `layers.last`: an "
     "integer of about 5,001 digits is too large"),
    ({"modules": [object()]}, "spec key `modules.0`: an object"),
    (["specs/a.yaml"], "takes a spec file's path or the spec as a mapping, not a list"),
    (5, "not an int"),
])
def test_a_spec_that_is_no_yaml_is_a_usage_error(project: Path, spec, message: str):
    with pytest.raises(figspec.FigspecError) as caught:
        figspec.load(spec, data=_records())
    assert message in str(caught.value)


def test_numpy_scalars_in_a_spec_mapping_are_their_values(project: Path):
    import numpy as np

    fig = figspec.load({"modules": ["q_proj", "k_proj"], "domain": [np.float32(0.1),
                                                                    np.int64(1)]},
                       data=_records())
    assert '"domain": [0.10000000149011612, 1.0]' in json.dumps(fig.vegalite)
